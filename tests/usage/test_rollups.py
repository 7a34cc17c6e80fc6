"""The ledger's hourly rollups give the same answers as the request rows, for any period;
the funnel counts each editor event once; an older ledger is migrated by the server, not
by a report."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import pytest

from tether.errors import ConfigError
from tether.usage.ledger import ROLLUP_TABLES, UsageLedger, UsageRecord, rebuild_rollups
from tether.usage.reader import LedgerReader, percentile

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


def test_a_ledger_without_latency_peaks_reads_and_gets_them_on_upgrade(tmp_path: Path) -> None:
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
    UsageLedger(path, clock=lambda: START).close()  # the server's start adds them
    with sqlite3.connect(path) as db:
        assert sorted(db.execute("SELECT * FROM latency_peak_daily").fetchall()) == kept


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
