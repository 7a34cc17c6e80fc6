"""A call the model chooses to write, kept to its schema once it starts: llama.cpp's lazy
grammar, free until a pattern matches the answer so far, then fed the answer from the
pattern's group on and keeping the rest to the grammar.

The pattern matches the whole answer (``^...$``, llama.cpp's whole-text form), and only an
answer whose start is one the grammar allows: llama.cpp replays the text it matched into
the grammar, which throws (through C, an abort) on text it refuses. So it names the
grammar's own first characters (``{``, a ``"name"`` begun, its ``space``), and
an answer begun another way is never matched and stays free, as every answer was before.
A call in a code block keeps to the block too, closed by its fence.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Literal

from tether.engines.grammar import json_grammar

LAZY_ROOT = "chosen-call"
# The call's grammar (its rule ``root``), alone or in a code block; the bounds keep what
# the pattern matches short.
_FENCED_CALL = (
    f'{LAZY_ROOT} ::= root | "```" [ \\t]{{0,4}} [A-Za-z]{{0,16}} [ \\t]{{0,4}} "\\n" '
    '[ \\t\\n]{0,8} root [ \\t\\n]{0,8} "```"\n'
)
# The space a call's grammar allows between its tokens, as its trigger matches it: none,
# one, or a line break and an indent, so that a call written as JSON is pretty-printed
# (``{`` then a new line) is kept too. Other JSON answers keep to one space at most.
_SPACE_RULE = 'space ::= | " " | "\\n" [ \\t]{0,20}'
_SPACE = r"(?: |\n[ \t]{0,20})?"
# How a call's JSON may start, no further than ``"name": "``, as the grammar writes it.
_OBJECT = rf'\{{{_SPACE}(?:"(?:n(?:a(?:m(?:e(?:"{_SPACE}(?::{_SPACE}"?)?)?)?)?)?)?)?'
_FENCE = r"```[ \t]{0,4}[A-Za-z]{0,16}[ \t]{0,4}\n[ \t\n]{0,8}"
# Bytes, at most, that a trigger's group matches (a fence 36, a list's "[" and space 22,
# then '{"name": "' with its three spaces 73): none longer can fire.
_MOST_MATCHED = 131


_ONE_SPACE = re.compile(r'^space ::= " "\?$', re.MULTILINE)  # the JSON converter's


@functools.cache
def trigger(listed: bool) -> str:
    """The pattern of an answer that starts a call, or where ``listed`` a list of calls."""
    starts = rf"(?:{_OBJECT}|\[{_SPACE}(?:{_OBJECT})?)" if listed else _OBJECT
    return rf"^\s*((?:{_FENCE})?{starts})$"


@functools.cache
def _compiled(listed: bool) -> re.Pattern[bytes]:
    return re.compile(trigger(listed).encode())


def lazy_call_grammar(call_format: str) -> str:
    """The grammar of a call in ``call_format`` (chat's ``response_format`` of the call's
    schema), alone or in a code block, its rule ``LAZY_ROOT``; its space that of
    ``_SPACE_RULE``, as the trigger matches it."""
    grammar, spaces = _ONE_SPACE.subn(lambda _: _SPACE_RULE, json_grammar(call_format))
    if spaces != 1:  # the trigger would fire on text the grammar refuses: an abort
        raise RuntimeError(f"the call's grammar has {spaces} space rules, not one")
    return f"{grammar.rstrip()}\n{_FENCED_CALL}"


def awaited(answer: bytes, listed: bool) -> Literal["fired", "waiting", "never"]:
    """Where an answer, ``answer`` so far (its tokens' text, control tokens spelled), stands
    with ``trigger(listed)``, as llama.cpp matches it token by token: it matched (the
    grammar keeps the rest), may still, or never will (nothing more can make it match)."""
    if _compiled(listed).fullmatch(answer):
        return "fired"
    started = answer.lstrip()
    can_start = (b"`", b"{", b"[") if listed else (b"`", b"{")
    if started and (not started.startswith(can_start) or len(started) > _MOST_MATCHED):
        return "never"
    return "waiting"


def lists_calls(call_format: str) -> bool:
    """Whether the schema of ``call_format`` lets the answer be a list of calls."""
    schema = json.loads(call_format)["json_schema"]["schema"]
    return any(choice.get("type") == "array" for choice in schema.get("anyOf", ()))
