"""The function store's MCP server on the HTTP app, at ``/mcp`` (streamable HTTP).

Stateless with JSON answers, so any replica can take any request. A bearer token with
``store:read`` opens it; the token is checked on every request, since the transport has
no sessions to bind it to. Refusals are JSON-RPC errors (what MCP clients read) that
also carry the OpenAI error fields: those made here, and those made on the way in for
every route (a body over the limit or not text, a token over its rate limit), which
``JsonRpcRefusals`` rewrites with their status and headers kept. Host-header checks are
off: every request needs a token, which a rebinding page cannot have.

The MCP server is built at the first request that comes in: the ``mcp`` package holds
some 25 MB that a server nobody asks over MCP should not.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any, Literal

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tether.errors import AuthError, CancelledGeneration, ForbiddenError
from tether.server.auth import bearer_token, token_store
from tether.server.errors import cors_refusal, error_body
from tether.server.event_stream import until_disconnect
from tether.server.jsonbody import not_json
from tether.store import FunctionStore
from tether.store.caller import CALLER, Caller
from tether.strictjson import parse_json

PATH = "/mcp"
_UNAUTHORIZED = -32001  # the code MCP clients show as "Unauthorized"
# JSON-RPC's codes for refusals by HTTP status: a body that is not text is not JSON
# (parse error), one too large or compressed is not a request, a rate limit is the
# server's own (-32000); anything else the server's fault.
_CODES = {400: -32700, 401: _UNAUTHORIZED, 403: _UNAUTHORIZED, 413: -32600, 415: -32600,
          405: -32600, 429: -32000}  # fmt: skip


class McpGate:
    def __init__(self, store_of: Callable[[], FunctionStore]) -> None:
        self._store_of = store_of
        self._app: ASGIApp | None = None
        self._starting = asyncio.Lock()
        self._stop: asyncio.Event | None = None
        self._runner: asyncio.Task[None] | None = None

    async def _mcp_app(self) -> ASGIApp:
        async with self._starting:
            if self._app is None:
                self._app = await self._start()
        return self._app

    async def _start(self) -> ASGIApp:
        from mcp.server.transport_security import TransportSecuritySettings

        from tether.store.mcp import build_mcp_server

        server = build_mcp_server(self._store_of)
        server.streamable_http_app(
            streamable_http_path=PATH,
            json_response=True,
            stateless_http=True,
            transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        )
        started, stop = asyncio.Event(), asyncio.Event()

        async def run() -> None:
            # The session manager's task group lives in one task of its own, entered and
            # left there, whichever request started it.
            async with server.session_manager.run():
                started.set()
                await stop.wait()

        runner = asyncio.create_task(run(), name="tether-mcp")
        waiting = asyncio.create_task(started.wait())
        await asyncio.wait({runner, waiting}, return_when=asyncio.FIRST_COMPLETED)
        if runner.done():
            waiting.cancel()
            runner.result()  # raises what stopped it
            raise RuntimeError("the MCP session manager stopped at once")
        self._stop, self._runner = stop, runner
        return server.session_manager.handle_request

    async def close(self) -> None:
        """Stop the MCP server, if a request started it."""
        if self._runner is not None and self._stop is not None:
            self._stop.set()
            await self._runner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        if request.method != "POST":
            # Stateless, so there is no stream for a GET to open nor a session to DELETE:
            # MCP's answer for that is 405 (a GET used to hang until the client gave up).
            # A browser's preflight (an MCP client in a web page) hears why it is refused.
            refusal = cors_refusal(request) or _not_allowed(request.method)
            await refusal(scope, receive, send)
            return
        try:
            principal = token_store(request).authenticate(bearer_token(request))
            # Known before a refusal: its audit record names whom it refused.
            scope["state"]["principal"] = principal
            if not principal.allows("store:read"):
                raise ForbiddenError(
                    "this token lacks the 'store:read' scope that /mcp needs "
                    "(tether token create --scopes store:read)"
                )
            token_store(request).admit(principal)
        except (AuthError, ForbiddenError) as exc:
            status = 401 if isinstance(exc, AuthError) else 403
            await _refusal(status, exc.message)(scope, receive, send)
            return
        request_id: str = scope["state"]["request_id"]
        recorder = getattr(request.app.state, "audit_recorder", None)

        def audit(event: str, details: dict[str, Any]) -> None:
            if recorder is not None:
                recorder.record_event(request_id, principal, event, details)

        try:
            body = await request.body()
        except ClientDisconnect:
            return  # gone before its request was all sent: nothing to answer
        problem = _body_problem(body)
        if problem is not None:
            await _refusal(400, *problem)(scope, receive, send)
            return
        app = await self._mcp_app()
        unknown = _unknown_protocol_version(request, body)
        if unknown is not None:
            await unknown(scope, receive, send)
            return
        reset = CALLER.set(Caller(principal, request_id, audit))
        try:
            await _stopped_when_the_client_leaves(app, scope, body, receive, send)
        finally:
            CALLER.reset(reset)


async def _stopped_when_the_client_leaves(
    app: ASGIApp, scope: Scope, body: bytes, receive: Receive, send: Send
) -> None:
    """``app`` on a request whose ``body`` is read, cancelled when the client goes away.
    The MCP server reads nothing more of the connection, so it would not notice: a tool
    (a function call) ran on to its time limit for no one, holding a thread that the next
    call waited for. Cancelled, the server ends the request's handlers."""
    task = asyncio.current_task()
    assert task is not None  # a request always runs in a task
    gone = asyncio.Event()
    handed = False
    answer: Literal["none", "started", "sent"] = "none"

    async def replayed() -> Message:
        nonlocal handed
        if not handed:
            handed = True
            return {"type": "http.request", "body": body, "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def sending(message: Message) -> None:
        nonlocal answer
        await send(message)
        if message["type"] == "http.response.start":
            answer = "started"
        elif message["type"] == "http.response.body" and not message.get("more_body"):
            answer = "sent"

    async def watch() -> None:
        await until_disconnect(receive)
        gone.set()
        # A notification is answered 202 before it is handled, and the client then
        # closes: what it sent is still to be done.
        if answer != "sent":
            task.cancel()

    watcher = asyncio.create_task(watch())
    try:
        await app(scope, replayed, sending)
    except asyncio.CancelledError:
        if not gone.is_set():
            raise
        task.uncancel()  # the cancellation was ours
        if answer == "none":  # counted as any request the client left
            message = "the client closed the connection; its request was stopped"
            raise CancelledGeneration(message) from None
        # Else part of a stream was sent, and its status with it: nothing more to say.
    finally:
        watcher.cancel()


def _refusal(status: int, message: str, code: int | None = None) -> JSONResponse:
    kind = "permission_error" if status == 403 else "invalid_request_error"
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
    body = _json_rpc_error(status, message, kind, None, code)
    return JSONResponse(body, status, headers=headers)


def _json_rpc_error(
    status: int, message: str, kind: str, param: str | None, code: int | None = None
) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": None,
        "error": {
            "code": code if code is not None else _CODES.get(status, -32603),
            "message": message,
            "type": kind,
            "param": param,
        },
    }


