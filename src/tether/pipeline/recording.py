"""Recorders for the pipeline's last step: an audit record and a local trace per request.

Both keep what the model was shown and wrote, in the same serialisation
(``GenerationRequest.shown_text``): the prompt after the policy rewrote it, and the answer
before pseudonymized values went back in, so a value the policy kept from the model is
never written down here either, and a trace's prompt matches its audit commitment.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from typing import Any, Protocol

from tether.background import FLUSH_WAIT_S, BackgroundWriter, Database
from tether.engines.base import EngineInfo
from tether.findings import Finding
from tether.pipeline.result import Completion
from tether.pipeline.service import Prepared
from tether.pipeline.task import FimTask
from tether.templates import PromptTemplates
from tether.tokens import Principal
from tether.traces import TraceStore, trace_from

MOST_TRACES_WAITING = 10_000

# How an answer ends when its caller left or its engine failed: no check read it.
UNFINISHED = ("cancelled", "error")


class TraceRecorder:
    """Builds each trace on the request path and writes it on a thread of its own.

    The SQLite insert (0.1 to 0.2 ms) would otherwise sit between the answer and the client.
    """

    def __init__(self, store: TraceStore, info: EngineInfo, templates: PromptTemplates) -> None:
        self.store = store
        self.info = info
        self._digests = {t.name: t.sha256 for t in templates.info()}
        # A trace holds its prompt and answer, a few KB to a MB: fewer of them wait.
        waiting = Database("the trace store", store.path, "traces", MOST_TRACES_WAITING)
        self._writer = BackgroundWriter("tether-traces", "a trace", database=waiting)

    def flush(self) -> None:
        """Wait until every trace recorded so far can be read back, or ``FLUSH_WAIT_S``
        while another process holds the store locked."""
        self._writer.flush(FLUSH_WAIT_S)

    def close(self, give_up_at: float | None = None) -> None:
        self._writer.close(give_up_at)

    def record(self, prepared: Prepared, completion: Completion) -> None:
        task = prepared.task
        context = (
            [{"filename": s.filename, "text": s.text, "score": None} for s in task.fim.context]
            if isinstance(task, FimTask)
            else []
        )
        principal = prepared.principal
        digest = self._digests.get(task.kind if task.kind != "completion" else "", "")
        self._writer.submit(
            self.store.record,
            trace_from(
                id=completion.id,
                created=completion.created,
                kind=task.kind,
                endpoint=prepared.endpoint or "cli",
                principal=principal.name if principal else None,
                token_id=principal.token_id if principal else None,
                model=prepared.model,
                model_sha256=self.info.model_sha256 or "",
                engine=f"{self.info.engine} ({self.info.engine_version})",
                template=prepared.template,
                template_digest=digest or hashlib.sha256(prepared.template.encode()).hexdigest(),
                prompt=prepared.generation.shown_text(),
                context=context,
                policy=completion.findings.policy,
                sampling=prepared.generation.params.as_record(),
                timings=completion.timings,
                prompt_tokens=completion.prompt_tokens,
                completion_tokens=completion.completion_tokens,
                findings=completion.findings.checks,
                output=completion.engine_text,
                delivered=_delivered(prepared, completion),
                finish_reason=completion.finish_reason,
                system_fingerprint=completion.system_fingerprint,
                build=self.info.build,
                ended_early=completion.ended_early,
                snippets=[s.record() for s in prepared.snippets],
            ),
        )


def _delivered(prepared: Prepared, completion: Completion) -> str | None:
    """What the client got, for the trace, where it is not what the engine wrote; never
    a text into which pseudonymized values went back."""
    if prepared.review.restorers or completion.text == completion.engine_text:
        return None
    return completion.text


class AuditAppender(Protocol):
    """Where audit records go: the log itself (``AuditLog``), or for a command while a
    server keeps the log, that server (``tether.audit.relay.ServerRelay``)."""

    def append(self, record_fields: dict[str, Any]) -> int: ...


# Policy findings one audit record keeps, the rest counted (params.policy_omitted): a 6 MB
# embeddings request full of secrets made a 41 MB record of 148,000 findings, more than a
# webhook receiver takes in one body.
MAX_RECORDED_FINDINGS = 200


class AuditRecorder:
    """One audit record per request: the pipeline's for generations, the rest from HTTP.

    The HTTP middleware asks :meth:`claim` at the end of each request whether the
    pipeline already wrote its record, and writes one with :meth:`record_request` if not.
    """

    def __init__(self, log: AuditAppender, info: EngineInfo) -> None:
        self.log = log
        self.info = info
        self._recorded: set[str] = set()  # request ids the pipeline wrote, until claimed
        self._lock = threading.Lock()

    def record(self, prepared: Prepared, completion: Completion) -> None:
        generation = prepared.generation
        prompt = generation.shown_text()
        fields = self._fields(
            prepared.id,
            prepared.principal,
            prepared.endpoint or "cli",
            {
                **generation.params.as_record(),
                "finish_reason": completion.finish_reason,
                "snippets": list(completion.snippets),
                # How far the answer went, for a manifest pinned from it: its max_tokens
                # is this count where the context window ended it, and an answer ended
                # early regenerates only as far as it went.
                "completion_tokens": completion.completion_tokens,
                "ended_early": completion.ended_early,
            },
            completion.findings.policy,
        )
        fields.update(
            findings=[f.as_record() for f in completion.findings.checks],
            # What the engine was shown and wrote: the policy's redactions stay in force.
            prompt=prompt,
            completion=completion.engine_text,
            prompt_redacted=prompt,
            # What the client got, as the checks left it (a secret the model wrote is
            # redacted), with any value put back for it replaced again; an answer that
            # ended unfinished was not checked: only its commitment is kept.
            completion_redacted=None
            if completion.finish_reason in UNFINISHED
            else prepared.review.hide(completion.text),
        )
        self.log.append(fields)
        with self._lock:
            self._recorded.add(prepared.request_id)

    def record_event(
        self, request_id: str, principal: Principal | None, event: str, details: dict[str, Any]
    ) -> None:
        """A request that reports something done elsewhere (an evaluation run, a vetting
        decision): its record carries the event and its details."""
        fields = self._fields(f"evt-{request_id}", principal, f"event {event}", details, ())
        self.log.append(fields)
        with self._lock:
            self._recorded.add(request_id)

    def record_relayed(
        self, request_id: str, principal: Principal | None, record: dict[str, Any]
    ) -> int:
        """A record a command made while this server keeps the log (``tether.audit.relay``):
        its endpoint is "cli", its principal whoever sent it. Returns its seq."""
        shown = record.get("completion_redacted")
        fields = {
            **record,
            "principal": principal.name if principal else None,
            "token_id": principal.token_id if principal else None,
            "endpoint": "cli",
            "prompt_redacted": record.get("prompt"),
            "completion_redacted": record.get("completion") if shown is None else shown,
        }
        seq = self.log.append(fields)
        with self._lock:
            self._recorded.add(request_id)
        return seq

    def claim(self, request_id: str) -> bool:
        """True (once) when the pipeline has recorded request ``request_id`` itself."""
        with self._lock:
            if request_id in self._recorded:
                self._recorded.discard(request_id)
                return True
            return False

    def record_request(
        self,
        request_id: str,
        principal: Principal | None,
        endpoint: str,
        status: int,
        policy: tuple[Finding, ...] = (),
    ) -> None:
        """A request that produced no generation: refused, failed, or not a generation."""
        self.log.append(self._fields(request_id, principal, endpoint, {"status": status}, policy))

    def _fields(
        self,
        request_id: str,
        principal: Principal | None,
        endpoint: str,
        params: dict[str, Any],
        policy: Sequence[Finding],
    ) -> dict[str, Any]:
        if len(policy) > MAX_RECORDED_FINDINGS:
            # Blocks first: they are what a reader of the log looks for.
            ranked = sorted(policy, key=lambda f: f.action != "block")
            params = {**params, "policy_omitted": len(policy) - MAX_RECORDED_FINDINGS}
            policy = ranked[:MAX_RECORDED_FINDINGS]
        return {
            "request_id": request_id,
            "principal": principal.name if principal else None,
            "token_id": principal.token_id if principal else None,
            "endpoint": endpoint,
            "model_sha256": self.info.model_sha256 or self.info.model_id,
            "params": params,
            "policy": [f.as_record() for f in policy],
            "findings": [],
        }
