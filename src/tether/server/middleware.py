"""Small pure-ASGI middleware."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tether.server.errors import error_body

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


class BodyLimit:
    """Refuse a request body larger than ``max_bytes`` with 413, before it is read whole.

    Bodies are read into memory before authentication can run, so without a limit anyone
    who can reach the port can make the server hold gigabytes. A declared Content-Length
    is refused at once; a chunked body when it passes the limit.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _message(self) -> str:
        return (
            f"the request body is larger than {self.max_bytes / 2**20:g} MB "
            "(server.max_body_mb); send less, or raise the limit"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            body = error_body(self._message(), "invalid_request_error", code="request_too_large")
            await JSONResponse(body, 413, headers={"Connection": "close"})(scope, receive, send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # An HTTPException passes through FastAPI's body reading to the error
                    # handlers, which answer in the OpenAI shape.
                    raise HTTPException(413, detail=self._message())
            return message

        await self.app(scope, limited, send)
