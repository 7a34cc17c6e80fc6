"""Reading the usage ledger: sums per group, time series and the completion funnel.

Whole days come from the daily rollups, whole hours of the part-days at a period's ends
from the hourly ones, and only the part-hours at its ends from the request rows, so a
report is exact for any period and costs about the same for a day or a year, however
busy the hours it reads.
Series and the funnel read hourly rollups for periods under a week, daily ones beyond.
Reading never writes: the ledger is opened read-only, a ledger written by an older tether
is refused until the server has upgraded it, and a missing one reads as empty (the
server's own before its first request) or, for a file the user named, is an error.
"""

from __future__ import annotations

import math
import sqlite3
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from tether.closing import Closeable
from tether.databases import open_read_only
from tether.errors import ConfigError
from tether.usage.ledger import LATENCY_EDGES_MS, ROLLUP_TABLES, SPANS

GroupBy = Literal["principal", "model", "day", "endpoint"]
DAY = SPANS["daily"]
HOUR = SPANS["hourly"]
# Each grouping as (over a rollup, over the request rows).
GROUPINGS: dict[str, tuple[str, str]] = {
    "principal": (
        "CASE principal WHEN '' THEN '(anonymous)' ELSE principal END",
        "COALESCE(principal, '(anonymous)')",
    ),
    "model": ("CASE model WHEN '' THEN '(none)' ELSE model END", "COALESCE(model, '(none)')"),
    # Whole seconds: date() rounds to the millisecond, which would file a request in the
    # last half millisecond of a day under the next one, unlike its daily rollup.
    "day": ("date(start, 'unixepoch')", "date(CAST(ts AS INTEGER), 'unixepoch')"),
    "endpoint": ("endpoint", "endpoint"),
}
# What a ledger of the current schema holds: a file without them is something else.
_REQUEST_COLUMNS = {"ts", "request_id", "principal", "model", "endpoint", "status",
                    "prompt_tokens", "completion_tokens", "cached_tokens", "duration_ms",
                    "bytes_in", "bytes_out"}  # fmt: skip
# A ledger of schema 2 reads too, without latency peaks (its server adds them on start).
READABLE_FROM = 2
_PEAKS = {t for t in ROLLUP_TABLES if t.startswith("latency_peak_")}
_TABLES = {"usage", "energy", *ROLLUP_TABLES} - _PEAKS
_LEDGER = "<data.home>/usage.sqlite"
# Said of the data directory's own ledger where a named one is told to pass a copy.
_NOT_THE_SERVERS = "move it aside (the server then starts a new one) or put back a backup"
FunnelBy = Literal["language", "principal", "model"]
_FUNNEL_KEYS = {
    "language": "CASE language WHEN '' THEN '(unknown)' ELSE language END",
    "principal": "CASE principal WHEN '' THEN '(anonymous)' ELSE principal END",
    "model": "CASE model WHEN '' THEN '(none)' ELSE model END",
}


@dataclass(frozen=True)
class UsageTotals:
    """One group of a report: sums over its requests."""

    key: str
    requests: int
    errors: int
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    # The bodies of requests to a model, and of its answers: what a hosted API would have
    # been sent and sent back (not tokens, audit events, a dashboard's pages).
    bytes_in: int
    bytes_out: int
    busy_seconds: float  # the requests' durations added up
    ttft_ms_avg: float | None
    # Of prompt_tokens, those embeddings requests read: a hosted API prices them apart.
    embedding_tokens: int = 0


# A request names a model when it went to one (the rollups keep "" for none).
_MODEL_BYTES_IN = "CASE WHEN COALESCE(model, '') = '' THEN 0 ELSE bytes_in END"
_MODEL_BYTES_OUT = "CASE WHEN COALESCE(model, '') = '' THEN 0 ELSE bytes_out END"
EMBEDDINGS_ENDPOINT = "/v1/embeddings"
_EMBEDDING_TOKENS = f"CASE endpoint WHEN '{EMBEDDINGS_ENDPOINT}' THEN prompt_tokens ELSE 0 END"


