"""`tether usage report` reads a ledger without ever writing to it, and refuses what is not
one, or a period it cannot print, as bad input (exit status 2) in one line."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from tests.usage.test_rollups import OLD_USAGE_TABLE
from tether.cli.common import EXIT_USAGE
from tether.cli.main import cli
from tether.errors import ConfigError, RequestError
from tether.traces import TraceStore
from tether.usage.ledger import UsageLedger, UsageRecord
from tether.usage.reader import LedgerReader
from tether.usage.report import parse_when

NOW = 1_796_000_000.0


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in [n for n in os.environ if n.startswith("TETHER_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("TETHER_HOME", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)  # no tether.toml from the checkout
    return tmp_path / "data"


def _report(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, ["usage", "report", *(str(a) for a in args)])


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _refused(done: Result, says: str) -> None:
    assert done.exit_code == EXIT_USAGE, done.output
    assert done.stdout == "" and done.stderr.count("\n") == 1
    assert says in done.stderr and "internal error" not in done.stderr


def test_another_sqlite_file_is_refused_and_left_as_it_was(home: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.sqlite"
    db = sqlite3.connect(other)
    db.execute("CREATE TABLE important (x)")
    db.commit()
    db.close()
    traces = tmp_path / "traces.sqlite"
    TraceStore(traces).close()
    for path in (other, traces):
        before = _digest(path)
        _refused(_report("--ledger", path), f"{path.name} is not a tether usage ledger")
        with pytest.raises(ConfigError, match="not a tether usage ledger"):
            LedgerReader(path)
        assert _digest(path) == before
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(path.name)) == [
            path.name
        ]
    tables = sqlite3.connect(other).execute("SELECT name FROM sqlite_master").fetchall()
    assert tables == [("important",)]


def test_a_missing_or_non_database_ledger_is_bad_input(home: Path, tmp_path: Path) -> None:
    _refused(_report("--ledger", tmp_path / "nope.sqlite"), "no usage ledger at")
    assert not (tmp_path / "nope.sqlite").exists()
    text = tmp_path / "a.py"
    text.write_text("x = 1\n" * 200)
    _refused(
        _report("--ledger", text), "a.py is not a tether usage ledger (file is not a database)"
    )
    assert text.read_text() == "x = 1\n" * 200
    # The server's own ledger before its first request (a fresh install) is just empty.
    done = _report("--format", "json")
    assert done.exit_code == 0, done.output
    assert '"requests": 0' in done.stdout
    assert not (home / "usage.sqlite").exists()  # reading created nothing
    # An empty file there (which doctor calls whole, and the server sets up) reads so too.
    home.mkdir(parents=True, exist_ok=True)
    (home / "usage.sqlite").write_bytes(b"")
    empty = _report("--format", "json")
    assert empty.exit_code == 0 and '"requests": 0' in empty.stdout, empty.output
    assert (home / "usage.sqlite").read_bytes() == b""
    _refused(_report("--ledger", home / "usage.sqlite"), "is an empty database")


def test_a_data_directory_that_is_a_file_is_named_not_read_as_no_usage(home: Path) -> None:
    """A mistyped TETHER_HOME that names a file read as a ledger with no requests."""
    home.parent.mkdir(parents=True, exist_ok=True)
    home.write_text("not a folder\n")
    _refused(_report(), f"{home} is not a folder, so it holds no usage ledger")
    home.unlink()
    home.mkdir()
    (home / "usage.sqlite").write_bytes(b"\x00garbage" * 600)
    # No copy was passed: the one there is to be moved aside, not passed again.
    done = _report()
    _refused(done, "usage.sqlite is not a tether usage ledger (file is not a database)")
    assert "move it aside" in done.stderr and "pass a copy" not in done.stderr


def test_a_current_ledger_is_read_without_a_byte_changed(home: Path, tmp_path: Path) -> None:
    path = tmp_path / "copy of usage#1.sqlite"  # a URI needs these quoted
    with UsageLedger(path) as ledger:
        ledger.record(UsageRecord(
            ts=NOW, request_id="r", principal="ann", token_id="t", model="m",
            endpoint="/v1/completions", status=200, prompt_tokens=10, completion_tokens=2,
            cached_tokens=0, ttft_ms=30.0, duration_ms=90.0, bytes_in=100, bytes_out=50,
        ))  # fmt: skip
    before = _digest(path)
    done = _report("--ledger", path, "--since", "2026-01-01", "--by", "principal")
    assert done.exit_code == 0, done.output
    assert "ann" in done.stdout and _digest(path) == before
    damaged = tmp_path / "damaged.sqlite"
    damaged.write_bytes(path.read_bytes())
    db = sqlite3.connect(damaged)
    db.execute("DROP TABLE usage_daily")
    db.commit()
    db.close()
    _refused(_report("--ledger", damaged), "lacks the tables usage_daily")


def test_an_older_ledger_is_not_upgraded_by_a_report(home: Path, tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.execute(OLD_USAGE_TABLE)
    db.commit()
    db.close()
    before = _digest(path)
    _refused(_report("--ledger", path), "start the server once")
    assert _digest(path) == before


@pytest.mark.parametrize(
    "args",
    [
        ["--since", "99999999d"],
        ["--since", "9" * 400 + "w"],
        ["--since", "0001-01-01T00:00+01:00"],
        ["--since", "1d", "--until", "9999-12-31T23:30-01:00"],
    ],
)
def test_a_time_outside_the_calendar_is_bad_input(home: Path, args: list[str]) -> None:
    option = args[-2]
    with pytest.raises(RequestError, match="outside the years 1 to 9999"):
        parse_when(args[-1], now=NOW, option=option)
    _refused(_report(*args), f"{option} '{args[-1]}' is not a time")


def test_a_plain_copy_of_a_ledger_in_use_says_how_to_copy_one(home: Path, tmp_path: Path) -> None:
    import shutil

    live = tmp_path / "usage.sqlite"
    with UsageLedger(live) as ledger:  # open: its data is still in usage.sqlite-wal
        ledger.record(UsageRecord(
            ts=NOW, request_id="r", principal="ann", token_id="t", model="m",
            endpoint="/v1/completions", status=200, prompt_tokens=10, completion_tokens=2,
            cached_tokens=0, ttft_ms=30.0, duration_ms=90.0, bytes_in=100, bytes_out=50,
        ))  # fmt: skip
        assert (tmp_path / "usage.sqlite-wal").stat().st_size > 0
        copy = tmp_path / "copy.sqlite"
        shutil.copyfile(live, copy)
        _refused(_report("--ledger", copy), '`sqlite3 usage.sqlite ".backup copy.sqlite"`')
    empty = tmp_path / "empty.sqlite"
    empty.write_bytes(b"")
    _refused(_report("--ledger", empty), "copy usage.sqlite-wal along with it")


def test_an_until_before_the_default_since_says_where_the_period_starts(home: Path) -> None:
    _refused(_report("--until", "2001-01-01"), "without --since it starts 30d before now")
    _refused(_report("--since", "2001-01-02", "--until", "2001-01-01"), "must be before --until")


def test_a_since_in_the_future_without_until_says_the_period_ends_now(home: Path) -> None:
    # "--since must be before --until" named an --until nobody gave.
    for since in ("2999-01-01", "0d"):
        done = _report("--since", since)
        _refused(done, f"--since '{since}' is not in the past, and without --until the period")
        assert "give a start before now, or --until as well" in done.output
    assert _report("--since", "2999-01-01", "--until", "2999-02-01").exit_code == 0


def test_a_price_too_large_to_report_is_refused_by_name(home: Path, tmp_path: Path) -> None:
    with UsageLedger(home / "usage.sqlite") as ledger:
        ledger.record(UsageRecord(
            ts=time.time() - 60, request_id="r", principal="ann", token_id="t", model="m",
            endpoint="/v1/completions", status=200, prompt_tokens=10**9, completion_tokens=10**9,
            cached_tokens=0, ttft_ms=30.0, duration_ms=90.0, bytes_in=100, bytes_out=50,
        ))  # fmt: skip
    config = tmp_path / "tether.toml"
    config.write_text('[usage]\ncompare_with = ["big"]\n[usage.prices.big]\ninput = 1e308\n')
    config.write_text(config.read_text() + "output = 1\n")
    _refused(_report("--format", "json"), "usage.prices")
    assert "big.input: Input should be less than or equal to 1000000" in _report().stderr
    # The largest price accepted gives a finite cost: the report is valid JSON.
    config.write_text(config.read_text().replace("1e308", "1000000"))
    done = _report("--format", "json")
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["total"]["cloud_usd"]["big"] == pytest.approx(1e9 + 1e3)


def test_a_period_from_the_first_years_shows_them_with_four_digits(home: Path) -> None:
    shown = _report("--since", "0001-01-01", "--until", "0999-06-01")
    assert shown.exit_code == 0, shown.output
    assert "usage 0001-01-01 00:00 to 0999-06-01 00:00 UTC" in shown.output
