"""Prompt governance: find secrets and personal data in a text, and act on them.

    scanner = Scanner.from_settings(settings.policy)
    pseudonyms = Pseudonyms()                      # one per request
    pseudonyms.reserve(text) for each text         # its own <EMAIL_1> stays its own
    for each text of the request:
        governed = govern(text, scanner.scan(text), pseudonyms)
        governed.blocked -> refuse; else send governed.text
    answer = pseudonyms.restore(answer)            # pseudonymized values come back

Rules are declarative (``ScanRule``; the built-ins are in ``rules.toml``), matched by RE2 in
linear time; docs/policy.md is generated from them by ``tether.policy.reference``.
"""

from __future__ import annotations

from tether.policy.govern import Governed, Pseudonyms, govern
from tether.policy.rules import RULE_ACTIONS, RuleAction, ScanRule, builtin_rules, rule_from_mapping
from tether.policy.scanner import Scanner

__all__ = [
    "RULE_ACTIONS",
    "Governed",
    "Pseudonyms",
    "RuleAction",
    "ScanRule",
    "Scanner",
    "builtin_rules",
    "govern",
    "rule_from_mapping",
]