def percentile(counts: dict[int, int], q: float, peak: float | None = None) -> float | None:
    """The q-quantile of a latency histogram, interpolated inside its bucket, and never
    past ``peak``, the slowest request counted, when it is known."""
    total = sum(counts.values())
    if not total:
        return None
    rank, seen = q * total, 0
    for bucket in sorted(counts):
        if seen + counts[bucket] >= rank:
            low = LATENCY_EDGES_MS[bucket - 1] if bucket > 0 else 0.0
            high = LATENCY_EDGES_MS[bucket] if bucket < len(LATENCY_EDGES_MS) else low * 2
            if peak is not None:
                high = min(high, max(peak, low))
            return float(low + (high - low) * (rank - seen) / counts[bucket])
        seen += counts[bucket]
    return float(LATENCY_EDGES_MS[-1])  # pragma: no cover - rank never exceeds the total


class LedgerReader(Closeable):
    """A usage ledger, read-only. A missing file reads as an empty ledger (the server's own
    before its first request) unless ``missing_ok`` is False (a file the user named)."""

    def __init__(self, path: Path, *, missing_ok: bool = True) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._peaks = False  # whether the ledger keeps latency peaks (schema 3 on)
        if path.parent.exists() and not path.parent.is_dir():
            raise ConfigError(
                f"{path.parent} is not a folder, so it holds no usage ledger; check the path "
                "(data.home, TETHER_HOME)"
            )
        if not path.exists() or (missing_ok and path.stat().st_size == 0):
            if missing_ok:  # an empty file is a ledger its server has yet to set up
                return
            raise ConfigError(
                f"no usage ledger at {path}; check the path (a copy of <data.home>/usage.sqlite)"
            )
        try:
            with closing(_checked(path)) as db:
                problem = _not_readable(db)
        except sqlite3.Error as exc:
            problem = f"is not a tether usage ledger ({exc}); pass a copy of {_LEDGER}"
        if problem is not None:
            if missing_ok:  # the data directory's own, which no one passed
                problem = problem.replace(f"pass a copy of {_LEDGER}", _NOT_THE_SERVERS)
            raise ConfigError(f"{path} {problem}")
        self._db = open_read_only(path, "the usage ledger")
        tables = {row[0] for row in self._db.execute("SELECT name FROM sqlite_master")}
        self._peaks = _PEAKS.issubset(tables)

    def totals(self, since: float, until: float, by: GroupBy | None) -> list[UsageTotals]:
        """Sums per group (or one row, key "total", when ``by`` is None)."""
        if self._db is None:
            return []
        rolled, raw = GROUPINGS[by] if by else ("'total'", "'total'")
        rollup = f"""SELECT {rolled} AS key, requests, errors, prompt_tokens, completion_tokens,
                         cached_tokens, {_MODEL_BYTES_IN} AS bytes_in,
                         {_MODEL_BYTES_OUT} AS bytes_out, busy_ms, ttft_ms_sum, ttft_count,
                         {_EMBEDDING_TOKENS} AS embedding_tokens FROM"""
        rows = self._db.execute(
            f"""WITH parts AS (
                  {rollup} usage_daily WHERE start >= :day_first AND start < :day_last
                  UNION ALL
                  {rollup} usage_hourly WHERE (start >= :hour_first AND start < :day_first)
                                           OR (start >= :day_last AND start < :hour_last)
                  UNION ALL
                  SELECT {raw}, 1, status >= 400, prompt_tokens, completion_tokens,
                         cached_tokens, {_MODEL_BYTES_IN}, {_MODEL_BYTES_OUT}, duration_ms,
                         COALESCE(ttft_ms, 0), ttft_ms IS NOT NULL, {_EMBEDDING_TOKENS}
                  FROM usage WHERE (ts >= :since AND ts < :hour_first)
                                OR (ts >= :hour_last AND ts < :until)
                )
                SELECT key, SUM(requests), SUM(errors), SUM(prompt_tokens),
                       SUM(completion_tokens), SUM(cached_tokens), SUM(bytes_in), SUM(bytes_out),
                       SUM(busy_ms) / 1000.0, SUM(ttft_ms_sum) / NULLIF(SUM(ttft_count), 0),
                       SUM(embedding_tokens)
                FROM parts GROUP BY key ORDER BY key""",
            _pieces(since, until),
        ).fetchall()
        return [UsageTotals(*row) for row in rows]

    def first_recorded(self) -> float | None:
        """When the ledger's earliest request was (the start of its day where only the daily
        rollups keep it); None when it holds none."""
        if self._db is None:
            return None
        (row,) = self._db.execute("SELECT MIN(ts) FROM usage").fetchone()
        (day,) = self._db.execute("SELECT MIN(start) FROM usage_daily").fetchone()
        if day is not None and (row is None or day < math.floor(row / DAY) * DAY):
            return float(day)  # an earlier day whose request rows are gone
        return None if row is None else float(row)

    def energy_joules(self, since: float, until: float) -> float | None:
        """Measured energy in the period, or None when no meter ever reported."""
        if self._db is None:
            return None
        count, joules = self._db.execute(
            "SELECT COUNT(*), SUM(joules) FROM energy WHERE ts >= ? AND ts < ?", (since, until)
        ).fetchone()
        return float(joules) if count else None

    def series(self, since: float, until: float, bucket_s: int) -> dict[str, Any]:
        """Per bucket from ``since`` (whole hours) to ``until``: counts, tokens, latency
        percentiles."""
        span = "hourly" if bucket_s < DAY else "daily"
        start = int(since // SPANS[span]) * SPANS[span]
        buckets: dict[int, dict[str, Any]] = {}
        latencies: dict[tuple[int, str], dict[int, int]] = {}
        overall: dict[str, dict[int, int]] = {"ttft": {}, "duration": {}}
        peaks: dict[tuple[int, str], float] = {}
        if self._db is not None and self._peaks:
            for at, kind, most in self._db.execute(
                f"SELECT (start / :b) * :b, kind, MAX(max_ms) FROM latency_peak_{span} "
                "WHERE start >= :s GROUP BY 1, 2",
                {"b": bucket_s, "s": start},
            ):
                peaks[(at, kind)] = float(most)
        if self._db is not None:
            for at, requests, errors, prompt, completion in self._db.execute(
                "SELECT (start / :b) * :b, SUM(requests), SUM(errors), SUM(prompt_tokens), "
                f"SUM(completion_tokens) FROM usage_{span} WHERE start >= :s GROUP BY 1",
                {"b": bucket_s, "s": start},
            ):
                buckets[at] = {
                    "start": at,
                    "requests": requests,
                    "errors": errors,
                    "prompt_tokens": prompt,
                    "completion_tokens": completion,
                }
            for at, kind, bucket, count in self._db.execute(
                f"SELECT (start / :b) * :b, kind, bucket, SUM(count) FROM latency_{span} "
                "WHERE start >= :s GROUP BY 1, 2, 3",
                {"b": bucket_s, "s": start},
            ):
                latencies.setdefault((at, kind), {})[bucket] = count
                overall[kind][bucket] = overall[kind].get(bucket, 0) + count
        # Empty buckets too, so that a chart shows quiet hours as zero, not as nothing.
        for at in range(start // bucket_s * bucket_s, int(until), bucket_s):
            buckets.setdefault(at, {"start": at, "requests": 0, "errors": 0,
                                    "prompt_tokens": 0, "completion_tokens": 0})  # fmt: skip
        for at, row in buckets.items():
            for kind, name in (("ttft", "ttft"), ("duration", "latency")):
                counts, peak = latencies.get((at, kind), {}), peaks.get((at, kind))
                row[f"{name}_p50_ms"] = percentile(counts, 0.5, peak)
                row[f"{name}_p95_ms"] = percentile(counts, 0.95, peak)
        ordered = [buckets[at] for at in sorted(buckets)]
        totals: dict[str, Any] = {
            key: sum(b[key] for b in ordered)
            for key in ("requests", "errors", "prompt_tokens", "completion_tokens")
        }
        for kind, name in (("ttft", "ttft"), ("duration", "latency")):
            slowest = max((v for (_, k), v in peaks.items() if k == kind), default=None)
            totals[f"{name}_p50_ms"] = percentile(overall[kind], 0.5, slowest)
            totals[f"{name}_p95_ms"] = percentile(overall[kind], 0.95, slowest)
        return {"bucket_seconds": bucket_s, "buckets": ordered, "totals": totals}

    def funnel(self, since: float, by: FunnelBy, until: float | None = None) -> dict[str, Any]:
        """Completions served, and what editors did with them, per group since ``since``
        (from the start of its hour, or of its day for periods of a week or more)."""
        rows: list[dict[str, Any]] = []
        span = "hourly" if until is not None and until - since < 7 * DAY else "daily"
        if self._db is not None:
            for key, served, view, select, dismiss in self._db.execute(
                f'SELECT {_FUNNEL_KEYS[by]}, SUM(served), SUM(view), SUM("select"), '
                f"SUM(dismiss) FROM funnel_{span} WHERE start >= ? GROUP BY 1 ORDER BY 2 DESC",
                (int(since // SPANS[span]) * SPANS[span],),
            ):
                rows.append(_funnel_row(key, served, view, select, dismiss))
        total = _funnel_row(
            "total",
            *(sum(r[k] for r in rows) for k in ("served", "viewed", "selected", "dismissed")),
        )
        return {"by": by, "rows": rows, "total": total}

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


def _pieces(since: float, until: float) -> dict[str, float]:
    """Where a period's pieces meet: request rows in [since, hour_first) and [hour_last,
    until), hourly rollups in [hour_first, day_first) and [day_last, hour_last), daily ones
    in [day_first, day_last). Every edge is a whole hour (a whole day for the daily
    piece), as a rollup's start is, so each request lands in exactly one piece."""
    # Floor division of floats is exact, where ceil(since / HOUR) rounds the quotient first.
    hour_first = min(-(-since // HOUR) * HOUR, until)
    hour_last = max(hour_first, until // HOUR * HOUR)
    day_first = min(-(-hour_first // DAY) * DAY, hour_last)
    day_last = max(day_first, hour_last // DAY * DAY)
    return {"since": since, "until": until, "hour_first": hour_first, "hour_last": hour_last,
            "day_first": day_first, "day_last": day_last}  # fmt: skip


def _checked(path: Path) -> sqlite3.Connection:
    """``path`` opened to check that it is a ledger. Without a write-ahead log beside it no
    writer is at work, and it is read as immutable: SQLite then adds no -wal or -shm file
    to what is refused. With one, as it is read after: the log's changes too, or a
    refusal saying why they cannot be read (not a wrong verdict on the file)."""
    if path.with_name(path.name + "-wal").exists():
        return open_read_only(path, "the usage ledger")
    return sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro&immutable=1", uri=True)


def _not_readable(db: sqlite3.Connection) -> str | None:
    """What keeps a report from reading this database as it is, or None."""
    if db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0] == 0:
        # What a plain copy of a ledger in use holds: its tables are still in the -wal file.
        return (
            "is an empty database; a ledger in use keeps its latest data in usage.sqlite-wal "
            'beside it, which a plain copy leaves out: copy it with `sqlite3 usage.sqlite ".backup '
            'copy.sqlite"` (or copy usage.sqlite-wal along with it)'
        )
    columns = {row[1] for row in db.execute("PRAGMA table_info(usage)")}
    if not _REQUEST_COLUMNS.issubset(columns):
        return f"is not a tether usage ledger; pass a copy of {_LEDGER}"
    if db.execute("PRAGMA user_version").fetchone()[0] < READABLE_FROM:
        return (
            "was written by an older tether and lacks the rollups a report reads; a report "
            "never writes to it: start the server once with its data.home (`tether serve`) "
            "to upgrade it, then report again"
        )
    missing = _TABLES - {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    if missing:
        return f"lacks the tables {', '.join(sorted(missing))}; pass a copy of {_LEDGER}"
    return None


def _funnel_row(key: str, served: int, view: int, select: int, dismiss: int) -> dict[str, Any]:
    return {
        "key": key,
        "served": served,
        "viewed": view,
        "selected": select,
        "dismissed": dismiss,
        "acceptance": select / view if view else None,
    }
