"""An answer made on the command line is in the audit log, as a server's answer is."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tests.stub_upstream import stub_upstream
from tether.audit import segments
from tether.audit.log import AuditLog
from tether.cli.main import cli
from tether.settings import load_settings

GITHUB_TOKEN = "ghp_" + "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5"


def _records(home: Path) -> list[dict[str, Any]]:
    return [
        json.loads(line.data)
        for line in segments.iter_records(home / "audit")
        if isinstance(line, segments.Line)
    ]


def test_an_answer_and_a_refusal_are_recorded_and_the_log_verifies(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with stub_upstream("return a + b") as stub:
        monkeypatch.setenv("TETHER_UPSTREAM_BASE_URLS", stub.base_url)
        answered = CliRunner().invoke(cli, ["chat", "-m", "add two numbers", "--json"])
        assert answered.exit_code == 0, answered.output
        answer_id = json.loads(answered.output)["id"]
        monkeypatch.setenv("TETHER_POLICY_ACTIONS", '{"github-pat": "block"}')
        refused = CliRunner().invoke(cli, ["chat", "-m", f"use {GITHUB_TOKEN}"])
    assert refused.exit_code != 0 and "github-pat" in refused.output, refused.output
    records = _records(home)
    (generation,) = [r for r in records if r["request_id"] == answer_id]
    assert generation["endpoint"] == "cli" and generation["completion"]["sha256"]
    explained = CliRunner().invoke(cli, ["explain", answer_id])
    assert "prompt and answer match what the record committed to" in explained.output
    verified = CliRunner().invoke(cli, ["audit", "verify"])
    assert verified.exit_code == 0 and ": ok" in verified.output, verified.output
    (blocked,) = [r for r in records if r["params"] == {"status": 400}]  # a refusal, too
    assert blocked["endpoint"] == "cli" and blocked["policy"][0]["rule_id"] == "github-pat"
    assert GITHUB_TOKEN not in json.dumps(records)


def test_an_answer_while_another_command_keeps_the_log_is_signed_in_by_it(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It was answered with a warning and never recorded: an evaluation that kept the log
    for an hour left every other command's answers out of it."""
    held = AuditLog.open(load_settings())
    try:
        with stub_upstream("return a + b") as stub:
            monkeypatch.setenv("TETHER_UPSTREAM_BASE_URLS", stub.base_url)
            answered = CliRunner().invoke(cli, ["chat", "-m", "add two numbers", "--json"])
        assert answered.exit_code == 0, answered.output
        answer_id = json.loads(answered.output)["id"]
        assert [r for r in _records(home) if r["request_id"] == answer_id] == []
        held.flush()  # a checkpoint finds it, the next signs it in
        held.flush()
        (generation,) = [r for r in _records(home) if r["request_id"] == answer_id]
    finally:
        held.close()
    assert generation["endpoint"] == "cli" and generation["completion"]["sha256"]
    assert list((home / "audit" / "incoming").iterdir()) == []
    verified = CliRunner().invoke(cli, ["audit", "verify"])
    assert verified.exit_code == 0 and ": ok" in verified.output, verified.output


def test_a_damaged_log_is_named_and_not_signed_over(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not "another command keeps it": the command says what is wrong and answers nothing
    unrecorded, and the damage stays for `audit verify` to find."""
    with stub_upstream("return a + b") as stub:
        monkeypatch.setenv("TETHER_UPSTREAM_BASE_URLS", stub.base_url)
        assert CliRunner().invoke(cli, ["chat", "-m", "add two numbers"]).exit_code == 0
        (home / "audit" / segments.CHECKPOINTS).unlink()
        refused = CliRunner().invoke(cli, ["chat", "-m", "add two numbers"])
    assert refused.exit_code != 0 and "return a + b" not in refused.output
    assert "checkpoints were removed" in refused.output
    assert "keeps the audit log" not in refused.output
    verified = CliRunner().invoke(cli, ["audit", "verify"])
    assert verified.exit_code != 0 and "no signed checkpoint" in verified.output
