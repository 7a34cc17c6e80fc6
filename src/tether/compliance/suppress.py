"""Inline suppression comments in checked files.

``# tether: ignore[security/eval]`` (or ``// ...`` in JS/TS) on a finding's line, or alone
on the line above it, hides that rule there; several ids are separated by commas, a family
(``security``) covers its rules, a tool's own code (``B307``) its ``bandit/B307`` rule, and
a bare ``tether: ignore`` hides every rule. ``tether check`` honours them; the inline checks
on completions do not, since the model could write them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_DIRECTIVE = re.compile(
    r"(?:#|//|/\*|--|<!--)\s*tether:\s*ignore\b(?:\[(?P<rules>[^\]]*)\])?", re.IGNORECASE
)
_COMMENT_STARTS = ("#", "//", "/*", "*", "--", "<!--")


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
            return True
        return any(rule_matches(rule_id, rule) for rule in self.rules)


class Suppressions:
    """The suppression comments of one file, by line."""

    def __init__(self, text: str) -> None:
        self._by_line: dict[int, _Directive] = {}
        if "tether:" not in text:
            return
        for number, line in enumerate(text.split("\n"), start=1):
            match = _DIRECTIVE.search(line)
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
