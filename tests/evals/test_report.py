"""`tether eval report`: every run kept is drawn, whatever its samples came to."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.stub_upstream import stub_upstream
from tether.cli.main import cli
from tether.evals.store import EvalStore, SampleResult


def _project_run(project: Path, body: str) -> dict[str, object]:
    with stub_upstream(body) as stub, pytest.MonkeyPatch.context() as inside:
        inside.setenv("TETHER_ENGINE_KIND", "openai")
        inside.setenv("TETHER_UPSTREAM_BASE_URLS", stub.base_url)
        result = CliRunner().invoke(cli, ["eval", "project", str(project), "--json"])
    assert result.exit_code == 0, result.output
    summary: dict[str, object] = json.loads(result.output[result.output.index("{") :])
    return summary


def test_a_project_run_whose_samples_have_no_coverage_is_reported(project: Path) -> None:
    """A body that does not parse runs no line: its coverage is unknown, not a share."""
    covered = _project_run(project, "return x * 2\n")
    broken = _project_run(project, "return (x *\n")
    assert broken["line_coverage"] is None
    result = CliRunner().invoke(cli, ["eval", "report", "-o", "-"])
    assert result.exit_code == 0, result.output
    assert str(covered["run"]) in result.output and str(broken["run"]) in result.output
    # The coverage plot holds the samples that have one.
    assert "Line coverage of generated code" in result.output
    only = CliRunner().invoke(cli, ["eval", "report", str(broken["run"]), "-o", "-"])
    assert only.exit_code == 0, only.output
    assert "Line coverage of generated code" not in only.output


def test_a_sample_whose_test_time_is_damaged_is_reported(project: Path) -> None:
    """Text where a time should be (an edit by hand, a disk fault): the sample still counts."""
    home = project.parent / "home"
    with EvalStore(home / "evals.sqlite") as store:
        run = store.start("humaneval", {"source": "scored"})
        for task in ("HumanEval/0", "HumanEval/1"):
            store.add(run, SampleResult(task, 0, "", "passed", True, 0.5, generate_s=1.0))
    with closing(sqlite3.connect(home / "evals.sqlite")) as db, db:
        db.execute(
            "UPDATE samples SET duration_s = 'abc', generate_s = 'x', tokens = 'y' "
            "WHERE task_id = 'HumanEval/1'"
        )
    result = CliRunner().invoke(cli, ["eval", "report", "-o", "-"])
    assert result.exit_code == 0, result.output
    assert "0.5 seconds" in result.output  # the time that reads is drawn
    with EvalStore(home / "evals.sqlite") as store:
        damaged = store.samples(run)[1]
    assert damaged.passed and damaged.duration_s == 0.0 and damaged.generate_s is None
    assert damaged.extra == {"damaged": "its test time is not a number"}
    shown = CliRunner().invoke(cli, ["eval", "show", run])
    assert shown.exit_code == 0 and "pass@1: 1.000" in shown.output, shown.output


@pytest.mark.parametrize(
    "locale",
    [{"PYTHONIOENCODING": "latin-1"}, {"LC_ALL": "C", "PYTHONUTF8": "0"}],
    ids=["latin-1", "C"],
)
def test_the_report_on_standard_output_is_the_utf8_it_says_it_is(
    project: Path, locale: dict[str, str]
) -> None:
    """Under a Latin-1 locale the page on standard output held Latin-1 bytes, and a
    character beyond Latin-1 as an escape: not the UTF-8 its <meta charset> says."""
    home = project.parent / "home"
    with EvalStore(home / "evals.sqlite") as store:
        run = store.start("humaneval", {"source": "scored"})
        store.add(run, SampleResult("Café/\u6f22\U0001f600", 0, "", "passed", True, 0.5))
    done = subprocess.run(
        [sys.executable, "-m", "tether", "eval", "report", run, "-o", "-"],
        env={**os.environ, **locale},
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "Café/\u6f22\U0001f600".encode() in done.stdout
    assert b"<meta charset='utf-8'>" in done.stdout
