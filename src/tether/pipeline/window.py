"""The code around the cursor, cut to fit the context window as editors and llama.cpp's
``/infill`` do: the lines nearest the cursor stay, the far ends of the file go.

The code after the cursor gets at most a quarter of the room; the code before it the rest.
Whole lines are kept; the cursor's own line is cut only when it alone is longer than the
room (minified code, a one-line data literal), keeping its end, as llama.cpp keeps the
last tokens of the prefix.
"""

from __future__ import annotations

import re
from collections.abc import Callable

SUFFIX_SHARE = 0.25
# A line and its "\n": a form feed or U+2028 ends none, as in editors and git (which
# str.splitlines() ignores).
_LINE = re.compile(r"[^\n]*\n|[^\n]+\Z")
# Characters a token may span, at most, in code: where a search of a line's end starts.
MAX_TOKEN_CHARS = 32


def fit_window(
    prefix: str, suffix: str, budget: int, count_tokens: Callable[[str], int]
) -> tuple[str, str]:
    """``prefix`` and ``suffix``, cut at line ends to about ``budget`` tokens together."""
    if count_tokens(prefix + suffix) <= budget:
        return prefix, suffix
    suffix = _keep(suffix, int(budget * SUFFIX_SHARE), count_tokens, from_start=True)
    prefix = _keep(prefix, budget - count_tokens(suffix), count_tokens, from_start=False)
    return prefix, suffix


def _keep(text: str, budget: int, count_tokens: Callable[[str], int], from_start: bool) -> str:
    """The most whole lines of ``text`` within ``budget`` tokens: its first lines when
    ``from_start``, else its last ones (always the last, the cursor's, line, or as much of
    its end as fits)."""
    lines = _LINE.findall(text)
    if not from_start and lines and count_tokens(lines[-1]) > budget:
        return _line_end(lines[-1], budget, count_tokens)

    def part(n: int) -> str:
        return "".join(lines[:n] if from_start else lines[len(lines) - n :])

    low, high = (0 if from_start else 1), len(lines)  # the most lines known to fit: low
    if count_tokens(part(high)) <= budget:
        return text
    while low < high - 1:
        middle = (low + high) // 2
        if count_tokens(part(middle)) <= budget:
            low = middle
        else:
            high = middle
    return part(low)


def _line_end(line: str, budget: int, count_tokens: Callable[[str], int]) -> str:
    """The longest end of ``line`` within ``budget`` tokens."""
    low, high = 0, min(len(line), budget * MAX_TOKEN_CHARS)  # the most characters known to fit
    if count_tokens(line[len(line) - high :]) <= budget:
        return line[len(line) - high :]
    while low < high - 1:
        middle = (low + high) // 2
        if count_tokens(line[len(line) - middle :]) <= budget:
            low = middle
        else:
            high = middle
    return line[len(line) - low :]
