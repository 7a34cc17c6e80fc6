from __future__ import annotations

import pytest

from tests.store.conftest import DATES, UTIL_TS
from tether.errors import RequestError
from tether.store.split import Function, functions, has_syntax_errors, normalised_hash


def test_python_functions_with_signature_and_docstring() -> None:
    found = functions(DATES, "python")
    assert [f.name for f in found] == ["parse_iso_date", "slugify", "add"]
    first = found[0]
    assert first.signature == "def parse_iso_date(text: str) -> date:"
    assert first.docstring == "Parse an ISO 8601 date such as 2024-01-31."
    assert first.line == 5
    assert first.code.startswith("from datetime import date\n\n\ndef parse_iso_date")
    assert found[1].code.startswith("def slugify")  # it imports nothing
    assert found[2].docstring == ""


def test_a_python_function_brings_the_imports_it_uses() -> None:
    code = (
        "from __future__ import annotations\n"
        "import re, unicodedata\nimport os.path\nimport json as j\n"
        "from typing import Any, Optional as Opt\nfrom .local import helper\n"
        "SEP = '-'\n\n"
        "def slug(title: Opt[str]) -> str:\n"
        "    text = unicodedata.normalize('NFKD', title)\n"
        "    return re.sub(r'\\W+', SEP, text) + os.path.sep + helper([c for c in text])\n\n"
        "def dump(x):\n    return (lambda: j.dumps(x))()\n\n"
        "def bare(x):\n    return x\n"
    )
    slug, dump, bare = functions(code, "python")
    assert slug.code.split("\n\n\n")[0].splitlines() == [
        "from __future__ import annotations",  # it has annotations
        "import re",
        "import unicodedata",
        "import os.path",
        "from typing import Optional as Opt",
        "from .local import helper",
    ]
    assert dump.code.startswith("import json as j\n\n\ndef dump")  # used in a lambda
    alone = functions(dump.code.split("\n\n\n", 1)[1], "python")[0]
    assert dump.body_hash != alone.body_hash  # the imports are part of what is stored
    assert bare.code.startswith("def bare")
    # The hash is of the function alone: a copy elsewhere is still recognised.
    assert bare.body_hash == functions("def bare(x):\n    return x\n", "python")[0].body_hash


def test_methods_stay_with_their_class_and_decorators_come_along() -> None:
    code = "@cache\ndef f():\n    return 1\n\nclass A:\n    def m(self):\n        pass\n"
    found = functions(code, "python")
    assert [f.name for f in found] == ["f"] and found[0].code.startswith("@cache")


def test_the_definition_python_keeps_is_the_one_stored() -> None:
    """``@overload`` stubs and a redefined function are never called: only the last
    definition of a name is a function of the file, so importing it again settles."""
    code = (
        "from typing import overload\n\n"
        "@overload\ndef conv(x: int) -> int: ...\n"
        "@overload\ndef conv(x: str) -> str: ...\n"
        "def conv(x):\n    return x\n\n"
        "def twice(x):\n    return x + x\n\n"
        "def twice(x):\n    return 2 * x\n"
    )
    left_out: list[tuple[Function, str]] = []
    conv, twice = functions(code, "python", left_out)
    assert conv.code == "def conv(x):\n    return x" and conv.line == 7
    assert twice.code.endswith("return 2 * x")
    # The stubs go without a word; a redefinition is named, since a decorator may have
    # registered it (``@show.register def _``) and the user should know it is not stored.
    assert [(f.name, f.line, why) for f, why in left_out] == [
        ("twice", 10, "defined again at line 13, and only the last definition is kept")
    ]


def test_a_signature_leaves_comments_out() -> None:
    code = (
        "def multi(\n    a: int,  # first\n    b: str = 'x, y',  # b\n) -> dict:  # returns\n"
        "    # body comment\n    return {}\n"
    )
    assert (
        functions(code, "python")[0].signature == "def multi( a: int, b: str = 'x, y', ) -> dict:"
    )
    js = "export function f(a /* first */, b) { // c\n  return a }\n"
    assert functions(js, "javascript")[0].signature == "export function f(a , b)"


def test_typescript_functions_and_arrow_constants_with_jsdoc() -> None:
    found = functions(UTIL_TS, "typescript")
    assert [f.name for f in found] == ["camelToSnake", "clamp"]
    assert found[0].docstring == "Convert camelCase to snake_case."
    assert found[0].signature == "export function camelToSnake(name: string): string"
    assert found[1].docstring == "" and "=>" not in found[1].signature[-3:]


def test_javascript_declarations() -> None:
    code = "/** Add. */\nfunction add(a, b) { return a + b; }\nconst mul = (a, b) => a * b;\n"
    assert [(f.name, f.docstring) for f in functions(code, "javascript")] == [
        ("add", "Add."),
        ("mul", ""),
    ]


def test_the_hash_ignores_comments_and_layout_but_not_code() -> None:
    a = "def f(a):\n    # why\n    return a + 1\n"
    b = "def f( a ):\n        return a + 1   # other words\n"
    c = "def f(a):\n    return a + 2\n"
    assert normalised_hash(a, "python") == normalised_hash(b, "python")
    assert normalised_hash(a, "python") != normalised_hash(c, "python")


def test_broken_code_is_marked_and_unknown_languages_refused() -> None:
    broken = functions("def f(:\n    return 1\n\ndef g():\n    return 2\n", "python")
    assert any(f.broken for f in broken) and not all(f.broken for f in broken)
    assert has_syntax_errors("function (", "javascript")
    with pytest.raises(RequestError, match="cannot split ruby"):
        functions("def f; end", "ruby")
