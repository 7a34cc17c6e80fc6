"""Default context compression: keep snippets in order while they fit the budget."""

from __future__ import annotations

from collections.abc import Callable

from tether.hookspecs import hookimpl
from tether.pipeline.fim import ContextSnippet


@hookimpl(trylast=True)
def compress_context(
    snippets: list[ContextSnippet], budget_tokens: int, count_tokens: Callable[[str], int]
) -> list[ContextSnippet] | None:
    kept: list[ContextSnippet] = []
    used = 0
    for snippet in snippets:  # clients send the most relevant first
        cost = count_tokens(snippet.text)
        if used + cost > budget_tokens:
            continue  # a smaller one further down may still fit
        kept.append(snippet)
        used += cost
    return kept
