"""A schema's ``$ref``s as llama.cpp's converter reads them: each pointed at a copy of
its own, so that no name of a definition is taken for another rule."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tether.engines.grammar import json_grammar
from tether.engines.schema_refs import flat_refs
from tether.errors import RequestError


def _grammar(schema: dict[str, Any]) -> str:
    named = {"name": "x", "schema": schema}
    return json_grammar(json.dumps({"type": "json_schema", "json_schema": named}))


def test_a_definition_named_as_a_built_in_rule_is_its_own() -> None:
    """``$defs/string`` of integers was read as the rule for any JSON string, once a
    string property had written that rule."""
    schema = {
        "type": "object",
        "properties": {"s": {"type": "string"}, "n": {"$ref": "#/$defs/string"}},
        "required": ["s", "n"],
        "$defs": {"string": {"type": "integer"}},
    }
    flat = flat_refs(schema)
    assert flat["properties"]["n"] == {"$ref": "#/$defs/tether-ref-0"}
    assert flat["$defs"] == {"tether-ref-0": {"type": "integer"}}
    assert "\nn ::= integer\n" in _grammar(schema)


def test_two_models_of_one_name_stay_apart() -> None:
    item_a = {"type": "object", "properties": {"sku": {"type": "string"}}, "required": ["sku"]}
    item_b = {"type": "object", "properties": {"qty": {"type": "integer"}}, "required": ["qty"]}
    schema = {
        "anyOf": [
            {"type": "object", "properties": {"a": {"$ref": "#/$defs/A/$defs/Item"}}},
            {"type": "object", "properties": {"b": {"$ref": "#/$defs/B/$defs/Item"}}},
        ],
        "$defs": {"A": {"$defs": {"Item": item_a}}, "B": {"$defs": {"Item": item_b}}},
    }
    flat = flat_refs(schema)
    assert sorted(map(json.dumps, flat["$defs"].values())) == sorted(
        map(json.dumps, [item_a, item_b])
    )
    grammar = _grammar(schema)
    assert '"\\"sku\\""' in grammar and '"\\"qty\\""' in grammar


@pytest.mark.parametrize(
    "schema",
    [
        # pydantic's recursive model, a name the converter cannot write as a rule
        {
            "$ref": "#/$defs/My_Node",
            "$defs": {
                "My_Node": {
                    "type": "object",
                    "properties": {
                        "kids": {
                            "type": "array",
                            "items": {"$ref": "#/$defs/My_Node"},
                            "maxItems": 2,
                        }
                    },
                    "required": ["kids"],
                }
            },
        },
        # the root itself, and a pointer's escapes
        {"type": "object", "properties": {"next": {"anyOf": [{"$ref": "#"}, {"type": "null"}]}}},
        {
            "type": "object",
            "properties": {"x": {"$ref": "#/$defs/a~1b"}},
            "$defs": {"a/b": {"type": "boolean"}},
        },
        # a place inside another definition, through a list
        {
            "type": "object",
            "properties": {"y": {"$ref": "#/$defs/A/anyOf/1"}},
            "$defs": {"A": {"anyOf": [{"type": "string"}, {"type": "integer"}]}},
        },
    ],
)
def test_refs_the_converter_could_not_follow_are_followed(schema: dict[str, Any]) -> None:
    assert "root ::=" in _grammar(schema)


def test_a_ref_to_nothing_is_refused_naming_it() -> None:
    with pytest.raises(RequestError, match="its \\$ref '#/\\$defs/Gone' cannot be resolved"):
        _grammar({"type": "object", "properties": {"x": {"$ref": "#/$defs/Gone"}}})


def test_values_and_names_that_look_like_refs_are_left_as_they_are() -> None:
    schema = {
        "type": "object",
        "properties": {
            "$ref": {"type": "string"},
            "e": {"enum": [{"$ref": "#/nowhere"}]},
            "d": {"$ref": "#/$defs/D"},
        },
        "$defs": {"D": {"const": {"$ref": "#"}}},
    }
    flat = flat_refs(schema)
    assert flat["properties"]["$ref"] == {"type": "string"}
    assert flat["properties"]["e"] == {"enum": [{"$ref": "#/nowhere"}]}
    assert flat["$defs"] == {"tether-ref-0": {"const": {"$ref": "#"}}}
    assert flat_refs({"type": "string"}) == {"type": "string"}
