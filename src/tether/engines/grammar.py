"""JSON answers on the embedded engine: a response format (``json_object``, or a
``json_schema``) as the llama.cpp grammar that lets the model write only JSON of that form.

The schema becomes a GBNF grammar through llama-cpp-python's port of llama.cpp's own
converter, and llama.cpp's grammar sampler masks every token that would leave it, so the
answer is JSON of the schema unless ``max_tokens`` cuts it short (``finish_reason``
``length``). The converter writes a bound (``maxLength``, ``maxItems``, a pattern's
``{n}``) as that many copies of a rule: a bound is held to ``MOST_REPEATS``, and the
grammar to ``MOST_GRAMMAR_CHARS``, so a request cannot make the server build a grammar of
gigabytes.
"""

from __future__ import annotations

import contextlib
import functools
import json
import re
from typing import Any

from tether.engines.schema_refs import flat_refs
from tether.errors import RequestError

# As many as a field of a code assistant's answer needs; OpenAI's strict schemas take no
# such bounds at all.
MOST_REPEATS = 1000
MOST_GRAMMAR_CHARS = 256 * 1024
# The format as sent, descriptions and all: each of the 64 that json_grammar keeps is its
# key, and a body of megabytes took the converter as many seconds on the event loop.
MOST_FORMAT_CHARS = MOST_GRAMMAR_CHARS
# The places of a pattern that may match more or less (``_choices``): llama.cpp's grammar
# sampler follows every way a token's text can be matched, a number that grows as a power
# of them. 16 cost it a tenth of a second for a token of spaces; 24 alternations that may
# be empty, 14 s; 30 optional characters, or one group of two ``?`` repeated 500 times,
# more than minutes, in the thread that generates for every request.
MOST_CHOICES = 16
# An object's properties left out of ``required``: the converter writes the ways of leaving
# them out in a time that grows as their cube, on the event loop (950 of them: 2.5 s, and
# a body of a hundred such objects held every request for minutes before the grammar's
# size refused it); 100 take it a hundredth of a second.
MOST_OPTIONAL = 100
# The ways of reading an answer that ``anyOf``/``oneOf`` nested in each other open at once:
# their widths multiplied along a path (``_alternatives``). llama.cpp's grammar sampler
# keeps a stack for each way still open, and choices that begin alike (objects, all "{")
# stay open together: 30 in 30 in 30 took it 0.8 s a token, for every request waiting on
# the thread that generates; 10 in 10 in 10, 0.02 s.
MOST_ALTERNATIVES = 1000
# The values of a schema's enums and the alternatives of its patterns, all together, as
# OpenAI bounds its enums' values: the grammar follows every one still open at each token,
# and 5,000 words that begin alike took 0.2 s a token on the thread that generates for
# every request (1,000: under 0.02 s).
MOST_LISTED = 1000
# The places of a schema that counting those ways visits: $defs that each lead to the
# others open paths whose number grows as a factorial (12 such $defs, 4 kB, would have
# taken it an hour).
MOST_VISITS = 100_000
_BOUNDS = ("minLength", "maxLength", "minItems", "maxItems", "minProperties", "maxProperties")
# A pattern's ``{...}``, whose counts are read as the converter reads them: split at
# commas, each stripped and given to int(), which takes "+5" and "1_000" too, and an empty
# first count (``{,n}``) as 0.
_QUANTIFIER = re.compile(r"\{([^}]*)\}")
ANY_OBJECT: dict[str, Any] = {"type": "object"}  # what json_object asks for, as llama.cpp reads it


def schema_of(response_format: dict[str, Any]) -> dict[str, Any]:
    """The JSON schema an answer in ``response_format`` (chat's shape) keeps to."""
    if response_format.get("type") == "json_object":
        return ANY_OBJECT
    schema: dict[str, Any] = (response_format.get("json_schema") or {}).get("schema") or {}
    return schema or ANY_OBJECT


