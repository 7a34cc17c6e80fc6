"""What a JSON schema may ask of the grammar it becomes (tether.engines.grammar): the
refusals that keep one request from making the server build or follow a grammar of
unbounded size or work. No model is needed: the schema is refused before llama.cpp sees it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tether.engines.grammar import MOST_REPEATS, json_grammar
from tether.errors import RequestError


def _format(schema: dict[str, Any]) -> str:
    return json.dumps({"type": "json_schema", "json_schema": {"name": "x", "schema": schema}})


@pytest.mark.parametrize("repeat", ["{,100000}", "{+100000}", "{100_000}", "{ 0 , 100000 }"])
def test_a_patterns_repeat_over_the_bound_is_refused_however_it_is_written(repeat: str) -> None:
    """The converter reads {,n} as {0,n}, and its int() takes "+n" and "1_000": the check,
    which read only plain digits, let them through to a grammar of n copies (a billion:
    gigabytes built before its size was checked)."""
    schema = {"type": "string", "pattern": f"^a{repeat}$"}
    with pytest.raises(RequestError) as refused:
        json_grammar(_format(schema))
    assert refused.value.param == "response_format"
    assert f"schema.pattern repeats {repeat}; keep repeats at most {MOST_REPEATS}" in str(
        refused.value.message
    )


def test_a_patterns_repeat_within_the_bound_is_kept() -> None:
    grammar = json_grammar(_format({"type": "string", "pattern": "^[0-9]{,3}-a{2}$"}))
    assert "root ::=" in grammar
