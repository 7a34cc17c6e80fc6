"""What happens to a completion with findings: the configured action per rule, then applied.

``compliance.actions`` maps a rule id to annotate, redact, block or allow (drop the
finding). A key may name one rule (``security/eval``), a family (``security``, which covers
``security/eval``) or a glob (``secrets/*``); the most specific key wins.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Iterable, Mapping

from tether.compliance.languages import comment_prefix, language_for
from tether.compliance.source import Source
from tether.errors import ConfigError
from tether.findings import Action, Finding

ACTIONS: tuple[Action, ...] = ("annotate", "redact", "block", "allow")


def validate_actions(actions: Mapping[str, str]) -> dict[str, Action]:
    """The overrides, checked; a ConfigError names the bad key and the values allowed."""
    checked: dict[str, Action] = {}
    for rule_id, action in actions.items():
        if action not in ACTIONS:
            raise ConfigError(
                f"compliance.actions[{rule_id!r}] = {action!r}; use one of {', '.join(ACTIONS)}"
            )
        checked[rule_id] = action
    return checked


def action_for(rule_id: str, default: Action, overrides: Mapping[str, Action]) -> Action:
    if rule_id in overrides:
        return overrides[rule_id]
    family = rule_id
    while "/" in family:
        family = family.rsplit("/", 1)[0]
        if family in overrides:
            return overrides[family]
    for pattern, action in overrides.items():
        if "*" in pattern and fnmatch.fnmatchcase(rule_id, pattern):
            return action
    return default


def with_actions(findings: Iterable[Finding], overrides: Mapping[str, Action]) -> list[Finding]:
    """Findings with their configured action; those set to ``allow`` are dropped."""
    result = []
    for finding in findings:
        action = action_for(finding.rule_id, finding.action, overrides)
        if action == "allow":
            continue
        result.append(
            finding if action == finding.action else dataclasses.replace(finding, action=action)
        )
    return result


def apply_actions(
    completion: str, findings: Iterable[Finding], *, language: str = "python"
) -> tuple[str, bool]:
    """The completion after its findings' actions, and whether it is blocked.

    A blocked completion comes back empty, so it cannot be shown by mistake. Each line a
    ``redact`` finding touches becomes a comment such as ``# [REDACTED:security/eval]``
    at the line's indentation; line numbers stay as they were. Findings must be placed in
    ``completion`` (as :meth:`Checker.check_insertion` returns them).
    """
    findings = list(findings)
    if any(f.action == "block" for f in findings):
        return "", True
    source = Source(completion)
    redacted: dict[int, list[str]] = {}
    for finding in findings:
        if finding.action != "redact":
            continue
        first = source.position(finding.start)[0]
        last = source.position(max(finding.start, finding.end - 1))[0]
        for line in range(first, last + 1):
            rules = redacted.setdefault(line, [])
            if finding.rule_id not in rules:
                rules.append(finding.rule_id)
    if not redacted:
        return completion, False
    prefix = comment_prefix(language_for(language))
    lines = completion.split("\n")
    for line, rules in redacted.items():
        text = lines[line - 1]
        indent = text[: len(text) - len(text.lstrip())]
        lines[line - 1] = f"{indent}{prefix} [REDACTED:{','.join(rules)}]"
    return "\n".join(lines), False
