"""Inline suppression comments in checked files.

``# tether: ignore[security/eval]`` (or ``// ...`` in JS/TS) on a finding's line, or alone
on the line above it, hides that rule there; several ids are separated by commas, a family
(``security``) covers its rules, a tool's own code (``B307``) its ``bandit/B307`` rule, and
a bare ``tether: ignore`` hides every rule but ``unicode/bidi``. ``tether check`` honours
them; the inline checks on completions do not, since the model could write them.

Only a real comment counts: in Python (read by its tokenizer) and in JavaScript and
TypeScript (read by tree-sitter), a string, docstring, template or regex that spells the
directive hides nothing. Where Python's tokenizer gives up (a file that does not tokenize),
the rest of the file is read line by line, as are files in languages tether does not parse.
"""

from __future__ import annotations

import io
import re
import tokenize
from collections.abc import Callable
from dataclasses import dataclass

from tether.compliance.languages import TREE_SITTER_LANGUAGES, Language, parse_tree

_DIRECTIVE = re.compile(
    r"(?:#|//|/\*|--|<!--)\s*tether:\s*ignore\b(?:\[(?P<rules>[^\]]*)\])?", re.IGNORECASE
)
_MAYBE = re.compile("tether:", re.IGNORECASE)
_COMMENT_STARTS = ("#", "//", "/*", "*", "--", "<!--")
_TREE_SITTER_COMMENTS = frozenset({"comment", "html_comment"})

NAMED_ONLY = frozenset({"unicode/bidi"})  # hidden only by a directive that names them

# Whether the character at (1-based line, 0-based column in characters) lies in a comment.
InComment = Callable[[int, int], bool]


def rule_matches(rule_id: str, pattern: str) -> bool:
    """``pattern`` names the rule, its family (``security``) or a tool's code (``B307``)."""
    return (
        rule_id == pattern or rule_id.startswith(pattern + "/") or rule_id.endswith("/" + pattern)
    )


@dataclass(frozen=True)
class _Directive:
    rules: frozenset[str] | None  # None: every rule
    own_line: bool  # the comment is alone on its line, so it also covers the next one

    def covers(self, rule_id: str) -> bool:
        if self.rules is None:
            # A line with bidirectional controls may show its code otherwise than it runs,
            # a bare directive included: only one that names the rule hides it.
            return rule_id not in NAMED_ONLY
        return any(rule_matches(rule_id, rule) for rule in self.rules)


class Suppressions:
    """The suppression comments of one file, by line.

    ``language`` is the checked language the file is written in; None (a file tether does
    not parse) takes every line that spells a directive, wherever it stands.
    """

    def __init__(self, text: str, language: Language | None = None) -> None:
        self._by_line: dict[int, _Directive] = {}
        if _MAYBE.search(text) is None:
            return
        lines = text.split("\n")
        candidates = [n for n, line in enumerate(lines, start=1) if _DIRECTIVE.search(line)]
        if not candidates:
            return
        in_comment = _comment_test(text, lines, language, candidates[-1])
        for number in candidates:
            line = lines[number - 1]
            match = next(
                (m for m in _DIRECTIVE.finditer(line) if in_comment(number, m.start())), None
            )
            if match is None:
                continue
            listed = match.group("rules")
            rules = (
                frozenset(r.strip() for r in listed.split(",") if r.strip())
                if listed is not None
                else None
            )
            own_line = line.lstrip().startswith(_COMMENT_STARTS)
            self._by_line[number] = _Directive(rules, own_line)

    def covers(self, rule_id: str, line: int) -> bool:
        here = self._by_line.get(line)
        if here is not None and here.covers(rule_id):
            return True
        above = self._by_line.get(line - 1)
        return above is not None and above.own_line and above.covers(rule_id)


def _comment_test(
    text: str, lines: list[str], language: Language | None, last_line: int
) -> InComment:
    """How to tell a comment in ``text`` from code and strings, up to ``last_line``."""
    if language is None:
        return lambda line, column: True
    if language in TREE_SITTER_LANGUAGES:
        return _tree_sitter_comments(text, lines, language)
    return _python_comments(text, last_line)


def _python_comments(text: str, last_line: int) -> InComment:
    """Python's COMMENT tokens; from where the tokenizer stops on an error, every line."""
    spans: dict[int, list[tuple[int, int]]] = {}
    reached = (0, 0)  # where the last token read ends
    unknown_after: tuple[int, int] | None = None
    tokens = tokenize.generate_tokens(io.StringIO(text).readline)
    try:
        for token in tokens:
            if token.start[0] > last_line:
                break
            if token.type == tokenize.COMMENT:
                (row, column), size = token.start, len(token.string)
                spans.setdefault(row, []).append((column, column + size))
            reached = token.end
    except (tokenize.TokenError, SyntaxError, ValueError):
        unknown_after = reached

    def in_comment(line: int, column: int) -> bool:
        if unknown_after is not None and (line, column) >= unknown_after:
            return True
        return any(start <= column < end for start, end in spans.get(line, ()))

    return in_comment


def _tree_sitter_comments(text: str, lines: list[str], language: Language) -> InComment:
    """Comment nodes of tree-sitter's parse (which recovers from errors, so always whole)."""
    root = parse_tree(text.encode("utf-8", errors="surrogatepass"), language).root_node

    def in_comment(line: int, column: int) -> bool:
        byte = len(lines[line - 1][:column].encode("utf-8", errors="surrogatepass"))
        node = root.descendant_for_point_range((line - 1, byte), (line - 1, byte + 1))
        return node is not None and node.type in _TREE_SITTER_COMMENTS

    return in_comment
