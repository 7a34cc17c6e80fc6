"""Small pure-ASGI middleware."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tether.server.errors import error_body
from tether.server.jsonbody import text_problem

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


class BodyCheck:
    """Refuse a request body that is too large (413), compressed (415) or not Unicode
    text (400).

    Bodies are read into memory before authentication can run, so without a limit anyone
    who can reach the port can make the server hold gigabytes. A declared Content-Length
    is refused at once; a chunked body when it passes the limit. The text check runs on
    the whole body as its last piece arrives, before any handler parses it, so text that
    no encoder can write (a lone surrogate) never reaches the tokenizer or the audit log.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self) -> str:
        return (
            f"the request body is larger than {self.max_bytes / 2**20:g} MB "
            "(server.max_body_mb); send less, or raise the limit"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        # HTTP's parser takes the chunks off a body, and passes a coding before them
        # ("gzip, chunked") on unapplied: the JSON parser then read compressed bytes. A
        # field's lines are one list: a coding may be on a line of its own.
        codings: dict[bytes, list[bytes]] = {b"content-encoding": [], b"transfer-encoding": []}
        for field, value in scope["headers"]:
            if field in codings:
                codings[field] += [c.strip() for c in value.lower().split(b",")]
        compressed = [c for c in codings[b"content-encoding"] if c not in (b"", b"identity")]
        packed = [
            c for c in codings[b"transfer-encoding"] if c not in (b"", b"chunked", b"identity")
        ]
        if compressed or packed:
            header, coding = ("Content", compressed[0]) if compressed else ("Transfer", packed[0])
            name = coding.decode("latin-1")
            message = (
                f"request bodies are read as sent: {header}-Encoding {name} is not "
                "supported; send the body uncompressed"
            )
            body = error_body(message, "invalid_request_error", code="unsupported_content_encoding")
            await JSONResponse(body, 415)(scope, receive, send)
            return
        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            body = error_body(self._too_large(), "invalid_request_error", code="request_too_large")
            await JSONResponse(body, 413, headers={"Connection": "close"})(scope, receive, send)
            return
        pieces: list[bytes] = []
        received = 0

        async def checked() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] != "http.request":
                return message
            piece = message.get("body", b"")
            received += len(piece)
            # An HTTPException passes through FastAPI's body reading to the error
            # handlers, which answer in the OpenAI shape.
            if received > self.max_bytes:
                # Its connection closes, as a declared length's does: kept open, the rest
                # of the body was read and dropped for as long as its client sent it.
                raise HTTPException(413, detail=self._too_large(), headers={"Connection": "close"})
            pieces.append(piece)
            if not message.get("more_body", False):
                whole = pieces[0] if len(pieces) == 1 else b"".join(pieces)
                pieces.clear()
                problem = text_problem(whole)
                if problem is not None:
                    raise HTTPException(400, detail=problem)
            return message

        await self.app(scope, checked, send)
