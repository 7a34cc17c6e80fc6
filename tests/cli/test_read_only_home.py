"""An auditor's copy of a data directory, read-only to them (a read-only mount, or files
they do not own): the commands that only read work on it, and write nothing there."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from contextlib import closing
from pathlib import Path

import pytest

from tests.helpers import read_only, run_bound
from tests.store.conftest import vetted
from tests.traces.conftest import make_trace
from tether.evals.store import EvalStore, SampleResult
from tether.store import SnippetStore
from tether.traces import TraceStore
from tether.usage.ledger import UsageLedger, UsageRecord

# Runs each command (a JSON list of argument lists) in one process; prints their exit
# statuses and output.
_COMMANDS = """
import json, sys
from click.testing import CliRunner
from tether.cli.main import cli
results = [CliRunner().invoke(cli, args) for args in json.loads(sys.argv[1])]
print(json.dumps([[r.exit_code, r.output] for r in results]))
"""
# Whether this process may make a file in the folder sys.argv[1].
_MAY_WRITE = """
import os, sys
try:
    os.close(os.open(os.path.join(sys.argv[1], "probe"), os.O_CREAT | os.O_WRONLY))
    print("yes")
except OSError:
    print("no")
"""


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty data directory, the only one the commands see."""
    for name in [n for n in os.environ if n.startswith("TETHER_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("TETHER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TETHER_SERVER_RUNTIME_DIR", str(tmp_path / "run"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "home").mkdir()
    return tmp_path / "home"


def _keep_a_trace_and_a_run(home: Path) -> str:
    """A trace and a finished evaluation run, as a server and `tether eval` leave them:
    closed, so with no -wal or -shm beside the databases; the run's id."""
    with TraceStore(home / "traces.sqlite") as traces:
        traces.record(make_trace("cmpl-one", created=4_000_000_000.0))
    with EvalStore(home / "evals.sqlite") as runs:
        run = runs.start("humaneval", {"source": "scored", "config": {"n": 1}})
        runs.add(run, SampleResult("HumanEval/0", 0, "return 1", "passed", True, 0.5))
        runs.finish(run, "finished", {"tasks": 1, "samples": 1})
    return run


def _run(*commands: list[str]) -> list[tuple[int, str]]:
    return [(code, out) for code, out in json.loads(run_bound(_COMMANDS, json.dumps(commands)))]


def test_the_commands_that_read_work_on_a_read_only_copy(home: Path, tmp_path: Path) -> None:
    run = _keep_a_trace_and_a_run(home)
    before = sorted(home.rglob("*"))
    manifest = tmp_path / "manifest.json"
    with read_only(home):
        assert run_bound(_MAY_WRITE, str(home)).strip() == "no"
        results = _run(
            ["eval", "history"],
            ["eval", "show", run, "--tasks"],
            ["eval", "compare", run, run],
            ["eval", "report", run, "-o", str(tmp_path / "report.html")],
            ["explain", "cmpl-one"],
            ["explain", "--recent"],
            ["repro", "record", "cmpl-one", "-o", str(manifest)],
        )
    for code, output in results:
        assert code == 0, output
    history, show, _, _, explained, recent, _ = (output for _, output in results)
    assert run in history and "humaneval" in history
    assert "HumanEval/0" in show and "1/1" in show
    assert "What the policies did" in explained
    assert recent.startswith("cmpl-one")
    assert json.loads(manifest.read_text())["output"] == "print(key)"
    assert "<html" in (tmp_path / "report.html").read_text()
    assert sorted(home.rglob("*")) == before  # nothing made there


def test_a_read_only_data_directory_without_runs_or_traces_has_none(home: Path) -> None:
    """Nothing is made where nothing was: no runs and no traces is what there is."""
    with read_only(home):
        history, record = _run(["eval", "history"], ["repro", "record", "cmpl-one"])
    assert history == (0, "no runs yet: tether eval run SUITE\n")
    assert record[0] == 2 and "no trace 'cmpl-one' here" in record[1]
    assert list(home.iterdir()) == []


def test_a_trace_store_from_before_its_search_columns_reads_as_it_is(home: Path) -> None:
    """Reading needs no upgrade: id, time and body are all `explain` reads."""
    with closing(sqlite3.connect(home / "traces.sqlite")) as db, db:
        db.execute("CREATE TABLE traces (id TEXT PRIMARY KEY, created REAL NOT NULL, body TEXT)")
        trace = make_trace("cmpl-old", created=4_000_000_000.0)
        db.execute(
            "INSERT INTO traces VALUES (?, ?, ?)", (trace.id, trace.created, trace.to_json())
        )
    with read_only(home):
        ((code, explained),) = _run(["explain", "cmpl-old"])
    assert code == 0 and "What the policies did" in explained, explained


def test_the_usage_report_reads_a_read_only_ledger(home: Path) -> None:
    with UsageLedger(home / "usage.sqlite") as ledger:
        ledger.record(
            UsageRecord(time.time() - 60, "r-1", "alice", None, "qwen", "/v1/completions",
                        200, 12, 3, 0, 50.0, 80.0, 400, 90)
        )  # fmt: skip
    with read_only(home):
        ((code, report),) = _run(["usage", "report", "--format", "json"])
    assert code == 0, report
    assert json.loads(report)["total"]["prompt_tokens"] == 12


def test_an_output_asked_for_in_the_read_only_copy_is_refused_by_its_name(home: Path) -> None:
    _keep_a_trace_and_a_run(home)
    inside = home / "manifest.json"
    with read_only(home):
        ((code, said),) = _run(["repro", "record", "cmpl-one", "-o", str(inside)])
    assert code == 2, said
    assert said.startswith(f"error: --output {inside} cannot be written (Permission denied)")
    assert "a folder you can write" in said and ".tmp" not in said


def test_a_ledger_copied_with_its_wal_alone_is_not_called_another_file(
    home: Path, tmp_path: Path
) -> None:
    """A copy taken while its server wrote, with a -wal and no -shm: in a folder the reader
    cannot write SQLite cannot read the -wal, and says so, rather than the file being
    refused as no ledger and moved aside."""
    live = tmp_path / "live" / "usage.sqlite"
    live.parent.mkdir()
    with UsageLedger(live) as ledger:
        ledger.record(
            UsageRecord(time.time() - 60, "r-1", "alice", None, "qwen", "/v1/completions",
                        200, 12, 3, 0, 50.0, 80.0, 400, 90)
        )  # fmt: skip
        for name in ("usage.sqlite", "usage.sqlite-wal"):
            (home / name).write_bytes((live.parent / name).read_bytes())
    with read_only(home):
        ((code, said),) = _run(["usage", "report"])
    assert code == 2, said
    assert "usage.sqlite-wal beside it holds changes" in said, said
    assert "not a tether usage ledger" not in said and "move it aside" not in said


def test_the_store_commands_that_read_work_on_a_read_only_copy(home: Path) -> None:
    with SnippetStore(home / "store.sqlite") as store:
        snippet = vetted(store, "def double(x):\n    return 2 * x\n")
    before = sorted(home.rglob("*"))
    with read_only(home):
        listed, shown, found = _run(
            ["store", "list"], ["store", "show", str(snippet.id)], ["store", "search", "double"]
        )
    for code, output in (listed, shown, found):
        assert code == 0, output
    assert "double" in listed[1] and "return 2 * x" in shown[1] and "double" in found[1]
    assert sorted(home.rglob("*")) == before  # nothing made there


def test_a_store_an_older_tether_wrote_is_read_without_upgrading_it(home: Path) -> None:
    """Upgrading takes a write, which a command that reads must not make (an older server
    may still use the file): it reads an upgraded copy in memory. It used to refuse, saying
    to run `tether store list`, the very command refused."""
    with SnippetStore(home / "store.sqlite") as store:
        vetted(store, "def double(x):\n    return 2 * x\n")
    with closing(sqlite3.connect(home / "store.sqlite")) as db, db:
        db.execute("DELETE FROM meta WHERE key = 'words'")  # as a store of 1.x has it
        db.execute("ALTER TABLE snippets DROP COLUMN served")  # schema 1 had none
        db.execute("PRAGMA user_version = 1")
    before = {path: path.read_bytes() for path in home.rglob("*")}
    with read_only(home):
        listed, searched = _run(["store", "list"], ["store", "search", "double"])
    for code, output in (listed, searched):
        assert code == 0 and "double" in output, output
    assert {path: path.read_bytes() for path in home.rglob("*")} == before
    listed_writable, searched_writable = _run(["store", "list"], ["store", "search", "double"])
    assert (listed_writable, searched_writable) == (listed, searched)
    with closing(sqlite3.connect(home / "store.sqlite")) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 1  # for the server to do


def test_no_store_in_a_read_only_copy_lists_none_and_makes_none(home: Path) -> None:
    with read_only(home):
        ((code, listed),) = _run(["store", "list"])
    assert code == 0, listed
    assert list(home.iterdir()) == []