@functools.lru_cache(maxsize=64)
def json_grammar(response_format: str) -> str:
    """The GBNF grammar of ``response_format``, chat's ``response_format`` as JSON text; a
    schema that cannot be followed is a RequestError that says why."""
    if len(response_format) > MOST_FORMAT_CHARS:
        raise _cannot(
            f"it is {len(response_format):,} characters with its descriptions, over "
            f"{MOST_FORMAT_CHARS:,}"
        )
    schema = schema_of(json.loads(response_format))
    try:
        _refuse_large_bounds(schema, "schema")
        if (listed := _listed(schema)) > MOST_LISTED:
            raise _cannot(
                f"its enums and patterns list {listed:,} values and alternatives in all; keep "
                f"at most {MOST_LISTED:,}, as each is followed at once for every token"
            )
        if (ways := _Alternatives(schema).of(schema, frozenset(), frozenset())) > MOST_ALTERNATIVES:
            raise _cannot(
                f"its anyOf, oneOf and lists of types nest "
                f"{ways if ways <= 10**6 else 'over a million'} ways of reading an answer "
                f"(their widths multiplied); keep at most "
                f"{MOST_ALTERNATIVES}, as each is followed at once for every token"
            )
        grammar = _to_gbnf(flat_refs(json.loads(json.dumps(schema))))  # a copy: it is rewritten
    except RecursionError:
        raise _cannot("it nests too deeply") from None
    except RequestError:
        raise
    except Exception as exc:  # the converter asserts, and raises KeyError for a lost $ref
        raise _cannot(_converter_said(exc)) from None
    if len(grammar) > MOST_GRAMMAR_CHARS:
        raise _cannot(
            f"its grammar would be {len(grammar):,} characters, over {MOST_GRAMMAR_CHARS:,}"
        )
    return grammar


# What a GBNF literal must escape to match a text as it is.
_GBNF_ESCAPE = re.compile(r'[\\"\r\n]')
_GBNF_ESCAPES = {"\\": "\\\\", '"': '\\"', "\r": "\\r", "\n": "\\n"}


def _to_gbnf(schema: dict[str, Any]) -> str:
    """llama-cpp-python's ``json_schema_to_gbnf`` of ``schema``, less its bugs: literals,
    patterns (``_json_pattern``), and a string's characters, of which its rule took raw
    control characters (a line break) that JSON holds only escaped, as llama.cpp's own
    converter no longer does."""
    from llama_cpp.llama_grammar import BuiltinRule, SchemaConverter

    json_char = BuiltinRule(
        r'[^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F] '
        r"[0-9a-fA-F])",
        [],
    )

    class Converter(SchemaConverter):
        def _format_literal(self, literal: str) -> str:
            """``literal``, the JSON of a const, an enum's value or a property's name, as a
            GBNF literal of that JSON. The converter escaped its quotes but not its
            backslashes, so the answer had to spell each of the JSON's escapes as what it
            stands for: a path's backslashes became tabs and newlines, a newline broke the
            JSON, and a quote left a grammar llama.cpp cannot read. Non-ASCII text is
            itself, not escaped."""
            with contextlib.suppress(ValueError):
                literal = json.dumps(json.loads(literal), ensure_ascii=False)
            return '"' + _GBNF_ESCAPE.sub(lambda match: _GBNF_ESCAPES[match[0]], literal) + '"'

        def _add_primitive(self, name: str, rule: Any) -> str:
            parent: Any = super()
            added: str = parent._add_primitive(name, json_char if name == "char" else rule)
            return added

        def _visit_pattern(self, pattern: str, name: str) -> str:
            parent: Any = super()
            visited: str = parent._visit_pattern(_json_pattern(pattern), name)
            return visited

    untyped: Any = Converter  # as llama-cpp-python's own json_schema_to_gbnf makes it
    converter = untyped(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)
    if "$ref" in schema and len(schema) > 1:
        # The converter's resolve_refs reads no further in an object with a $ref: the $refs
        # inside its $defs (pydantic's schema of a recursive model) were left unresolved,
        # and refused as if they named nothing. As the one choice of an anyOf, the $ref is
        # read with the rest.
        ref = schema.pop("$ref")
        schema = {**schema, "anyOf": [{"$ref": ref}]}
    converter.visit(converter.resolve_refs(schema, "stdin"), "")
    grammar: str = converter.format_grammar()
    return grammar


