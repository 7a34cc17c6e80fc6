"""Which languages the inline checks understand, and tree-sitter parsers for JS and TS.

Editors name languages in several ways (``typescriptreact``, ``js``); everything is mapped
to one of ``python``, ``javascript``, ``typescript`` or ``tsx``, from the name or, failing
that, from the file's suffix. A language outside these still gets the language-neutral
checks (licence markers, secrets, duplication).
"""

from __future__ import annotations

from functools import cache
from pathlib import PurePath
from typing import Literal

import tree_sitter

Language = Literal["python", "javascript", "typescript", "tsx"]
TREE_SITTER_LANGUAGES: frozenset[Language] = frozenset({"javascript", "typescript", "tsx"})

_ALIASES: dict[str, Language] = {
    "python": "python",
    "py": "python",
    "python3": "python",
    "javascript": "javascript",
    "js": "javascript",
    "jsx": "javascript",
    "javascriptreact": "javascript",
    "node": "javascript",
    "typescript": "typescript",
    "ts": "typescript",
    "tsx": "tsx",
    "typescriptreact": "tsx",
}

SUFFIXES: dict[str, Language] = {
    ".py": "python",
    ".pyi": "python",
    ".js": "javascript",
    ".mjs": "javascript",
    ".cjs": "javascript",
    ".jsx": "javascript",
    ".ts": "typescript",
    ".mts": "typescript",
    ".cts": "typescript",
    ".tsx": "tsx",
}


def language_for(language: str, path: str = "") -> Language | None:
    """The checked language named by ``language``, else implied by ``path``'s suffix."""
    named = _ALIASES.get(language.strip().lower())
    if named is not None:
        return named
    return SUFFIXES.get(PurePath(path).suffix.lower()) if path else None


def comment_prefix(language: Language | None) -> str:
    return "#" if language in (None, "python") else "//"


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
