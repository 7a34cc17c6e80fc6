"""Every API request leaves exactly one audit record, including refused and failed ones.

A generation is recorded by the pipeline under the request's id (given by the access
middleware), with its content commitments; for every other request (bad token, bad
request, policy block, client gone, tokens, traces) this pure-ASGI middleware writes the
record itself, with what is known: endpoint, status, principal, policy decisions.
"""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tether.server.paths import recorded_path

# Probes, scrapes and the API documents are not requests for the assistant.
# Probes and pages that hold nothing of anyone's: the dashboard's page and files too (an
# uptime monitor probing /ui would add a signed record each time); its API is audited.
UNAUDITED = (
    "/health",
    "/v1/health",
    "/readyz",
    "/metrics",
    "/docs",
    "/openapi.json",
    "/redoc",
    "/ui/static/",
)


class AuditMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state: dict[str, Any] = scope["state"]
        request_id: str = state["request_id"]
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            # The recorder exists once the lifespan has opened the log (None when audit is off).
            recorder = getattr(scope["app"].state, "audit_recorder", None)
            path = scope["path"]
            audited = not path.startswith(UNAUDITED) and path not in ("/ui", "/ui/")
            if recorder is not None and audited and not recorder.claim(request_id):
                recorder.record_request(
                    f"req-{request_id}",
                    state.get("principal"),
                    f"{scope['method']} {recorded_path(scope)}",
                    status,
                    tuple(state.get("policy_findings", ())),
                )
