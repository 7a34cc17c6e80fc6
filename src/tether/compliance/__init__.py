"""Compliance checks on code: syntax, security rules, licence markers, corpus duplication.

Inline, for each completion the pipeline returns::

    checker = Checker.from_settings(settings)
    findings = checker.check_insertion(prefix, completion, suffix, language)
    text, blocked = apply_actions(completion, findings, language=language)

``tether check`` runs the same rules over files, plus ruff, bandit and semgrep.
"""

from __future__ import annotations

from tether.compliance.actions import apply_actions
from tether.compliance.check import Checker
from tether.compliance.corpus import CorpusIndex, CorpusMatch
from tether.compliance.rules import RULES, CheckRule

__all__ = [
    "RULES",
    "CheckRule",
    "Checker",
    "CorpusIndex",
    "CorpusMatch",
    "apply_actions",
]
