"""The code around the cursor, cut to fit the context window as editors and llama.cpp's
``/infill`` do: the lines nearest the cursor stay, the far ends of the file go.

The code after the cursor gets at most a quarter of the room; the code before it the rest.
Whole lines are kept, and the cursor's own line is never cut.
"""

from __future__ import annotations

from collections.abc import Callable

SUFFIX_SHARE = 0.25


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
    ``from_start``, else its last ones (always the last, the cursor's, line)."""
    lines = text.splitlines(keepends=True)

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
