"""Syntax and security findings of a completion, judged as the code will stand in the file.

A completion is usually a fragment: ``return a +`` is only wrong once it sits between its
prefix and suffix. So the checks run on prefix + completion + suffix and keep the findings
that overlap the completion, re-placed in the completion's own coordinates.

Editors often send a window of the file, not all of it, so the prefix may start inside a
block. When that breaks the parse before the completion, the prefix is cut at its last
top-level statement and parsed again. A syntax error after the completion is the
completion's fault only if the file parses without it.

A long file is cut to a window around the completion first (:mod:`.window`), and only
the statements that overlap the completion go through the security rules.
"""

from __future__ import annotations

import ast
import dataclasses
from collections.abc import Iterable

from tether.compliance.languages import Language, parse_tree
from tether.compliance.rules import make_finding
from tether.compliance.security_js import scan_js
from tether.compliance.security_python import scan_python
from tether.compliance.source import Source
from tether.compliance.syntax import (
    MAX_TREE_SITTER_ERRORS,
    parse_python,
    python_error_span,
    tree_sitter_errors,
    tree_sitter_finding,
)
from tether.compliance.window import top_level_start, window
from tether.findings import Finding


def check_span(prefix: str, completion: str, suffix: str, language: Language) -> list[Finding]:
    """Syntax and security findings that touch ``completion``, placed in ``completion``."""
    if not completion:  # it changes nothing (a warm-up with n_predict 0): nothing is its fault
        return []
    if language == "python":
        start, found = _python(prefix, completion, suffix)
    else:
        start, found = _tree_sitter(prefix, completion, suffix, language)
    return relocate(found, start, start + len(completion), Source(completion))


def relocate(findings: Iterable[Finding], start: int, end: int, target: Source) -> list[Finding]:
    """Findings overlapping ``[start, end)`` of a larger text, moved into ``target``."""
    placed = []
    for finding in findings:
        if finding.start == finding.end:
            touches = start <= finding.start <= end
        else:
            touches = finding.start < end and finding.end > start
        if not touches:
            continue
        size = len(target.text)
        new_start = min(max(finding.start - start, 0), size)
        new_end = min(max(finding.end - start, new_start), size)
        line, column = target.position(new_start)
        placed.append(
            dataclasses.replace(finding, start=new_start, end=new_end, line=line, column=column)
        )
    return placed


def _python(prefix: str, completion: str, suffix: str) -> tuple[int, list[Finding]]:
    prefix, suffix = window(prefix, suffix, "python")
    text = prefix + completion + suffix
    start = len(prefix)
    module = parse_python(text)
    if isinstance(module, SyntaxError) and _error_offset(text, module) < start:
        cut = top_level_start(prefix)
        if cut:
            trimmed = text[cut:]
            parsed = parse_python(trimmed)
            if isinstance(parsed, ast.Module) or _error_offset(trimmed, parsed) >= start - cut:
                text, module, start, prefix = trimmed, parsed, start - cut, prefix[cut:]
    end = start + len(completion)
    source = Source(text)
    lines = (source.position(start)[0], source.position(end)[0])
    found = scan_python(source, module, lines=lines)
    if isinstance(module, SyntaxError):
        error_start, error_end = python_error_span(source, module)
        message = f"Python syntax error: {module.msg}"
        if start <= error_start <= end:
            found.append(make_finding("syntax", message, source, error_start, error_end))
        elif error_start > end and isinstance(parse_python(prefix + suffix), ast.Module):
            line = source.position(error_start)[0]
            found.append(
                make_finding(
                    "syntax",
                    f"{message} (line {line} of the file, after the completion)",
                    source,
                    max(start, end - 1),
                    end,
                )
            )
    return start, found


def _error_offset(text: str, error: SyntaxError) -> int:
    return python_error_span(Source(text), error)[0]


def _tree_sitter(
    prefix: str, completion: str, suffix: str, language: Language
) -> tuple[int, list[Finding]]:
    prefix, suffix = window(prefix, suffix, language)
    text = prefix + completion + suffix
    start, end = len(prefix), len(prefix) + len(completion)
    source = Source(text)
    tree = parse_tree(source.data, language)
    first_byte = len(prefix.encode("utf-8", errors="surrogatepass"))
    last_byte = first_byte + len(completion.encode("utf-8", errors="surrogatepass"))
    found = scan_js(source, tree, language, byte_range=(first_byte, last_byte))
    errors = [
        (node, source.offset_of_byte(node.start_byte), source.offset_of_byte(node.end_byte))
        for node in tree_sitter_errors(tree)
    ]
    candidates = [item for item in errors if item[2] >= start]
    if not candidates:
        return start, found
    # Without the completion, does the file parse? Then every later error is its doing.
    rest = (prefix + suffix).encode("utf-8", errors="surrogatepass")
    completion_broke_it = not tree_sitter_errors(parse_tree(rest, language))
    reported = 0
    for node, node_start, node_end in candidates:
        inside = start <= node_start and node_end <= end
        if reported < MAX_TREE_SITTER_ERRORS and (inside or completion_broke_it):
            finding = tree_sitter_finding(source, node, language)
            if not inside:
                clamped = min(max(node_start, start), max(start, end - 1))
                finding = dataclasses.replace(
                    finding, start=clamped, end=max(clamped, min(node_end, end))
                )
            found.append(finding)
            reported += 1
    return start, found
