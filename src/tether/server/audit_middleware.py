"""Every API request leaves an audit record, including refused and failed ones.

Finished generations are recorded by the pipeline with their content commitments; this
pure-ASGI middleware adds a record for the rest (bad token, bad request, policy block,
client gone) with what is known: endpoint, status, principal, policy decisions.
"""

from __future__ import annotations

import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tether.pipeline.recording import AuditRecorder

# Probes and scrapes are not requests for the assistant.
_UNAUDITED = ("/healthz", "/readyz", "/metrics", "/docs", "/openapi.json", "/redoc")


class AuditMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The recorder exists once the lifespan has opened the log (None when audit is off).
        recorder = getattr(scope["app"].state, "audit_recorder", None) if "app" in scope else None
        if recorder is None or scope["type"] != "http" or scope["path"].startswith(_UNAUDITED):
            await self.app(scope, receive, send)
            return
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            _record_unless_done(recorder, scope, status)


def _record_unless_done(recorder: AuditRecorder, scope: Scope, status: int) -> None:
    state: dict[str, Any] = scope.get("state", {})
    request_id = state.get("request_id")
    if request_id and recorder.was_recorded(request_id):
        return
    principal = state.get("principal")
    recorder.log.append(
        {
            "request_id": request_id or f"req-{uuid.uuid4().hex}",
            "principal": getattr(principal, "name", None),
            "token_id": getattr(principal, "token_id", None),
            "endpoint": f"{scope['method']} {scope['path']}",
            "model_sha256": recorder.info.model_sha256 or recorder.info.model_id,
            "params": {"status": status},
            "policy": [f.as_record() for f in state.get("policy_findings", [])],
            "findings": [],
        }
    )
