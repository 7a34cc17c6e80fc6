"""What a JSON schema may ask of the grammar it becomes (tether.engines.grammar): the
refusals that keep one request from making the server build or follow a grammar of
unbounded size or work. No model is needed: the schema is refused before llama.cpp sees it."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import pytest

from tether.engines.grammar import MOST_FORMAT_CHARS, MOST_REPEATS, _json_pattern, json_grammar
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


@pytest.mark.parametrize(
    ("pattern", "places"),
    [
        ("^(a?){500}a{500}$", 500),  # one group of an optional letter, 500 copies
        ("^" + "[ ]?" * 30 + "$", 30),  # 30 optional spaces
        ("^" + "( |)" * 24 + "$", 24),  # 24 alternations, each of a space or nothing
        ("^((a?){4}){5}$", 20),
    ],
)
def test_a_pattern_whose_ways_of_matching_would_stall_the_sampler_is_refused(
    pattern: str, places: int
) -> None:
    """llama.cpp's grammar sampler follows every way a token's text can match, a number
    that grows as a power of a pattern's optional parts: these stalled the thread that
    generates for every request on the answer's first token, from minutes to for good."""
    with pytest.raises(RequestError) as refused:
        json_grammar(_format({"type": "string", "pattern": pattern}))
    said = str(refused.value.message)
    assert f"schema.pattern has {places} places that match more or less" in said, said
    assert refused.value.param == "response_format"


@pytest.mark.parametrize(
    "pattern",
    [
        r"^[0-9]{4}-[0-9]{2}-[0-9]{2}(T[0-9]{2}:[0-9]{2})?$",
        r"^[a-zA-Z0-9._%+-]+@[a-zA-Z0-9.-]+\.[a-zA-Z]{2,}$",
        r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$",
        "^(red|green|blue|cyan|magenta|yellow|black|white|grey|orange|purple|pink)$",
        "^(ab){0,1000}$",
        "^" + "[ ]?" * 16 + "$",  # a tenth of a second a token, at most
    ],
)
def test_a_pattern_of_few_choices_is_kept(pattern: str) -> None:
    assert "root ::=" in json_grammar(_format({"type": "string", "pattern": pattern}))


def _object(count: int, required: int) -> dict[str, Any]:
    names = [f"field_{n}" for n in range(count)]
    return {
        "type": "object",
        "properties": {name: {"type": "integer"} for name in names},
        "required": names[:required],
    }


def test_an_object_of_too_many_optional_properties_is_refused() -> None:
    """The converter writes the ways of leaving optional properties out in a time that
    grows as their cube, on the event loop: an object of 950 took it 2.5 s, and a body of
    a hundred such objects held every request for minutes before the grammar's size
    refused it."""
    schema = {"type": "object", "properties": {"outer": _object(950, 0)}, "required": ["outer"]}
    with pytest.raises(RequestError) as refused:
        json_grammar(_format(schema))
    said = str(refused.value.message)
    assert "schema.properties.outer.properties has 950 properties not in required" in said
    assert "keep at most 100 optional ones, or list the others in required" in said
    # Those it must write are written in a time that grows with their number alone.
    assert "root ::=" in json_grammar(_format(_object(950, 850)))


def test_a_format_of_more_characters_than_its_bound_is_refused_and_not_kept() -> None:
    """Each format a grammar was made of stays as the key of json_grammar's 64: formats of
    4 MB (a long description, a tiny grammar) held 8 MB each after their answers."""
    schema = {"type": "object", "description": "x" * MOST_FORMAT_CHARS}
    before = json_grammar.cache_info().currsize
    with pytest.raises(RequestError) as refused:
        json_grammar(_format(schema))
    assert "characters with its descriptions, over 262,144" in str(refused.value.message)
    assert json_grammar.cache_info().currsize == before


def test_a_schema_that_is_a_ref_to_its_own_defs_is_converted() -> None:
    """pydantic's schema of a recursive model is a $ref beside the $defs it names, as
    instructor and pydantic-ai send it: the converter left the $refs inside those $defs
    unresolved, and the schema was refused as if its $ref named nothing."""
    node = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}},
        },
        "required": ["name", "children"],
    }
    grammar = json_grammar(_format({"$defs": {"Node": node}, "$ref": "#/$defs/Node"}))
    assert "tether-ref-0-children-item ::= tether-ref-0" in grammar  # Node, recursively
    assert "root ::= " in grammar


