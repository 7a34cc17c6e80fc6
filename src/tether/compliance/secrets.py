"""Hard-coded secrets in code, found by the policy scanner (``tether.policy``).

The compliance checks do not keep their own secret rules: they call the scanner that
governs prompts, through a plain function, so the rules are configured once
(``policy.rules``, ``policy.allow``) and tests can pass any function in its place.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

from tether.compliance.source import Source
from tether.findings import Action, Finding
from tether.settings import PolicySettings

SecretScan = Callable[[str], Sequence[Finding]]

# The scanner's personal-data rules guard prompts; in code they mostly flag author lines
# and test fixtures (example cards, phone numbers), so the code checks leave them out.
PERSONAL_DATA_RULES = frozenset({"email", "phone", "card-number", "iban"})

# A policy action for prompts, as it applies to code: a stable placeholder makes no sense
# in code, so pseudonymize means redact here.
_CODE_ACTIONS: dict[Action, Action] = {
    "block": "block",
    "redact": "redact",
    "pseudonymize": "redact",
    "annotate": "annotate",
}


def policy_secret_scan(policy: PolicySettings | None = None) -> SecretScan:
    """The policy scanner's ``scan`` with these settings' rules (the defaults when None),
    whether or not ``policy.enabled``: that governs prompts, and a team that turns prompt
    scanning off must not find its answers and its ``tether check`` hook unchecked."""
    from tether.policy import Scanner

    scan: SecretScan = Scanner.of_rules(policy or PolicySettings.model_validate({})).scan
    return scan


def as_code_rule(rule_id: str, action: Action) -> tuple[str, Action] | None:
    """A scanner rule's id and action as a code finding's (``secrets/<id>``), or None for
    a rule the code checks leave out: allowed, or personal data rather than a secret."""
    code_action = _CODE_ACTIONS.get(action)
    if code_action is None or rule_id in PERSONAL_DATA_RULES:
        return None
    return (rule_id if rule_id.startswith("secrets/") else f"secrets/{rule_id}"), code_action


def scan_secrets(source: Source, scan: SecretScan) -> list[Finding]:
    """The scanner's findings as compliance findings (rule ``secrets/<id>``) in ``source``."""
    findings = []
    for found in scan(source.text):
        code_rule = as_code_rule(found.rule_id, found.action)
        if code_rule is None:
            continue
        rule_id, action = code_rule
        line, column = source.position(found.start)
        findings.append(
            dataclasses.replace(
                found,
                rule_id=rule_id,
                stage="compliance",
                action=action,
                severity="error",
                line=line,
                column=column,
            )
        )
    return findings
