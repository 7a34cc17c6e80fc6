"""The ledger's hourly rollups give the same answers as the request rows, for any period;
the funnel counts each editor event once; an older ledger is migrated by the server, not
by a report."""

from __future__ import annotations

import dataclasses
import logging
import math
import random
import sqlite3
from collections.abc import Callable
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, get_args

import pytest

from tether.errors import ConfigError
from tether.usage.ledger import ROLLUP_TABLES, UsageLedger, UsageRecord, rebuild_rollups
from tether.usage.reader import (
    EMBEDDINGS_ENDPOINT,
    GroupBy,
    LedgerReader,
    percentile,
)

# The usage table of a ledger from before the rollups (schema version 1).
OLD_USAGE_TABLE = (
    "CREATE TABLE usage (id INTEGER PRIMARY KEY, ts REAL NOT NULL, request_id TEXT NOT "
    "NULL, principal TEXT, token_id TEXT, model TEXT, endpoint TEXT NOT NULL, status "
    "INTEGER NOT NULL, prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL, "
    "cached_tokens INTEGER NOT NULL, ttft_ms REAL, duration_ms REAL NOT NULL, bytes_in "
    "INTEGER NOT NULL, bytes_out INTEGER NOT NULL)"
)
START = 1_790_000_000.0  # a Unix time on an hour boundary minus a bit: hours get cut


def _rows(n: int, seed: int = 7) -> list[UsageRecord]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        fim = rng.random() < 0.5
        rows.append(UsageRecord(
            ts=START + rng.uniform(0, 3 * 86_400), request_id=f"r{i}",
            principal=rng.choice(["ann", "bob", None]), token_id="t",
            model=rng.choice(["m1", "m2"]), endpoint=rng.choice(["/v1/completions", "/v1/chat"]),
            status=rng.choice([200, 200, 200, 429]), prompt_tokens=rng.randint(0, 900),
            completion_tokens=rng.randint(0, 90), cached_tokens=rng.randint(0, 50),
            ttft_ms=rng.uniform(5, 3000) if rng.random() < 0.8 else None,
            duration_ms=rng.uniform(5, 9000), bytes_in=rng.randint(10, 5000),
            bytes_out=rng.randint(10, 5000), completion_id=f"cmpl-{i}" if fim else None,
            language=rng.choice(["python", "go", None]),
        ))  # fmt: skip
    return rows


def _brute(rows: list[UsageRecord], since: float, until: float) -> dict[str, tuple[int, ...]]:
    sums: dict[str, list[int]] = {}
    for r in rows:
        if since <= r.ts < until:
            key = r.principal or "(anonymous)"
            s = sums.setdefault(key, [0, 0, 0, 0, 0])
            s[0] += 1
            s[1] += r.status >= 400
            s[2] += r.prompt_tokens
            s[3] += r.completion_tokens
            s[4] += r.bytes_in
    return {k: tuple(v) for k, v in sums.items()}


@pytest.mark.parametrize(
    ("since", "until"),
    [
        (START, START + 3 * 86_400),
        (START + 1234.5, START + 86_400 + 77.25),  # part-hours at both ends
        (START + 100, START + 900),  # inside one hour
    ],
)
def test_totals_from_rollups_equal_the_request_rows(
    tmp_path: Path, since: float, until: float
) -> None:
    rows = _rows(3000)
    with UsageLedger(tmp_path / "u.sqlite", clock=lambda: START) as ledger:
        for row in rows:
            ledger.record(row)
    with LedgerReader(tmp_path / "u.sqlite") as reader:
        got = {
            t.key: (t.requests, t.errors, t.prompt_tokens, t.completion_tokens, t.bytes_in)
            for t in reader.totals(since, until, "principal")
        }
    assert got == _brute(rows, since, until)