def _nested_choices(levels: int, width: int) -> dict[str, Any]:
    """``levels`` of ``anyOf``, each of ``width`` objects alike, through ``$defs``."""
    defs: dict[str, Any] = {}
    for level in range(levels):
        inner = {"$ref": f"#/$defs/L{level + 1}"} if level + 1 < levels else {"type": "string"}
        alike = {"type": "object", "properties": {"k": inner}, "required": ["k"]}
        defs[f"L{level}"] = {"anyOf": [alike] * width}
    return {"$defs": defs, "$ref": "#/$defs/L0"}


def test_choices_nested_past_the_bound_are_refused_before_they_stall_generation() -> None:
    """30 objects alike in 30 in 30 kept llama.cpp's grammar sampler on 27,000 ways of
    reading the answer at once: 0.8 s a token, on the thread that generates for everyone."""
    with pytest.raises(RequestError) as refused:
        json_grammar(_format(_nested_choices(3, 30)))
    assert (
        "its anyOf, oneOf and lists of types nest 27000 ways of reading an answer"
        in refused.value.message
    )
    assert refused.value.param == "response_format"
    # 10 in 10 in 10 are kept (a fiftieth of a second a token), as is a recursive model
    # with an Optional field, whose $ref is counted once on each path.
    assert "root ::=" in json_grammar(_format(_nested_choices(3, 10)))
    tree = {
        "$defs": {
            "Node": {
                "type": "object",
                "properties": {
                    "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}},
                    "value": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                },
            }
        },
        "$ref": "#/$defs/Node",
    }
    assert "root ::=" in json_grammar(_format(tree))


def test_refs_that_lead_to_each_other_are_refused_before_counting_them_stalls() -> None:
    """$defs that each lead to all the others open a factorial of paths: 12 of them, 4 kB,
    kept the count of their choices going for an hour."""
    names = [f"D{i}" for i in range(12)]
    each = {
        "type": "object",
        "properties": {name.lower(): {"$ref": f"#/$defs/{name}"} for name in names},
    }
    schema = {"$defs": dict.fromkeys(names, each), "$ref": "#/$defs/D0"}
    with pytest.raises(RequestError) as refused:
        json_grammar(_format(schema))
    assert "its $refs lead along too many paths" in refused.value.message
    assert refused.value.param == "response_format"


def test_a_list_of_types_is_counted_as_the_choice_it_is() -> None:
    """The converter writes a list of types as a choice of one rule a type: 2000 objects
    were 2000 ways open at once, counted as one."""
    with pytest.raises(RequestError) as refused:
        json_grammar(_format({"type": ["object"] * 2000}))
    assert (
        "its anyOf, oneOf and lists of types nest 2000 ways of reading an answer"
        in refused.value.message
    )
    nested = _nested_choices(2, 30)
    nested["$defs"]["L1"]["anyOf"][0] = {"type": ["object"] * 30}
    with pytest.raises(RequestError):
        json_grammar(_format(nested))
    assert "root ::=" in json_grammar(_format({"type": ["string", "null"]}))


def test_a_ref_back_to_itself_through_choices_alike_is_refused() -> None:
    """Objects alike that each hold the choice again open the ways of reading the answer
    anew at each level the answer goes down: counted once, 31 in all, the sampler took
    25 s a token two levels deep. Choices that begin apart, as an optional node or a
    recursive value of types, are kept."""
    alike = {"type": "object", "properties": {"k": {"$ref": "#/$defs/N"}}, "required": ["k"]}
    tangled = {"$defs": {"N": {"anyOf": [alike] * 30 + [{"type": "string"}]}}}
    with pytest.raises(RequestError) as refused:
        json_grammar(_format({**tangled, "$ref": "#/$defs/N"}))
    assert "$ref #/$defs/N leads back to itself" in refused.value.message
    node = {
        "type": "object",
        "properties": {"next": {"anyOf": [{"$ref": "#/$defs/Node"}, {"type": "null"}]}},
    }
    optional = {"$defs": {"Node": node}, "$ref": "#/$defs/Node"}
    value = {
        "anyOf": [
            {"type": "string"},
            {"type": "integer"},
            {"type": "boolean"},
            {"type": "array", "items": {"$ref": "#/$defs/V"}},
            {"type": "object", "additionalProperties": {"$ref": "#/$defs/V"}},
        ]
    }
    for kept in (optional, {"$defs": {"V": value}, "$ref": "#/$defs/V"}):
        assert "root ::=" in json_grammar(_format(kept))


