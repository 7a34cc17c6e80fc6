"""Small pure-ASGI middleware."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

_JSON = b"application/json"


class AssumeJsonBody:
    """Read request bodies as JSON whatever Content-Type says, as llama.cpp's server does.

    ``curl -d '{...}'`` sends form encoding; rejecting that would only annoy. Bodies that
    are not JSON still get a clear 400 from validation.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            original = dict(scope["headers"]).get(b"content-type", b"")
            if not original.startswith(_JSON):
                # In place: outer middleware reads what the router writes into this scope.
                scope["headers"] = [
                    *((k, v) for k, v in scope["headers"] if k != b"content-type"),
                    (b"content-type", _JSON),
                ]
        await self.app(scope, receive, send)
