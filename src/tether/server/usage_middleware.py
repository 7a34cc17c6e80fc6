"""One ledger row and the usage counters per API request.

Pure ASGI, between the access log (which gives the request its id) and the routes: it
counts the body bytes that came in and went out and, when the response is done, reads
who asked and what was generated from the request's state (the serving path leaves the
``Completion`` there). What the audit log leaves out is not usage either: health,
readiness and metrics scrapes, the dashboard's page and files, the API documents.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tether.pipeline.result import Completion
from tether.server.audit_middleware import audited
from tether.server.metrics import Metrics
from tether.server.paths import route_template
from tether.usage.ledger import LedgerWriter, UsageRecord

BROKEN_STREAM_STATUS = 503  # engine_unavailable's
CODE_COMPLETIONS = frozenset({"fim", "completion"})


class UsageMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not audited(path):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        counts = {"in": 0, "out": 0, "status": 500}

        async def counting_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                counts["in"] += len(message.get("body", b""))
            return message

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                counts["status"] = message["status"]
            elif message["type"] == "http.response.body":
                counts["out"] += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, counting_receive, counting_send)
        finally:
            self._record(scope, counts, time.perf_counter() - started)

    def _record(self, scope: Scope, counts: dict[str, int], seconds: float) -> None:
        state: dict[str, Any] = scope.get("state", {})
        principal = state.get("principal")
        completion: Completion | None = state.get("completion")
        route = route_template(scope) or "unmatched"
        who = getattr(principal, "name", None)
        # Embeddings have no completion, only their tokens read and their model.
        prompt, answer = state.get("usage") or (0, 0)
        model = completion.model if completion else state.get("usage_model")
        # A stream that failed before its first event, after its 200 (``serving``).
        status = state.get("failed_status") or counts["status"]
        if completion is not None and completion.finish_reason == "error" and status < 400:
            # A stream that began well and ended in an error event (its upstream broke
            # off): an error, as the same failure before the first text is a 503.
            status = BROKEN_STREAM_STATUS
        row = UsageRecord(
            ts=time.time(),
            request_id=state.get("request_id", ""),
            principal=who,
            token_id=getattr(principal, "token_id", None),
            model=model,
            endpoint=route,
            status=status,
            prompt_tokens=completion.prompt_tokens if completion else prompt or 0,
            completion_tokens=completion.completion_tokens if completion else answer or 0,
            cached_tokens=(completion.cached_tokens or 0) if completion else 0,
            ttft_ms=_ms(completion.timings.get("ttft")) if completion else None,
            duration_ms=seconds * 1000,
            bytes_in=counts["in"],
            bytes_out=counts["out"],
            # Code completions only: the funnel follows what editors do with them.
            completion_id=completion.id
            if completion and state.get("task_kind") in CODE_COMPLETIONS
            else None,
            language=state.get("language"),
        )
        self.metrics.count_usage(row)
        ledger: LedgerWriter | None = getattr(scope["app"].state, "usage_ledger", None)
        if ledger is not None:
            ledger.record(row)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000