# Code points as sorted ranges, ends included.
_Ranges = list[tuple[int, int]]
_LAST_CODE = 0x10FFFF
# What a pattern's \d, \w and \s stand for, and its "." (any character but a line's end),
# as JSON schema's regular expressions (ECMA-262) read them: \s is Unicode's spaces too,
# and a line ends at U+2028 and U+2029 as well, so \S and "." do not match them.
_SHORTHANDS: dict[str, _Ranges] = {
    "d": [(0x30, 0x39)],
    "w": [(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)],
    "s": [
        *[(0x09, 0x0D), (0x20, 0x20), (0xA0, 0xA0), (0x1680, 0x1680), (0x2000, 0x200A)],
        *[(0x2028, 0x2029), (0x202F, 0x202F), (0x205F, 0x205F), (0x3000, 0x3000)],
        (0xFEFF, 0xFEFF),
    ],
}
_DOT: _Ranges = [(0x00, 0x09), (0x0B, 0x0C), (0x0E, 0x2027), (0x202A, _LAST_CODE)]
# The characters an escape of a pattern's stands for (\b only in a class: a backspace).
_CONTROLS = {"n": 0x0A, "t": 0x09, "r": 0x0D, "f": 0x0C, "v": 0x0B, "0": 0x00}
# What a JSON string holds only escaped (control characters, a quote, a backslash; DEL
# as llama.cpp's own grammar of JSON has it), and the letters of the escapes that a
# pattern's answer may write. Other control characters are left out: offered \b and \f,
# a model kept from the \n it wanted (a "." matches no line break) wrote \b after \b.
_ESCAPED: _Ranges = [(0x00, 0x1F), (0x22, 0x22), (0x5C, 0x5C), (0x7F, 0x7F)]
_ESCAPES = {0x22: '"', 0x5C: "\\", 0x09: "t", 0x0A: "n", 0x0D: "r"}


def _json_pattern(pattern: str) -> str:
    """``pattern``, which a string's value keeps to, as the pattern of the JSON text that
    writes such a value, in what the converter copies into a grammar llama.cpp reads. The
    converter read a pattern as the text itself: its ".", a negated class and a quote
    matched a raw quote, backslash or line break, which ended the string early or left
    text that is not JSON. Each ".", class and escape becomes a class of the characters a
    JSON string holds as they are, and where it holds a quote, a backslash, a tab, a line
    feed or a carriage return, a choice of that escape; \\d, \\w and \\s,
    \\x and \\u codes and escaped marks (\\. \\/), which the converter copied and llama.cpp
    cannot read, are classes too. An escape of no class (\\b, \\p{L}) is refused.

    The converter reads the pattern's ends as its anchors and whatever is between as the
    string: of ``^a$|^b$`` it made the grammar of ``"a$`` or ``^b"``, and of ``^a|b$`` of
    ``"a`` or ``b"``, no JSON. Each alternative at the top of a pattern is anchored at both
    ends, and they become one group between the two anchors; an anchor anywhere else, or an
    alternative that is not anchored, is refused."""
    alternatives: list[str] = []
    out: list[str] = []
    depth = 0
    anchored = False  # the alternative being read began with ^
    opened: list[int] = []  # where each group open there began in out
    i = 0
    while i < len(pattern):
        char = pattern[i]
        i += 1
        if depth == 0 and char == "^" and not out and not anchored:
            anchored = True
        elif depth == 0 and char == "$" and pattern[i : i + 1] in ("|", ""):
            if not anchored:
                raise _unanchored()
            alternatives.append("".join(out))
            out, anchored, i = [], False, i + 1
        elif char in "^$" or (depth == 0 and char == "|"):
            raise _unanchored()
        elif char == "(":
            depth += 1
            opened.append(len(out))
            out.append(char)
        elif char == ")":
            depth -= 1
            start = opened.pop() if opened else len(out)
            out.append(char)
            if pattern[i : i + 1] in ("*", "+") and start < len(out) - 1:
                out[start:] = _without_empty_choices(out[start:])
                if pattern[i] == "+":  # (a|)+ is (a)*: the empty choice is the none
                    out.append("*")
                    i += 1
        elif char == "\\":
            if i == len(pattern):
                raise _cannot("its pattern ends in a lone backslash")
            ranges, i = _escape(pattern, i, in_class=False)
            out.append(_json_class(ranges))
        elif char == "[":
            ranges, i = _class(pattern, i)
            out.append(_json_class(ranges))
        elif char == ".":
            out.append(_json_class(_DOT))
        elif char == "{":  # a repeat's counts, as they are, for the converter to read
            end = pattern.find("}", i)
            end = len(pattern) if end < 0 else end + 1
            out.append(pattern[i - 1 : end])
            i = end
        elif _holds(_ESCAPED, ord(char)):
            out.append(_json_class([(ord(char), ord(char))]))
        else:
            out.append(char)
    if out or anchored or not alternatives or pattern.endswith("|"):
        raise _unanchored()
    if len(alternatives) == 1:
        return "^" + alternatives[0] + "$"
    return "^(" + "|".join(alternatives) + ")$"


