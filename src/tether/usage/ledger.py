"""The usage ledger: one SQLite row per API request, and rollups kept beside it.

A row says who asked (principal and token id, never the token), which model and endpoint,
the tokens (prompt, completion, cached), time to first token, duration, the bytes that
came in and went out, and for completions their id and language. Never a prompt or an
answer. Each insert also adds, for its hour and its day, to the sums (``usage_hourly``,
``usage_daily``), the latency histograms (``latency_*``) and the completion funnel
(``funnel_*``), in one transaction, so a report over a year reads rollup rows by the day
instead of every request. Editors' events on completions (view, select, dismiss) count
once per completion and kind. Rows past the retention are deleted every ``prune_every``
records or 5 minutes, whichever comes first, from the first one written; never in the
host's first 5 minutes after it boots (see ``tether.retention``); rollups are kept as
long. Measured energy (``energy``) comes from the server's meter, if any.
"""

from __future__ import annotations

import bisect
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import astuple, dataclass, fields
from pathlib import Path

from tether import retention
from tether.background import FLUSH_WAIT_S, BackgroundWriter, Database
from tether.closing import Closeable
from tether.databases import (
    is_locked,
    locked_message,
    open_database,
    private_folder,
    roll_back,
    say_upgraded,
    schema_version,
)
from tether.settings import Settings

log = logging.getLogger("tether.server")

