"""What governance plugins see and change: the prompt before tokenization, the answer after.

A ``PromptReview`` holds every piece of text a request would send to the engine (the
prompt, each message, the FIM prefix and suffix, each context snippet) by name, so a
plugin can scan and rewrite them without knowing the API the request came from.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

from tether.findings import Finding


@dataclass
class PromptReview:
    kind: str  # "completion", "chat" or "fim"; "embeddings" or "tokenize" for text only read
    parts: dict[str, str]
    principal: str | None = None
    findings: list[Finding] = field(default_factory=list)
    # Undo steps for the answer, e.g. putting pseudonymized values back.
    restorers: list[Callable[[str], str]] = field(default_factory=list)
    # Their inverses, the values put back replaced again, for what records an answer
    # without them (an audit log whose content is "redacted").
    hiders: list[Callable[[str], str]] = field(default_factory=list)
    # The placeholders the answer may hold (``<EMAIL_1>``), named by the restorers added
    # with ``add_restorer`` (``named`` of them): a stream holds back a tail that may become
    # one, and an answer cut inside one drops it. Where a restorer names none (appended to
    # ``restorers``), any text of a placeholder's shape is taken for one.
    placeholders: set[str] = field(default_factory=set)
    named: int = 0
    state: dict[str, Any] = field(default_factory=dict)  # per-request scratch for plugins
    # Texts of the request governed before (what the client sent, when a plugin's context
    # is governed after it): not to scan again, but pseudonyms already in them are taken.
    reserved: tuple[str, ...] = ()

    @property
    def blocking(self) -> list[Finding]:
        return [f for f in self.findings if f.action == "block"]

    def damage(self, names: Collection[str]) -> str | None:
        """What a plugin left here that tether cannot read, ``names`` being the parts it
        was given (a part dropped, added or made other than text, a finding of another
        shape); None when nothing."""
        if not isinstance(self.parts, dict):
            return f"review.parts is {type(self.parts).__name__}, not a dict of texts"
        if self.parts.keys() != set(names):
            missing, added = (
                sorted(set(names) - self.parts.keys()),
                sorted(self.parts.keys() - set(names)),
            )
            return (
                "review.parts keeps the names it was given, each rewritten in place"
                + (f"; missing {', '.join(missing)}" if missing else "")
                + (f"; added {', '.join(map(str, added))}" if added else "")
            )
        for name, text in self.parts.items():
            if not isinstance(text, str):
                return f"review.parts[{name!r}] is {type(text).__name__}, not text"
        return _findings_damage(self.findings)

    def restore(self, answer: str) -> str:
        for restorer in reversed(self.restorers):
            answer = restorer(answer)
        return answer

    def hide(self, answer: str) -> str:
        for hider in self.hiders:
            answer = hider(answer)
        return answer

    def add_restorer(
        self,
        restore: Callable[[str], str],
        hide: Callable[[str], str],
        placeholders: Iterable[str],
    ) -> None:
        """A way to put values back into the answer, its inverse, and every placeholder
        it puts a value in place of."""
        self.restorers.append(restore)
        self.hiders.append(hide)
        self.placeholders.update(placeholders)
        self.named += 1

    @property
    def placeholders_known(self) -> bool:
        """Whether every restorer named its placeholders."""
        return self.named == len(self.restorers)

    def take_undoing(self, other: PromptReview) -> None:
        """Take ``other``'s restorers, their inverses and placeholders (texts of this
        request governed apart)."""
        self.restorers.extend(other.restorers)
        self.hiders.extend(other.hiders)
        self.placeholders.update(other.placeholders)
        self.named += other.named


@dataclass
class CompletionReview:
    kind: str
    text: str
    language: str = ""
    prefix: str = ""  # code before and after the cursor, for FIM answers
    suffix: str = ""
    findings: list[Finding] = field(default_factory=list)
    blocked: bool = False
    cut_short: bool = False  # it ended at its token limit, perhaps within a statement
    # Fingerprints of the values the prompt's policy pseudonymized, put back in the answer
    # for the client who sent them: no finding of the answer's secret checks.
    given_back: frozenset[str] = frozenset()

    def damage(self) -> str | None:
        """What a plugin left here that tether cannot read (a finding of another shape, an
        answer blocked with no finding to say why); None when nothing."""
        damage = _findings_damage(self.findings)
        if damage is None and self.blocked and not any(f.action == "block" for f in self.findings):
            # The client, the audit record and `tether explain` would get no reason.
            return "review.blocked is set with no finding whose action is block to say why"
        return damage


def _findings_damage(findings: object) -> str | None:
    if not isinstance(findings, list):
        return f"review.findings is {type(findings).__name__}, not a list"
    for finding in findings:
        if not isinstance(finding, Finding):
            return f"review.findings holds a {type(finding).__name__}, not a tether.Finding"
    return None
