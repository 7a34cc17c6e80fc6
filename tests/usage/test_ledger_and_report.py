"""The ledger sums in SQL; the report prices tokens, splits local cost and parses periods."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_settings
from tether.errors import ConfigError, RequestError
from tether.usage import ledger as ledger_module
from tether.usage.energy import EnergyMeter, joules_between, read_zones
from tether.usage.ledger import LedgerWriter, UsageLedger, UsageRecord
from tether.usage.prices import bundled_table, price_table
from tether.usage.reader import LedgerReader
from tether.usage.report import as_csv, as_json_text, as_table, build_report, parse_when

DAY = 86_400.0
NOW = datetime(2026, 11, 30, 12, tzinfo=UTC).timestamp()


def row(ts: float, who: str | None, model: str | None, **counts: float) -> UsageRecord:
    values = {
        "prompt_tokens": 0, "completion_tokens": 0, "cached_tokens": 0, "ttft_ms": None,
        "duration_ms": 100.0, "bytes_in": 0, "bytes_out": 0, "status": 200, **counts,
    }  # fmt: skip
    return UsageRecord(ts=ts, request_id="r", principal=who, token_id="t", model=model,
                       endpoint="/v1/completions", **values)  # type: ignore[arg-type]  # fmt: skip


@pytest.fixture
def ledger_file(tmp_path: Path) -> Path:
    path = tmp_path / "usage.sqlite"
    # Pruned by none of its writes (the host just booted): the report reads them all.
    with UsageLedger(path, clock=lambda: NOW, since_boot=lambda: 0.0) as ledger:
        ledger.record(row(NOW - 2 * DAY, "alice", "m1", prompt_tokens=1_000_000,
                          cached_tokens=400_000, completion_tokens=100_000, duration_ms=3000,
                          bytes_in=5000, bytes_out=800, ttft_ms=40.0))  # fmt: skip
        ledger.record(row(NOW - 1 * DAY, "bob", "m1", prompt_tokens=200_000,
                          completion_tokens=50_000, duration_ms=1000, bytes_in=1000,
                          ttft_ms=60.0, status=429))  # fmt: skip
        ledger.record(row(NOW - 40 * DAY, "old", "m1", prompt_tokens=7))  # outside 30 days
        ledger.record(row(NOW - 1 * DAY, None, None, duration_ms=0))  # a refused request
    return path


def test_totals_group_in_sql_within_the_period(ledger_file: Path) -> None:
    with LedgerReader(ledger_file) as reader:
        by_who = {t.key: t for t in reader.totals(NOW - 30 * DAY, NOW, "principal")}
        by_day = reader.totals(NOW - 30 * DAY, NOW, "day")
    assert set(by_who) == {"alice", "bob", "(anonymous)"}
    assert by_who["alice"].prompt_tokens == 1_000_000 and by_who["alice"].cached_tokens == 400_000
    assert by_who["bob"].errors == 1 and by_who["bob"].busy_seconds == pytest.approx(1.0)
    assert [d.key for d in by_day] == ["2026-11-28", "2026-11-29"]


def test_the_report_prices_tokens_and_splits_local_cost_by_busy_time(
    ledger_file: Path, tmp_path: Path
) -> None:
    settings = make_settings(
        tmp_path,
        TETHER_USAGE_HARDWARE_USD="1095.75",  # 1 USD a day over 3 years of 365.25 days
        TETHER_USAGE_POWER_WATTS="3600",  # 1 Wh a second: 4 s busy = 4 Wh
        TETHER_USAGE_USD_PER_KWH="1",
    )
    with LedgerReader(ledger_file) as reader:
        report = build_report(reader, settings, price_table(settings), since=NOW - 30 * DAY,
                              until=NOW, by="principal", compare_with=["gpt-4o"])  # fmt: skip
    alice = next(r for r in report.rows if r.key == "alice")
    # 600k fresh at 2.50 + 400k cached at 1.25 + 100k out at 10.00 per million
    assert alice.cloud_usd["gpt-4o"] == pytest.approx(1.5 + 0.5 + 1.0)
    assert report.total.cloud_usd["gpt-4o"] == pytest.approx(3.0 + 0.5 + 0.5)
    assert report.hardware_usd == pytest.approx(30.0)
    assert report.energy_kwh == pytest.approx(0.004) and not report.energy_measured
    assert report.total.local_usd == pytest.approx(30.004)
    assert alice.local_usd == pytest.approx(30.004 * 3 / 4)
    assert alice.egress_avoided_bytes == 5000 and alice.ttft_ms_avg == 40.0
    data = json.loads(as_json_text(report))
    assert data["total"]["requests"] == 3 and data["local_cost"]["energy"] == "estimated"
    csv_lines = as_csv(report).splitlines()
    assert csv_lines[0].startswith("key,requests,errors") and "cloud_usd[gpt-4o]" in csv_lines[0]
    assert len(csv_lines) == 1 + 3 + 1  # header, three principals, the total
    table = as_table(report)
    assert "alice" in table and "gpt-4o $" in table and "2025-06-01" in table


def test_measured_energy_wins_over_the_estimate(ledger_file: Path, tmp_path: Path) -> None:
    with UsageLedger(ledger_file, clock=lambda: NOW) as ledger:
        ledger.record_energy(NOW - DAY, 60.0, 7.2e6)  # 2 kWh
    settings = make_settings(tmp_path, TETHER_USAGE_POWER_WATTS="100")
    with LedgerReader(ledger_file) as reader:
        report = build_report(reader, settings, price_table(settings), since=NOW - 30 * DAY,
                              until=NOW, by=None)  # fmt: skip
    assert report.energy_measured and report.energy_kwh == pytest.approx(2.0)
    assert report.rows == []


def test_rows_past_the_retention_are_pruned(tmp_path: Path) -> None:
    path = tmp_path / "u.sqlite"
    with UsageLedger(path, retention_days=10, clock=lambda: NOW, since_boot=lambda: 0.0) as ledger:
        ledger.record(row(NOW - 20 * DAY, "a", "m"))
        ledger.record(row(NOW - 1 * DAY, "a", "m"))
        assert ledger.prune() == 1
    with LedgerReader(path) as reader:
        assert reader.totals(0, NOW, None)[0].requests == 1


def test_the_ledger_waits_before_its_first_prune(tmp_path: Path) -> None:
    """A host whose clock is years ahead at boot and set right a moment later keeps its
    rows: nothing is pruned in the host's first five minutes after it boots, however the
    wall clock moves meanwhile."""
    path = tmp_path / "u.sqlite"
    with UsageLedger(path, clock=lambda: NOW) as ledger:
        ledger.record(row(NOW - DAY, "a", "m"))
    wall, steady = [NOW + 2 * 365 * DAY], [0.0]  # the host has just booted
    with UsageLedger(path, clock=lambda: wall[0], since_boot=lambda: steady[0]) as ledger:
        steady[0] += 299
        ledger.record(row(NOW, "a", "m"))  # the clock corrected meanwhile
        wall[0] = NOW
        steady[0] += 2
        ledger.record(row(NOW, "a", "m"))  # pruned now, by the right clock
        steady[0] += 301
        ledger.record(row(NOW - 500 * DAY, "a", "m"))  # due again: this row goes
    with LedgerReader(path) as reader:
        assert reader.totals(0, NOW - 2 * DAY, None) == []
        assert reader.totals(0, NOW + 1, None)[0].requests == 3


def test_a_ledger_opened_long_after_boot_prunes_at_its_first_row(tmp_path: Path) -> None:
    """A server restarted more often than every five minutes pruned nothing: the first
    prune waited five minutes after each start, and rows were kept past the retention."""
    path = tmp_path / "u.sqlite"
    for _ in range(3):  # restarted each minute
        with UsageLedger(path, clock=lambda: NOW, since_boot=lambda: 86_400.0) as ledger:
            ledger.record(row(NOW - 500 * DAY, "a", "m"))
            ledger.record(row(NOW, "a", "m"))
    with LedgerReader(path) as reader:
        assert reader.totals(0, NOW - 2 * DAY, None) == []
        assert reader.totals(0, NOW + 1, None)[0].requests == 3


def test_the_servers_writer_survives_a_bad_row_and_writes_all_on_close(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "u.sqlite"
    writer = LedgerWriter(UsageLedger(path, clock=lambda: NOW))
    writer.record(row(NOW - 1 * DAY, "a", "m", completion_tokens=5))
    writer.flush()
    with LedgerReader(path) as reader:
        assert reader.totals(0, NOW, None)[0].completion_tokens == 5
    writer.record(row(None, "a", "m"))  # type: ignore[arg-type]  # no time: cannot be filed
    for _ in range(50):
        writer.record(row(NOW - 1 * DAY, "b", "m", completion_tokens=1))
    writer.close()  # the queued rows are written before the ledger closes
    assert "could not write a usage row" in caplog.text
    with LedgerReader(path) as reader:
        totals = {t.key: t for t in reader.totals(0, NOW, "principal")}
    assert totals["b"].requests == 50 and totals["a"].requests == 1


def test_a_missing_ledger_reads_empty_and_is_not_created(tmp_path: Path) -> None:
    path = tmp_path / "none.sqlite"
    settings = make_settings(tmp_path)
    with LedgerReader(path) as reader:
        report = build_report(reader, settings, price_table(settings), since=0, until=NOW,
                              by="model")  # fmt: skip
    assert report.total.requests == 0 and report.rows == [] and not path.exists()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30d", NOW - 30 * DAY),
        ("30D", NOW - 30 * DAY),
        ("12H", NOW - 12 * 3600),
        ("2W", NOW - 14 * DAY),
        ("12h", NOW - 12 * 3600),
        ("90m", NOW - 90 * 60),
        ("2w", NOW - 14 * DAY),
        ("2026-11-01", datetime(2026, 11, 1, tzinfo=UTC).timestamp()),
        ("2026-11-01T09:30Z", datetime(2026, 11, 1, 9, 30, tzinfo=UTC).timestamp()),
        ("2026-11-01T09:30+01:00", datetime(2026, 11, 1, 8, 30, tzinfo=UTC).timestamp()),
    ],
)
def test_periods(text: str, expected: float) -> None:
    assert parse_when(text, now=NOW) == pytest.approx(expected)


# Other scripts' digits are numbers to \d and float(), not to a person typing a span.
@pytest.mark.parametrize(
    "text",
    ["yesterday", "30x", "3M", "2026-13-01", "-5d", "", "\u0661\u0662d", "\uff13h", "1.\u0665d"],
)
def test_a_bad_period_says_which_forms_work(text: str) -> None:
    with pytest.raises(RequestError, match=r"30d, 12h, 90m, 2w; m is minutes"):
        parse_when(text, now=NOW)


def test_an_empty_or_reversed_period_is_refused(ledger_file: Path, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    with (
        LedgerReader(ledger_file) as reader,
        pytest.raises(RequestError, match="since must be before until"),
    ):
        build_report(reader, settings, price_table(settings), since=NOW, until=NOW - 1, by=None)


def test_prices_bundled_configured_and_missing(tmp_path: Path) -> None:
    bundled = bundled_table()
    assert bundled.version == "2025-06-01" and "gpt-4o" in bundled.prices
    assert bundled.prices["codestral"].cached_input == bundled.prices["codestral"].input
    settings = make_settings(
        tmp_path,
        TETHER_USAGE_PRICES='{"gpt-4o": {"input": 1, "output": 2}, "mine": '
        '{"input": 0.5, "output": 0.5, "cached_input": 0.1}}',
    )
    table = price_table(settings)
    assert table.prices["gpt-4o"].input == 1 and table.prices["gpt-4o"].configured
    assert table.prices["mine"].cost(1_000_000, 0, 1_000_000) == pytest.approx(0.1)
    with pytest.raises(ConfigError, match=r"no price for 'gpt-9'.*usage\.prices"):
        table.price("gpt-9")
    with pytest.raises(ConfigError, match=r"usage\.prices"):
        make_settings(tmp_path, TETHER_USAGE_PRICES='{"x": {"input": "cheap", "output": 1}}')


def _zone(root: Path, name: str, energy: int, limit: int = 1000) -> None:
    (root / name).mkdir(parents=True, exist_ok=True)
    (root / name / "energy_uj").write_text(str(energy))
    (root / name / "max_energy_range_uj").write_text(str(limit))


def test_rapl_counters_are_read_with_wraparound_and_sampled(tmp_path: Path) -> None:
    root = tmp_path / "powercap"
    assert read_zones(root) is None  # no powercap: no meter
    _zone(root, "intel-rapl:0", 900)
    _zone(root, "intel-rapl:0:0", 5)  # a subzone, already inside its parent
    before = read_zones(root)
    assert before is not None and len(before) == 1
    _zone(root, "intel-rapl:0", 100)  # wrapped at 1000: 200 µJ spent
    after = read_zones(root)
    assert after is not None and joules_between(before, after) == pytest.approx(200e-6)
    samples: list[tuple[float, float, float]] = []
    meter = EnergyMeter(root, lambda *s: samples.append(s), interval_s=3600)
    assert meter.available
    _zone(root, "intel-rapl:0", 400)
    meter.close()  # samples the part-interval on the way out
    assert len(samples) == 1 and samples[0][2] == pytest.approx(300e-6)


def test_a_report_by_day_has_a_row_of_zeros_for_each_quiet_day_it_recorded(
    tmp_path: Path,
) -> None:
    """A spreadsheet or chart of a CSV by day read a missing quiet day as missing data;
    days before the ledger's first request, and days still to come, are not filled."""
    path = tmp_path / "usage.sqlite"
    first = datetime(2026, 11, 20, 23, tzinfo=UTC).timestamp()
    with UsageLedger(path, clock=lambda: NOW) as ledger:
        ledger.record(row(first, "alice", "m1", prompt_tokens=5))
        ledger.record(row(NOW - 4 * DAY, "alice", "m1", prompt_tokens=7))
    settings = make_settings(tmp_path)
    with LedgerReader(path) as reader:
        report = build_report(reader, settings, price_table(settings), since=NOW - 30 * DAY,
                              until=NOW + 10 * DAY, by="day", now=NOW)  # fmt: skip
    days = {r.key: r.prompt_tokens for r in report.rows}
    assert list(days) == [f"2026-11-{d}" for d in range(20, 31)]
    assert days["2026-11-20"] == 5 and days["2026-11-26"] == 7
    assert sum(days.values()) == report.total.prompt_tokens == 12
    assert all(r.requests == 0 and r.local_usd == 0 for r in report.rows if not r.prompt_tokens)
    lines = list(csv.DictReader(io.StringIO(as_csv(report))))
    assert [line["key"] for line in lines] == [*days, "total"]
    with LedgerReader(tmp_path / "none.sqlite") as reader:
        empty = build_report(reader, settings, price_table(settings), since=NOW - 30 * DAY,
                             until=NOW, by="day", now=NOW)  # fmt: skip
    assert empty.rows == []  # nothing recorded: no day to call quiet


