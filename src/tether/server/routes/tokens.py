"""Scoped ephemeral tokens: create, list, revoke (scope ``tokens:admin``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import Field

from tether.errors import NotFoundError, RequestError
from tether.limits import Limits
from tether.server.auth import require, token_store
from tether.server.openapi import AUTHENTICATED, errors
from tether.server.routing import ApiRoute, known_query_only
from tether.server.schemas import Count, OwnModel
from tether.server.serving import drain_of
from tether.tokens import GIVEN_A_TOKEN, MAX_TTL_S, TOKEN_PREFIX, Principal, ScopeName

router = APIRouter(
    route_class=ApiRoute,
    prefix="/v1/tokens",
    tags=["tokens"],
    dependencies=[Depends(require("tokens:admin", counted=False)), Depends(known_query_only)],
    responses=errors(*AUTHENTICATED),
)


class TokenRequest(OwnModel):
    principal: str = Field(
        min_length=1, max_length=200, pattern=r"\S", description="Who the token is for."
    )
    scopes: list[ScopeName] = Field(min_length=1, description="What the token may do.")
    ttl_s: float | None = Field(
        None,
        ge=1,
        le=MAX_TTL_S,
        description="Lifetime in seconds; default an hour, or what the issuing token has "
        "left when that is less.",
    )
    rpm: Count | None = Field(None, description="Most requests a minute; none: no limit.")
    tpm: Count | None = Field(None, description="Most tokens (prompt + answer) a minute.")
    daily_tokens: Count | None = Field(None, description="Most tokens a UTC day.")


@router.post("", status_code=201)
async def create_token(request: Request, body: TokenRequest) -> dict[str, Any]:
    issuer: Principal = request.state.principal
    # Issuing counts against the issuer's rpm (listing and revoking do not): a token with
    # rpm 2 could otherwise mint tokens as fast as it could ask.
    token_store(request).admit(issuer)
    limits = Limits(rpm=body.rpm, tpm=body.tpm, daily_tokens=body.daily_tokens)
    token, record = token_store(request).issue(
        body.principal, body.scopes, body.ttl_s, limits, issuer=issuer
    )
    return {**token_store(request).public(record), "token": token}


@router.get("")
async def list_tokens(request: Request, expired: bool = False) -> dict[str, Any]:
    """The live tokens this token manages: all for the server's admin token, else those
    issued through it, and itself. ``?expired=true`` adds those that expired within the
    last day, which can still be revoked; ``expired`` says which."""
    store = token_store(request)
    shown = store.records(request.state.principal, expired=expired)
    return {
        "data": [
            {**store.public(r), "expired": store.is_expired(r), "usage": store.limiter.usage(r.id)}
            for r in shown
        ]
    }


@router.delete("/{token_id}", responses=errors(404))
async def revoke_token(request: Request, token_id: str) -> dict[str, Any]:
    """Revoke a token and the tokens issued through it; ``revoked`` names them all.
    ``expired`` says the token had already expired: revoking it still succeeds."""
    if token_id.startswith(TOKEN_PREFIX):
        raise RequestError(GIVEN_A_TOKEN, param="token_id")
    store = token_store(request)
    expired = store.has_expired(token_id)
    revoked = store.revoke(token_id, by=request.state.principal)
    if not revoked:
        raise NotFoundError(
            f"no token with id {token_id!r} to revoke (none was issued with it, or it was "
            "revoked already); GET /v1/tokens lists the live ones"
        )
    drain_of(request).revoke(revoked)  # their answers in flight end now
    return {"object": "token.revoked", "id": token_id, "revoked": revoked, "expired": expired}
