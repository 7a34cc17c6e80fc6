"""Secrets the prompt policy redacted from a file, put back where the model's file keeps
their placeholders.

The model sees ``[REDACTED:rule-id]`` in place of a secret in the file it is asked to
change, and a faithful answer copies the placeholder; in the patch it would replace the
secret and break the code. So the value goes back before the diff is made: the secret never
reached the model, and stays in the file as it was. A placeholder on a line the model kept
or moved stands for the value it stood for on that line; one on a line the model changed
or added stands for its rule's value when the file had only one. Any other placeholder of a
redacted rule cannot be put back, and its line is reported rather than written as code.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass

from tether.findings import Finding
from tether.policy import govern
from tether.suggestions.patch import split_lines

_PLACEHOLDER = re.compile(r"\[REDACTED:[^\[\]\n]*\]")


@dataclass(frozen=True)
class PutBack:
    text: str  # the model's file with every placeholder it could tell put back
    unsure: list[int]  # lines (1-based) of placeholders that stand for more than one value


def _body(line: str) -> str:
    return line.removesuffix("\n").removesuffix("\r")


def put_back_secrets(source: str, proposed: str, redacted: Iterable[Finding]) -> PutBack:
    """``proposed`` with the placeholders of ``source``'s ``redacted`` findings (the
    scanner's findings there that the policy redacted) replaced by their values."""
    seen = govern(source, redacted)  # the file as the model saw it
    if not seen.redactions:
        return PutBack(proposed, [])
    shown = split_lines(seen.text)
    behind = _values_per_line(shown, dict(seen.redactions))
    by_line: dict[str, set[tuple[str, ...]]] = {}
    by_placeholder: dict[str, set[str]] = {}
    for line, values in zip(shown, behind, strict=True):
        by_line.setdefault(_body(line), set()).add(tuple(values))
        for match, value in zip(_PLACEHOLDER.finditer(line), values, strict=True):
            by_placeholder.setdefault(match[0], set()).add(value)
    lines = split_lines(proposed)
    unsure: list[int] = []
    matcher = difflib.SequenceMatcher(
        None, [_body(line) for line in shown], [_body(line) for line in lines], autojunk=False
    )
    for tag, i1, _, j1, j2 in matcher.get_opcodes():
        for j in range(j1, j2):
            if tag == "equal":  # a line kept: its placeholders stand for that line's values
                lines[j] = _filled(lines[j], behind[i1 + j - j1])
                continue
            moved = by_line.get(_body(lines[j]), set())
            if len(moved) == 1:  # a line the file had, elsewhere: its values
                lines[j] = _filled(lines[j], list(next(iter(moved))))
                continue
            told = _told(lines[j], by_placeholder)
            if told is None:
                unsure.append(j + 1)
            else:
                lines[j] = told
    return PutBack("".join(lines), unsure)


def _values_per_line(lines: list[str], redactions: dict[int, str]) -> list[list[str]]:
    """For each line, what each placeholder on it stands for: the redacted value, or the
    placeholder itself where the file held that text already."""
    behind = []
    start = 0
    for line in lines:
        behind.append(
            [redactions.get(start + m.start(), m[0]) for m in _PLACEHOLDER.finditer(line)]
        )
        start += len(line)
    return behind


def _filled(line: str, values: list[str]) -> str:
    """``line`` with its placeholders replaced by ``values``, in order."""
    each = iter(values)
    return _PLACEHOLDER.sub(lambda _: next(each), line)


def _told(line: str, by_placeholder: dict[str, set[str]]) -> str | None:
    """``line`` with each placeholder that stands for one value replaced by it (one the
    model saw nowhere is its own text and stays); None when one stands for several."""
    if any(len(by_placeholder.get(m[0], ())) > 1 for m in _PLACEHOLDER.finditer(line)):
        return None
    return _PLACEHOLDER.sub(lambda m: next(iter(by_placeholder.get(m[0], {m[0]}))), line)
