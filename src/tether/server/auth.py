"""Bearer tokens on HTTP: who is calling, and may they call this endpoint."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from tether.errors import AuthError, ForbiddenError
from tether.tokens import Principal, TokenStore


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, supplied = header.partition(" ")
    if not supplied and request.headers.get("x-api-key"):
        supplied, scheme = request.headers["x-api-key"], "bearer"
    if scheme.lower() != "bearer" or not supplied.strip():
        raise AuthError(
            "missing bearer token: send 'Authorization: Bearer <token>'; the admin token "
            "is in the server's runtime file (see `tether config` for server.runtime_dir)"
        )
    return supplied.strip()


def token_store(request: Request) -> TokenStore:
    store: TokenStore = request.app.state.tokens
    return store


# Documents the scheme in the OpenAPI document; the token itself is read by bearer_token,
# which also takes an ``x-api-key`` header.
_BEARER = HTTPBearer(
    auto_error=False,
    description="A tether token: the admin token from the runtime file, or one from "
    "`tether token create` / POST /v1/tokens.",
)


def require(scope: str | None) -> Callable[..., Awaitable[Principal]]:
    """A dependency: a valid token, holding ``scope`` unless it is None."""

    async def dependency(
        request: Request, _: Annotated[HTTPAuthorizationCredentials | None, Security(_BEARER)]
    ) -> Principal:
        principal = token_store(request).authenticate(bearer_token(request))
        request.state.principal = principal
        if scope is not None and not principal.allows(scope):
            raise ForbiddenError(
                f"this token lacks the {scope!r} scope; ask an admin for one that has it "
                f"(tether token create --scopes {scope})"
            )
        token_store(request).admit(principal)
        return principal

    return dependency