def test_an_energy_sample_across_a_clock_step_back_lasts_what_it_lasted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "powercap"
    _zone(root, "intel-rapl:0", 100)
    samples: list[tuple[float, float, float]] = []
    meter = EnergyMeter(root, lambda *s: samples.append(s), interval_s=3600)
    stepped = time.time() - 3600  # NTP steps the clock back an hour meanwhile
    monkeypatch.setattr(time, "time", lambda: stepped)
    meter.close()
    assert len(samples) == 1
    ts, seconds, _ = samples[0]
    assert ts == stepped and 0 <= seconds < 600


def test_the_csv_never_hands_a_spreadsheet_a_formula(tmp_path: Path) -> None:
    path = tmp_path / "usage.sqlite"
    names = ['=HYPERLINK("http://x.example","click")', "@SUM(1+1)", "+1", "-2",
             "\uff1d1+1", "'=x", "plain"]  # fmt: skip
    with UsageLedger(path, clock=lambda: NOW) as ledger:
        for name in names:
            ledger.record(row(NOW - DAY, name, "m1", prompt_tokens=1))
    settings = make_settings(tmp_path)
    with LedgerReader(path) as reader:
        report = build_report(reader, settings, price_table(settings), since=NOW - 30 * DAY,
                              until=NOW, by="principal", compare_with=["gpt-4o"])  # fmt: skip
    lines = list(csv.DictReader(io.StringIO(as_csv(report))))
    # An apostrophe, which a spreadsheet does not show, before each; "'=x" gets its own,
    # so that it does not read as "=x" made inert.
    assert sorted(line["key"] for line in lines) == sorted(
        ["'" + n for n in names[:6]] + ["plain", "total"]
    )
    # A cost of a few millionths of a dollar is written out, not as 3e-06.
    costs = [line["cloud_usd[gpt-4o]"] for line in lines]
    assert "0.000003" in costs and not any("e" in cost for cost in costs), costs


