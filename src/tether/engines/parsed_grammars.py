"""Grammars llama.cpp has parsed, each kept as a sampler that a sequence's sampler clones.

llama.cpp parses a grammar in ``llama_sampler_init_grammar``: for the grammar of a JSON
schema of 30 functions (128 KB) that took 7.5 ms, which the scheduler's thread spent as a
sequence started while every running stream waited. The grammar is parsed instead in the
thread that converts the request's schema, as that thread checks llama.cpp can read it,
and kept here; the scheduler's thread clones it (1.8 ms for that grammar), a sampler in the
state of one just parsed. The most recently used are kept, within a count and a size of
grammar text; one let go of is freed under the lock the clones take, so never mid-clone.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

MOST_GRAMMARS = 64  # as many as tether.engines.grammar.json_grammar keeps
# Of grammar text: a parsed grammar takes about 9 bytes of memory a byte of its text.
MOST_GRAMMAR_BYTES = 4 << 20  # about 36 MB parsed


class ParsedGrammars:
    def __init__(
        self, llama: Any, most: int = MOST_GRAMMARS, most_bytes: int = MOST_GRAMMAR_BYTES
    ) -> None:
        self._llama = llama
        self._most = most
        self._most_bytes = most_bytes
        self._lock = threading.Lock()
        self._parsed: OrderedDict[str, Any] = OrderedDict()  # the least recently used first
        self._bytes = 0
        self._closed = False

    def __len__(self) -> int:
        return len(self._parsed)

    def has(self, grammar: str) -> bool:
        """Whether ``grammar`` is kept parsed (it is then the most recently used)."""
        with self._lock:
            if grammar not in self._parsed:
                return False
            self._parsed.move_to_end(grammar)
            return True

    def keep(self, grammar: str, sampler: Any) -> None:
        """Keep ``sampler``, ``grammar`` just parsed, which is this cache's to free from
        now on; the least recently used go beyond the bounds (never the newest)."""
        freed = []
        with self._lock:
            if self._closed or grammar in self._parsed:  # closed, or parsed twice at once
                freed.append(sampler)
            else:
                self._parsed[grammar] = sampler
                self._bytes += len(grammar)
                while len(self._parsed) > 1 and (
                    len(self._parsed) > self._most or self._bytes > self._most_bytes
                ):
                    old, old_sampler = self._parsed.popitem(last=False)
                    self._bytes -= len(old)
                    freed.append(old_sampler)
            for sampler in freed:  # under the lock: no clone of it is under way
                self._llama.llama_sampler_free(sampler)

    def clone(self, grammar: str) -> Any:
        """A sampler of ``grammar`` in the state of one just parsed, the caller's to free;
        None if it is not kept (let go of since it was parsed, or never parsed)."""
        with self._lock:
            sampler = self._parsed.get(grammar)
            if sampler is None:
                return None
            self._parsed.move_to_end(grammar)
            return self._llama.llama_sampler_clone(sampler)

    def close(self) -> None:
        """Free every grammar kept; one kept later is freed at once."""
        with self._lock:
            self._closed = True
            parsed, self._parsed = self._parsed, OrderedDict()
            self._bytes = 0
            for sampler in parsed.values():
                self._llama.llama_sampler_free(sampler)
