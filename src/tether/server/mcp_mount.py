"""The function store's MCP server on the HTTP app, at ``/mcp`` (streamable HTTP).

Stateless with JSON answers, so any replica can take any request. A bearer token with
``store:read`` opens it; the token is checked on every request, since the transport has
no sessions to bind it to. Refusals are JSON-RPC errors (what MCP clients read) that
also carry the OpenAI error fields. Host-header checks are off: every request needs a
token, which a rebinding page cannot have.
"""

from __future__ import annotations

from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from tether.errors import AuthError, ForbiddenError
from tether.server.auth import bearer_token, token_store
from tether.store.mcp import CALLER, Caller

PATH = "/mcp"
_UNAUTHORIZED = -32001  # the code MCP clients show as "Unauthorized"


class McpGate:
    def __init__(self, server: MCPServer) -> None:
        self.server = server

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope)
        try:
            principal = token_store(request).authenticate(bearer_token(request))
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
        scope["state"]["principal"] = principal
        request_id: str = scope["state"]["request_id"]
        recorder = getattr(request.app.state, "audit_recorder", None)

        def audit(event: str, details: dict[str, Any]) -> None:
            if recorder is not None:
                recorder.record_event(request_id, principal, event, details)

        reset = CALLER.set(Caller(principal, request_id, audit))
        try:
            await self.server.session_manager.asgi_app(scope, receive, send)
        finally:
            CALLER.reset(reset)


def _refusal(status: int, message: str) -> JSONResponse:
    kind = "invalid_request_error" if status == 401 else "permission_error"
    body = {
        "jsonrpc": "2.0",
        "id": None,
        "error": {"code": _UNAUTHORIZED, "message": message, "type": kind, "param": None},
    }
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
    return JSONResponse(body, status, headers=headers)


def mcp_route(server: MCPServer) -> Route:
    """The route; the app's lifespan must run ``server.session_manager.run()``."""
    server.streamable_http_app(
        streamable_http_path=PATH,
        json_response=True,
        stateless_http=True,
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
    )
    return Route(PATH, endpoint=McpGate(server), methods=["GET", "POST", "DELETE"])
