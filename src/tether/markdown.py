"""Fenced code blocks in a model's Markdown answer: where each starts and what it holds.

Fences are read as CommonMark reads them: a fence is a line of its own, indented at most
three spaces, of three or more backticks or tildes; it closes only on a line of the same
character, at least as long, with nothing else on it. So a "```" inside the code (a
docstring's example, a template string) closes nothing, and neither does a fence's line
indented past three spaces. Unlike CommonMark, a block's code is kept as the answer has it
(no indentation is taken off), so that it stays a slice of the answer at ``start``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

_OPENING = re.compile(r" {0,3}(?P<fence>`{3,}|~{3,})[ \t]*(?P<word>[\w+#.-]*)(?P<rest>[^\n]*)")
_LATE_OPENING = re.compile(r"[^`]*[^`\s][ \t]*(?P<fence>`{3,})(?P<word>[\w+#.-]*)[ \t\r]*")
_CLOSING = re.compile(r" {0,3}(?P<fence>`{3,}|~{3,})[ \t\r]*")


@dataclass(frozen=True)
class FencedBlock:
    info: str  # the word after the opening fence, usually a language; may be ""
    code: str
    start: int  # offset of ``code`` in the answer
    closed: bool = True  # False: the answer ended inside it (a model cut off by max_tokens)


@dataclass(frozen=True)
class _Line:
    start: int  # offset in the answer
    end: int  # offset after its "\n", or the answer's end
    text: str  # without its "\n"


def _lines(answer: str) -> list[_Line]:
    lines = []
    start = 0
    for text in answer.split("\n"):
        end = min(start + len(text) + 1, len(answer))
        lines.append(_Line(start, end, text))
        start = end
    return lines


def _opening(line: str) -> tuple[str, str] | None:
    """(fence, info word) when ``line`` opens a block, else None."""
    match = _OPENING.fullmatch(line)
    if match is None or ("`" in match["fence"] and "`" in match["rest"]):
        return None  # a backtick fence's info string holds no backtick: "```x```" is code
    return match["fence"], match["word"]


def _late_opening(line: str) -> tuple[str, str] | None:
    """(fence, info word) when a backtick fence ends ``line`` after other text."""
    match = _LATE_OPENING.fullmatch(line)
    return None if match is None else (match["fence"], match["word"])


def _closes(line: str, fence: str) -> bool:
    match = _CLOSING.fullmatch(line)
    return match is not None and match["fence"][0] == fence[0] and len(match["fence"]) >= len(fence)


def holds_fence(text: str) -> bool:
    """Whether a line of ``text`` could open or close a block, strictly or leniently read:
    only then can an answer that quotes ``text`` be read more than one way."""
    lines = (line.removesuffix("\r") for line in text.split("\n"))
    return any(_opening(line) or _late_opening(line) for line in lines)


def fenced_blocks(answer: str, *, lenient: bool = False) -> Iterator[FencedBlock]:
    """Each fenced block of ``answer`` in order; an unclosed one runs to the end, as a model
    cut off by max_tokens leaves one open. ``lenient`` also opens a block at a backtick
    fence that ends a line of prose ("Sure! ```python"), which CommonMark does not, but
    which models write and a reader takes for code: for checks, which must not miss it."""
    lines = _lines(answer)
    i = 0
    while i < len(lines):
        opened = _opening(lines[i].text) or (_late_opening(lines[i].text) if lenient else None)
        i += 1
        if opened is None:
            continue
        fence, info = opened
        first = i
        while i < len(lines) and not _closes(lines[i].text, fence):
            i += 1
        yield _block(answer, lines, first, i, info)
        i += 1  # past the closing fence


def outermost_block(answer: str) -> FencedBlock | None:
    """The answer's first fence read as closing on the last line that could close it, so
    that fences inside it are code: how a whole file that holds fences reads when the model
    wraps it in a fence no longer than those. None when the answer has no fence."""
    lines = _lines(answer)
    for i, line in enumerate(lines):
        opened = _opening(line.text)
        if opened is None:
            continue
        fence, info = opened
        end = next(
            (j for j in range(len(lines) - 1, i, -1) if _closes(lines[j].text, fence)),
            len(lines),
        )
        return _block(answer, lines, i + 1, end, info)
    return None


def _block(answer: str, lines: list[_Line], first: int, end: int, info: str) -> FencedBlock:
    """The block whose code is ``lines[first:end]``."""
    start = lines[first].start if first < len(lines) else len(answer)
    stop = lines[end].start if end < len(lines) else len(answer)
    return FencedBlock(info, answer[start:stop], start, closed=end < len(lines))
