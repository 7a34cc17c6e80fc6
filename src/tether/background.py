"""Writing records off the request path, waking the writer once per batch.

An SQLite insert takes a tenth of a millisecond or more; on the event loop it would sit
between one answer and the next request. Waking a writer thread for every record costs
too: on a machine whose cores the model keeps busy, each wake-up preempts the event loop
or the model's threads. So a writer that is woken waits ``gather_s`` for the records
that follow, then writes them all; a flush or a close cuts the wait short. An idle writer
sleeps until the next record arrives: nothing polls.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from tether.closing import Closeable
from tether.databases import (
    damage_message,
    full_message,
    is_damage,
    is_full,
    is_locked,
    locked_message,
)

log = logging.getLogger("tether.server")

T = TypeVar("T")

GATHER_S = 0.02  # a trace or a usage row is readable at most this late, unless flushed
MAX_BATCH = 4096
# How long a read waits for the writes queued before it: while another process holds the
# database locked they wait for it, and a read must not hold its worker thread as long.
FLUSH_WAIT_S = 10.0
# How long a server stopping waits for a locked database, all its writers together: the
# rest of its orchestrator's grace period (shutdown_grace_s + 10 s in the Helm chart).
WRITES_CLOSE_WAIT_S = 5.0


class GatheringQueue(Generic[T]):
    """A queue whose one consumer takes items in batches."""

    def __init__(self, gather_s: float = GATHER_S) -> None:
        self.gather_s = gather_s
        self._queue: queue.SimpleQueue[T] = queue.SimpleQueue()
        self._urgent = threading.Event()
        self._behind = False  # the last batch was full: more is waiting

    def qsize(self) -> int:
        """About how many items wait (those of a batch being written not counted)."""
        return self._queue.qsize()

    def put(self, item: T, *, urgent: bool = False) -> None:
        """Queue ``item``; ``urgent`` ends the consumer's wait for more."""
        self._queue.put(item)
        if urgent:
            self._urgent.set()

    def get_batch(self, timeout: float | None = None) -> list[T]:
        """Wait up to ``timeout`` (None: for ever) for an item, then up to ``gather_s``
        for more; everything queued by then, oldest first. [] when nothing came."""
        try:
            first = self._queue.get(timeout=timeout)
        except queue.Empty:
            return []
        if not self._behind:  # with a backlog, waiting would only slow the writer down
            self._urgent.wait(self.gather_s)
        self._urgent.clear()  # before draining: an urgent item put after it still counts
        batch = [first]
        while len(batch) < MAX_BATCH:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        self._behind = len(batch) == MAX_BATCH
        return batch


_STOP = object()


# How often a write that found the disk full tries again: each try is a failed transaction.
FULL_DISK_RETRY_S = 1.0


@dataclass(frozen=True)
class Database:
    """The SQLite database a writer's writes go to, for when another process holds it
    locked or its disk is full: its writes then wait in memory, in order, and are written
    once it is free."""

    name: str  # for the log: "the usage ledger"
    path: Path
    items: str  # what its writes are, counted in the log: "usage rows"
    most_waiting: int  # held in memory while it is held up; newer ones are not written

    def held_up(self, exc: BaseException) -> str | None:
        """What holds its writes up, as the log says it, if ``exc`` passes by itself."""
        if is_locked(exc):
            return locked_message(self.name, self.path)
        if is_full(exc):
            return full_message(self.name, self.path)
        return None


class BackgroundWriter(Closeable):
    """One thread that runs writes in the order they were submitted. A failed write is
    logged and the writes after it still run; with a ``database``, a write that finds it
    locked waits for it (SQLite's busy timeout, 5 s, is no bound on a sqlite3 shell or a
    backup), until ``close`` has waited long enough: the ones left are counted in the log
    as lost."""

    def __init__(
        self,
        name: str,
        what: str,
        gather_s: float = GATHER_S,
        *,
        database: Database | None = None,
        close_wait_s: float = 30.0,
    ) -> None:
        self.what = what  # for the log: "a trace", "a usage row"
        self.database = database
        self.close_wait_s = close_wait_s
        self._queue: GatheringQueue[Any] = GatheringQueue(gather_s)
        self._closed = False
        self._give_up_at: float | None = None  # monotonic: set by close
        self._held_up: str | None = None  # what holds the writes up, said in the log
        self._lost = 0
        self._dropped = 0  # not kept while locked: past the most that may wait
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, write: Callable[..., object], *args: Any) -> None:
        if self._closed:
            log.warning("could not write %s: the server is shutting down", self.what)
            return
        database = self.database
        if database and self._held_up and self._queue.qsize() >= database.most_waiting:
            self._dropped += 1  # memory stays bounded however long the lock lasts
            if self._dropped == 1:
                log.error(
                    "%s: %d %s are waiting, the most kept in memory; newer ones are not written",
                    self._held_up,
                    database.most_waiting,
                    database.items,
                )
            return
        self._queue.put((write, args))

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything submitted so far is written, or ``timeout`` seconds;
        whether it was."""
        if self._closed:
            return True  # close wrote everything
        done = threading.Event()
        self._queue.put(done, urgent=True)
        return done.wait(timeout)

    def close(self, give_up_at: float | None = None) -> None:
        """Write what is queued, then stop the thread; idempotent. Writes waiting for a
        locked database give up at ``give_up_at`` (monotonic; default ``close_wait_s``
        from now), which writers closed together share."""
        if not self._closed:
            self._give_up_at = give_up_at or time.monotonic() + self.close_wait_s
            self._closed = True
            self._queue.put(_STOP, urgent=True)
            self._thread.join()
            if self._lost and self.database is not None:
                log.error(
                    "%d %s were not written: %s", self._lost, self.database.items, self._held_up
                )

    def _run(self) -> None:
        while True:
            for item in self._queue.get_batch():
                if item is _STOP:
                    return
                if isinstance(item, threading.Event):
                    item.set()
                    continue
                write, args = item
                try:
                    self._write(write, args)
                except Exception as exc:  # a full or broken disk must not stop the writes after
                    if is_damage(exc):
                        log.error("could not write %s: %s", self.what, damage_message(exc))
                    else:
                        log.exception("could not write %s", self.what)

    def _write(self, write: Callable[..., object], args: tuple[Any, ...]) -> None:
        while True:
            if self._lost:  # given up at shutdown: the rest would each wait in vain
                self._lost += 1
                return
            try:
                write(*args)
            except sqlite3.OperationalError as exc:
                held_up = self.database.held_up(exc) if self.database else None
                if held_up is None:
                    raise
                if self._held_up is None:
                    items = self.database.items if self.database else ""
                    log.warning("%s: its %s are kept and written once it is free", held_up, items)
                self._held_up = held_up
                give_up_at = self._give_up_at
                if give_up_at is not None and time.monotonic() >= give_up_at:
                    self._lost += 1
                    return
                # A lock can outlast the busy timeout: give it a moment. A full disk is
                # tried less often, since each try is a transaction that fails.
                time.sleep(FULL_DISK_RETRY_S if is_full(exc) else 0.05)
                continue
            if self._held_up is not None and self.database is not None:
                self._held_up = None
                name, path, items = self.database.name, self.database.path, self.database.items
                log.warning("%s %s is free again: %s written", name, path, items)
                if self._dropped:
                    log.error("%d %s were not written while it was held up", self._dropped, items)
                    self._dropped = 0
            return
