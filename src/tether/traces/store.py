"""Traces in SQLite: one row per request, the body as JSON, pruned by age and size.

``record`` sits on the request path, so it only inserts; pruning runs every
``prune_every`` records or ``prune_interval`` seconds, whichever comes first.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

from tether.closing import Closeable
from tether.settings import Settings
from tether.traces.model import Trace

_SCHEMA = """
CREATE TABLE IF NOT EXISTS traces (
    id TEXT PRIMARY KEY,
    created REAL NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS traces_created ON traces (created);
"""

_DAY = 86_400.0


class TraceStore(Closeable):
    def __init__(
        self,
        path: Path,
        *,
        max_age_days: float = 14.0,
        max_mb: float = 256.0,
        enabled: bool = True,
        prune_every: int = 200,
        prune_interval: float = 300.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self.max_age_days = max_age_days
        self.max_bytes = int(max_mb * 1024 * 1024)
        self.enabled = enabled  # False: record() is a no-op; reads still work
        self.prune_every = prune_every
        self.prune_interval = prune_interval
        self._clock = clock
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        # One connection shared under a lock: inserts take microseconds, so a
        # connection per thread would buy little and leave handles open per thread.
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        # auto_vacuum must be set before the first table exists; it lets pruning
        # shrink the file instead of only freeing pages inside it.
        self._db.execute("PRAGMA auto_vacuum=INCREMENTAL")
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # a lost trace on power loss is fine
        self._db.executescript(_SCHEMA)
        self._since_prune = 0
        self._last_prune = clock()

    @classmethod
    def from_settings(cls, settings: Settings) -> TraceStore:
        traces = settings.traces
        return cls(
            settings.data.home / "traces.sqlite",
            max_age_days=traces.max_age_days,
            max_mb=traces.max_mb,
            enabled=traces.enabled,
        )

    def record(self, trace: Trace) -> None:
        if not self.enabled:
            return
        body = trace.to_json()
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO traces (id, created, body) VALUES (?, ?, ?)",
                (trace.id, trace.created, body),
            )
            self._since_prune += 1
            now = self._clock()
            if self._since_prune >= self.prune_every or now - self._last_prune >= (
                self.prune_interval
            ):
                self._prune_locked(now)

    def get(self, trace_id: str) -> Trace | None:
        with self._lock:
            row = self._db.execute("SELECT body FROM traces WHERE id = ?", (trace_id,)).fetchone()
        return None if row is None else Trace.from_json(row[0])

    def recent(self, n: int = 20) -> list[Trace]:
        with self._lock:
            rows = self._db.execute(
                "SELECT body FROM traces ORDER BY created DESC LIMIT ?", (n,)
            ).fetchall()
        return [Trace.from_json(body) for (body,) in rows]

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM traces").fetchone()[0])

    def size_bytes(self) -> int:
        """Bytes the live pages take; freed pages not yet returned to the OS excluded."""
        with self._lock:
            return self._used_bytes()

    def prune(self) -> int:
        """Apply retention now; returns how many traces were deleted."""
        with self._lock:
            return self._prune_locked(self._clock())

    def _used_bytes(self) -> int:
        pages = self._db.execute("PRAGMA page_count").fetchone()[0]
        free = self._db.execute("PRAGMA freelist_count").fetchone()[0]
        size = self._db.execute("PRAGMA page_size").fetchone()[0]
        return int((pages - free) * size)

    def _prune_locked(self, now: float) -> int:
        self._since_prune = 0
        self._last_prune = now
        cutoff = now - self.max_age_days * _DAY
        deleted = self._db.execute("DELETE FROM traces WHERE created < ?", (cutoff,)).rowcount
        # Past the size cap, drop the oldest tenth at a time until under it.
        while self._used_bytes() > self.max_bytes:
            rows = self._db.execute("SELECT COUNT(*) FROM traces").fetchone()[0]
            if rows == 0:
                break
            deleted += self._db.execute(
                "DELETE FROM traces WHERE id IN "
                "(SELECT id FROM traces ORDER BY created ASC LIMIT ?)",
                (max(1, rows // 10),),
            ).rowcount
        if deleted:
            # executescript steps it to the end; execute() would free one page only.
            self._db.executescript("PRAGMA incremental_vacuum;")
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return int(deleted)

    def close(self) -> None:
        with self._lock:
            self._db.close()