def test_what_choices_begin_with_is_read_within_the_count_of_places() -> None:
    """Reading what each of a choice's ways begins with follows its $refs into their
    choices too: two levels of 5000 would be read 25 million times over."""
    many = 5000
    defs = {
        "A": {"anyOf": [{"$ref": "#/$defs/B"}] * many},
        "B": {"anyOf": [{"$ref": "#/$defs/C"}] * many},
        "C": {"type": "string"},
    }
    schema = {"$defs": defs, "anyOf": [{"$ref": "#/$defs/A"}] * 2}
    with pytest.raises(RequestError) as refused:
        json_grammar(_format(schema))
    assert "its $refs lead along too many paths" in refused.value.message


VALUES = [
    "abc",
    'a"b',
    "C:\\temp",
    "tab\there",
    "two\nlines",
    "café",
    '""',
    'a\\"b',
    "-_-",
    "x" * 12,
]
# What a value is written as in JSON, and texts a JSON string cannot hold as they are.
WRITTEN = [json.dumps(value, ensure_ascii=False)[1:-1] for value in VALUES]
NOT_JSON = ['a"b', "C:\\query", "tab\there", "two\nlines", "a\\", "\\"]


@pytest.mark.parametrize(
    "pattern",
    [
        r"^.{3,10}$",
        r"^[^a]+$",
        r'^[^"]*$',
        r'^[\s\w"]+$',
        r'^"\w+"$',
        r"^[\\/:a-zA-Z]+$",
        r"^\S+$",
        r"^(\w|-)+$",
        r"^[\x41-\x5a\u00e9a-f]+$",
        r"^\.?[\]\-_\\]*$",
    ],
)
def test_a_pattern_matches_the_json_that_writes_a_value_it_matches(pattern: str) -> None:
    """The grammar of a pattern is of the JSON text that writes the string: its ".", a
    negated class and a quote matched a raw quote, backslash or line break, which ended
    the string early or was no JSON. The JSON text of each value matches what the
    pattern becomes where the value matches the pattern, and text that is no JSON string
    matches it never. (Python's "." matches a carriage return; none is among these.)"""
    written = _json_pattern(pattern)
    for value, text in zip(VALUES, WRITTEN, strict=True):
        expected = re.fullmatch(pattern, value, re.ASCII) is not None  # as JSON schema reads it
        assert (re.fullmatch(written, text) is not None) == expected, (value, text, written)
    for text in NOT_JSON:
        assert re.fullmatch(written, text) is None, (text, written)


@pytest.mark.parametrize(
    ("pattern", "says"),
    [
        (r"^\bword$", "escape \\b has no grammar"),
        (r"^\p{L}$", "escape \\p has no grammar"),
        (r"^[\x00-\x07]$", "holds only as \\u codes"),
        (r"^[z-a]$", "out of order"),
        (r"^\x4$", "is not 2 hex digits"),
    ],
)
def test_a_pattern_of_no_json_grammar_is_refused_saying_why(pattern: str, says: str) -> None:
    with pytest.raises(RequestError) as refused:
        json_grammar(_format({"type": "string", "pattern": pattern}))
    assert says in refused.value.message, refused.value.message


def test_a_patterns_anchored_alternatives_are_one_string_of_json() -> None:
    """The converter read a pattern's first and last characters as its anchors and the
    rest as the string: ^a$|^b$ became the grammar of '"a$' or '^b" ', and ^a|b$ of '"a'
    or 'b" ', no JSON at all."""
    grammar = json_grammar(_format({"type": "string", "pattern": r"^a$|^b\\$"}))
    (root,) = [rule for rule in grammar.splitlines() if rule.startswith("root ::=")]
    assert root == r'root ::= "\"" ("a" | "b" ([\x5C] [\x5C])) "\"" space', root
    written = _json_pattern("^a$|^b$")
    assert [t for t in ("a", "b", "a$", "^b", "ab") if re.fullmatch(written, t)] == ["a", "b"]


