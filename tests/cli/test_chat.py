"""`tether chat` fed on standard input: one turn a line, whatever ends the lines, and
--json one object a line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.e2e.test_cli import tether
from tests.stub_upstream import stub_upstream
from tether.cli.main import cli


def test_a_conversation_from_a_windows_file_sends_its_turns_without_carriage_returns(
    tmp_path: Path,
) -> None:
    # A process of its own: its standard input splits lines at "\n" only, as a pipe's does.
    with stub_upstream("Sure.") as stub:
        result = tether(
            tmp_path,
            "chat",
            stdin="Hello\r\nAnd again\r\n\r\n",
            TETHER_ENGINE_KIND="openai",
            TETHER_UPSTREAM_BASE_URLS=stub.base_url,
        )
    assert result.returncode == 0, result.stderr
    last = stub.requests[-1]["messages"]
    asked = [m["content"] for m in last if m["role"] == "user"]
    assert asked == ["Hello", "And again"]


def test_a_conversation_with_json_prints_one_object_a_line(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with stub_upstream("Sure.") as stub:
        monkeypatch.setenv("TETHER_UPSTREAM_BASE_URLS", stub.base_url)
        result = CliRunner().invoke(cli, ["chat", "--json"], input="Hello\nAnd again\n")
    assert result.exit_code == 0, result.output
    answers = [json.loads(line) for line in result.output.splitlines()]
    assert [a["text"] for a in answers] == ["Sure.", "Sure."]
    assert all(a["id"].startswith("chatcmpl-") for a in answers)