SCHEMA_VERSION = 3  # 3: latency peaks, so a percentile never passes the slowest request
HOUR = 3600
_DAY = 86_400.0
# Upper edges (ms) of the latency histogram's buckets; a last one takes the rest.
LATENCY_EDGES_MS = (10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 30_000, 60_000, 120_000)
FUNNEL_EVENTS = ("view", "select", "dismiss")

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
    bytes_out INTEGER NOT NULL,
    completion_id TEXT,
    language TEXT
);
CREATE INDEX IF NOT EXISTS usage_ts ON usage (ts);
CREATE INDEX IF NOT EXISTS usage_completion ON usage (completion_id)
    WHERE completion_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS completion_events (
    completion_id TEXT NOT NULL,
    type TEXT NOT NULL,
    ts REAL NOT NULL,
    PRIMARY KEY (completion_id, type)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS energy (
    ts REAL NOT NULL,
    seconds REAL NOT NULL,
    joules REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS energy_ts ON energy (ts);
"""
# The rollups, once per span: sums, latency histograms and the completion funnel.
SPANS = {"hourly": 3600, "daily": 86_400}
_ROLLUPS = """
CREATE TABLE IF NOT EXISTS usage_{span} (
    start INTEGER NOT NULL,
    principal TEXT NOT NULL,
    model TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    requests INTEGER NOT NULL,
    errors INTEGER NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    cached_tokens INTEGER NOT NULL,
    bytes_in INTEGER NOT NULL,
    bytes_out INTEGER NOT NULL,
    busy_ms REAL NOT NULL,
    ttft_ms_sum REAL NOT NULL,
    ttft_count INTEGER NOT NULL,
    PRIMARY KEY (start, principal, model, endpoint)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS latency_{span} (
    start INTEGER NOT NULL,
    kind TEXT NOT NULL,
    bucket INTEGER NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (start, kind, bucket)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS latency_peak_{span} (
    start INTEGER NOT NULL,
    kind TEXT NOT NULL,
    max_ms REAL NOT NULL,
    PRIMARY KEY (start, kind)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS funnel_{span} (
    start INTEGER NOT NULL,
    language TEXT NOT NULL,
    principal TEXT NOT NULL,
    model TEXT NOT NULL,
    served INTEGER NOT NULL DEFAULT 0,
    view INTEGER NOT NULL DEFAULT 0,
    "select" INTEGER NOT NULL DEFAULT 0,
    dismiss INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (start, language, principal, model)
) WITHOUT ROWID;
"""
ROLLUP_KINDS = ("usage", "latency", "latency_peak", "funnel")
ROLLUP_TABLES = [f"{kind}_{span}" for span in SPANS for kind in ROLLUP_KINDS]


def _schema() -> str:
    return _SCHEMA + "".join(_ROLLUPS.format(span=span) for span in SPANS)


_SUMS = """
INSERT INTO usage_{span} VALUES (?, ?, ?, ?, 1, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT DO UPDATE SET requests = requests + 1, errors = errors + excluded.errors,
    prompt_tokens = prompt_tokens + excluded.prompt_tokens,
    completion_tokens = completion_tokens + excluded.completion_tokens,
    cached_tokens = cached_tokens + excluded.cached_tokens,
    bytes_in = bytes_in + excluded.bytes_in, bytes_out = bytes_out + excluded.bytes_out,
    busy_ms = busy_ms + excluded.busy_ms, ttft_ms_sum = ttft_ms_sum + excluded.ttft_ms_sum,
    ttft_count = ttft_count + excluded.ttft_count
"""
_LATENCY = """
INSERT INTO latency_{span} VALUES (?, ?, ?, 1)
ON CONFLICT DO UPDATE SET count = count + 1
"""
_PEAK = """
INSERT INTO latency_peak_{span} VALUES (?, ?, ?)
ON CONFLICT DO UPDATE SET max_ms = MAX(max_ms, excluded.max_ms)
"""
_SERVED = """
INSERT INTO funnel_{span} (start, language, principal, model, served) VALUES (?, ?, ?, ?, 1)
ON CONFLICT DO UPDATE SET served = served + 1
"""


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
    completion_id: str | None = None  # a code completion's id (FIM or plain), for the funnel
    language: str | None = None


_COLUMNS = ", ".join(f.name for f in fields(UsageRecord))
_INSERT = f"INSERT INTO usage ({_COLUMNS}) VALUES ({', '.join('?' for _ in fields(UsageRecord))})"


def latency_bucket(ms: float) -> int:
    return bisect.bisect_left(LATENCY_EDGES_MS, ms)


def start_of(ts: float, span: str) -> int:
    seconds = SPANS[span]
    return int(ts // seconds) * seconds


class UsageLedger(Closeable):
    def __init__(
        self,
        path: Path,
        *,
        retention_days: float = 400.0,
        prune_every: int = 1000,
        prune_interval: float = 300.0,
        clock: Callable[[], float] = time.time,
        since_boot: Callable[[], float] | None = None,
    ) -> None:
        self.path = path
        self.retention_days = retention_days
        self._prunes = retention.PruneSchedule(prune_every, prune_interval, since_boot)
        self._clock = clock
        self._lock = threading.Lock()
        private_folder(path.parent)
        # One connection under a lock, as the trace store: a request's writes take
        # tens of microseconds.
        self._db = open_database(path, "the usage ledger", lambda db: _create(db, path))

    @classmethod
    def from_settings(cls, settings: Settings) -> UsageLedger:
        return cls(ledger_path(settings), retention_days=settings.usage.retention_days)

    def record(self, row: UsageRecord) -> None:
        who, model = row.principal or "", row.model or ""
        ttft = row.ttft_ms if row.ttft_ms is not None else 0.0
        sums = (who, model, row.endpoint, int(row.status >= 400), row.prompt_tokens,
                row.completion_tokens, row.cached_tokens, row.bytes_in, row.bytes_out,
                row.duration_ms, ttft, int(row.ttft_ms is not None))  # fmt: skip
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.execute(_INSERT, astuple(row))
                for span in SPANS:
                    start = start_of(row.ts, span)
                    self._db.execute(_SUMS.format(span=span), (start, *sums))
                    latency, peak = _LATENCY.format(span=span), _PEAK.format(span=span)
                    self._db.execute(latency, (start, "duration", latency_bucket(row.duration_ms)))
                    self._db.execute(peak, (start, "duration", row.duration_ms))
                    if row.ttft_ms is not None:
                        self._db.execute(latency, (start, "ttft", latency_bucket(row.ttft_ms)))
                        self._db.execute(peak, (start, "ttft", row.ttft_ms))
                    if row.completion_id is not None and row.status < 400:
                        served = (start, row.language or "", who, model)
                        self._db.execute(_SERVED.format(span=span), served)
                self._db.execute("COMMIT")
            except BaseException:
                roll_back(self._db)
                raise
            due = self._prunes.wrote()
        if due:
            self._prune_unless_locked()

    def _prune_unless_locked(self) -> None:
        """Prune, or leave it to the next round while another process holds the ledger:
        a row already written must not be written again for a prune that failed."""
        try:
            self.prune()
        except sqlite3.OperationalError as exc:
            if not is_locked(exc):
                raise
            locked = locked_message("the usage ledger", self.path)
            log.warning("%s; old rows are pruned later", locked)

    def record_event(
        self, completion_id: str, kind: str, principal: str, ts: float | None = None
    ) -> bool:
        """An editor's event on a completion served here to ``principal``; False when it is
        not one of ours, was served to someone else, is not a funnel event, or was already
        counted."""
        if kind not in FUNNEL_EVENTS:
            return False
        with self._lock:
            served = self._db.execute(
                "SELECT ts, language, principal, model FROM usage WHERE completion_id = ? "
                "AND principal = ? AND status < 400 LIMIT 1",
                (completion_id, principal),
            ).fetchone()
            if served is None:
                return False
            self._db.execute("BEGIN")
            try:
                added = self._db.execute(
                    "INSERT OR IGNORE INTO completion_events VALUES (?, ?, ?)",
                    (completion_id, kind, ts or self._clock()),
                ).rowcount
                for span in SPANS if added else ():
                    self._db.execute(
                        f'UPDATE funnel_{span} SET "{kind}" = "{kind}" + 1 WHERE start = ? '
                        "AND language = ? AND principal = ? AND model = ?",
                        (start_of(served[0], span), served[1] or "", served[2] or "",
                         served[3] or ""),
                    )  # fmt: skip
                self._db.execute("COMMIT")
            except BaseException:
                roll_back(self._db)
                raise
        return bool(added)

    def record_energy(self, ts: float, seconds: float, joules: float) -> None:
        with self._lock:
            self._db.execute("INSERT INTO energy VALUES (?, ?, ?)", (ts, seconds, joules))

    def prune(self) -> int:
        cutoff = self._clock() - self.retention_days * _DAY
        with self._lock:
            self._prunes.pruned()
            gone = self._db.execute("DELETE FROM usage WHERE ts < ?", (cutoff,)).rowcount
            for table in ROLLUP_TABLES:
                span = table.rpartition("_")[2]
                self._db.execute(f"DELETE FROM {table} WHERE start < ?", (start_of(cutoff, span),))
            self._db.execute("DELETE FROM completion_events WHERE ts < ?", (cutoff,))
            self._db.execute("DELETE FROM energy WHERE ts < ?", (cutoff,))
        return int(gone)

    def close(self) -> None:
        with self._lock:
            self._db.close()


class LedgerWriter(Closeable):
    """The server's ledger, written on a thread of its own.

    A row's transaction, with its rollups, takes 0.1 to 0.4 ms that would otherwise hold
    the event loop after every request. Rows still queued when the process is killed
    are lost; ``close`` writes them all. While another process holds the ledger locked,
    rows wait in memory, in order, and are written once it is free (at shutdown, until
    ``give_up_at`` or for ``close_wait_s``: then the ones left are counted in the log as
    lost).
    """

    def __init__(self, ledger: UsageLedger, *, close_wait_s: float = 30.0) -> None:
        self.ledger = ledger
        self._writer = BackgroundWriter(
            "tether-usage",
            "a usage row",
            # About 800 bytes a row held: 80 MB at most, 17 minutes at 100 requests a second.
            database=Database("the usage ledger", ledger.path, "usage rows", 100_000),
            close_wait_s=close_wait_s,
        )

    def record(self, row: UsageRecord) -> None:
        self._writer.submit(self.ledger.record, row)

    def flush(self) -> None:
        """Wait until every row recorded so far can be read back, or ``FLUSH_WAIT_S``: while
        another process holds the ledger locked, the rows wait for it, and a report or an
        event must not wait with them (each would hold a worker thread for as long)."""
        self._writer.flush(FLUSH_WAIT_S)

    def record_event(self, completion_id: str, kind: str, principal: str) -> bool:
        self.flush()  # the completion's own row may still be queued
        return self.ledger.record_event(completion_id, kind, principal)

    def close(self, give_up_at: float | None = None) -> None:
        self._writer.close(give_up_at)
        self.ledger.close()


def _create(db: sqlite3.Connection, path: Path) -> None:
    db.execute("PRAGMA journal_mode=WAL")
    # A row or two lost to a power cut is acceptable for a ledger of counts.
    db.execute("PRAGMA synchronous=NORMAL")
    found = schema_version(db)
    changes = _migrate(db)
    db.executescript(_schema())
    # A newer tether's ledger keeps its number: stamped down, the next upgrade would run
    # again migrations that ran already.
    db.execute(f"PRAGMA user_version = {max(SCHEMA_VERSION, schema_version(db))}")
    if changes:
        say_upgraded("the usage ledger", path, found, SCHEMA_VERSION, changes, older_read_it=True)


def _migrate(db: sqlite3.Connection) -> str | None:
    """A ledger from before the rollups: add the columns, then build the rollups; one
    from before the latency peaks (2): add them, from the request rows. What it did, in
    words, or None when there was nothing to do."""
    version = schema_version(db)
    columns = {row[1] for row in db.execute("PRAGMA table_info(usage)")}
    if version >= SCHEMA_VERSION or not columns:
        return None
    for column in ("completion_id", "language"):
        if column not in columns:
            db.execute(f"ALTER TABLE usage ADD COLUMN {column} TEXT")
    db.executescript(_schema())
    if version == 2:
        for span in SPANS:
            _rebuild_peaks(db, span)
        return "the slowest request of each hour and day, from the request rows"
    rebuild_rollups(db)
    return (
        "hourly and daily totals, latency histograms and the completion funnel, from the "
        "request rows"
    )


def _bucket_sql(column: str) -> str:
    """``latency_bucket`` in SQL."""
    cases = " ".join(f"WHEN {column} <= {edge} THEN {i}" for i, edge in enumerate(LATENCY_EDGES_MS))
    return f"CASE {cases} ELSE {len(LATENCY_EDGES_MS)} END"


def rebuild_rollups(db: sqlite3.Connection) -> None:
    """The rollups again from the request rows, in SQL (for a ledger written before them,
    or rows loaded in bulk)."""
    seen = ", ".join(
        f"EXISTS (SELECT 1 FROM completion_events e WHERE e.completion_id = u.completion_id "
        f"AND e.type = '{kind}') AS seen_{kind}"
        for kind in FUNNEL_EVENTS
    )
    for span, seconds in SPANS.items():
        start = f"CAST(ts AS INTEGER) / {seconds} * {seconds}"  # as start_of, exactly
        for table in ROLLUP_KINDS:
            db.execute(f"DELETE FROM {table}_{span}")
        db.execute(
            f"INSERT INTO usage_{span} SELECT {start}, COALESCE(principal, ''), "
            "COALESCE(model, ''), endpoint, COUNT(*), SUM(status >= 400), SUM(prompt_tokens), "
            "SUM(completion_tokens), SUM(cached_tokens), SUM(bytes_in), SUM(bytes_out), "
            "SUM(duration_ms), COALESCE(SUM(ttft_ms), 0), COUNT(ttft_ms) FROM usage "
            "GROUP BY 1, 2, 3, 4"
        )
        for kind, column in (("duration", "duration_ms"), ("ttft", "ttft_ms")):
            db.execute(
                f"INSERT INTO latency_{span} SELECT {start}, '{kind}', {_bucket_sql(column)}, "
                f"COUNT(*) FROM usage WHERE {column} IS NOT NULL GROUP BY 1, 3"
            )
        _rebuild_peaks(db, span)
        db.execute(
            f"INSERT INTO funnel_{span} (start, language, principal, model, served, view, "
            '"select", dismiss) SELECT s, l, p, m, COUNT(*), SUM(seen_view), SUM(seen_select), '
            f"SUM(seen_dismiss) FROM (SELECT {start} AS s, COALESCE(language, '') AS l, "
            f"COALESCE(principal, '') AS p, COALESCE(model, '') AS m, {seen} FROM usage u "
            "WHERE completion_id IS NOT NULL AND status < 400) GROUP BY 1, 2, 3, 4"
        )


def _rebuild_peaks(db: sqlite3.Connection, span: str) -> None:
    start = f"CAST(ts AS INTEGER) / {SPANS[span]} * {SPANS[span]}"
    db.execute(f"DELETE FROM latency_peak_{span}")
    for kind, column in (("duration", "duration_ms"), ("ttft", "ttft_ms")):
        db.execute(
            f"INSERT INTO latency_peak_{span} SELECT {start}, '{kind}', MAX({column}) "
            f"FROM usage WHERE {column} IS NOT NULL GROUP BY 1"
        )


def ledger_path(settings: Settings) -> Path:
    return settings.data.home / "usage.sqlite"