@pytest.mark.parametrize("pattern", ["^a|b$", "^a$b$", "^(a$|b)$", "^(^a)$", "^a$|", "a", "^a"])
def test_a_pattern_anchored_other_than_at_each_alternatives_ends_is_refused(
    pattern: str,
) -> None:
    with pytest.raises(RequestError) as refused:
        json_grammar(_format({"type": "string", "pattern": pattern}))
    assert "must start with ^ and end with $" in refused.value.message, refused.value.message


@pytest.mark.parametrize(
    ("pattern", "matched", "unmatched"),
    [
        (r"^\s$", ["\u00a0", "\u3000", "\u2028", "\ufeff", " "], ["a", "\u200b"]),
        (r"^\S$", ["a", "\u200b"], ["\u00a0", "\u3000", "\u2028", "\ufeff"]),
        (r"^.$", ["a", "\u00a0", "\u2027"], ["\u2028", "\u2029"]),
    ],
)
def test_a_patterns_spaces_and_line_ends_are_those_of_json_schemas_expressions(
    pattern: str, matched: list[str], unmatched: list[str]
) -> None:
    """JSON schema's patterns are ECMA-262's: its \\s holds Unicode's spaces, and its "."
    matches no U+2028 or U+2029. Read as ASCII's, \\S and "." let an answer through that
    a validator of the schema refuses."""
    written = _json_pattern(pattern)
    assert [v for v in matched + unmatched if re.fullmatch(written, v)] == matched, written


@pytest.mark.parametrize(
    ("pattern", "repeated"), [("^(a|)*$", '("a")*'), ("^(|a|b)+$", '("a" | "b")*')]
)
def test_a_repeated_group_with_an_empty_choice_is_the_repeat_of_the_others(
    pattern: str, repeated: str
) -> None:
    """llama.cpp cannot read the repeat of a group one of whose choices is empty
    (``("a" |)*``): the schema was refused as if an enum were empty, and nothing was
    logged."""
    grammar = json_grammar(_format({"type": "string", "pattern": pattern}))
    (root,) = [rule for rule in grammar.splitlines() if rule.startswith("root ::=")]
    assert root == f'root ::= "\\"" {repeated} "\\"" space', root


def test_a_strings_characters_are_those_json_holds_unescaped() -> None:
    """The converter's rule of a string's character took a raw line break or tab, which
    JSON holds only escaped: a sampled answer of several lines was no JSON."""
    for schema in ({"type": "string"}, {"type": "string", "maxLength": 5}, {"type": "object"}):
        (char,) = [r for r in json_grammar(_format(schema)).splitlines() if r.startswith("char ")]
        assert char.startswith(r'char ::= [^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt]'), char


def test_what_other_threads_wrote_while_llama_cpp_parsed_is_written_back(
    capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """llama.cpp's report of a grammar it cannot read becomes one line of the log; what
    else reached stderr while it parsed (another thread's log) is written back whole."""
    from tether.engines.llamacpp import _write_back

    grammar = b'root ::= "a" [\\q]\nmore ::= "b"'
    written = b"before\nparse: error parsing grammar: unknown escape at \\q]\nmore ::= "
    written += b'"b"\n\n' + grammar + b"\nafter\n"
    with caplog.at_level(logging.WARNING, logger="tether.engines.llamacpp"):
        _write_back(written, grammar)
    assert capfd.readouterr().err == "before\nafter\n"
    said = [r.getMessage() for r in caplog.records]
    assert said == ["llama.cpp cannot read the grammar of a JSON schema: unknown escape"]
    _write_back(b"only another thread's\n", grammar)
    assert capfd.readouterr().err == "only another thread's\n"


def test_enums_and_alternatives_are_bounded_together_as_openai_bounds_enums() -> None:
    """Every value still open is followed at each token, on the thread that generates
    for every request: 5,000 words that begin alike cost 0.2 s a token."""
    words = [f"word{i}" for i in range(600)]
    kept = {"type": "object", "properties": {"a": {"enum": words}}}
    assert "root ::=" in json_grammar(_format(kept))
    both = {
        "type": "object",
        "properties": {
            "a": {"enum": words},
            "b": {"type": "string", "pattern": "^(" + "|".join(words) + ")$"},
        },
    }
    with pytest.raises(RequestError, match="list 1,199 values and alternatives in all"):
        json_grammar(_format(both))
