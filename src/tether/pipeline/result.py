"""What the pipeline gives back: text as it streams, then the whole checked answer.

Engines yield text and token counts only (``GenerationChunk``); everything governance
adds (findings, a block, the answer after redaction) lives here, built once by the
pipeline and read as it is by the recorders and the wire formats.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tether.findings import Action, Finding

# The timings every answer carries, in pipeline order, seconds each: the prompt policy,
# fitting the context, rendering, time to first text, generation (from its start), the
# checks on the answer, and the whole request from preparation to checked answer.
STAGES = ("govern", "retrieve", "compress", "render", "ttft", "generate", "check", "total")


@dataclass(frozen=True)
class Findings:
    """What the prompt policy found before tokenization, and the checks found after."""

    policy: tuple[Finding, ...] = ()
    checks: tuple[Finding, ...] = ()

    @property
    def all(self) -> tuple[Finding, ...]:
        return (*self.policy, *self.checks)

    def records(self) -> list[dict[str, Any]]:
        """Every finding as a plain record, policy first: the wire formats' list."""
        return [f.as_record() for f in self.all]

    @classmethod
    def from_records(cls, records: list[dict[str, Any]]) -> Findings:
        """Findings as :meth:`records` wrote them (a server's ``tether.findings``); a
        finding another server's plugin made, with a stage, action or severity this tether
        does not know, is kept as a note (that blocks, if it did), rather than failing the
        answer; fields this tether does not know are left out."""
        found = []
        known = set(Finding.__dataclass_fields__)
        for record in records:
            if not isinstance(record, dict) or not {"rule_id", "message"} <= record.keys():
                raise ValueError(f"not a finding: {record!r}")
            fields = {k: v for k, v in record.items() if k in known}  # a newer server's extra
            try:
                found.append(Finding(**fields))
            except (TypeError, ValueError):
                # A value this tether does not know: a block still blocks, the rest annotates.
                rule, message = str(fields["rule_id"]), str(fields["message"])
                blocked = fields.get("action") == "block"
                action: Action = "block" if blocked else "annotate"
                found.append(Finding(rule, message, "compliance", action, "note"))
        return cls(
            tuple(f for f in found if f.stage == "policy"),
            tuple(f for f in found if f.stage != "policy"),
        )

    @property
    def blocking(self) -> list[str]:
        """The rules whose checks blocked the answer, each once."""
        return sorted({f.rule_id for f in self.checks if f.action == "block"})


@dataclass(frozen=True)
class Retrieved:
    """A vetted snippet that step 3 found for the prompt."""

    reference: dict[str, Any]  # id, version, hash: how answers and audit records name it
    name: str
    language: str
    text: str  # as the prompt shows it
    label: str  # where it comes from, as a FIM prompt names it
    scores: dict[str, Any]  # each ranker's score and rank
    tokens: int
    fitted: bool  # inside the task's budget, so in the prompt

    def record(self) -> dict[str, Any]:
        """The trace's account of it."""
        return {
            **self.reference,
            "name": self.name,
            "scores": self.scores,
            "tokens": self.tokens,
            "fitted": self.fitted,
        }


@dataclass(frozen=True)
class Completion:
    """A finished answer, after the checks and their actions."""

    id: str
    created: int
    model: str
    system_fingerprint: str
    seed: int
    text: str  # what the client gets: pseudonyms restored, redactions applied, "" if blocked
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    # Prompt tokens the engine read from its cache; None where it did not say (a gateway's
    # upstream that reports none), which an OpenAI answer leaves out rather than claim 0.
    cached_tokens: int | None = 0
    stop_word: str | None = None  # the stop string that ended it, when the engine says
    held_tokens: int | None = None  # what its sequence's cache holds after it, if known
    timings: dict[str, float] = field(default_factory=dict)  # stage -> seconds
    findings: Findings = field(default_factory=Findings)
    blocked: bool = False
    # What the engine wrote, before pseudonymized values went back in: the form that may
    # be kept in traces and logs. Equal to ``text`` when nothing was put back or redacted.
    engine_text: str = ""
    # The pipeline stopped the engine (an editor's hole was filled): ``engine_text`` is
    # what it wrote until then, which a regeneration must stop at too.
    ended_early: bool = False
    snippets: tuple[dict[str, Any], ...] = ()  # references of the store's snippets used
    truncated: bool = False  # the code around the cursor was cut to fit the window
    traced: bool = True  # a trace of it is kept (traces.enabled), which its id finds


@dataclass(frozen=True)
class AnswerChunk:
    """A piece of the answer as it streams; the last one carries the whole ``completion``."""

    text: str
    completion: Completion | None = None

    @property
    def finish_reason(self) -> str | None:
        return self.completion.finish_reason if self.completion is not None else None
