"""Apply the scanner's decisions to a text, and undo pseudonyms in the model's answer.

redact (and block) replace a value with ``[REDACTED:rule-id]`` for good; pseudonymize
replaces it with a placeholder such as ``<EMAIL_1>``, the same one for the same value
throughout a request, which ``restore`` turns back into the value in the answer.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import re2

from tether.findings import Finding

# Placeholders stay short and start with "<": the pipeline holds back a streamed tail
# from the last "<" so a placeholder split across chunks is still restored whole.
_PLACEHOLDER = re2.compile(r"<[A-Z][A-Z0-9_]{0,23}_[0-9]{1,6}>")
_LABEL_LENGTH = 16


class Pseudonyms:
    """Placeholders and their values for one request: share one across its texts."""

    def __init__(self) -> None:
        self._by_value: dict[tuple[str, str], str] = {}
        self._values: dict[str, str] = {}  # placeholder -> original value
        self._counts: dict[str, int] = {}
        # Placeholder-shaped text the request holds itself: never given to a value, or
        # restoring the answer would turn the caller's own text into that value.
        self._taken: set[str] = set()

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:  # never the values: this object may end up in a log
        return f"<Pseudonyms: {len(self)} placeholder(s)>"

    def reserve(self, text: str) -> None:
        """Keep every placeholder-shaped string in ``text`` from being given to a value.

        Reserve every text of a request before governing any: a placeholder made for a
        value in one text must not be one that another text holds literally.
        """
        if "<" in text:
            self._taken.update(_PLACEHOLDER.findall(text))

    def placeholder(self, rule_id: str, value: str) -> str:
        """The placeholder of ``value``; a new one is none that a reserved text holds."""
        key = (rule_id, value)
        if key in self._by_value:
            return self._by_value[key]
        label = _label(rule_id)
        while True:
            self._counts[label] = count = self._counts.get(label, 0) + 1
            placeholder = f"<{label}_{count}>"
            if placeholder not in self._taken:
                break
        self._by_value[key] = placeholder
        self._values[placeholder] = value
        return placeholder

    def restore(self, answer: str) -> str:
        """``answer`` with every placeholder of this request replaced by its value."""
        if not self._values or "<" not in answer:
            return answer
        values = self._values
        return str(_PLACEHOLDER.sub(lambda m: values.get(m.group(0), m.group(0)), answer))

    def placeholders(self) -> set[str]:
        """Every placeholder given so far."""
        return set(self._values)

    def hide(self, answer: str) -> str:
        """``answer`` with every value of this request replaced by its placeholder, as
        the engine saw it: for a record that must not keep the values."""
        for placeholder, value in sorted(self._values.items(), key=lambda p: -len(p[1])):
            answer = answer.replace(value, placeholder)
        return answer


@dataclass(frozen=True)
class Governed:
    """A text after the policy decisions, and what it took to get there."""

    text: str
    findings: tuple[Finding, ...]
    pseudonyms: Pseudonyms = field(repr=False)
    # Where in ``text`` each redaction's placeholder starts, and the value it stands for:
    # for a caller that holds the original anyway (a suggestion's file) and puts it back.
    redactions: tuple[tuple[int, str], ...] = field(default=(), repr=False)

    @property
    def blocking(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.action == "block")

    @property
    def blocked(self) -> bool:
        """True when a finding blocks the request; the caller must then not send it on."""
        return any(f.action == "block" for f in self.findings)

    def restore(self, answer: str) -> str:
        """Put pseudonymized values back into a model answer; redacted ones stay out."""
        return self.pseudonyms.restore(answer)


def govern(
    text: str, findings: Iterable[Finding], pseudonyms: Pseudonyms | None = None
) -> Governed:
    """``text`` with each finding's action applied.

    ``findings`` are the scanner's for this very text. Pass one ``Pseudonyms`` to every
    text of a request, having reserved them all, so a value gets the same placeholder in
    each and none that another text holds. A blocked text is
    redacted as well, so the blocked value cannot reach a model even by mistake.
    """
    pseudonyms = Pseudonyms() if pseudonyms is None else pseudonyms
    pseudonyms.reserve(text)
    ordered = sorted(findings, key=lambda f: (f.start, -f.end))
    pieces: list[str] = []
    redactions: list[tuple[int, str]] = []
    length = 0  # of the pieces so far
    position = 0
    for finding in ordered:
        if not 0 <= finding.start <= finding.end <= len(text):
            raise ValueError(f"finding {finding.rule_id} at {finding.start} is outside the text")
        if finding.start < position or finding.action in ("annotate", "allow"):
            continue  # an overlapped finding (the scanner never makes one) or a report
        if finding.action == "pseudonymize":
            value = text[finding.start : finding.end]
            replacement = pseudonyms.placeholder(finding.rule_id, value)
        else:
            replacement = f"[REDACTED:{finding.rule_id}]"
            redactions.append(
                (length + finding.start - position, text[finding.start : finding.end])
            )
        pieces += [text[position : finding.start], replacement]
        length += finding.start - position + len(replacement)
        position = finding.end
    pieces.append(text[position:])
    return Governed("".join(pieces), tuple(ordered), pseudonyms, tuple(redactions))


def _label(rule_id: str) -> str:
    """EMAIL for ``email``, CARD_NUMBER for ``card-number``."""
    label = "".join(c if c.isascii() and c.isalnum() else "_" for c in rule_id.upper())
    label = label.strip("_")
    label = label[:_LABEL_LENGTH] or "VALUE"
    return label if label[0].isalpha() else f"V{label}"[:_LABEL_LENGTH]