def _sums(
    rows: list[UsageRecord], since: float, until: float, by: GroupBy | None
) -> dict[str, list[Any]]:
    """What ``LedgerReader.totals`` should give, summed row by row in Python (the float
    sums to rounding: the rollups add the same numbers in another order)."""
    keys: dict[GroupBy | None, Callable[[UsageRecord], str]] = {
        None: lambda r: "total",
        "principal": lambda r: r.principal or "(anonymous)",
        "model": lambda r: r.model or "(none)",
        "day": lambda r: datetime.fromtimestamp(int(r.ts), UTC).date().isoformat(),
        "endpoint": lambda r: r.endpoint,
    }
    sums: dict[str, list[Any]] = {}
    for r in rows:
        if not since <= r.ts < until:
            continue
        to_model = r.model is not None
        embedding = r.prompt_tokens if r.endpoint == EMBEDDINGS_ENDPOINT else 0
        values = (1, int(r.status >= 400), r.prompt_tokens, r.completion_tokens,
                  r.cached_tokens, r.bytes_in if to_model else 0, r.bytes_out if to_model else 0,
                  r.duration_ms / 1000, r.ttft_ms or 0.0, int(r.ttft_ms is not None),
                  embedding)  # fmt: skip
        s = sums.setdefault(keys[by](r), [0] * len(values))
        for i, value in enumerate(values):
            s[i] += value
    return {
        key: [*s[:7], pytest.approx(s[7]), pytest.approx(s[8] / s[9]) if s[9] else None, s[10]]
        for key, s in sums.items()
    }


def _totals(
    reader: LedgerReader, since: float, until: float, by: GroupBy | None
) -> dict[str, list[Any]]:
    return {
        t.key: [t.requests, t.errors, t.prompt_tokens, t.completion_tokens, t.cached_tokens,
                t.bytes_in, t.bytes_out, t.busy_seconds, t.ttft_ms_avg, t.embedding_tokens]
        for t in reader.totals(since, until, by)
    }  # fmt: skip