def _without_empty_choices(group: list[str]) -> list[str]:
    """``group``, the parts of a group of a pattern from its "(" to its ")", without the
    choices of it that are empty, where the group is repeated (``*`` or ``+``): llama.cpp
    cannot read the repeat of a group of which one choice is empty (``("a" |)*``), and the
    repeat of the others matches what it did."""
    choices: list[list[str]] = [[]]
    depth = 0
    for part in group[1:-1]:
        depth += (part == "(") - (part == ")")
        if depth == 0 and part == "|":
            choices.append([])
        else:
            choices[-1].append(part)
    kept = [choice for choice in choices if choice]
    if not kept:
        raise _cannot("its pattern repeats a group that matches nothing but the empty text")
    joined = ["("] + kept[0]
    for choice in kept[1:]:
        joined += ["|", *choice]
    return [*joined, ")"]


def _unanchored() -> RequestError:
    return _cannot(
        "its pattern must start with ^ and end with $, with no ^ or $ within it (or each of "
        "its alternatives start with ^ and end with $, as ^a$|^b$ does): the grammar keeps "
        "the whole string to it"
    )


def _escape(pattern: str, i: int, *, in_class: bool) -> tuple[_Ranges, int]:
    """The characters the escape whose letter is ``pattern[i]`` stands for, and where the
    pattern goes on."""
    letter = pattern[i]
    i += 1
    if letter.lower() in _SHORTHANDS:
        shorthand = _SHORTHANDS[letter.lower()]
        return (_without([(0, _LAST_CODE)], shorthand) if letter.isupper() else shorthand), i
    if letter in "xu":
        digits = 2 if letter == "x" else 4
        code = pattern[i : i + digits]
        if len(code) < digits or not all(c in "0123456789abcdefABCDEF" for c in code):
            raise _cannot(f"its pattern's \\{letter}{code} is not {digits} hex digits")
        return [(int(code, 16), int(code, 16))], i + digits
    control = 0x08 if letter == "b" and in_class else _CONTROLS.get(letter)
    if control is not None:
        return [(control, control)], i
    if not (letter.isascii() and letter.isalnum()):  # an escaped mark stands for itself
        return [(ord(letter), ord(letter))], i
    raise _cannot(
        f"its pattern's escape \\{letter} has no grammar: an escape without a class of "
        "characters, such as \\b or \\p{L}, has no grammar"
    )


def _class(pattern: str, i: int) -> tuple[_Ranges, int]:
    """The characters of the class that opens before ``pattern[i]``, read up to its first
    "]" as the converter reads it, and where the pattern goes on."""
    negated = pattern.startswith("^", i)
    i += negated
    found: _Ranges = []
    while i < len(pattern) and pattern[i] != "]":
        first, i = _class_item(pattern, i)
        single = len(first) == 1 and first[0][0] == first[0][1]
        if single and pattern.startswith("-", i) and pattern[i + 1 : i + 2] not in ("]", ""):
            last, i = _class_item(pattern, i + 1)
            if len(last) == 1 and last[0][0] == last[0][1]:
                if last[0][0] < first[0][0]:
                    raise _cannot(f"its pattern's class range {pattern[:i]!r} is out of order")
                found.append((first[0][0], last[0][0]))
            else:  # a "-" between a character and a set of them stands for itself
                found += [*first, (0x2D, 0x2D), *last]
            continue
        found += first
    if i == len(pattern):
        raise _cannot("its pattern has a class of characters that does not end in ]")
    ranges = _without(found, [])
    return (_without([(0, _LAST_CODE)], ranges) if negated else ranges), i + 1


