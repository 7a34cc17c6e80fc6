"""The trigger of a call the model chooses to write: where llama.cpp's lazy grammar takes
the answer, which must be a start its grammar allows (a start it refuses aborts)."""

from __future__ import annotations

import pytest

from tether.engines.lazy_grammar import awaited, lazy_call_grammar, lists_calls
from tether.server.tool_calls import Function, ToolOffer

WEATHER = Function(
    "get_weather", "", {"type": "object", "properties": {"city": {"type": "string"}}}
)


@pytest.mark.parametrize(
    "answer",
    [b"{", b'  {"', b'{"name', b'{ "name": "', b"```json\n{", b"```\n\n{", b'``` json \n{"na'],
)
def test_a_call_begun_fires_the_grammar(answer: bytes) -> None:
    assert awaited(answer, listed=False) == "fired"


@pytest.mark.parametrize("answer", [b"", b"  \n", b"``", b"```json", b"```json\n"])
def test_a_start_that_may_still_be_a_call_waits(answer: bytes) -> None:
    assert awaited(answer, listed=False) == "waiting"


@pytest.mark.parametrize(
    "answer",
    [
        b"The weather",  # text
        b'{"arguments',  # a call the grammar, name first, would refuse at its first token
        b'{  "name"',  # two spaces, where the grammar's space is one
        b"```python\nprint",
        b"[",  # a list where calls are one at a time
        b"```json\n" + b"x" * 80,
    ],
)
def test_an_answer_that_cannot_start_a_call_is_never_kept(answer: bytes) -> None:
    # Let go of at once where it starts as no call can, else once longer than any start.
    assert awaited(answer, listed=False) in {"never", "waiting"}
    assert awaited(answer + b" and more" * 8, listed=False) == "never"


def test_a_list_fires_only_where_calls_may_be_listed() -> None:
    assert awaited(b'[{"name', listed=True) == "fired"
    assert awaited(b"[ {", listed=True) == "fired"
    assert awaited(b"[", listed=True) == "fired"
    assert awaited(b"[{", listed=False) == "never"


def test_the_grammar_is_the_calls_in_or_out_of_a_code_block() -> None:
    one = ToolOffer((WEATHER,), required=False)
    grammar = lazy_call_grammar(one.answer_format())
    assert grammar.endswith('root [ \\t\\n]{0,8} "```"\n')
    assert not lists_calls(one.answer_format())
    listed = ToolOffer((WEATHER,), required=False, parallel=True)
    assert lists_calls(listed.answer_format())


def test_only_a_free_choice_without_a_format_of_its_own_keeps_a_chosen_call() -> None:
    free = ToolOffer((WEATHER,), required=False)
    assert free.chosen_format(None) == free.answer_format()
    assert free.chosen_format('{"type": "json_object"}') is None
    assert ToolOffer((WEATHER,)).chosen_format(None) is None
