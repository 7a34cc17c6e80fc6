"""The one table of programming languages: names, editor aliases, file suffixes, comments.

Editors name languages in several ways (``typescriptreact``, ``py``, ``js``); every part of
tether maps them through :func:`canonical` to one name, from the name or, failing that,
from a file's suffix. The compliance checks understand four of them (``CHECKED``); the
others still get the language-neutral checks and comment-style context in FIM prompts.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import PurePath


@dataclass(frozen=True)
class Language:
    name: str
    suffixes: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    comment: str = "//"  # line-comment marker


LANGUAGES: tuple[Language, ...] = (
    Language("python", (".py", ".pyi"), ("py", "python3"), "#"),
    Language(
        "javascript", (".js", ".mjs", ".cjs", ".jsx"), ("js", "jsx", "javascriptreact", "node")
    ),
    Language("typescript", (".ts", ".mts", ".cts"), ("ts",)),
    Language("tsx", (".tsx",), ("typescriptreact",)),
    Language("go", (".go",), ("golang",)),
    Language("rust", (".rs",), ("rs",)),
    Language("java", (".java",)),
    Language("c", (".c", ".h")),
    Language("cpp", (".cpp", ".cc", ".cxx", ".hpp"), ("c++",)),
    Language("ruby", (".rb",), ("rb",), "#"),
    Language("bash", (".sh", ".bash"), ("shell", "sh", "shellscript"), "#"),
    Language("sql", (".sql",), (), "--"),
    Language("lua", (".lua",), (), "--"),
    Language("haskell", (".hs",), (), "--"),
    Language("r", (".r",), (), "#"),
    Language("yaml", (".yaml", ".yml"), ("yml",), "#"),
    Language("toml", (".toml",), (), "#"),
    Language("markdown", (".md",), ("md",), ""),
)

# The languages the inline compliance checks parse (Python's own parser, tree-sitter).
CHECKED = frozenset({"python", "javascript", "typescript", "tsx"})

_BY_NAME = {alias: lang for lang in LANGUAGES for alias in (lang.name, *lang.aliases)}
_BY_SUFFIX = {suffix: lang for lang in LANGUAGES for suffix in lang.suffixes}


def canonical(language: str, path: str | PurePath = "") -> str:
    """The table's name for ``language``, else for ``path``'s suffix; "" when unknown."""
    named = _BY_NAME.get(language.strip().lower())
    if named is None and path:
        named = _BY_SUFFIX.get(PurePath(path).suffix.lower())
    return named.name if named is not None else ""


def comment_marker(language: str) -> str:
    """The line-comment marker of ``language``; ``//`` when unknown."""
    known = _BY_NAME.get(language.strip().lower())
    return known.comment if known is not None and known.comment else "//"


def suffixes_of(names: frozenset[str]) -> frozenset[str]:
    """Every file suffix of the named languages."""
    return frozenset(s for lang in LANGUAGES if lang.name in names for s in lang.suffixes)


# When a client does not say the language, a few unmistakable openings do.
_PYTHON = re.compile(r"^\s*(def |class \w+.*:|import |from \w[\w.]* import )", re.MULTILINE)
_JAVASCRIPT = re.compile(r"^\s*(function |const |let |export |import .* from )", re.MULTILINE)


def guess_from_code(code: str) -> str:
    """python or javascript when the code's openings say so, else ""."""
    if _PYTHON.search(code):
        return "python"
    if _JAVASCRIPT.search(code):
        return "javascript"
    return ""


def guess_language(language: str, code: str, paths: Iterable[str] = ()) -> str:
    """``language`` as a client named it, else as the code's openings say, else as the
    first of ``paths`` with a known suffix says (the files an editor sends beside the
    one being written are mostly in its language); "" when none does."""
    named = canonical(language)
    if named or language.strip():
        return named or language
    guessed = guess_from_code(code)
    if guessed:
        return guessed
    return next((found for path in paths if (found := canonical("", path))), "")