def _class_item(pattern: str, i: int) -> tuple[_Ranges, int]:
    if pattern[i] == "\\" and i + 1 < len(pattern):
        return _escape(pattern, i + 1, in_class=True)
    return [(ord(pattern[i]), ord(pattern[i]))], i + 1


def _json_class(ranges: _Ranges) -> str:
    """The pattern of the JSON text that writes one of the characters in ``ranges``: a
    class of those a JSON string holds as they are, or the escape of one it does not."""
    plain = _without(ranges, _ESCAPED)
    letters = "".join(_code(ord(e)) for c, e in sorted(_ESCAPES.items()) if _holds(ranges, c))
    choices = ["[" + "".join(_code(a) + ("" if a == b else "-" + _code(b)) for a, b in plain) + "]"]
    choices = choices if plain else []
    if letters:
        choices.append(f"[\\x5C][{letters}]")
    if not choices:
        raise _cannot(
            "its pattern has a class of characters that a JSON string holds only as \\u "
            "codes, or of none"
        )
    return choices[0] if not letters else "(" + "|".join(choices) + ")"


def _code(code: int) -> str:
    """A character in a class as the grammar reads it."""
    if code <= 0xFF:
        return f"\\x{code:02X}"
    return f"\\u{code:04X}" if code <= 0xFFFF else f"\\U{code:08X}"


def _holds(ranges: _Ranges, code: int) -> bool:
    return any(low <= code <= high for low, high in ranges)


def _without(ranges: _Ranges, removed: _Ranges) -> _Ranges:
    """``ranges`` less ``removed``, sorted and merged."""
    kept: _Ranges = []
    for low, high in sorted(ranges):
        for gone_low, gone_high in removed:
            if gone_high < low or gone_low > high:
                continue
            if gone_low > low:
                kept.append((low, gone_low - 1))
            low = gone_high + 1
            if low > high:
                break
        if low <= high:
            kept.append((low, high))
    merged: _Ranges = []
    for low, high in sorted(kept):
        if merged and low <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], high))
        else:
            merged.append((low, high))
    return merged


def _listed(node: Any) -> int:
    """The values of ``node``'s enums and the alternatives of its patterns (a ``|`` each,
    escaped or not: an estimate from above)."""
    if isinstance(node, list):
        return sum(map(_listed, node))
    if not isinstance(node, dict):
        return 0
    count = 0
    for key, value in node.items():
        if key == "enum" and isinstance(value, list):
            count += len(value)
        elif key == "pattern" and isinstance(value, str):
            count += value.count("|")
        elif key not in ("const", "default", "examples"):
            count += _listed(value)
    return count


def _refuse_large_bounds(node: Any, where: str) -> None:
    if isinstance(node, list):
        for index, item in enumerate(node):
            _refuse_large_bounds(item, f"{where}[{index}]")
        return
    if not isinstance(node, dict):
        return
    for name in _BOUNDS:
        value = node.get(name)
        if isinstance(value, int | float) and value > MOST_REPEATS:
            shown = value if value < 10**9 else "over a billion"
            raise _cannot(f"{where}.{name} is {shown}; keep bounds at most {MOST_REPEATS}")
    properties, required = node.get("properties"), node.get("required")
    if isinstance(properties, dict):
        needed = (
            {name for name in required if isinstance(name, str)}
            if isinstance(required, list)
            else set()
        )
        optional = len(set(properties) - needed)
        if optional > MOST_OPTIONAL:
            raise _cannot(
                f"{where}.properties has {optional} properties not in required; keep at most "
                f"{MOST_OPTIONAL} optional ones, or list the others in required"
            )
    pattern = node.get("pattern")
    if isinstance(pattern, str):
        for match in _QUANTIFIER.finditer(pattern):
            if max(_counts(match[1]), default=0) > MOST_REPEATS:
                raise _cannot(
                    f"{where}.pattern repeats {match[0]}; keep repeats at most {MOST_REPEATS}"
                )
        choices = _choices(pattern.removeprefix("^").removesuffix("$"))
        if choices > MOST_CHOICES:
            raise _cannot(
                f"{where}.pattern has {choices} places that match more or less (each ?, *, +, "
                "{m,n} and alternation, those of a repeated group counted for each copy); "
                f"keep at most {MOST_CHOICES}, or bound the string with maxLength instead"
            )
    for name, value in node.items():
        if name not in _BOUNDS and name != "pattern":
            _refuse_large_bounds(value, f"{where}.{name}")


