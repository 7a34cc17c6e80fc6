"""The writer thread behind traces, usage rows and the audit log."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from tests.helpers import wait_until
from tether import background
from tether.background import MAX_BATCH, BackgroundWriter, Database, GatheringQueue


def test_a_batch_holds_what_arrived_while_the_consumer_gathered() -> None:
    queue: GatheringQueue[int] = GatheringQueue(gather_s=30.0)
    queue.put(1)
    # 2 arrives while the consumer waits; being urgent, it also ends the wait.
    threading.Timer(0.05, queue.put, (2,), {"urgent": True}).start()
    assert queue.get_batch() == [1, 2]
    assert queue.get_batch(timeout=0.01) == []


def test_an_urgent_item_ends_the_gathering_at_once() -> None:
    queue: GatheringQueue[str] = GatheringQueue(gather_s=30.0)
    queue.put("row")
    queue.put("flush", urgent=True)
    started = time.monotonic()
    assert queue.get_batch() == ["row", "flush"]
    assert time.monotonic() - started < 5


def test_with_a_backlog_the_consumer_drains_without_gathering() -> None:
    queue: GatheringQueue[int] = GatheringQueue(gather_s=30.0)
    total = 2 * MAX_BATCH + 1
    for n in range(total - 1):
        queue.put(n)
    queue.put(total - 1, urgent=True)
    assert len(queue.get_batch()) == MAX_BATCH
    started = time.monotonic()
    rest = queue.get_batch() + queue.get_batch()  # a full batch: more is waiting
    assert len(rest) == MAX_BATCH + 1 and rest[-1] == total - 1
    assert time.monotonic() - started < 15


def test_writes_run_in_order_and_flush_waits_for_them() -> None:
    written: list[int] = []
    writer = BackgroundWriter("test-writer", "a number", gather_s=30.0)
    for n in range(100):
        writer.submit(written.append, n)
    started = time.monotonic()
    writer.flush()  # cuts the 30 s gathering short
    assert written == list(range(100))
    assert time.monotonic() - started < 5
    writer.close()


def test_a_failed_write_is_logged_and_the_next_still_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    written: list[str] = []

    def broken(_: str) -> None:
        raise OSError("disk full")

    writer = BackgroundWriter("test-writer", "a row")
    writer.submit(broken, "first")
    writer.submit(written.append, "second")
    with caplog.at_level(logging.ERROR, logger="tether.server"):
        writer.close()  # writes everything still queued
    assert written == ["second"]
    assert "could not write a row" in caplog.text


def test_after_close_a_write_is_refused_with_a_warning_and_flush_returns(
    caplog: pytest.LogCaptureFixture,
) -> None:
    written: list[int] = []
    writer = BackgroundWriter("test-writer", "a trace")
    writer.close()
    writer.close()  # idempotent
    with caplog.at_level(logging.WARNING, logger="tether.server"):
        writer.submit(written.append, 1)
    writer.flush()
    assert written == []
    assert "could not write a trace: the server is shutting down" in caplog.text


def test_while_a_database_is_locked_writes_wait_up_to_a_bound_then_are_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "rows.sqlite"
    db = sqlite3.connect(path, isolation_level=None, timeout=0.1, check_same_thread=False)
    db.execute("CREATE TABLE t (n INTEGER)")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process's write transaction
    writer = BackgroundWriter("test", "a row", database=Database("the rows", path, "rows", 5))
    caplog.set_level(logging.WARNING, "tether.server")
    writer.submit(db.execute, "INSERT INTO t VALUES (0)")
    wait_until(lambda: "is locked by another process" in caplog.text)
    for n in range(1, 21):
        writer.submit(db.execute, f"INSERT INTO t VALUES ({n})")
    assert "5 rows are waiting, the most kept in memory" in caplog.text
    holder.execute("COMMIT")
    writer.flush()
    assert [n for (n,) in db.execute("SELECT n FROM t")] == [0, 1, 2, 3, 4, 5]
    assert "15 rows were not written while it was held up" in caplog.text
    writer.submit(db.execute, "INSERT INTO t VALUES (21)")  # free again: written
    writer.close()
    assert db.execute("SELECT max(n) FROM t").fetchone() == (21,)
    db.close()
    holder.close()


def test_while_a_disk_is_full_writes_wait_and_are_written_once_it_has_room(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A usage row or a trace that found the disk full was lost: under-billed, unexplained."""
    monkeypatch.setattr(background, "FULL_DISK_RETRY_S", 0.01)
    room = threading.Event()
    written: list[int] = []

    def insert(n: int) -> None:
        if not room.is_set():
            raise sqlite3.OperationalError("database or disk is full")
        written.append(n)

    database = Database("the rows", tmp_path / "rows.sqlite", "rows", 100)
    writer = BackgroundWriter("test", "a row", database=database)
    caplog.set_level(logging.WARNING, "tether.server")
    for n in range(3):
        writer.submit(insert, n)
    wait_until(lambda: "cannot be written: its disk is full" in caplog.text)
    assert written == []
    room.set()
    writer.flush()
    assert written == [0, 1, 2]
    assert "is free again: rows written" in caplog.text
    writer.close()