def _unknown_protocol_version(request: Request, body: bytes) -> JSONResponse | None:
    """The refusal of a request whose ``MCP-Protocol-Version`` header cannot be served:
    the SDK answers a version it does not know with a complaint about ``params._meta``,
    which names neither the header nor the versions it speaks. It is MCP's own
    "unsupported protocol version" error, with the request's id and the versions served
    in its data: a client newer than the server reads them to ask again with one of them
    (any other error ended its discovery)."""
    from mcp_types import UNSUPPORTED_PROTOCOL_VERSION  # loaded with the server
    from mcp_types.version import SUPPORTED_PROTOCOL_VERSIONS

    asked = request.headers.get("mcp-protocol-version")
    if asked is None or asked in SUPPORTED_PROTOCOL_VERSIONS:
        return None
    known = ", ".join(SUPPORTED_PROTOCOL_VERSIONS)
    message = (
        f"MCP-Protocol-Version {asked[:40]!r} is not one this server speaks: send one of "
        f"{known}, or leave the header out before initialize"
    )
    answer = _json_rpc_error(
        400, message, "invalid_request_error", None, UNSUPPORTED_PROTOCOL_VERSION
    )
    answer["id"] = parse_json(body).get("id")  # a message _body_problem found well-formed
    answer["error"]["data"] = {"supported": list(SUPPORTED_PROTOCOL_VERSIONS), "requested": asked}
    return JSONResponse(answer, 400)


