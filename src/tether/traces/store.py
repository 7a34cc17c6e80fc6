"""Traces in SQLite: one row per request, the body as JSON, pruned by age and size.

``record`` sits on the request path, so it only inserts; pruning runs every
``prune_every`` records or ``prune_interval`` seconds, whichever comes first, from the first
one written; never in the host's first interval after it boots (see ``tether.retention``).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tether import retention
from tether.closing import Closeable
from tether.databases import (
    cannot_open,
    make_private,
    newer_schema_message,
    read_only_holding,
    schema_version,
)
from tether.errors import ConfigError
from tether.settings import Settings
from tether.traces.model import Trace

log = logging.getLogger(__name__)

# The schema's number, in ``PRAGMA user_version``: raised only by a change a tether that
# reads this one would misread, or undo by writing on (another body format, a column it
# would have to fill). A column or index it passes over is found by what the file holds, as
# the search columns are, and keeps the number. A store of a higher number is refused;
# tethers from before the number (0) read and write this one.
SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS traces (
    id TEXT PRIMARY KEY,
    created REAL NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS traces_created ON traces (created);
"""
# Columns the dashboard filters on, copied out of the body so that a search is an indexed
# lookup: rules holds the policy and compliance rule ids as ",a,b,".
_COLUMNS = {
    "principal": "TEXT",
    "endpoint": "TEXT",
    "model": "TEXT",
    "findings": "INTEGER NOT NULL DEFAULT 0",
    "rules": "TEXT NOT NULL DEFAULT ''",
    "total_ms": "REAL",
}
# Statements, not a script: a script would commit the transaction they are made in.
_INDEXES = (
    "CREATE INDEX IF NOT EXISTS traces_principal ON traces (principal, created)",
    "CREATE INDEX IF NOT EXISTS traces_endpoint ON traces (endpoint, created)",
    "CREATE INDEX IF NOT EXISTS traces_with_findings ON traces (created) WHERE findings > 0",
    "CREATE TABLE IF NOT EXISTS trace_facets (kind TEXT NOT NULL, value TEXT NOT NULL, "
    "PRIMARY KEY (kind, value)) WITHOUT ROWID",
)
_BACKFILL = """
UPDATE traces SET
    principal = json_extract(body, '$.principal'),
    endpoint = json_extract(body, '$.endpoint'),
    model = json_extract(body, '$.model'),
    findings = json_array_length(body, '$.findings') + json_array_length(body, '$.policy'),
    rules = ',' || COALESCE((SELECT group_concat(json_extract(value, '$.rule_id'), ',')
        FROM json_each(body, '$.findings')), '') || ',' || COALESCE((SELECT
        group_concat(json_extract(value, '$.rule_id'), ',') FROM json_each(body, '$.policy')), '')
        || ',',
    total_ms = json_extract(body, '$.timings.total') * 1000
"""
_SEARCH_OBJECTS = ("traces_principal", "traces_endpoint", "traces_with_findings", "trace_facets")
# Every trace names its endpoint: one without the column filled was written by a tether
# from before the columns (before an upgrade, or after a roll back to it).
_UNFILLED = " WHERE endpoint IS NULL"


def _facets_of(trace: Trace) -> list[tuple[str, str]]:
    facets = [("endpoints", trace.endpoint)] if trace.endpoint else []
    if trace.principal:
        facets.append(("principals", trace.principal))
    facets.extend(("findings", f["rule_id"]) for f in [*trace.findings, *trace.policy])
    return facets


def _searchable(trace: Trace) -> tuple[Any, ...]:
    rules = [f.get("rule_id", "") for f in [*trace.findings, *trace.policy]]
    total = trace.timings.get("total")
    return (
        trace.principal,
        trace.endpoint,
        trace.model,
        len(trace.findings) + len(trace.policy),
        "," + ",".join(rules) + "," if rules else "",
        None if total is None else total * 1000,
    )


