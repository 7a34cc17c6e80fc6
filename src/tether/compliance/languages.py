"""Which languages the inline checks understand, and tree-sitter parsers for JS and TS.

Names and suffixes come from the one table in :mod:`tether.languages`; a language outside
``python``, ``javascript``, ``typescript`` and ``tsx`` still gets the language-neutral
checks (licence markers, secrets, duplication).
"""

from __future__ import annotations

from functools import cache
from typing import Literal, cast

import tree_sitter

from tether.languages import CHECKED, canonical, comment_marker, suffixes_of

Language = Literal["python", "javascript", "typescript", "tsx"]
TREE_SITTER_LANGUAGES: frozenset[Language] = frozenset({"javascript", "typescript", "tsx"})

SUFFIXES: frozenset[str] = suffixes_of(CHECKED)


def language_for(language: str, path: str = "") -> Language | None:
    """The checked language named by ``language``, else implied by ``path``'s suffix."""
    name = canonical(language, path)
    return cast(Language, name) if name in CHECKED else None


def comment_prefix(language: Language | None) -> str:
    return comment_marker(language or "python")


@cache
def grammar(language: Language) -> tree_sitter.Language:
    """The tree-sitter grammar of a JS or TS language; loaded once per process."""
    if language == "javascript":
        import tree_sitter_javascript

        return tree_sitter.Language(tree_sitter_javascript.language())
    import tree_sitter_typescript

    if language == "tsx":
        return tree_sitter.Language(tree_sitter_typescript.language_tsx())
    return tree_sitter.Language(tree_sitter_typescript.language_typescript())


def parse_tree(data: bytes, language: Language) -> tree_sitter.Tree:
    # A parser per call: they are cheap to make and not safe to share between threads.
    return tree_sitter.Parser(grammar(language)).parse(data)
