"""Does the code parse? Python through ``ast``, JavaScript and TypeScript through tree-sitter.

Python's parser stops at the first error, so a Python text yields at most one finding;
tree-sitter recovers and marks every ERROR and MISSING node, of which the first few are
reported.
"""

from __future__ import annotations

import ast
import warnings

import tree_sitter

from tether.compliance.languages import Language, parse_tree
from tether.compliance.rules import make_finding
from tether.compliance.source import Source
from tether.findings import Finding

MAX_TREE_SITTER_ERRORS = 5
_NAMES = {"javascript": "JavaScript", "typescript": "TypeScript", "tsx": "TSX"}


def parse_python(text: str) -> ast.Module | SyntaxError:
    """The module, or the error that stopped the parser."""
    try:
        # Invalid escape sequences and the like warn; code under check is not ours to warn on.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return ast.parse(text)
    except SyntaxError as exc:
        return exc
    except ValueError as exc:  # null bytes, on some Python versions
        return SyntaxError(str(exc))
    except (MemoryError, RecursionError):  # CPython's parser has a fixed depth
        return SyntaxError(
            "Python's parser gave up: the code nests too deeply, or one statement is too long"
        )


def python_error_span(source: Source, error: SyntaxError) -> tuple[int, int]:
    """Character offsets of the error; ``SyntaxError`` columns are 1-based characters."""
    line = error.lineno or 1
    start = min(source.line_start(line) + max((error.offset or 1) - 1, 0), len(source.text))
    end = start
    if error.end_lineno and error.end_offset:
        end = source.line_start(error.end_lineno) + max(error.end_offset - 1, 0)
    return start, max(start, min(end, len(source.text)))


def python_syntax_finding(source: Source, error: SyntaxError, span: tuple[int, int]) -> Finding:
    return make_finding("syntax", f"Python syntax error: {error.msg}", source, *span)


def tree_sitter_errors(tree: tree_sitter.Tree) -> list[tree_sitter.Node]:
    """The outermost ERROR nodes and every MISSING node, in document order."""
    root = tree.root_node
    if not root.has_error:
        return []
    found: list[tree_sitter.Node] = []
    stack = [root]
    while stack:
        node = stack.pop()
        if node.is_error or node.is_missing:
            found.append(node)
        elif node.has_error:
            stack.extend(reversed(node.children))
    return found


def tree_sitter_finding(source: Source, node: tree_sitter.Node, language: Language) -> Finding:
    start = source.offset_of_byte(node.start_byte)
    end = source.offset_of_byte(node.end_byte)
    name = _NAMES[language]
    if node.is_missing:
        message = f"{name} syntax error: missing `{node.type}`"
    else:
        first, last = node.start_point.row + 1, node.end_point.row + 1
        where = f"line {first}" if first == last else f"lines {first}-{last}"
        message = f"{name} syntax error: cannot parse {where}"
    return make_finding("syntax", message, source, start, end)


def check_syntax(
    source: Source,
    language: Language,
    module: ast.Module | SyntaxError | None = None,
    tree: tree_sitter.Tree | None = None,
) -> list[Finding]:
    """Syntax findings of a whole text; pass the parse result when the caller has one."""
    if language == "python":
        parsed = parse_python(source.text) if module is None else module
        if isinstance(parsed, SyntaxError):
            return [python_syntax_finding(source, parsed, python_error_span(source, parsed))]
        return []
    tree = parse_tree(source.data, language) if tree is None else tree
    nodes = tree_sitter_errors(tree)[:MAX_TREE_SITTER_ERRORS]
    return [tree_sitter_finding(source, node, language) for node in nodes]
