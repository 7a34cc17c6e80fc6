"""What the checks found in an answer printed on the command line: named on stderr, in
--json, and a blocked answer withheld with exit status 1, in process or from a server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.e2e.test_cli import tether
from tests.helpers import tether_server
from tests.stub_upstream import stub_upstream
from tether.cli.common import EXIT_NO
from tether.cli.main import cli

ANSWER = "```python\nvalue = eval(user_input)\n```\n"
GITHUB = "ghp_" + "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5"
REDACTED_NOTE = (
    "note: github-pat at line 1: messages[0]: GitHub personal access token (classic): "
    "redacted before the model saw it"
)
BLOCK = '{"security/eval": "block"}'


def test_findings_are_named_and_a_block_withholds_the_answer(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with stub_upstream(ANSWER) as stub:
        monkeypatch.setenv("TETHER_UPSTREAM_BASE_URLS", stub.base_url)
        annotated = CliRunner().invoke(cli, ["chat", "-m", "evaluate the input"])
        as_json = CliRunner().invoke(cli, ["chat", "-m", "evaluate the input", "--json"])
        monkeypatch.setenv("TETHER_COMPLIANCE_ACTIONS", BLOCK)
        blocked = CliRunner().invoke(cli, ["chat", "-m", "evaluate the input"])
        blocked_json = CliRunner().invoke(cli, ["chat", "-m", "evaluate the input", "--json"])
    assert annotated.exit_code == 0, annotated.output
    assert "eval(user_input)" in annotated.output
    assert "security/eval at line 2" in annotated.output and "(annotate)" in annotated.output
    # an error-severity rule that only annotates lets the answer through: not an error
    assert "warning: security/eval at line 2" in annotated.output
    assert "error:" not in annotated.output
    rules = [f["rule_id"] for f in json.loads(as_json.output)["findings"]]
    assert "security/eval" in rules
    assert blocked.exit_code == EXIT_NO, blocked.output
    assert "eval(user_input)" not in blocked.output  # held, never printed
    assert "error: the compliance checks blocked this answer (security/eval)" in blocked.output
    assert "error: security/eval at line 2" in blocked.output
    assert blocked_json.exit_code == EXIT_NO
    assert json.loads(blocked_json.output)["finish_reason"] == "content_filter"


def test_a_server_s_findings_and_block_reach_the_command(tmp_path: Path) -> None:
    with (
        stub_upstream(ANSWER) as stub,
        tether_server(
            tmp_path,
            "--engine",
            "openai",
            "--upstream",
            stub.base_url,
            TETHER_COMPLIANCE_ACTIONS=BLOCK,
        ) as server,
    ):
        blocked = tether(tmp_path, "chat", "-m", "evaluate the input", "--server", server.url)
        redacted = tether(tmp_path, "chat", "-m", f"is {GITHUB} valid?", "--server", server.url)
    assert redacted.returncode == EXIT_NO  # the same answer, blocked: the note came first
    assert REDACTED_NOTE in redacted.stderr and GITHUB not in redacted.stderr
    assert blocked.returncode == EXIT_NO, blocked.stdout + blocked.stderr
    assert "eval(user_input)" not in blocked.stdout
    assert "blocked this answer (security/eval)" in blocked.stderr


def test_what_the_policy_changed_in_the_prompt_is_said_on_stderr(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with stub_upstream("It looks like a GitHub token.") as stub:
        monkeypatch.setenv("TETHER_UPSTREAM_BASE_URLS", stub.base_url)
        redacted = CliRunner().invoke(cli, ["chat", "-m", f"is {GITHUB} valid?"])
        plain = CliRunner().invoke(cli, ["chat", "-m", "is this valid?"])
    assert redacted.exit_code == 0, redacted.output
    assert REDACTED_NOTE in redacted.stderr and GITHUB not in redacted.output
    assert plain.exit_code == 0 and "note:" not in plain.stderr