class _Alternatives:
    """The most ways of reading an answer that a node's ``anyOf`` and ``oneOf`` open at
    once: a choice's width times the most of its choices, the most of what sits beside
    (properties, items), a local ``$ref`` followed once on each path. Capped above the
    bound, which is all that is asked of it. What a $ref leads to is counted once for the
    $refs followed to it, and a schema whose count visits over ``MOST_VISITS`` places is
    refused. A $ref met again after a choice whose ways may begin alike (``widened``: the
    $refs followed before it) is refused: its ways multiply at each turn of the answer
    through it, 31 objects alike in each other took the sampler 25 s a token two deep."""

    def __init__(self, root: dict[str, Any]) -> None:
        self.root = root
        self.visits = 0
        self.known: dict[tuple[str, frozenset[str], frozenset[str]], int] = {}

    def visit(self) -> None:
        self.visits += 1
        if self.visits > MOST_VISITS:
            raise _cannot(
                "its $refs lead along too many paths to count the ways its anyOf and "
                f"oneOf open (over {MOST_VISITS:,} places)"
            )

    def of(self, node: Any, followed: frozenset[str], widened: frozenset[str]) -> int:
        self.visit()
        if isinstance(node, list):
            return max((self.of(item, followed, widened) for item in node), default=1)
        if not isinstance(node, dict):
            return 1
        ref = node.get("$ref")
        if isinstance(ref, str) and ref in widened:
            raise _cannot(
                f"its $ref {ref} leads back to itself through an anyOf or oneOf whose choices "
                "may begin alike, which multiply the ways of reading an answer at each turn"
            )
        if isinstance(ref, str) and ref.startswith("#") and ref not in followed:
            target = _pointed(self.root, ref)
            if target is not None:
                key = (ref, followed, widened)
                if key not in self.known:
                    self.known[key] = self.of(target, followed | {ref}, widened)
                return self.known[key]
        most = 1
        for name, value in node.items():
            if name in ("$defs", "definitions", "$ref", "enum", "const", "examples", "default"):
                continue  # definitions count where a $ref leads to them; values hold no choice
            choice = name in ("anyOf", "oneOf", "type") and isinstance(value, list)
            alike = choice and _alike(value, self) > 1
            inner = self.of(value, followed, followed if alike else widened)
            if choice:
                inner *= max(len(value), 1)  # a list of types is a choice of them too
            most = max(most, min(inner, MOST_ALTERNATIVES * 10**3 + 1))
        return most


# The character an answer of each type begins with.
_FIRST = {"object": "{", "array": "[", "string": '"', "integer": "0", "number": "0"}
_FIRST.update({"boolean": "tf", "null": "n"})


def _alike(choices: list[Any], count: _Alternatives) -> int:
    """The most of ``choices`` (an anyOf's, or a list of types) whose answers may begin
    with the same character."""
    counts: dict[str, int] = {}
    anything = 0
    for choice in choices:
        starts = _starts(choice, count, 4)
        if "*" in starts:
            anything += 1
        for start in starts - {"*"}:
            counts[start] = counts.get(start, 0) + 1
    return anything + max(counts.values(), default=0)


