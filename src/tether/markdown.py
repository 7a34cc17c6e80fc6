"""Fenced code blocks in a model's Markdown answer: where each starts and what it holds."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

# An unclosed fence runs to the end: a model cut off by max_tokens leaves one open.
_FENCE = re.compile(r"```([\w+#.-]*)[^\n`]*\n(.*?)(?:```|\Z)", re.DOTALL)


@dataclass(frozen=True)
class FencedBlock:
    info: str  # the word after the opening fence, usually a language; may be ""
    code: str
    start: int  # offset of ``code`` in the answer


def fenced_blocks(answer: str) -> Iterator[FencedBlock]:
    for match in _FENCE.finditer(answer):
        yield FencedBlock(match.group(1), match.group(2), match.start(2))