def test_the_hardware_share_counts_from_the_first_request_and_never_past_its_price(
    ledger_file: Path, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, TETHER_USAGE_HARDWARE_USD="1095.75")  # 1 USD a day
    with LedgerReader(ledger_file) as reader:
        prices = price_table(settings)

        def share(since: float) -> float:
            made = build_report(reader, settings, prices, since=since, until=NOW, by=None)
            return made.hardware_usd

        assert share(NOW - 30 * DAY) == pytest.approx(30.0)
        assert share(NOW - 400 * DAY) == pytest.approx(40.0)  # the first request: 40 days ago
        assert share(datetime(1, 1, 1, tzinfo=UTC).timestamp()) == pytest.approx(40.0)
    with UsageLedger(tmp_path / "long.sqlite", clock=lambda: NOW, since_boot=lambda: 0.0) as ledger:
        ledger.record(row(NOW - 3000 * DAY, "early", "m1", prompt_tokens=1))
    with LedgerReader(tmp_path / "long.sqlite") as reader:
        assert share(NOW - 5000 * DAY) == pytest.approx(1095.75)  # all of it, no more
    with LedgerReader(tmp_path / "none.sqlite") as reader:
        assert share(NOW - 30 * DAY) == 0.0  # nothing served


def test_the_hardware_share_stops_at_now_when_the_period_runs_into_the_future(
    ledger_file: Path, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, TETHER_USAGE_HARDWARE_USD="1095.75")  # 1 USD a day
    with LedgerReader(ledger_file) as reader:
        prices = price_table(settings)
        ahead = build_report(
            reader, settings, prices, since=NOW - 30 * DAY, until=NOW + 365 * DAY, by=None, now=NOW
        )
        assert ahead.hardware_usd == pytest.approx(30.0)
        assert ahead.until == NOW + 365 * DAY  # the period asked for is still the one shown
        future = build_report(
            reader, settings, prices, since=NOW + DAY, until=NOW + 2 * DAY, by=None, now=NOW
        )
        assert future.hardware_usd == 0.0


