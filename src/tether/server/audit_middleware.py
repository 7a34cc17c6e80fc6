"""Every API request leaves exactly one audit record, including refused and failed ones.

A generation is recorded by the pipeline under the request's id (given by the access
middleware), with its content commitments; for every other request (bad token, bad
request, policy block, client gone, tokens, traces) this pure-ASGI middleware writes the
record itself, with what is known: endpoint, status, principal, policy decisions.
"""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tether.errors import AuditUnwritableError
from tether.server.errors import error_response
from tether.server.paths import recorded_path

# Probes, scrapes and the API documents are not requests for the assistant.
# Probes and pages that hold nothing of anyone's: the dashboard's page and files too (an
# uptime monitor probing /ui would add a signed record each time); its API is audited.
# "*" is the server as a whole, which a proxy's health check asks OPTIONS of.
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


def audited(path: str) -> bool:
    """Whether a request for ``path`` is one for the assistant, which the audit log records
    and the usage ledger counts: the two agree on every request."""
    return not path.startswith(UNAUDITED) and path not in ("/ui", "/ui/", "*")


# When a request refused while the log cannot be written may ask again: the writer tries
# the disk again with the next record (the refusal's own), and a checkpoint then clears it.
UNWRITABLE_RETRY_S = 5


class AuditMiddleware:
    def __init__(self, app: ASGIApp, *, refuse_unrecorded: bool = False) -> None:
        self.app = app
        # audit.unwritable = refuse: no answer goes out that the log may never hold.
        self.refuse_unrecorded = refuse_unrecorded

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

        path = scope["path"]
        recorded = audited(path)
        try:
            problem = self._unwritable(scope) if recorded else None
            if problem is not None:
                refusal = AuditUnwritableError(
                    f"{problem}; this server answers nothing while it cannot record it "
                    f"(audit.unwritable = refuse): retry in {UNWRITABLE_RETRY_S} s, or ask "
                    "another replica",
                    retry_after_s=UNWRITABLE_RETRY_S,
                )
                await error_response(refusal)(scope, receive, send_wrapper)
                return
            await self.app(scope, receive, send_wrapper)
        finally:
            # The recorder exists once the lifespan has opened the log (None when audit is off).
            recorder = getattr(scope["app"].state, "audit_recorder", None)
            if recorder is not None and recorded and not recorder.claim(request_id):
                recorder.record_request(
                    f"req-{request_id}",
                    state.get("principal"),
                    f"{scope['method']} {recorded_path(scope)}",
                    # A stream that failed before its first event, after its 200 was sent.
                    state.get("failed_status", status),
                    tuple(state.get("policy_findings", ())),
                )

    def _unwritable(self, scope: Scope) -> str | None:
        """Why the log cannot be written, when requests are to wait for it; else None."""
        if not self.refuse_unrecorded:
            return None
        audit = getattr(scope["app"].state, "audit", None)
        return None if audit is None else audit.problem
