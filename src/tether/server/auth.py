"""Bearer tokens on HTTP: who is calling, and may they call this endpoint."""

from __future__ import annotations

from fastapi import Request

from tether.errors import AuthError, ForbiddenError
from tether.tokens import SCOPES, Principal, TokenStore


def bearer_token(request: Request) -> str:
    given = request.headers.getlist("authorization")
    if len(given) > 1:
        # Which one counts is not agreed: a proxy that adds its own, or checks the last,
        # would take another caller than the first one, which this would read.
        raise AuthError(
            f"the request has {len(given)} Authorization headers; send one "
            "Authorization header, 'Authorization: Bearer <token>'"
        )
    header = given[0] if given else ""
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


class TokenCheck:
    """A dependency: a valid token, holding ``scope`` unless it is None, and under its
    rpm when the route's requests are ``counted``."""

    def __init__(self, scope: str | None, counted: bool = True) -> None:
        self.scope = scope
        self.counted = counted

    # The scheme is documented by the OpenAPI builder, not by a security dependency: that
    # would be solved, and build a credentials model, on every request.
    async def __call__(self, request: Request) -> Principal:
        store = token_store(request)
        principal = store.authenticate(bearer_token(request))
        request.state.principal = principal
        if self.scope is not None and not principal.allows(self.scope):
            raise lacking(self.scope)
        if self.counted:
            store.admit(principal)
        return principal

    def refuse(self, request: Request) -> None:
        """Raise what ``__call__`` would for a token that is not valid or lacks the scope,
        without counting the request: the dependency still runs, and counts it, after."""
        principal = token_store(request).authenticate(bearer_token(request))
        if self.scope is not None and not principal.allows(self.scope):
            request.state.principal = principal  # the refusal's audit record names whom
            raise lacking(self.scope)


def lacking(scope: str) -> ForbiddenError:
    return ForbiddenError(
        f"this token lacks the {scope!r} scope; ask an admin for one that has it "
        f"(tether token create --scopes {scope})"
    )


def require(scope: str | None, *, counted: bool = True) -> TokenCheck:
    """The token check of a route; ``counted=False`` for token management, which must
    work whatever the tokens it manages have used (an issuer whose children spent the
    allowance they share must still be able to revoke them), and for what clients poll of
    the server's state (health, models, settings), which would spend a completion's."""
    if scope is not None and scope not in SCOPES:  # no token could ever hold it
        raise ValueError(
            f"{scope!r} is not a scope tether issues tokens for; use one of "
            f"{', '.join(SCOPES)}, or None for any valid token"
        )
    return TokenCheck(scope, counted)


def checked(request: Request) -> bool:
    """Whether a TokenCheck has already run on this request."""
    return "principal" in request.scope.get("state", {})
