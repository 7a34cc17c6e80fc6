"""Stores another process holds locked: writes wait for them, and a server stopping waits
a bounded time, saying what it could not write."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
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


def test_a_server_stopping_waits_for_locked_stores_a_bounded_time_in_all(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(tmp_path)
    app = build_app(settings, TOKEN, lambda: ScriptedEngine("return 1\n"))
    holders = []
    with caplog.at_level(logging.WARNING, "tether.server"):
        with TestClient(app) as client:
            client.headers["Authorization"] = f"Bearer {TOKEN}"
            for name in ("traces.sqlite", "usage.sqlite"):
                holder = sqlite3.connect(settings.data.home / name, isolation_level=None)
                holder.execute("BEGIN IMMEDIATE")
                holders.append(holder)
            answer = client.post("/v1/completions", json={"prompt": "def f():\n    "})
            assert answer.status_code == 200
            stopping = time.monotonic()
        stopped = time.monotonic() - stopping
    for holder in holders:
        holder.close()
    # Each writer's try in progress waits SQLite's busy timeout (5 s), then both give up
    # at one shared deadline: not 35 s each, one after the other.
    assert stopped < 20, stopped
    assert "1 traces were not written" in caplog.text
    assert "1 usage rows were not written" in caplog.text
