"""Each request's identity and its line in the access log.

The outermost middleware: it gives the request its id (``scope["state"]["request_id"]``,
sent back as ``X-Request-Id``; the audit record and the trace carry the same id), and when
the response is done writes one line to the ``tether.access`` logger: time, request id,
principal, method, path (its route's template: ``tether.server.paths``), status, duration
and tokens. Never a prompt, an answer, a query string or a credential.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any, Literal

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tether.server.jsonlog import now
from tether.server.paths import recorded_path

log = logging.getLogger("tether.access")


class AccessLogMiddleware:
    def __init__(self, app: ASGIApp, log_format: Literal["text", "json"] = "text") -> None:
        self.app = app
        self.json = log_format == "json"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = uuid.uuid4().hex
        state: dict[str, Any] = scope.setdefault("state", {})
        state["request_id"] = request_id
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode()),
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            if log.isEnabledFor(logging.INFO):
                # A stream that failed before its first event: its error's status, not the
                # 200 sent while it waited (``serving``).
                status = state.get("failed_status", status)
                log.info(self._line(scope, state, status, time.perf_counter() - started))

    def _line(self, scope: Scope, state: dict[str, Any], status: int, seconds: float) -> str:
        principal = state.get("principal")
        usage = state.get("usage") or (None, None)
        path = recorded_path(scope)
        fields = {
            "time": now(),
            "request_id": state["request_id"],
            "principal": getattr(principal, "name", None),
            "method": scope["method"],
            "path": path,
            "status": status,
            "duration_ms": round(seconds * 1000, 1),
            "prompt_tokens": usage[0],
            "completion_tokens": usage[1],
        }
        if self.json:
            return json.dumps(fields, separators=(",", ":"))
        tokens = f" tokens={usage[0]}+{usage[1]}" if usage[0] is not None else ""
        who, path = _escaped(fields["principal"] or "-"), _escaped(path)
        return (
            f"{fields['time']} {fields['request_id']} {who} "
            f'"{fields["method"]} {path}" {status} {fields["duration_ms"]}ms{tokens}'
        )


def _escaped(text: str) -> str:
    """``text`` on one line: a client's path may hold any character once decoded (``%0a``),
    and a line break or NUL in it would forge or hide lines. Escaped as in JSON."""
    if text.isprintable() and '"' not in text and "\\" not in text:
        return text
    return json.dumps(text)[1:-1]