_DAY = 86_400.0
# How the pipeline names an answer after its request's id (``Prepared.id``).
ANSWER_ID_PREFIXES = ("cmpl-", "chatcmpl-")
# How the Responses API names it: the id its client has, of a trace named as a chat's.
RESPONSE_ID_PREFIX = "resp_"


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
        since_boot: Callable[[], float] | None = None,
        read_only: bool = False,
    ) -> None:
        """``read_only``: for the commands that only read traces, which then work on a
        read-only copy of the data directory, and write nothing to it."""
        self.path = path
        self.max_age_days = max_age_days
        self.max_bytes = int(max_mb * 1024 * 1024)
        self.enabled = enabled  # False: record() is a no-op; reads still work
        self._prunes = retention.PruneSchedule(prune_every, prune_interval, since_boot)
        self._clock = clock
        self._lock = threading.Lock()
        if read_only:
            self._db = self._reader(path)
            return
        # One connection shared under a lock: inserts take microseconds, so a
        # connection per thread would buy little and leave handles open per thread.
        try:
            make_private(path)  # prompts and answers: its owner's only
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        except (sqlite3.OperationalError, OSError) as exc:
            raise _cannot_open(path, exc) from exc
        try:
            _refuse_newer(self._db, path)
            # auto_vacuum must be set before the first table exists; it lets pruning
            # shrink the file instead of only freeing pages inside it.
            self._db.execute("PRAGMA auto_vacuum=INCREMENTAL")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # a lost trace on power loss is fine
            self._db.executescript(_SCHEMA)
            self._add_search_columns()
            if schema_version(self._db) != SCHEMA_VERSION:
                self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except ConfigError:
            self._db.close()
            raise
        except sqlite3.OperationalError as exc:  # the file may be fine: it cannot be opened
            self._db.close()
            raise _cannot_open(path, exc) from exc
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise ConfigError(
                f"{path} is not a tether trace store ({exc}); move it aside (traces are "
                "kept for explaining answers: a new store starts empty)"
            ) from exc

    def _reader(self, path: Path) -> sqlite3.Connection:
        """``path`` opened only to read; however old, it reads (``get`` and ``recent`` use
        no search column). None there yet, or one made and not yet set up, holds no traces:
        an empty store in memory stands for it, as reading makes no file."""
        db = read_only_holding(
            path, "the trace store", "traces", lambda db: _refuse_newer(db, path)
        )
        if db is not None:
            return db
        self._db = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        self._db.executescript(_SCHEMA)
        self._add_search_columns()
        return self._db

    @classmethod
    def from_settings(cls, settings: Settings, *, read_only: bool = False) -> TraceStore:
        traces = settings.traces
        return cls(
            settings.data.home / "traces.sqlite",
            max_age_days=traces.max_age_days,
            max_mb=traces.max_mb,
            enabled=traces.enabled,
            read_only=read_only,
        )

    def record(self, trace: Trace) -> None:
        if not self.enabled:
            return
        body = trace.to_json()
        with self._lock:
            with self._db:  # one transaction, one commit: a trace and its facets together
                self._db.execute("BEGIN")
                self._db.execute(
                    "INSERT OR REPLACE INTO traces (id, created, body, principal, endpoint, "
                    "model, findings, rules, total_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (trace.id, trace.created, body, *_searchable(trace)),
                )
                self._db.executemany(
                    "INSERT OR IGNORE INTO trace_facets VALUES (?, ?)", _facets_of(trace)
                )
            if self._prunes.wrote():
                self._prune_locked(self._clock())

    def get(self, trace_id: str) -> Trace | None:
        """The trace of answer ``trace_id`` ("cmpl-…", "chatcmpl-…", "resp_…"), or of the
        request whose X-Request-Id is ``trace_id``."""
        request_id = trace_id.removeprefix(RESPONSE_ID_PREFIX)
        ids = (trace_id, *(kind + request_id for kind in ANSWER_ID_PREFIXES))
        with self._lock:
            row = self._db.execute(
                f"SELECT body FROM traces WHERE id IN ({', '.join('?' * len(ids))})", ids
            ).fetchone()
        if row is None:
            return None
        try:
            return Trace.from_json(row[0])
        except ValueError as exc:
            raise ConfigError(
                f"the trace of {trace_id} in {self.path} is damaged: {exc}; it was changed "
                "after it was written and cannot be explained (the audit record still holds "
                "what was sent)"
            ) from exc

    def recent(self, n: int = 20) -> list[Trace]:
        with self._lock:
            rows = self._db.execute(
                "SELECT body FROM traces ORDER BY created DESC LIMIT ?", (n,)
            ).fetchall()
        return [trace for (body,) in rows if (trace := _readable(body)) is not None]

    def search(
        self,
        *,
        limit: int = 50,
        before: tuple[float, str] | None = None,
        since: float | None = None,
        principal: str | None = None,
        endpoint: str | None = None,
        rule: str | None = None,
    ) -> list[dict[str, Any]]:
        """Summaries, newest first, through the indexed columns; ``before`` (the created
        time and id of the last one seen) pages on."""
        where: list[str] = []
        args: list[Any] = []
        if before is not None:
            where.append("(created < ? OR (created = ? AND id < ?))")
            args.extend((before[0], before[0], before[1]))
        for clause, value in (
            ("created >= ?", since),
            ("principal = ?", principal),
            ("endpoint = ?", endpoint),
        ):
            if value is not None:
                where.append(clause)
                args.append(value)
        if rule:
            where.append("findings > 0 AND instr(rules, ?) > 0")
            args.append(f",{rule},")
        sql = (
            "SELECT id, created, json_extract(body, '$.kind'), endpoint, principal, model, "
            "findings, total_ms FROM traces"
            + (" WHERE " + " AND ".join(where) if where else "")
            + " ORDER BY created DESC, id DESC LIMIT ?"
        )
        with self._lock:
            rows = self._db.execute(sql, (*args, limit)).fetchall()
        keys = ("id", "created", "kind", "endpoint", "principal", "model", "findings", "total_ms")
        return [dict(zip(keys, row, strict=True)) for row in rows]

    def facets(self) -> dict[str, list[str]]:
        """The principals, endpoints and rule ids there are traces of, for filters."""
        found: dict[str, list[str]] = {"principals": [], "endpoints": [], "findings": []}
        with self._lock:
            for kind, value in self._db.execute(
                "SELECT kind, value FROM trace_facets ORDER BY kind, value"
            ):
                found[kind].append(value)
        return found

    def _rebuild_facets(self) -> None:
        """The facets again from the traces kept (after pruning, or for an older store)."""
        self._db.execute("DELETE FROM trace_facets")
        self._db.execute(
            "INSERT INTO trace_facets SELECT DISTINCT 'principals', principal FROM traces "
            "WHERE principal IS NOT NULL UNION SELECT DISTINCT 'endpoints', endpoint FROM traces "
            "WHERE endpoint IS NOT NULL AND endpoint != ''"
        )
        rules = self._db.execute("SELECT DISTINCT rules FROM traces WHERE findings > 0")
        found = {r for (joined,) in rules.fetchall() for r in joined.split(",") if r}
        self._db.executemany(
            "INSERT OR IGNORE INTO trace_facets VALUES ('findings', ?)", ((r,) for r in found)
        )

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
        self._prunes.pruned()
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
            self._rebuild_facets()
            # executescript steps it to the end; execute() would free one page only.
            self._db.executescript("PRAGMA incremental_vacuum;")
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return int(deleted)

    def _add_search_columns(self) -> None:
        """Traces an older tether wrote get the search columns, filled from the body, in one
        transaction: a process killed or a disk filled midway leaves the store as it was,
        and the next start does it all again. Traces an older tether added after an
        upgrade (rolled back to it) lack only the values: they are filled in too. A store
        with nothing to do is only read."""
        if self._searchable_already():
            return
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            have = {row[1] for row in self._db.execute("PRAGMA table_info(traces)")}
            for name, kind in _COLUMNS.items():
                if name not in have:
                    self._db.execute(f"ALTER TABLE traces ADD COLUMN {name} {kind}")
            for statement in _INDEXES:
                self._db.execute(statement)
            filled = self._db.execute(_BACKFILL + _UNFILLED).rowcount
            facets = self._db.execute("SELECT COUNT(*) FROM trace_facets").fetchone()[0]
            if filled or not facets:
                self._rebuild_facets()
        if filled:
            log.warning(
                "upgraded the trace store %s: %s an older tether wrote now %s the columns "
                "the dashboard searches by (principal, endpoint, model, findings); older "
                "tethers still read it",
                self.path,
                "1 trace" if filled == 1 else f"{filled} traces",
                "has" if filled == 1 else "have",
            )

    def _searchable_already(self) -> bool:
        """Whether the search columns, their indexes and the facets are all there, and
        filled in for every trace."""
        have = {row[1] for row in self._db.execute("PRAGMA table_info(traces)")}
        if not have.issuperset(_COLUMNS):
            return False
        names = {row[0] for row in self._db.execute("SELECT name FROM sqlite_master")}
        if not names.issuperset(_SEARCH_OBJECTS):
            return False
        if self._db.execute(f"SELECT 1 FROM traces{_UNFILLED} LIMIT 1").fetchone():
            return False
        facets = self._db.execute("SELECT 1 FROM trace_facets LIMIT 1").fetchone()
        return facets is not None or not self._db.execute("SELECT 1 FROM traces LIMIT 1").fetchone()

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _refuse_newer(db: sqlite3.Connection, path: Path) -> None:
    """Refuse a store a newer tether wrote (after a roll back), before anything is
    written to it."""
    if (version := schema_version(db)) > SCHEMA_VERSION:
        raise ConfigError(
            newer_schema_message(
                "the trace store", path, version, SCHEMA_VERSION, may_start_empty=True
            )
        )


def _cannot_open(path: Path, exc: sqlite3.Error | OSError) -> ConfigError:
    return cannot_open("the trace store", path, exc)


def _readable(body: str) -> Trace | None:
    """The trace in a row, or None for a damaged one, which a listing leaves out."""
    try:
        return Trace.from_json(body)
    except ValueError:
        return None
