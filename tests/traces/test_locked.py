"""A trace store another process holds locked: traces wait for it, none is lost."""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.conftest import TOKEN, make_settings
from tests.helpers import ScriptedEngine
from tether.server.app import build_app


def test_traces_wait_while_another_process_holds_the_store_locked(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(tmp_path)
    app = build_app(settings, TOKEN, lambda: ScriptedEngine("return 1\n"))
    with TestClient(app) as client, caplog.at_level(logging.WARNING, "tether.server"):
        client.headers["Authorization"] = f"Bearer {TOKEN}"
        path = settings.data.home / "traces.sqlite"
        other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        other.execute("BEGIN IMMEDIATE")  # as a sqlite3 shell in a write transaction
        answers = [client.post("/v1/completions", json={"prompt": "def f():\n    "}) for _ in "ab"]
        # Longer than SQLite's busy timeout (5 s): the traces wait, they are not dropped.
        threading.Timer(5.5, lambda: other.execute("COMMIT")).start()
        for answer in answers:
            assert answer.status_code == 200
            trace = client.get(f"/v1/traces/{answer.json()['id']}")
            assert trace.status_code == 200, trace.text
        other.close()
    assert "the trace store" in caplog.text and "is locked by another process" in caplog.text
    assert "free again: traces written" in caplog.text and "could not write" not in caplog.text