def _body_problem(body: bytes) -> tuple[str, int] | None:
    """Why a JSON-RPC message cannot be taken, with its JSON-RPC code, before the MCP
    server reads it: JSON as every route reads it (no NaN, no Infinity), and a request id
    that is a string or an integer, which the server would otherwise treat as no request
    at all and answer with an empty 202."""
    try:
        message = parse_json(body)
    except json.JSONDecodeError as exc:
        return not_json(exc.msg), -32700
    # The server answers these with "invalid params" and pydantic's account of its union.
    if isinstance(message, list):  # JSON-RPC's batches, which MCP left out in 2025-06-18
        return "a batch (a JSON array) is not served: send one message a request", -32600
    if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
        return 'not a JSON-RPC 2.0 message: send one JSON object with jsonrpc "2.0"', -32600
    if "method" not in message:
        if ("result" in message or "error" in message) and "id" in message:
            return None  # a response to one of the server's requests
        return (
            "not a request, notification or response: send a method (with an id for a "
            "request), or a result or error with the id it answers",
            -32600,
        )
    if not isinstance(message["method"], str):
        return "method: must be a string, such as tools/call", -32600
    if not isinstance(message.get("params", {}), dict):
        return "params: must be an object of named parameters", -32600
    if "id" in message:
        ident = message["id"]
        if isinstance(ident, bool) or not isinstance(ident, str | int):
            return f"id {json.dumps(ident)}: a request's id must be a string or an integer", -32600
    return None


class JsonRpcRefusals:
    """Middleware: an error answered on /mcp in the OpenAI shape (by a check every route
    has, before the MCP server) becomes a JSON-RPC error with the same message, status and
    headers, since an MCP client shows only JSON-RPC errors' messages."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH:
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        pieces: list[bytes] = []

        async def rewritten(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start" and message["status"] >= 400:
                start = message  # held until the body says what it is
                return
            if start is None or message["type"] != "http.response.body":
                await send(message)
                return
            pieces.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            body = _as_json_rpc(start["status"], b"".join(pieces))
            headers = [(k, v) for k, v in start["headers"] if k.lower() != b"content-length"]
            headers.append((b"content-length", str(len(body)).encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, rewritten)


def _as_json_rpc(status: int, body: bytes) -> bytes:
    """``body``, an error in the OpenAI shape, as a JSON-RPC error; any other as it is."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return body
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if not isinstance(error, dict) or "jsonrpc" in parsed:
        return body
    message = str(error.get("message", ""))
    kind = str(error.get("type", "invalid_request_error"))
    return json.dumps(_json_rpc_error(status, message, kind, error.get("param"))).encode()


def _not_allowed(method: str) -> JSONResponse:
    message = (
        f"{method} /mcp is not served: this MCP endpoint is stateless and answers each "
        "POSTed JSON-RPC request with JSON, so it has no event stream to open and no session "
        "to end; POST your requests"
    )
    body = error_body(message, "invalid_request_error", code="method_not_allowed")
    return JSONResponse(body, 405, headers={"Allow": "POST"})


class _McpRoute(Route):
    """A route that names itself in the scope, as FastAPI's do, so the request metrics and
    the usage ledger count /mcp under its path."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child = super().matches(scope)
        if match is not Match.NONE:
            child["route"] = self
        return match, child


def mcp_route(gate: McpGate) -> Route:
    """The route; the app's lifespan must ``await gate.close()`` on the way out."""
    # Every method reaches the gate, so that each but POST hears the same 405.
    return _McpRoute(PATH, endpoint=gate, methods=None)
