"""The usage ledger: one SQLite row per API request, aggregated in SQL for reports.

A row says who asked (principal and token id, never the token), which model and endpoint,
the tokens (prompt, completion, cached), time to first token, duration, and the bytes
that came in and went out. Never a prompt or an answer. ``record`` sits on the request
path, so it only inserts; rows past the retention are deleted every ``prune_every``
records. Measured energy (``energy`` table) comes from the server's meter, if any.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import astuple, dataclass, fields
from pathlib import Path
from typing import Literal

from tether.closing import Closeable
from tether.settings import Settings

_SCHEMA = """
CREATE TABLE IF NOT EXISTS usage (
    id INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    request_id TEXT NOT NULL,
    principal TEXT,
    token_id TEXT,
    model TEXT,
    endpoint TEXT NOT NULL,
    status INTEGER NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    cached_tokens INTEGER NOT NULL,
    ttft_ms REAL,
    duration_ms REAL NOT NULL,
    bytes_in INTEGER NOT NULL,
    bytes_out INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS usage_ts ON usage (ts);
CREATE TABLE IF NOT EXISTS energy (
    ts REAL NOT NULL,
    seconds REAL NOT NULL,
    joules REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS energy_ts ON energy (ts);
"""

_DAY = 86_400.0

GroupBy = Literal["principal", "model", "day", "endpoint"]
GROUPINGS: dict[str, str] = {
    "principal": "COALESCE(principal, '(anonymous)')",
    "model": "COALESCE(model, '(none)')",
    "day": "date(ts, 'unixepoch')",
    "endpoint": "endpoint",
}


@dataclass(frozen=True)
class UsageRecord:
    ts: float
    request_id: str
    principal: str | None
    token_id: str | None
    model: str | None
    endpoint: str
    status: int
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    ttft_ms: float | None
    duration_ms: float
    bytes_in: int
    bytes_out: int


_COLUMNS = ", ".join(f.name for f in fields(UsageRecord))
_PLACEHOLDERS = ", ".join("?" for _ in fields(UsageRecord))


@dataclass(frozen=True)
class UsageTotals:
    """One group of a report: sums over its requests."""

    key: str
    requests: int
    errors: int
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    bytes_in: int
    bytes_out: int
    busy_seconds: float  # the requests' durations added up
    ttft_ms_avg: float | None


class UsageLedger(Closeable):
    def __init__(
        self,
        path: Path,
        *,
        retention_days: float = 400.0,
        prune_every: int = 1000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self.retention_days = retention_days
        self.prune_every = prune_every
        self._clock = clock
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        # One connection under a lock, as the trace store: an insert takes microseconds.
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # A row or two lost to a power cut is acceptable for a ledger of counts.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._since_prune = 0
        self.prune()

    @classmethod
    def from_settings(cls, settings: Settings) -> UsageLedger:
        return cls(ledger_path(settings), retention_days=settings.usage.retention_days)

    def record(self, row: UsageRecord) -> None:
        with self._lock:
            self._db.execute(
                f"INSERT INTO usage ({_COLUMNS}) VALUES ({_PLACEHOLDERS})", astuple(row)
            )
            self._since_prune += 1
            due = self._since_prune >= self.prune_every
        if due:
            self.prune()

    def record_energy(self, ts: float, seconds: float, joules: float) -> None:
        with self._lock:
            self._db.execute("INSERT INTO energy VALUES (?, ?, ?)", (ts, seconds, joules))

    def prune(self) -> int:
        cutoff = self._clock() - self.retention_days * _DAY
        with self._lock:
            self._since_prune = 0
            gone = self._db.execute("DELETE FROM usage WHERE ts < ?", (cutoff,)).rowcount
            self._db.execute("DELETE FROM energy WHERE ts < ?", (cutoff,))
        return int(gone)

    def close(self) -> None:
        with self._lock:
            self._db.close()


def ledger_path(settings: Settings) -> Path:
    return settings.data.home / "usage.sqlite"


class LedgerReader(Closeable):
    """Reads a ledger without writing to it: a missing file reads as an empty ledger."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        if path.exists():
            self._db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)

    def totals(self, since: float, until: float, by: GroupBy | None) -> list[UsageTotals]:
        """Sums per group (or one row, key "total", when ``by`` is None), in SQL."""
        if self._db is None:
            return []
        key = GROUPINGS[by] if by else "'total'"
        rows = self._db.execute(
            f"""SELECT {key} AS key, COUNT(*), SUM(status >= 400),
                       SUM(prompt_tokens), SUM(completion_tokens), SUM(cached_tokens),
                       SUM(bytes_in), SUM(bytes_out), SUM(duration_ms) / 1000.0, AVG(ttft_ms)
                FROM usage WHERE ts >= ? AND ts < ? GROUP BY key ORDER BY key""",
            (since, until),
        ).fetchall()
        return [UsageTotals(*row) for row in rows]

    def energy_joules(self, since: float, until: float) -> float | None:
        """Measured energy in the period, or None when no meter ever reported."""
        if self._db is None:
            return None
        count, joules = self._db.execute(
            "SELECT COUNT(*), SUM(joules) FROM energy WHERE ts >= ? AND ts < ?", (since, until)
        ).fetchone()
        return float(joules) if count else None

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