# Every grouping, and none.
_BY: list[GroupBy | None] = [None, *get_args(GroupBy)]
_HOUR_EDGE = (START // 3600 + 1) * 3600  # the first whole hour after START
_DAY_EDGE = (START // 86_400 + 1) * 86_400
_PERIODS = [
    (START, START + 3 * 86_400),
    (START + 1234.5, START + 2 * 86_400 + 77.25),  # part-hours, whole hours and whole days
    (START + 100, START + 900),  # inside one hour
    (_HOUR_EDGE, _HOUR_EDGE + 5 * 3600),  # whole hours only
    (_DAY_EDGE, _DAY_EDGE + 86_400),  # one whole day
    (math.nextafter(_DAY_EDGE, 0), math.nextafter(_DAY_EDGE + 86_400, math.inf)),
    (_DAY_EDGE - 3600.5, _DAY_EDGE + 0.5),  # a part-hour, a whole hour, a part-hour
]


@pytest.mark.parametrize("by", _BY)
def test_every_grouping_and_sum_equals_the_request_rows(tmp_path: Path, by: GroupBy | None) -> None:
    rows = _rows(3000)
    # Requests on the edges of hours and days, and a hair either side of them.
    for i, ts in enumerate([_HOUR_EDGE, _DAY_EDGE, math.nextafter(_DAY_EDGE, 0),
                            math.nextafter(_DAY_EDGE, math.inf), _DAY_EDGE + 86_400,
                            _DAY_EDGE - 3600.5, _DAY_EDGE - 0.0004]):  # fmt: skip
        rows.append(dataclasses.replace(rows[i], ts=ts, request_id=f"edge{i}"))
    rows.append(dataclasses.replace(rows[0], endpoint=EMBEDDINGS_ENDPOINT, model=None))
    with UsageLedger(tmp_path / "u.sqlite", clock=lambda: START) as ledger:
        for row in rows:
            ledger.record(row)
    with LedgerReader(tmp_path / "u.sqlite") as reader:
        for since, until in _PERIODS:
            assert _totals(reader, since, until, by) == _sums(rows, since, until, by), (
                since,
                until,
            )


def test_only_the_part_hours_at_a_periods_ends_are_read_from_the_request_rows(
    tmp_path: Path,
) -> None:
    """A busy day's report must not scan its requests one by one: with the request rows of
    the whole hours gone, the report is the same, so it reads them from the rollups."""
    rows = _rows(3000)
    path = tmp_path / "u.sqlite"
    with UsageLedger(path, clock=lambda: START) as ledger:
        for row in rows:
            ledger.record(row)
    since, until = START + 1234.5, START + 2 * 86_400 + 77.25
    first, last = (since // 3600 + 1) * 3600, until // 3600 * 3600
    with closing(sqlite3.connect(path)) as db, db:
        gone = db.execute("DELETE FROM usage WHERE ts >= ? AND ts < ?", (first, last)).rowcount
    kept = sum(since <= r.ts < first or last <= r.ts < until for r in rows)
    assert gone > 20 * kept > 0  # the two part-hours are what is left
    with LedgerReader(path) as reader:
        for by in _BY:
            assert _totals(reader, since, until, by) == _sums(rows, since, until, by), by


def test_rebuilding_gives_the_rollups_recording_kept(tmp_path: Path) -> None:
    path = tmp_path / "u.sqlite"
    with UsageLedger(path, clock=lambda: START) as ledger:
        rows = _rows(800)
        for row in rows:
            ledger.record(row)
        for i in range(0, 800, 3):
            ledger.record_event(f"cmpl-{i}", "view", rows[i].principal or "")
    tables = ROLLUP_TABLES
    db = sqlite3.connect(path)
    kept = {t: sorted(db.execute(f"SELECT * FROM {t}").fetchall()) for t in tables}
    rebuild_rollups(db)
    assert {t: sorted(db.execute(f"SELECT * FROM {t}").fetchall()) for t in tables} == kept
    db.close()


def test_the_funnel_counts_each_event_once_and_only_for_our_completions(tmp_path: Path) -> None:
    path = tmp_path / "u.sqlite"
    base = _rows(1)[0]
    with UsageLedger(path, clock=lambda: START) as ledger:
        for i, language in enumerate(["python", "python", "go"]):
            fields = {
                "ts": START + 10,
                "status": 200,
                "completion_id": f"c{i}",
                "language": language,
                "principal": "ann",
            }
            ledger.record(UsageRecord(**{**base.__dict__, **fields}))
        who = "ann"
        assert ledger.record_event("c0", "view", who) and ledger.record_event("c0", "select", who)
        assert not ledger.record_event("c0", "view", who)  # a repeated event counts once
        assert not ledger.record_event("c1", "view", "mallory")  # served to someone else
        assert ledger.record_event("c1", "view", who) and ledger.record_event("c1", "dismiss", who)
        assert not ledger.record_event("not-ours", "view", who)
        assert not ledger.record_event("c2", "accept", who)  # not a funnel event
    with LedgerReader(path) as reader:
        funnel = reader.funnel(START - 10, "language")
    python = next(r for r in funnel["rows"] if r["key"] == "python")
    assert (python["served"], python["viewed"], python["selected"], python["dismissed"]) == (
        2, 2, 1, 1
    )  # fmt: skip
    assert python["acceptance"] == 0.5
    assert funnel["total"]["served"] == 3


def test_series_fill_quiet_buckets_and_percentiles_come_from_the_histograms(
    tmp_path: Path,
) -> None:
    path = tmp_path / "u.sqlite"
    base = _rows(1)[0]
    with UsageLedger(path, clock=lambda: START) as ledger:
        for ms in (20, 40, 60, 80, 400):
            ledger.record(UsageRecord(**{**base.__dict__, "ts": START + 5, "ttft_ms": float(ms)}))
    with LedgerReader(path) as reader:
        series = reader.series(START - 3 * 3600, START + 3600, 3600)
    assert len(series["buckets"]) == 5 and series["totals"]["requests"] == 5
    assert [b["requests"] for b in series["buckets"]].count(0) == 4
    assert 50 <= series["totals"]["ttft_p50_ms"] <= 100
    assert percentile({}, 0.5) is None
    assert percentile({2: 10}, 0.5) == pytest.approx(37.5)  # halfway through 25..50 ms


def test_a_ledger_from_before_the_rollups_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.execute(OLD_USAGE_TABLE)
    db.execute(
        "INSERT INTO usage (ts, request_id, principal, token_id, model, endpoint, status, "
        "prompt_tokens, completion_tokens, cached_tokens, ttft_ms, duration_ms, bytes_in, "
        "bytes_out) VALUES (?, 'r', 'ann', 't', 'm', '/v1/completions', 200, 10, 2, 0, 30, 90, "
        "100, 50)",
        (START,),
    )
    db.commit()
    db.close()
    before = path.read_bytes()
    with pytest.raises(ConfigError, match="start the server once"):
        LedgerReader(path)  # `tether usage report` before the server ran: it never writes
    assert path.read_bytes() == before
    UsageLedger(path).close()  # what the server does when it starts
    with LedgerReader(path) as reader:
        (total,) = reader.totals(START - 7200, START + 7200, None)
    assert (total.requests, total.prompt_tokens) == (1, 10)


def test_a_percentile_never_passes_the_slowest_request(tmp_path: Path) -> None:
    path = tmp_path / "u.sqlite"
    base = _rows(1)[0]
    with UsageLedger(path, clock=lambda: START) as ledger:
        for ms in (1010.0, 1050.0, 1100.0):  # all in the 1000..2500 ms bucket
            row = {**base.__dict__, "ts": START + 5, "ttft_ms": ms, "duration_ms": ms}
            ledger.record(UsageRecord(**row))
    with LedgerReader(path) as reader:
        series = reader.series(START - 3600, START + 3600, 3600)
    totals = series["totals"]
    assert 1000 <= totals["ttft_p50_ms"] <= totals["ttft_p95_ms"] <= 1100
    assert totals["latency_p95_ms"] <= 1100
    busy = next(b for b in series["buckets"] if b["requests"])
    assert busy["latency_p95_ms"] <= 1100
    assert (percentile({7: 3}, 0.95) or 0) > 1100  # what the histogram alone would say


def test_a_ledger_without_latency_peaks_reads_and_gets_them_on_upgrade(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "u.sqlite"
    with UsageLedger(path, clock=lambda: START) as ledger:
        for row in _rows(50):
            ledger.record(row)
    db = sqlite3.connect(path)
    kept = sorted(db.execute("SELECT * FROM latency_peak_daily").fetchall())
    for table in ("latency_peak_hourly", "latency_peak_daily"):
        db.execute(f"DROP TABLE {table}")
    db.execute("PRAGMA user_version = 2")
    db.commit()
    db.close()
    with LedgerReader(path) as reader:  # schema 2: read as it is, without peaks
        assert reader.series(START, START + 86_400, 3600)["totals"]["requests"] > 0
    with caplog.at_level(logging.WARNING, logger="tether"):
        UsageLedger(path, clock=lambda: START).close()  # the server's start adds them
    with sqlite3.connect(path) as db:
        assert sorted(db.execute("SELECT * FROM latency_peak_daily").fetchall()) == kept
    (said,) = [r.getMessage() for r in caplog.records]  # the upgrade says what it did
    assert f"the usage ledger {path} from schema 2 to 3" in said
    assert "slowest request" in said and "older tethers still read it" in said
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="tether"):
        UsageLedger(path, clock=lambda: START).close()
    assert caplog.records == []


def test_a_newer_tethers_ledger_keeps_its_schema_number(tmp_path: Path) -> None:
    """Stamped down to this version's number, the next upgrade would run its migrations
    again over a ledger that has them."""
    path = tmp_path / "u.sqlite"
    UsageLedger(path, clock=lambda: START).close()
    with sqlite3.connect(path) as db:
        newer = db.execute("PRAGMA user_version").fetchone()[0] + 1
        db.execute(f"PRAGMA user_version = {newer}")
    with UsageLedger(path, clock=lambda: START) as ledger:
        ledger.record(_rows(1)[0])
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == newer