def _starts(node: Any, count: _Alternatives, depth: int) -> set[str]:
    """What an answer of ``node`` may begin with (``_FIRST``); "*" for anything. Each
    place read is one of ``count``'s visits."""
    count.visit()
    if isinstance(node, str):
        return set(_FIRST.get(node, "*"))
    if not isinstance(node, dict) or depth <= 0:
        return {"*"}
    if isinstance(node.get("$ref"), str):
        return _starts(_pointed(count.root, node["$ref"]), count, depth - 1)
    if "const" in node:
        return {_first(node["const"])}
    if isinstance(node.get("enum"), list):
        return {_first(value) for value in node["enum"]} or {"*"}
    for name in ("anyOf", "oneOf"):
        if isinstance(node.get(name), list):
            return set().union(*(_starts(c, count, depth - 1) for c in node[name])) or {"*"}
    kind = node.get("type")
    if isinstance(kind, list):
        return set().union(*(_starts(k, count, depth) for k in kind)) or {"*"}
    if isinstance(kind, str):
        return _starts(kind, count, depth)
    if "properties" in node:
        return {"{"}
    return {"*"}


def _first(value: Any) -> str:
    first = json.dumps(value)[:1]
    return "0" if first in "-0123456789" else first


def _pointed(root: dict[str, Any], ref: str) -> Any:
    """What the JSON pointer of a local ``$ref`` (``#/$defs/Node``) names in ``root``."""
    node: Any = root
    for part in ref.removeprefix("#").strip("/").split("/") if ref != "#" else []:
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _choices(pattern: str) -> int:
    """The places of ``pattern`` (read as the converter reads it) that may match more or
    less: each ``?``, ``*``, ``+`` and ``{m,n}`` with m < n, and each group or pattern with
    alternatives; a group's own places count for each copy the converter writes of it, as
    ``{n}`` and ``{m,n}`` do."""
    groups: list[list[int | None]] = [[]]  # per open group, its units' places; None: a "|"
    i = 0
    while i < len(pattern):
        units, char = groups[-1], pattern[i]
        i += 1
        if char == "\\":  # an escaped character
            units.append(0)
            i += 1
        elif char == "[":  # a class of characters, up to its "]"
            while i < len(pattern) and pattern[i] != "]":
                i += 2 if pattern[i] == "\\" else 1
            units.append(0)
            i += 1
        elif char == "(":
            groups.append([])
        elif char == ")" and len(groups) > 1:
            groups.pop()
            groups[-1].append(_places(units))
        elif char == "|":
            units.append(None)
        elif char in "?*+" or char == "{":
            last = units[-1] if units else None
            if last is None:  # nothing to repeat: the converter refuses it
                continue
            if char != "{":
                units[-1] = last + 1
                continue
            end = pattern.find("}", i)
            bounds = pattern[i:end].split(",") if end >= 0 else []
            i = end + 1 if end >= 0 else len(pattern)
            try:
                least = int(bounds[0].strip() or 0)
                most = int(bounds[-1].strip()) if bounds[-1].strip() else None
            except (IndexError, ValueError):  # not a repeat the converter reads
                continue
            if most == least and len(bounds) == 1:
                units[-1] = last * least
            else:
                units[-1] = last * (most if most is not None else least + 1) + 1
        else:
            units.append(0)
    return sum(_places(units) for units in groups)


def _places(units: list[int | None]) -> int:
    """The places of a group of ``units``: theirs, and one where it has alternatives."""
    return sum(unit or 0 for unit in units) + (1 if None in units else 0)


def _counts(quantifier: str) -> list[int]:
    """The counts of a pattern's ``{...}`` (without its braces) that the converter reads."""
    counts = []
    for part in quantifier.split(","):
        try:
            counts.append(int(part.strip()))
        except ValueError:  # none, or not a number: the converter refuses it, or it is 0
            continue
    return counts


def _converter_said(exc: Exception) -> str:
    said = str(exc)
    if isinstance(exc, KeyError):
        return f"its $ref {exc.args[0]!r} cannot be resolved"
    if said.startswith("Fetching remote schemas"):
        return "a $ref leads outside it, and nothing is fetched"
    return said or type(exc).__name__


def _cannot(why: str) -> RequestError:
    return RequestError(
        f"the JSON schema cannot be followed: {why}. Send a schema of types, properties, "
        "items, enums, anyOf and $refs within it (#/$defs/...)",
        param="response_format",
    )
