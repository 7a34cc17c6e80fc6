"""Recorders for the pipeline's last step: an audit record and a local trace per request.

Traces keep what the model was shown and wrote, so they store the prompt after the policy
rewrote it and the answer before pseudonymized values went back in: a value the policy
kept from the model is never written down here either.
"""

from __future__ import annotations

import hashlib
import json
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tether.audit import AuditLog
from tether.engines.base import EngineInfo
from tether.pipeline.service import Completion, Prepared
from tether.templates import PromptTemplates
from tether.traces import TraceStore, trace_from

_TEMPLATE_FOR_KIND = {"chat": "chat", "fim": "fim"}


class TraceRecorder:
    """Builds each trace on the request path and writes it on a thread of its own.

    The SQLite insert (0.1 to 0.2 ms) would otherwise sit between the answer and the client.
    """

    def __init__(self, store: TraceStore, info: EngineInfo, templates: PromptTemplates) -> None:
        self.store = store
        self.info = info
        self._digests = {t.name: t.sha256 for t in templates.info()}
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="tether-traces")

    def flush(self) -> None:
        """Wait until every trace recorded so far can be read back."""
        self._writer.submit(lambda: None).result()

    def close(self) -> None:
        self._writer.shutdown(wait=True)

    def record(self, prepared: Prepared, completion: Completion) -> None:
        generation = prepared.generation
        prompt = generation.prompt
        if prompt is None:  # an upstream engine renders chat itself: keep the messages
            prompt = json.dumps(generation.messages, ensure_ascii=False, indent=1)
        fim = prepared.task.fim
        context = (
            [{"filename": s.filename, "text": s.text, "score": None} for s in fim.context]
            if fim
            else []
        )
        principal = prepared.principal
        template_name = _TEMPLATE_FOR_KIND.get(prepared.task.kind, "")
        self._writer.submit(
            self.store.record,
            trace_from(
                id=completion.id,
                created=completion.created,
                kind=prepared.task.kind,
                endpoint=prepared.endpoint or "cli",
                principal=principal.name if principal else None,
                token_id=principal.token_id if principal else None,
                model=prepared.model,
                model_sha256=self.info.model_sha256 or "",
                engine=f"{self.info.engine} ({self.info.engine_version})",
                template=prepared.template,
                template_digest=self._digests.get(template_name, "")
                or hashlib.sha256(prepared.template.encode()).hexdigest(),
                prompt=prompt,
                context=context,
                policy=prepared.review.findings,
                sampling=generation.params.as_record(),
                timings=completion.timings,
                prompt_tokens=completion.prompt_tokens,
                completion_tokens=completion.completion_tokens,
                findings=completion.findings[len(prepared.review.findings) :],
                output=completion.engine_text
                if completion.engine_text is not None
                else completion.text,
                finish_reason=completion.finish_reason,
                system_fingerprint=completion.system_fingerprint,
            ),
        )


class AuditRecorder:
    """One audit record per finished request; the HTTP middleware covers the others."""

    def __init__(self, log: AuditLog, info: EngineInfo) -> None:
        self.log = log
        self.info = info
        self._recorded: deque[str] = deque(maxlen=4096)  # ids, for the middleware to skip

    def was_recorded(self, request_id: str) -> bool:
        return request_id in self._recorded

    def record(self, prepared: Prepared, completion: Completion) -> None:
        generation = prepared.generation
        prompt = generation.prompt
        if prompt is None:
            prompt = json.dumps(generation.messages, ensure_ascii=False)
        principal = prepared.principal
        policy = [f.as_record() for f in prepared.review.findings]
        checks = [f.as_record() for f in completion.findings[len(policy) :]]
        output = completion.engine_text if completion.engine_text is not None else completion.text
        fields: dict[str, Any] = {
            "request_id": completion.id,
            "principal": principal.name if principal else None,
            "token_id": principal.token_id if principal else None,
            "endpoint": prepared.endpoint,
            "model_sha256": self.info.model_sha256 or self.info.model_id,
            "params": {**generation.params.as_record(), "finish_reason": completion.finish_reason},
            "policy": policy,
            "findings": checks,
            # What the engine was shown and wrote: the policy's redactions stay in force.
            "prompt": prompt,
            "completion": output,
            "prompt_redacted": prompt,
            "completion_redacted": output,
        }
        self.log.append(fields)
        self._recorded.append(completion.id)
