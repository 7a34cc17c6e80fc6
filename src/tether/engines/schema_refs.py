"""A JSON schema's local ``$ref``s made plain for llama.cpp's schema converter.

The converter names the grammar rule of a ``$ref`` after the pointer's last step and
takes a rule of that name where one exists: ``#/$defs/string`` was read as its rule for
any JSON string, two functions' models both called ``Item`` as the first one's, and a
``#/$defs/A/properties/x`` as whatever else was called ``x``. A name it cannot write as a
rule (``My_Node``, a pointer's ``~1``) pointed at no rule at all. Each place a ``$ref``
points to is copied into the root's ``$defs`` under a name of its own, which no rule of
the converter's takes, and every ``$ref`` is pointed there.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

# Rule names the converter writes for nothing else.
_PREFIX = "tether-ref-"
# Keywords whose object maps names to schemas, where a name may be any keyword's.
_NAMED = frozenset({"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"})
# Keywords whose values are JSON values, not schemas: a "$ref" there is data.
_VALUES = frozenset({"enum", "const", "default", "examples"})
_DEFINITIONS = ("$defs", "definitions")


def flat_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with each local ``$ref`` pointing to a copy of what it named, in the
    root's ``$defs`` under a name of its own; a ``$ref`` that names nothing is a KeyError
    of it. A schema without ``$ref``s is returned as it is."""
    names: dict[str, str] = {}
    waiting: list[str] = []

    def named(ref: str) -> None:
        if ref not in names:
            names[ref] = f"{_PREFIX}{len(names)}"
            waiting.append(ref)

    for ref in _refs(schema):
        named(ref)
    if not names:
        return schema
    targets: dict[str, Any] = {}
    while waiting:
        ref = waiting.pop()
        target = _target(schema, ref)
        for inner in _refs(target):
            named(inner)
        targets[names[ref]] = target
    flat: dict[str, Any] = _rewritten(schema, names)
    flat["$defs"] = {name: _rewritten(target, names) for name, target in targets.items()}
    return flat


def _refs(node: Any, in_names: bool = False) -> Iterator[str]:
    """Every local ``$ref`` of ``node``, where it is a keyword."""
    if isinstance(node, dict):
        for key, value in node.items():
            if in_names:
                yield from _refs(value)
            elif key == "$ref" and isinstance(value, str) and value.startswith("#"):
                yield value
            elif key not in _VALUES:
                yield from _refs(value, key in _NAMED)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def _rewritten(node: Any, names: dict[str, str], in_names: bool = False) -> Any:
    """``node`` with its ``$ref``s pointed at their copies, and its definitions left out
    (what is used of them is among the copies)."""
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            if in_names:
                out[key] = _rewritten(value, names)
            elif key == "$ref" and isinstance(value, str) and value.startswith("#"):
                out[key] = f"#/$defs/{names[value]}"
            elif key in _VALUES:
                out[key] = value
            elif key not in _DEFINITIONS:
                out[key] = _rewritten(value, names, key in _NAMED)
        return out
    if isinstance(node, list):
        return [_rewritten(item, names) for item in node]
    return node


def _target(root: dict[str, Any], ref: str) -> Any:
    """What the JSON pointer of ``ref`` names in ``root``: its steps read through objects
    and lists, ``~1`` and ``~0`` unescaped; a KeyError of ``ref`` where it names nothing."""
    node: Any = root
    steps = ref.removeprefix("#").removeprefix("/").split("/") if ref not in ("#", "#/") else []
    for step in steps:
        step = step.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and step in node:
            node = node[step]
        elif isinstance(node, list) and step.isdigit() and int(step) < len(node):
            node = node[int(step)]
        else:
            raise KeyError(ref)
    return node
