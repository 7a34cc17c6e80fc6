"""Bearer tokens on HTTP: who is calling, and may they call this endpoint."""

from __future__ import annotations

from fastapi import Request

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


class TokenCheck:
    """A dependency: a valid token, holding ``scope`` unless it is None."""

    def __init__(self, scope: str | None) -> None:
        self.scope = scope

    # The scheme is documented by the OpenAPI builder, not by a security dependency: that
    # would be solved, and build a credentials model, on every request.
    async def __call__(self, request: Request) -> Principal:
        store = token_store(request)
        principal = store.authenticate(bearer_token(request))
        request.state.principal = principal
        if self.scope is not None and not principal.allows(self.scope):
            raise lacking(self.scope)
        store.admit(principal)
        return principal


def lacking(scope: str) -> ForbiddenError:
    return ForbiddenError(
        f"this token lacks the {scope!r} scope; ask an admin for one that has it "
        f"(tether token create --scopes {scope})"
    )


def require(scope: str | None) -> TokenCheck:
    return TokenCheck(scope)


def checked(request: Request) -> bool:
    """Whether a TokenCheck has already run on this request."""
    return "principal" in request.scope.get("state", {})
