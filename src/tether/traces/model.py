"""The trace of one request: plain values only, so it serialises to JSON as is."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from tether.findings import Finding


@dataclass
class Trace:
    id: str  # the completion id the client saw, e.g. "cmpl-..."
    created: float  # epoch seconds
    kind: str  # "completion", "chat" or "fim"
    endpoint: str
    principal: str | None = None
    token_id: str | None = None
    model: str = ""
    model_sha256: str = ""
    engine: str = ""
    template: str = ""
    template_digest: str = ""
    prompt: str = ""  # as sent to the engine, after redaction
    context: list[dict[str, Any]] = field(default_factory=list)  # filename, text, score
    policy: list[dict[str, Any]] = field(default_factory=list)  # Finding.as_record()
    sampling: dict[str, Any] = field(default_factory=dict)  # incl. seed
    timings: dict[str, float] = field(default_factory=dict)  # stage -> seconds
    prompt_tokens: int = 0
    completion_tokens: int = 0
    findings: list[dict[str, Any]] = field(default_factory=list)  # compliance
    output: str = ""  # what the engine wrote, as the audit record commits to it
    # What the client got where that differs from ``output`` (an editor's hole cut from
    # it, a stop string, a check's redaction); None where it is the same, or where it held
    # pseudonymized values put back, which a trace must not keep.
    delivered: str | None = None
    finish_reason: str = ""
    system_fingerprint: str = ""
    build: str = ""  # the engine's compute backend and CPU features (EngineInfo.build)
    ended_early: bool = False  # the pipeline stopped the engine (Completion.ended_early)
    # Vetted snippets step 3 found: id, version, hash, name, scores, tokens, fitted.
    snippets: list[dict[str, Any]] = field(default_factory=list)

    @property
    def seed(self) -> int | None:
        seed = self.sampling.get("seed")
        return seed if isinstance(seed, int) else None

    def summary(self) -> dict[str, Any]:
        """The line ``tether explain --recent`` shows."""
        return {
            "id": self.id,
            "created": self.created,
            "kind": self.kind,
            "endpoint": self.endpoint,
        }

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Trace:
        # Unknown keys are dropped so traces written by a newer tether still load.
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    @classmethod
    def from_json(cls, text: str) -> Trace:
        """The trace in ``text``; ValueError when it is not one (a damaged row)."""
        try:
            data = json.loads(text)
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            return cls.from_dict(data)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"not a trace ({exc})") from exc


def _record(finding: Finding | Mapping[str, Any]) -> dict[str, Any]:
    return finding.as_record() if isinstance(finding, Finding) else dict(finding)


def _snippet(item: Mapping[str, Any]) -> dict[str, Any]:
    score = item.get("score")
    return {
        "filename": str(item.get("filename", "")),
        "text": str(item.get("text", "")),
        "score": None if score is None else float(score),
    }


def trace_from(
    *,
    id: str,
    kind: str,
    endpoint: str,
    prompt: str,
    output: str,
    delivered: str | None = None,
    created: float | None = None,
    principal: str | None = None,
    token_id: str | None = None,
    model: str = "",
    model_sha256: str = "",
    engine: str = "",
    template: str = "",
    template_digest: str = "",
    context: Iterable[Mapping[str, Any]] = (),
    policy: Iterable[Finding | Mapping[str, Any]] = (),
    sampling: Mapping[str, Any] | None = None,
    timings: Mapping[str, float] | None = None,
    prompt_tokens: int = 0,
    completion_tokens: int = 0,
    findings: Iterable[Finding | Mapping[str, Any]] = (),
    finish_reason: str = "",
    system_fingerprint: str = "",
    build: str = "",
    ended_early: bool = False,
    snippets: Iterable[Mapping[str, Any]] = (),
) -> Trace:
    """A trace from plain values; findings may be ``Finding`` objects or their records."""
    return Trace(
        id=id,
        created=time.time() if created is None else float(created),
        kind=kind,
        endpoint=endpoint,
        principal=principal,
        token_id=token_id,
        model=model,
        model_sha256=model_sha256,
        engine=engine,
        template=template,
        template_digest=template_digest,
        prompt=prompt,
        context=[_snippet(item) for item in context],
        policy=[_record(f) for f in policy],
        sampling=dict(sampling or {}),
        timings={k: float(v) for k, v in (timings or {}).items()},
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        findings=[_record(f) for f in findings],
        output=output,
        delivered=delivered,
        finish_reason=finish_reason,
        system_fingerprint=system_fingerprint,
        build=build,
        ended_early=ended_early,
        snippets=[dict(s) for s in snippets],
    )
