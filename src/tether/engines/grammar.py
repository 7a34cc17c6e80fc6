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

import functools
import json
import re
from typing import Any

from tether.errors import RequestError

# As many as a field of a code assistant's answer needs; OpenAI's strict schemas take no
# such bounds at all.
MOST_REPEATS = 1000
MOST_GRAMMAR_CHARS = 256 * 1024
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
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    schema = schema_of(json.loads(response_format))
    try:
        _refuse_large_bounds(schema, "schema")
        grammar: str = json_schema_to_gbnf(json.dumps(schema))
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
    pattern = node.get("pattern")
    if isinstance(pattern, str):
        for match in _QUANTIFIER.finditer(pattern):
            if max(_counts(match[1]), default=0) > MOST_REPEATS:
                raise _cannot(
                    f"{where}.pattern repeats {match[0]}; keep repeats at most {MOST_REPEATS}"
                )
    for name, value in node.items():
        if name not in _BOUNDS and name != "pattern":
            _refuse_large_bounds(value, f"{where}.{name}")


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
