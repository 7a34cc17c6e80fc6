"""Security rules for JavaScript and TypeScript, on the tree-sitter tree.

One query per language finds the candidate nodes (calls, ``new``, assignments to
properties, object pairs) in C; the rules then look at a handful of them in Python.
tree-sitter recovers from errors, so a fragment that does not parse is still checked.
"""

from __future__ import annotations

import re
from functools import cache

import tree_sitter

from tether.compliance.languages import Language, grammar
from tether.compliance.rules import make_finding
from tether.compliance.source import Source
from tether.findings import Finding

_QUERY = """
(call_expression function: (_) @callee arguments: (arguments) @args) @call
(new_expression constructor: (_) @callee) @new
(assignment_expression
  left: (member_expression property: (property_identifier) @prop) right: (_) @value) @assign
(augmented_assignment_expression
  left: (member_expression property: (property_identifier) @prop) right: (_) @value) @assign
(pair key: (_) @key value: (_) @value) @pair
"""
_CALL, _NEW, _ASSIGN, _AUGMENTED, _PAIR = range(5)

_EVAL_CALLEES = {"eval", "window.eval", "globalThis.eval", "self.eval", "Function"}
_TIMERS = {"setTimeout", "setInterval", "window.setTimeout", "window.setInterval"}
_EXEC_NAMES = {"exec", "execSync"}
_HTML_SINKS = {"innerHTML", "outerHTML"}
_CHILD_PROCESS = re.compile(
    r"""(?:const|let|var)\s+(\w+)\s*=\s*require\(\s*['"](?:node:)?child_process['"]\s*\)"""
    r"""|import\s+(?:\*\s+as\s+)?(\w+)\s+from\s+['"](?:node:)?child_process['"]"""
)


@cache
def _query(language: Language) -> tree_sitter.Query:
    return tree_sitter.Query(grammar(language), _QUERY)


def scan_js(
    source: Source,
    tree: tree_sitter.Tree,
    language: Language,
    *,
    byte_range: tuple[int, int] | None = None,
) -> list[Finding]:
    """Security findings in a JavaScript, TypeScript or TSX tree of ``source``.

    With ``byte_range``, only nodes that intersect those bytes are looked at.
    """
    scan = _Scan(source)
    cursor = tree_sitter.QueryCursor(_query(language))
    if byte_range is not None:
        cursor.set_byte_range(*byte_range)
    for pattern, captures in cursor.matches(tree.root_node):
        if pattern == _CALL:
            scan.call(captures["call"][0], captures["callee"][0], captures["args"][0])
        elif pattern == _NEW:
            scan.new(captures["new"][0], captures["callee"][0])
        elif pattern in (_ASSIGN, _AUGMENTED):
            scan.assign(captures["assign"][0], captures["prop"][0], captures["value"][0])
        else:
            scan.pair(captures["pair"][0], captures["key"][0], captures["value"][0])
    return sorted(scan.findings, key=lambda f: f.start)


def _text(node: tree_sitter.Node) -> str:
    return (node.text or b"").decode("utf-8", errors="replace")


def _is_static_string(node: tree_sitter.Node) -> bool:
    if node.type == "string":
        return True
    return node.type == "template_string" and not any(
        child.type == "template_substitution" for child in node.named_children
    )


def _is_built_string(node: tree_sitter.Node) -> bool:
    """A template with ``${...}`` or a ``+`` chain with something that is not a literal."""
    if node.type == "template_string":
        return not _is_static_string(node)
    if node.type == "binary_expression":
        operator = node.child_by_field_name("operator")
        if operator is None or operator.type != "+":
            return False
        left, right = node.child_by_field_name("left"), node.child_by_field_name("right")
        return any(
            side is not None
            and (_is_built_string(side) or not (_is_static_string(side) or side.type == "number"))
            for side in (left, right)
        )
    return False


class _Scan:
    def __init__(self, source: Source) -> None:
        self.source = source
        self.findings: list[Finding] = []
        self._child_process_names: set[str] | None = None

    def report(self, rule_id: str, node: tree_sitter.Node, message: str) -> None:
        start = self.source.offset_of_byte(node.start_byte)
        end = self.source.offset_of_byte(node.end_byte)
        self.findings.append(make_finding(rule_id, message, self.source, start, end))

    def child_process_names(self) -> set[str]:
        if self._child_process_names is None:
            matches = _CHILD_PROCESS.finditer(self.source.text)
            self._child_process_names = {name for m in matches for name in m.groups() if name}
        return self._child_process_names

    def call(
        self, call: tree_sitter.Node, callee: tree_sitter.Node, args: tree_sitter.Node
    ) -> None:
        name = _text(callee)
        arguments = args.named_children
        first = arguments[0] if arguments else None
        if name in _EVAL_CALLEES:
            self.report("security/eval", call, f"{name}() runs code built from a string")
        elif name in _TIMERS and first is not None and first.type in ("string", "template_string"):
            self.report(
                "security/eval", call, f"{name}() with a string runs it as code; pass a function"
            )
        elif first is not None and self._is_child_process_exec(callee) and _is_built_string(first):
            self.report(
                "security/command-injection",
                call,
                f"{name}() runs a shell command built from variables; use execFile or spawn "
                "with an argument array",
            )

    def _is_child_process_exec(self, callee: tree_sitter.Node) -> bool:
        if callee.type == "identifier":
            return _text(callee) in _EXEC_NAMES  # JavaScript has no global exec()
        if callee.type != "member_expression":
            return False
        prop, owner = callee.child_by_field_name("property"), callee.child_by_field_name("object")
        if prop is None or owner is None or _text(prop) not in _EXEC_NAMES:
            return False
        owner_text = _text(owner)  # RegExp has exec() too: only child_process counts
        return "child_process" in owner_text or owner_text in self.child_process_names()

    def new(self, node: tree_sitter.Node, callee: tree_sitter.Node) -> None:
        if _text(callee) == "Function":
            self.report("security/eval", node, "new Function() compiles code from a string")

    def assign(
        self, node: tree_sitter.Node, prop: tree_sitter.Node, value: tree_sitter.Node
    ) -> None:
        name = _text(prop)
        if name in _HTML_SINKS and not _is_static_string(value):
            self.report(
                "security/inner-html",
                node,
                f"assigning a variable to {name} can inject script; use textContent or "
                "sanitize the HTML",
            )
        elif name == "NODE_TLS_REJECT_UNAUTHORIZED" and _text(value).strip("'\"`") == "0":
            self.report(
                "security/tls-verify",
                node,
                "NODE_TLS_REJECT_UNAUTHORIZED=0 turns off certificate checks for the process",
            )

    def pair(self, node: tree_sitter.Node, key: tree_sitter.Node, value: tree_sitter.Node) -> None:
        name = _text(key).strip("'\"")
        if name == "rejectUnauthorized" and value.type == "false":
            self.report(
                "security/tls-verify",
                node,
                "rejectUnauthorized: false accepts any certificate; give a CA instead",
            )
        elif name == "shell" and value.type == "true":
            self.report(
                "security/shell-true",
                node,
                "shell: true runs the command through a shell; pass an argument array",
            )