def test_rows_wait_while_another_process_holds_the_ledger_locked(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "u.sqlite"
    # At shutdown it waits close_wait_s at most, and says how many rows it could not write.
    writer = LedgerWriter(UsageLedger(path, clock=lambda: NOW), close_wait_s=0.0)
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # as a sqlite3 shell in a write transaction
    for n in range(3):
        writer.record(row(NOW - DAY, "a", "m", completion_tokens=n))
    # Longer than SQLite's busy timeout (5 s): the rows wait, they are not dropped.
    threading.Timer(5.5, lambda: other.execute("COMMIT")).start()
    writer.flush()
    assert "is locked by another process" in caplog.text and "fuser" in caplog.text
    assert "free again" in caplog.text and "could not write" not in caplog.text
    with LedgerReader(path) as reader:
        assert reader.totals(0, NOW, None)[0].completion_tokens == 0 + 1 + 2
    other.execute("BEGIN IMMEDIATE")
    writer.record(row(NOW - DAY, "a", "m"))
    writer.record(row(NOW - DAY, "a", "m"))
    writer.close()
    other.close()
    assert "2 usage rows were not written" in caplog.text


def test_a_ledger_locked_at_start_says_what_holds_it(tmp_path: Path) -> None:
    path = tmp_path / "u.sqlite"
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("CREATE TABLE held (x)")
    other.execute("BEGIN EXCLUSIVE")
    with pytest.raises(ConfigError, match=r"is locked by another process.*fuser"):
        UsageLedger(path)
    other.close()


def test_a_request_just_before_midnight_is_in_its_own_day_whole_or_part(tmp_path: Path) -> None:
    midnight = datetime(2026, 12, 1, tzinfo=UTC).timestamp()
    path = tmp_path / "u.sqlite"
    with UsageLedger(path, clock=lambda: midnight) as ledger:
        ledger.record(row(midnight - 0.0004, "a", "m", completion_tokens=1))
        ledger.record(row(midnight, "a", "m", completion_tokens=10))
    with LedgerReader(path) as reader:
        for since, until in ((midnight - 3600, midnight + 3600), (midnight - DAY, midnight + DAY)):
            days = {t.key: t.completion_tokens for t in reader.totals(since, until, "day")}
            assert days == {"2026-11-30": 1, "2026-12-01": 10}, (since, until)


def test_a_read_waits_for_the_rows_before_it_a_bounded_time_while_the_ledger_is_locked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A report waits for the rows queued before it; while another process holds the
    ledger, for FLUSH_WAIT_S, not until the lock ends: each wait holds a worker thread."""
    monkeypatch.setattr(ledger_module, "FLUSH_WAIT_S", 0.5)
    path = tmp_path / "u.sqlite"
    writer = LedgerWriter(UsageLedger(path, clock=lambda: NOW))
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    writer.record(row(NOW - DAY, "a", "m", completion_tokens=7))
    release = threading.Timer(6.0, lambda: other.execute("COMMIT"))  # were it to wait
    release.start()
    started = time.monotonic()
    writer.flush()
    assert time.monotonic() - started < 3.0  # the row waits on: SQLite's 5 s and more
    release.join()
    other.close()
    writer.close()  # the row is still written
    with LedgerReader(path) as reader:
        assert reader.totals(0, NOW, None)[0].completion_tokens == 7


def test_egress_avoided_counts_only_what_a_model_read(tmp_path: Path) -> None:
    """Tokens issued, audit events and refused requests would never have gone to a hosted
    API: their bodies are not egress avoided, whether read from rollups or from rows."""
    path = tmp_path / "usage.sqlite"
    # Pruned by none of its writes (the host just booted): the report reads them all.
    with UsageLedger(path, clock=lambda: NOW, since_boot=lambda: 0.0) as ledger:
        ledger.record(row(NOW - 2 * DAY, "alice", "m1", bytes_in=5000, bytes_out=800))
        ledger.record(row(NOW - 2 * DAY, "alice", None, bytes_in=777, bytes_out=99))
        ledger.record(row(NOW - 3600, "alice", "m1", bytes_in=1000, bytes_out=200))
        ledger.record(row(NOW - 3600, "alice", None, bytes_in=555, bytes_out=66))
    settings = make_settings(tmp_path)
    with LedgerReader(path) as reader:
        report = build_report(reader, settings, price_table(settings), since=NOW - 30 * DAY,
                              until=NOW, by=None, compare_with=[])  # fmt: skip
    assert report.total.requests == 4
    assert (report.total.egress_avoided_bytes, report.total.bytes_out) == (6000, 1000)


def test_embeddings_are_priced_at_an_embedding_models_rate(tmp_path: Path) -> None:
    """A hosted API bills embeddings at its embedding model's price, not a chat model's:
    from a whole day's rollup and from a part-day's rows alike."""
    path = tmp_path / "usage.sqlite"
    embedded = "/v1/embeddings"
    with UsageLedger(path, clock=lambda: NOW) as ledger:
        ledger.record(row(NOW - 2 * DAY, "ci", "m1", prompt_tokens=1_000_000,
                          completion_tokens=100_000))  # fmt: skip
        ledger.record(
            replace(row(NOW - 2 * DAY, "ci", "e5", prompt_tokens=3_000_000), endpoint=embedded)
        )
        ledger.record(
            replace(row(NOW - 3600, "ci", "e5", prompt_tokens=2_000_000), endpoint=embedded)
        )
    settings = make_settings(tmp_path)
    with LedgerReader(path) as reader:
        report = build_report(reader, settings, price_table(settings), since=NOW - 30 * DAY,
                              until=NOW, by="endpoint", compare_with=["gpt-4o"])  # fmt: skip
    assert report.total.prompt_tokens == 6_000_000
    assert report.total.embedding_tokens == 5_000_000
    # 1M prompt at 2.50 and 100k out at 10.00 a million; 5M embedded at 0.02 a million
    assert report.total.cloud_usd["gpt-4o"] == pytest.approx(2.5 + 1.0 + 0.1)
    by_endpoint = {r.key: r for r in report.rows}
    assert by_endpoint["/v1/embeddings"].cloud_usd["gpt-4o"] == pytest.approx(0.1)
    assert report.embeddings_priced_as == "text-embedding-3-small"
    assert json.loads(as_json_text(report))["embeddings_priced_as"] == "text-embedding-3-small"
    assert "embeddings at text-embedding-3-small's" in as_table(report)

    larger = make_settings(tmp_path, TETHER_USAGE_COMPARE_EMBEDDINGS_WITH="text-embedding-3-large")
    with LedgerReader(path) as reader:
        report = build_report(reader, larger, price_table(larger), since=NOW - 30 * DAY,
                              until=NOW, by=None, compare_with=["gpt-4o"])  # fmt: skip
    assert report.total.cloud_usd["gpt-4o"] == pytest.approx(2.5 + 1.0 + 0.65)

    unknown = make_settings(tmp_path, TETHER_USAGE_COMPARE_EMBEDDINGS_WITH="ada-9")
    with LedgerReader(path) as reader, pytest.raises(ConfigError, match="no price for 'ada-9'"):
        build_report(reader, unknown, price_table(unknown), since=NOW - 30 * DAY, until=NOW,
                     by=None)  # fmt: skip


class _DiskFillsAtCommit:
    """A ledger connection whose COMMIT meets a full disk: SQLite rolls the transaction
    back by itself and says why."""

    def __init__(self, real: sqlite3.Connection) -> None:
        self.real = real

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if sql == "COMMIT":
            self.real.execute("ROLLBACK")
            raise sqlite3.OperationalError("database or disk is full")
        return self.real.execute(sql, *args)

    def __getattr__(self, name: str) -> object:
        return getattr(self.real, name)


def test_a_row_the_disk_refuses_is_reported_as_a_full_disk(tmp_path: Path) -> None:
    ledger = UsageLedger(tmp_path / "usage.sqlite", clock=lambda: NOW)
    ledger._db = _DiskFillsAtCommit(ledger._db)  # type: ignore[assignment]
    with pytest.raises(sqlite3.OperationalError, match="disk is full"):
        ledger.record(row(NOW, "ana", "m", prompt_tokens=3))
    ledger._db = ledger._db.real  # type: ignore[attr-defined]
    ledger.record(row(NOW, "ana", "m", prompt_tokens=3))  # the next row is written
    assert ledger._db.execute("SELECT count(*) FROM usage").fetchone() == (1,)
