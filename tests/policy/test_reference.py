"""docs/policy.md is generated from the code, and its example configuration works."""

from __future__ import annotations

import re
from pathlib import Path

from tether.policy import Scanner, builtin_rules
from tether.policy.reference import policy_reference
from tether.policy.validators import VALIDATORS
from tether.settings import load_settings

DOCS = Path(__file__).resolve().parents[2] / "docs" / "policy.md"


def test_policy_docs_are_generated_from_code() -> None:
    assert DOCS.read_text() == policy_reference(), (
        "run: python -m tether.policy.reference > docs/policy.md"
    )


def test_reference_lists_every_builtin_rule_with_its_action() -> None:
    reference = policy_reference()
    for rule in builtin_rules():
        assert f"| `{rule.id}` | {rule.action} |" in reference


def test_the_rule_format_names_every_validator_a_rule_may_use() -> None:
    # A custom rule took `url_password`, which the error for a wrong one listed, but the
    # rule format's table did not.
    (row,) = [line for line in policy_reference().splitlines() if line.startswith("| `validator`")]
    for name in VALIDATORS:
        assert f"`{name}`" in row, name


def test_example_configuration_in_the_docs_loads(tmp_path: Path) -> None:
    example = re.search(r"```toml\n(.*?)```", policy_reference(), re.DOTALL)
    assert example is not None
    (tmp_path / "tether.toml").write_text(example.group(1))
    settings = load_settings(cwd=tmp_path, environ={"TETHER_HOME": str(tmp_path / "data")})
    scanner = Scanner.from_settings(settings.policy)
    (secret,) = scanner.scan('password = "Zq8wX2rT9vLmK4"')
    assert (secret.rule_id, secret.action) == ("generic-secret", "block")
    assert "phone" not in scanner.patterns  # allowed: the rule no longer runs
    findings = scanner.scan("Owner EMP-004211, ticket tkt_" + "a1" * 12)
    assert [(f.rule_id, f.action) for f in findings] == [
        ("employee-id", "pseudonymize"),
        ("ticket-token", "block"),
    ]
