"""Grammars parsed once, off the scheduler's thread, and kept for it to clone."""

from __future__ import annotations

from typing import Any

from tether.engines.parsed_grammars import ParsedGrammars


class _Llama:
    """The two calls the cache makes, on samplers that are strings."""

    def __init__(self) -> None:
        self.freed: list[Any] = []
        self.cloned: list[Any] = []

    def llama_sampler_clone(self, sampler: Any) -> Any:
        self.cloned.append(sampler)
        return f"clone of {sampler}"

    def llama_sampler_free(self, sampler: Any) -> None:
        self.freed.append(sampler)


def test_the_least_recently_used_grammar_goes_and_is_freed() -> None:
    llama = _Llama()
    grammars = ParsedGrammars(llama, most=2)
    grammars.keep("a", "A")
    grammars.keep("b", "B")
    assert grammars.clone("a") == "clone of A"  # used: "b" is now the oldest
    grammars.keep("c", "C")
    assert llama.freed == ["B"] and len(grammars) == 2
    assert grammars.clone("b") is None and grammars.has("a") and grammars.has("c")
    grammars.keep("c", "C again")  # parsed twice at once: the second copy is freed
    assert llama.freed == ["B", "C again"]


def test_grammars_beyond_the_bytes_go_but_the_newest_stays() -> None:
    llama = _Llama()
    grammars = ParsedGrammars(llama, most=10, most_bytes=5)
    grammars.keep("abc", "1")
    grammars.keep("de", "2")
    grammars.keep("fghijkl", "3")  # larger than the bound alone: kept, the rest go
    assert llama.freed == ["1", "2"] and grammars.has("fghijkl") and len(grammars) == 1


def test_closing_frees_every_grammar_and_any_kept_later() -> None:
    llama = _Llama()
    grammars = ParsedGrammars(llama)
    grammars.keep("a", "A")
    grammars.keep("b", "B")
    grammars.close()
    assert sorted(llama.freed) == ["A", "B"] and grammars.clone("a") is None
    grammars.keep("c", "C")  # a schema converted as the engine closed
    assert llama.freed[-1] == "C" and len(grammars) == 0
