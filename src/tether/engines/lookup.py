"""Prompt lookup: draft tokens for a sequence that is copying text it has seen.

A suggestion rewrites a file the prompt holds, mostly as it was. The tokens that followed
the newest ``n`` tokens of the sequence where they appeared before (in the prompt or in
the answer so far) are a good guess at what comes next; the scheduler checks a whole
guess in one batch and keeps what the model itself would have chosen (speculative
decoding, with the sequence's own text as the draft model). A rewrite walks through the
file in order, so the draft continues from where the last one left off while the answer
keeps matching, and otherwise comes from the nearest later place the n-gram appears.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

NGRAM = 3  # tokens matched; fewer find too many places, more too few


class PromptLookup:
    def __init__(self, prompt: Sequence[int], n: int = NGRAM) -> None:
        self._tokens: list[int] = []
        self._n = n
        # Each n-gram seen -> the positions of the tokens that followed it, ascending.
        self._follows: dict[tuple[int, ...], list[int]] = {}
        self._next = 0  # where the answer is expected to continue the text it copies
        self._start = -1  # where the last draft was taken from; -1: none
        for token in prompt:
            self.append(token)

    def append(self, token: int) -> None:
        """The sequence has one more token (a prompt token, or one the model chose)."""
        tokens, n = self._tokens, self._n
        if len(tokens) >= n:
            self._follows.setdefault(tuple(tokens[-n:]), []).append(len(tokens))
        tokens.append(token)

    def draft(self, limit: int) -> list[int]:
        """Up to ``limit`` tokens guessed to follow the sequence as it stands."""
        tokens, n = self._tokens, self._n
        self._start = -1
        if limit <= 0 or len(tokens) < n:
            return []
        key = tuple(tokens[-n:])
        if n <= self._next < len(tokens) - n and tuple(tokens[self._next - n : self._next]) == key:
            start = self._next
        else:
            places = self._follows.get(key)
            if not places:
                return []
            later = bisect.bisect_left(places, self._next)
            start = places[later] if later < len(places) else places[-1]
        self._start = start
        return tokens[start : start + limit]

    def accepted(self, count: int) -> None:
        """The model kept ``count`` tokens of the last draft and chose one more itself."""
        if self._start >= 0:
            self._next = self._start + count + 1
