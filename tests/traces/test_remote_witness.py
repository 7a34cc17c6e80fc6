"""Over --server, a trace comes with its server's audit log's word on it: a trace changed
after it was written is flagged by `explain` and refused by `repro record`."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from tests.conftest import TOKEN, make_settings
from tests.helpers import ScriptedEngine
from tests.traces.test_route import _AsgiBackend
from tether.audit.witness import Witness
from tether.cli import backend as cli_backend
from tether.cli.main import cli
from tether.server.app import build_app

ANSWER = "You're right."
SERVER = ["--server", "http://tether.test", "--token", TOKEN]


@pytest.fixture
def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    engine = ScriptedEngine(ANSWER)
    with TestClient(build_app(make_settings(tmp_path), TOKEN, lambda: engine)) as client:
        client.headers["Authorization"] = f"Bearer {TOKEN}"
        monkeypatch.setattr(_AsgiBackend, "app", client.app, raising=False)
        monkeypatch.setattr(cli_backend, "HttpBackend", _AsgiBackend)
        monkeypatch.setenv("TETHER_HOME", str(tmp_path / "client-home"))
        monkeypatch.chdir(tmp_path)
        yield client


def _answered(client: TestClient) -> str:
    body = {"messages": [{"role": "user", "content": "am I right?"}]}
    trace_id = str(client.post("/v1/chat/completions", json=body).json()["id"])
    client.app.state.trace_recorder.flush()  # type: ignore[attr-defined]
    return trace_id


def test_a_kept_trace_is_pinned_and_says_so(client: TestClient, tmp_path: Path) -> None:
    trace_id = _answered(client)
    verdict = Witness.from_dict(client.get(f"/v1/traces/{trace_id}").json()["audit"])
    assert verdict is not None and verdict.ok and verdict.answer is True
    explained = CliRunner().invoke(cli, ["explain", trace_id, *SERVER])
    assert explained.exit_code == 0, explained.output
    assert "Audit record" in explained.output and "match what the record committed to" in (
        explained.output
    )
    pinned = CliRunner().invoke(cli, ["repro", "record", trace_id, "-o", "m.json", *SERVER])
    assert pinned.exit_code == 0, pinned.output
    assert ANSWER in (tmp_path / "m.json").read_text()


def test_a_changed_trace_is_flagged_and_not_pinned(client: TestClient, tmp_path: Path) -> None:
    trace_id = _answered(client)
    with sqlite3.connect(tmp_path / "data" / "traces.sqlite") as raw:
        raw.execute("UPDATE traces SET body = replace(body, 'right.', 'wrong.')")
    explained = CliRunner().invoke(cli, ["explain", trace_id, *SERVER])
    assert explained.exit_code == 1, explained.output
    assert "answer does NOT match what the record committed to" in explained.output
    pinned = CliRunner().invoke(cli, ["repro", "record", trace_id, "-o", "m.json", *SERVER])
    assert pinned.exit_code == 1
    assert "no longer matches its audit record" in pinned.output
    assert f"tether explain {trace_id} --server http://tether.test" in pinned.output
    assert not (tmp_path / "m.json").exists()


@pytest.mark.parametrize(
    "sent", [None, "ok", [], {"seq": "1"}, {"seq": True}, {"seq": 1, "answer": "no"}]
)
def test_what_is_not_a_verdict_is_read_as_none(sent: object) -> None:
    assert Witness.from_dict(sent) is None


def test_a_request_that_generated_nothing_is_named_so_over_server(client: TestClient) -> None:
    """`explain --server` with the X-Request-Id of a request that generated nothing said
    the trace may be older than the days traces are kept, as the server did."""
    request_id = client.get("/v1/models").headers["x-request-id"]
    client.app.state.audit.flush()  # type: ignore[attr-defined]
    explained = CliRunner().invoke(cli, ["explain", request_id, *SERVER])
    assert explained.exit_code == 2, explained.output
    assert f"{request_id!r} generated nothing, so it has no trace" in explained.output
    assert "kept 14 days" not in explained.output and "--recent" not in explained.output
    missing = CliRunner().invoke(cli, ["explain", "cmpl-never-made", *SERVER])
    assert "kept 14 days" in missing.output and "--recent --server" in missing.output
