"""Smaller context files for FIM prompts: what a model needs from them, in fewer tokens.

Editors send other files beside the cursor. Most of their tokens are comments,
docstrings and blank lines, which cost prompt-reading time (the larger part of time to
first token on a CPU) and help the model little. In steps, each only when still needed:

1. drop repeats: a snippet equal to, or contained in, one sent before it;
2. strip comments, docstrings and runs of blank lines (tree-sitter, for Python,
   JavaScript and TypeScript; other files lose only their blank runs);
3. reduce what still does not fit to signatures: function bodies become ``...``;
4. leave out what still does not fit, keeping the client's order (most relevant first).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import replace

import tree_sitter

from tether.pipeline.fim import ContextSnippet
from tether.store.split import parse

_LANGUAGES = {
    ".py": "python", ".pyi": "python", ".js": "javascript", ".mjs": "javascript",
    ".cjs": "javascript", ".jsx": "javascript", ".ts": "typescript", ".mts": "typescript",
    ".tsx": "tsx",
}  # fmt: skip
_BLANK_RUNS = re.compile(r"\n[ \t]*\n(?:[ \t]*\n)+")
_TRAILING = re.compile(r"[ \t]+\n")
_PY_BODIES = ("function_definition",)
_JS_BODIES = (
    "function_declaration", "generator_function_declaration", "method_definition",
    "function_expression", "arrow_function", "function",
)  # fmt: skip


def language_of(filename: str) -> str | None:
    dot = filename.rfind(".")
    return _LANGUAGES.get(filename[dot:].lower()) if dot >= 0 else None


def _walk(root: tree_sitter.Node) -> Iterator[tree_sitter.Node]:
    """Every node, in source order: with a stack, since generated code nests deeper than
    Python's recursion limit (a thousand string concatenations is one such tree)."""
    stack = [root]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(reversed(node.children))


def _docstrings(root: tree_sitter.Node) -> Iterator[tree_sitter.Node]:
    """Python docstrings: a string alone as the first statement of a module or body."""
    for node in _walk(root):
        if node.type in ("module", "block") and node.named_children:
            first = node.named_children[0]
            if (
                first.type == "expression_statement"
                and first.named_children
                and (first.named_children[0].type == "string")
            ):
                yield first


def _cut(data: bytes, ranges: list[tuple[int, int, bytes]]) -> bytes:
    """``data`` with each (start, end) range replaced; ranges are outermost first."""
    out, at = [], 0
    for start, end, text in sorted(ranges):
        if start < at:
            continue  # inside a range already replaced
        out += [data[at:start], text]
        at = end
    out.append(data[at:])
    return b"".join(out)


def _whole_lines(data: bytes, start: int, end: int) -> tuple[int, int]:
    """The range widened to whole lines when nothing else is on them (a comment or a
    docstring on lines of its own), so that no empty line is left behind."""
    line_start = data.rfind(b"\n", 0, start) + 1
    line_end = data.find(b"\n", end)
    line_end = len(data) if line_end < 0 else line_end + 1
    if data[line_start:start].strip() or data[end:line_end].strip():
        return start, end
    return line_start, line_end


def _without_comment(data: bytes, start: int, end: int) -> tuple[int, int, bytes]:
    """What cuts a comment: its lines when it is alone on them, else a space, as the
    languages read it, so the code on either side (``a/* c */b``) is not joined into a
    word no one wrote."""
    lines = _whole_lines(data, start, end)
    return (*lines, b"" if lines != (start, end) else b" ")


def _tidy(text: str) -> str:
    return _BLANK_RUNS.sub("\n\n", _TRAILING.sub("\n", text)).strip("\n") + "\n"


def strip(text: str, language: str | None) -> str:
    """``text`` without comments, docstrings (a lone one becomes ``...``) and blank runs."""
    if language is None:
        return _tidy(text)
    data = text.encode("utf-8")
    root = parse(text, language).root_node
    ranges = [
        _without_comment(data, n.start_byte, n.end_byte) for n in _walk(root) if n.type == "comment"
    ]
    if language == "python":
        for doc in _docstrings(root):
            if doc.parent is not None and len(doc.parent.named_children) == 1:
                ranges.append((doc.start_byte, doc.end_byte, b"..."))
            else:
                ranges.append((*_whole_lines(data, doc.start_byte, doc.end_byte), b""))
    return _tidy(_cut(data, ranges).decode("utf-8", errors="replace"))


def signatures(text: str, language: str | None) -> str:
    """``text`` with every function body replaced by ``...`` (classes keep their methods'
    signatures); unknown languages are returned as they are."""
    if language is None:
        return text
    data = text.encode("utf-8")
    root = parse(text, language).root_node
    ranges = []
    for node in _walk(root):
        if language == "python" and node.type in _PY_BODIES:
            body = node.child_by_field_name("body")
            if body is not None:
                ranges.append((body.start_byte, body.end_byte, b"..."))
        elif language != "python" and node.type in _JS_BODIES:
            body = node.child_by_field_name("body")
            if body is not None and body.type == "statement_block":
                ranges.append((body.start_byte, body.end_byte, b"{ ... }"))
    return _tidy(_cut(data, ranges).decode("utf-8", errors="replace"))


def compress(
    snippets: list[ContextSnippet], budget_tokens: int, count_tokens: Callable[[str], int]
) -> list[ContextSnippet]:
    """The snippets in their order, repeats gone, stripped, reduced and left out as needed
    to fit ``budget_tokens``."""
    unique: list[ContextSnippet] = []
    for snippet in snippets:
        flat = " ".join(snippet.text.split())
        if any(flat in " ".join(kept.text.split()) for kept in unique):
            continue
        unique.append(snippet)
    stripped = [replace(s, text=strip(s.text, language_of(s.filename))) for s in unique]
    costs = [count_tokens(s.text) for s in stripped]
    kept: list[ContextSnippet] = []
    used = 0
    for snippet, cost in zip(stripped, costs, strict=True):
        if used + cost > budget_tokens:
            reduced = signatures(snippet.text, language_of(snippet.filename))
            cost = count_tokens(reduced)
            snippet = replace(snippet, text=reduced)
        if used + cost > budget_tokens:
            continue  # a smaller one further down may still fit
        kept.append(snippet)
        used += cost
    return kept
