"""Default context compression: repeats dropped, comments and docstrings stripped,
signatures when a file still does not fit, then what fits in the client's order
(``tether.pipeline.compress``); ``generation.compress_context = false`` keeps the files as
sent and only leaves out those over the budget."""

from __future__ import annotations

from collections.abc import Callable

from tether.hookspecs import hookimpl
from tether.pipeline.compress import compress
from tether.pipeline.fim import ContextSnippet


class ContextCompressor:
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    @hookimpl(trylast=True)
    def compress_context(
        self,
        snippets: list[ContextSnippet],
        budget_tokens: int,
        count_tokens: Callable[[str], int],
    ) -> list[ContextSnippet] | None:
        if self.enabled:
            return compress(snippets, budget_tokens, count_tokens)
        kept: list[ContextSnippet] = []
        used = 0
        for snippet in snippets:  # clients send the most relevant first
            cost = count_tokens(snippet.text)
            if used + cost > budget_tokens:
                continue  # a smaller one further down may still fit
            kept.append(snippet)
            used += cost
        return kept
