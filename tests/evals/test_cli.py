"""`tether eval` as a user runs it: runs kept and resumed, compared, reported, audited."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from tests.helpers import isolate_tether, tether_env, tether_server, wait_until
from tests.stub_upstream import stub_upstream
from tether.audit import segments
from tether.cli.backend import InProcessBackend
from tether.cli.common import EXIT_INTERRUPTED, EXIT_USAGE
from tether.cli.main import cli
from tether.dashboard.queries import eval_run, eval_runs
from tether.errors import ConfigError, ForbiddenError, NotFoundError
from tether.evals.datasets import load
from tether.evals.runner import summarize
from tether.evals.scoring import Scorer
from tether.evals.store import EvalStore, SampleResult
from tether.sandbox import Outcome, Sandbox, Status

DATASETS = Path(__file__).resolve().parents[3] / "shared" / "datasets"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    isolate_tether(monkeypatch, tmp_path)
    monkeypatch.setenv("TETHER_EVALS_DATASETS_DIR", str(DATASETS))
    monkeypatch.chdir(tmp_path)
    return tmp_path / "home"


def _run(*args: str) -> dict[str, Any]:
    result = CliRunner().invoke(cli, ["eval", "run", *args, "--json"])
    assert result.exit_code == 0, result.output
    summary: dict[str, Any] = json.loads(result.output[result.output.index("{") :])
    return summary


def test_run_history_show_compare_report_and_audit(home: Path) -> None:
    first = _run("humaneval", "--limit", "3", "--max-tokens", "48")
    assert first["tasks"] == 3 and first["samples"] == 3
    assert set(first["pass_at_k"]) == {"pass@1"}
    second = _run(
        "humaneval", "--limit", "3", "--max-tokens", "48", "-n", "2", "--temperature", "0.8"
    )
    assert second["samples"] == 6
    again = _run("humaneval", "--limit", "3", "--max-tokens", "48")
    assert again["pass_at_k"] == first["pass_at_k"]  # greedy and seeded: the same run again
    runner = CliRunner()
    history = json.loads(runner.invoke(cli, ["eval", "history", "--json"]).output)
    assert [h["id"] for h in history[:3]] == [again["run"], second["run"], first["run"]]
    shown = json.loads(
        runner.invoke(cli, ["eval", "show", first["run"], "--tasks", "--json"]).output
    )
    manifest = shown["manifest"]
    assert manifest["dataset"]["sha256"] == load("humaneval", None).sha256
    assert manifest["engine"]["model_sha256"] and manifest["engine"]["system_fingerprint"]
    assert manifest["config"]["seed"] == 0 and manifest["machine"]["cores"] >= 1
    assert len(shown["tasks"]) == 3
    compared = json.loads(
        runner.invoke(cli, ["eval", "compare", first["run"], again["run"], "--json"]).output
    )
    assert compared["tasks"] == 3 and compared["difference"] == 0 and compared["p_value"] == 1
    report = runner.invoke(cli, ["eval", "report", "-o", str(home.parent / "r.html")])
    assert report.exit_code == 0, report.output
    page = (home.parent / "r.html").read_text()
    assert "<svg" in page and first["run"] in page and "http" not in page.split("<body>")[1]
    printed = runner.invoke(cli, ["eval", "report", first["run"], "-o", "-"])
    assert printed.exit_code == 0 and printed.output.startswith("<!")
    assert first["run"] in printed.output and not Path("-").exists()
    records = [
        json.loads(line.data)
        for line in segments.iter_records(home / "audit")
        if isinstance(line, segments.Line)
    ]
    events = [r for r in records if r["endpoint"] == "event eval.run"]
    assert {e["params"]["run"] for e in events} >= {first["run"], second["run"]}


def test_an_interrupted_run_resumes_where_it_stopped(home: Path) -> None:
    first = _run("humaneval", "--limit", "2", "--max-tokens", "32")
    with EvalStore(home / "evals.sqlite") as store:
        run = store.run(first["run"])
        kept = store.samples(run.id)[0]
        resumed_id = store.start(
            run.suite, {**run.manifest, "config": {**run.manifest["config"], "limit": 4}}
        )
        store.add(resumed_id, kept)
        store.finish(resumed_id, "interrupted", {})
    for args, says in (
        (["mbpp+"], "is a run of humaneval, not mbpp+"),
        (["humaneval", "--limit", "9"], "started with --limit 4"),
        (["humaneval", "--samples", "3"], "started with --samples 1"),
    ):
        refused = CliRunner().invoke(cli, ["eval", "run", *args, "--resume", resumed_id])
        assert refused.exit_code == EXIT_USAGE and says in refused.output, refused.output
    resumed = CliRunner().invoke(
        cli, ["eval", "run", "humaneval", "--resume", resumed_id, "--limit", "4", "--json"]
    )
    assert resumed.exit_code == 0, resumed.output
    summary = json.loads(resumed.output[resumed.output.index("{") :])
    assert summary["samples"] == 4
    with EvalStore(home / "evals.sqlite") as store:
        assert store.samples(resumed_id)[0] == kept  # what finished before was not redone
        assert store.run(resumed_id).status == "finished"
    finished = CliRunner().invoke(cli, ["eval", "run", "humaneval", "--resume", resumed_id])
    assert finished.exit_code == EXIT_USAGE and "has finished" in finished.output


def test_a_run_the_server_refuses_midway_is_kept_as_failed(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    answered = InProcessBackend.run
    calls: list[int] = []

    async def refusing_after_one(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) > 1:
            while not _samples_kept(home):  # the first sample has been scored and kept
                await asyncio.sleep(0.05)
            raise ForbiddenError("this token lacks the 'completions' scope")
        return await answered(self, *args, **kwargs)

    monkeypatch.setattr(InProcessBackend, "run", refusing_after_one)
    refused = _run_three_tasks(concurrency=1)
    assert refused.exit_code == 4 and "lacks the 'completions' scope" in refused.output
    assert "--resume run-" in refused.output
    with EvalStore(home / "evals.sqlite") as store:
        (run,) = store.runs()
        (sample,) = store.samples(run.id)
        assert run.status == "failed" and (sample.extra or {}).get("reason") != "stopped"


def _run_three_tasks(concurrency: int) -> Result:
    args = ["run", "humaneval", "--limit", "3", "--max-tokens", "16"]
    return CliRunner().invoke(cli, ["eval", *args, "--concurrency", str(concurrency)])


def _samples_kept(home: Path) -> int:
    with EvalStore(home / "evals.sqlite") as store:
        return sum(len(store.samples(run.id)) for run in store.runs())


def test_a_sample_whose_scoring_a_failure_cut_short_is_not_kept_as_failed(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    answered = InProcessBackend.run
    scored = Scorer.verdict
    calls: list[int] = []

    async def refusing_after_one(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) > 1:
            raise ForbiddenError("this token lacks the 'completions' scope")
        return await answered(self, *args, **kwargs)

    def scored_until_stopped(self: Scorer, *args: Any, stop: Any = None) -> Any:
        if args[2] is not None:  # stop, passed by position
            args[2].wait(30)
        return scored(self, *args)

    monkeypatch.setattr(InProcessBackend, "run", refusing_after_one)
    monkeypatch.setattr(Scorer, "verdict", scored_until_stopped)
    refused = _run_three_tasks(concurrency=1)
    assert refused.exit_code == 4, refused.output
    # Its verdict would read "failed: stopped"; left out, a resumed run scores it again.
    with EvalStore(home / "evals.sqlite") as store:
        (run,) = store.runs()
        assert run.status == "failed" and store.samples(run.id) == []


def test_a_failed_run_stops_its_other_requests_before_it_lets_go_of_the_backend(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[str] = []

    async def one_fails_the_others_wait(self: Any, *args: Any, **kwargs: Any) -> Any:
        events.append("asked")
        if len(events) < 3:
            try:
                await asyncio.sleep(3600)
            finally:
                events.append("stopped")
        raise ForbiddenError("this token lacks the 'completions' scope")

    async def close(self: Any) -> None:
        events.append("closed")

    monkeypatch.setattr(InProcessBackend, "run", one_fails_the_others_wait)
    monkeypatch.setattr(InProcessBackend, "close", close)
    refused = _run_three_tasks(concurrency=3)
    assert refused.exit_code == 4, refused.output
    assert events == ["asked", "asked", "asked", "stopped", "stopped", "closed"]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["run", "nosuch"], "is not one of"),
        (["score", "missing.jsonl", "--suite", "humaneval"], "does not exist"),
        (["score", "bad.jsonl", "--suite", "humaneval"], "is not JSON"),
        (
            ["score", "unknown.jsonl", "--suite", "humaneval"],
            "unknown.jsonl: suite humaneval has no task 'HumanEval/999'; score the file with "
            "the --suite its samples were made for",
        ),
        (["score", "partial.jsonl", "--suite", "humaneval"], "needs task_id and completion"),
        (["score", "empty.jsonl", "--suite", "humaneval"], "holds no samples"),
        (["score", "number.jsonl", "--suite", "humaneval"], "must be strings"),
        (["score", "surrogate.jsonl", "--suite", "humaneval"], "surrogate.jsonl:2: its comp"),
        (["score", "bom-partial.jsonl", "--suite", "humaneval"], "bom-partial.jsonl:1: a sample"),
        (["report"], "no evaluation runs yet"),
        (["show", "run-nope"], "no run"),
        (["compare", "run-a", "run-b"], "no run"),
        (["history", "-n", "0"], "not in the range"),
        (["history", "-n", "99999999999999999999"], "not in the range"),
        (["run", "humaneval", "--samples", "5"], "at temperature 0 draws one answer 5 times"),
        (["run", "humaneval", "--resume", ""], "no run ''"),  # an unset $RUN: not a new run
    ],
)
def test_bad_input_is_one_clear_line(home: Path, args: list[str], says: str) -> None:
    (home.parent / "bad.jsonl").write_text("{not json\n")
    (home.parent / "unknown.jsonl").write_text('{"task_id": "HumanEval/999", "completion": "x"}\n')
    (home.parent / "partial.jsonl").write_text('{"task_id": "HumanEval/0"}\n')
    (home.parent / "empty.jsonl").write_text("\n")
    # A BOM first (Windows editors write one) is not taken for the line's JSON.
    (home.parent / "bom-partial.jsonl").write_text('{"task_id": "HumanEval/0"}\n', "utf-8-sig")
    (home.parent / "number.jsonl").write_text('{"task_id": "HumanEval/0", "completion": 5}\n')
    (home.parent / "surrogate.jsonl").write_text(
        '{"task_id": "HumanEval/0", "completion": "x"}\n'
        '{"task_id": "HumanEval/0", "completion": "\\ud800"}\n'
    )
    result = CliRunner().invoke(cli, ["eval", *args])
    assert result.exit_code == EXIT_USAGE, result.output
    assert says in result.output and "Traceback" not in result.output
    if (home / "evals.sqlite").exists():
        with EvalStore(home / "evals.sqlite") as store:
            assert store.runs() == []  # bad input records no run


def test_a_missing_dataset_folder_is_explained(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TETHER_EVALS_DATASETS_DIR")
    result = CliRunner().invoke(cli, ["eval", "run", "mbpp+", "--limit", "1"])
    assert result.exit_code == EXIT_USAGE and "evals.datasets_dir" in result.output
    monkeypatch.setenv("TETHER_EVALS_DATASETS_DIR", str(home.parent / "empty"))
    result = CliRunner().invoke(cli, ["eval", "run", "mbpp+", "--limit", "1"])
    assert result.exit_code == EXIT_USAGE and "copy the mbpp+ release file" in result.output


def test_a_changed_dataset_file_is_refused(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = home.parent / "datasets" / "mbppplus"
    folder.mkdir(parents=True)
    rows = gzip.decompress((DATASETS / "mbppplus" / "MbppPlus-OriginFmt.jsonl.gz").read_bytes())
    (folder / "MbppPlus-OriginFmt.jsonl.gz").write_bytes(gzip.compress(rows[:-200]))
    monkeypatch.setenv("TETHER_EVALS_DATASETS_DIR", str(home.parent / "datasets"))
    result = CliRunner().invoke(cli, ["eval", "run", "mbpp+", "--limit", "1"])
    assert result.exit_code == EXIT_USAGE and "not the mbpp+ release's" in result.output


def _interrupted_copy(home: Path, run_id: str) -> str:
    """A run like ``run_id`` stopped after its first sample, as Ctrl-C leaves one."""
    with EvalStore(home / "evals.sqlite") as store:
        run = store.run(run_id)
        copy = store.start(run.suite, run.manifest)
        store.add(copy, store.samples(run.id)[0])
        store.finish(copy, "interrupted", {})
    return copy


def test_a_run_is_not_resumed_by_another_model(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = _run("humaneval", "--limit", "2", "--max-tokens", "16")
    stopped = _interrupted_copy(home, first["run"])
    described = InProcessBackend.describe

    async def another_model(self: Any) -> dict[str, Any]:
        return {**(await described(self)), "model": "other.gguf", "model_sha256": "f" * 64}

    monkeypatch.setattr(InProcessBackend, "describe", another_model)
    refused = CliRunner().invoke(cli, ["eval", "run", "humaneval", "--resume", stopped])
    assert refused.exit_code == EXIT_USAGE, refused.output
    assert "other.gguf (sha256 ffffffffffffffff" in refused.output
    assert "start a new run" in refused.output and "Traceback" not in refused.output
    with EvalStore(home / "evals.sqlite") as store:
        recorded = store.run(first["run"]).manifest["engine"]["model_sha256"]
        assert recorded[:16] in refused.output  # both models are named
        assert store.run(stopped).status == "interrupted"  # left as it was
        assert len(store.samples(stopped)) == 1


def test_a_run_is_not_resumed_with_another_context_window(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Resumed with engine.n_ctx 256, a run made at 2048 held samples of both windows,
    and its manifest named one."""
    first = _run("humaneval", "--limit", "2", "--max-tokens", "16")
    stopped = _interrupted_copy(home, first["run"])
    monkeypatch.setenv("TETHER_ENGINE_N_CTX", "256")
    refused = CliRunner().invoke(cli, ["eval", "run", "humaneval", "--resume", stopped])
    assert refused.exit_code == EXIT_USAGE, refused.output
    assert "a context window of 2048 tokens, and this engine has 256" in refused.output
    with EvalStore(home / "evals.sqlite") as store:
        assert len(store.samples(stopped)) == 1


def test_a_window_not_known_yet_is_no_other_window() -> None:
    """A gateway whose upstream was down at start knows its window only later (0): a
    resume after the upstream's restart was refused as made with another window."""
    from tether.evals.manifest import windows_differ

    assert windows_differ(2048, 256)
    assert not windows_differ(8192, 0) and not windows_differ(None, 2048)
    assert not windows_differ(2048, 2048) and not windows_differ(True, 2)


def test_a_run_is_not_resumed_through_an_edited_prompt_template(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _run("humaneval", "--limit", "2", "--max-tokens", "16", "--style", "chat")
    stopped = _interrupted_copy(home, first["run"])
    templates = home.parent / "templates"
    templates.mkdir()
    shown = CliRunner().invoke(cli, ["templates", "show", "chat"])
    assert shown.exit_code == 0, shown.output
    (templates / "chat.j2").write_text("Answer in Python only.\n" + shown.output)
    monkeypatch.setenv("TETHER_TEMPLATES_DIR", str(templates))
    refused = CliRunner().invoke(cli, ["eval", "run", "humaneval", "--resume", stopped])
    assert refused.exit_code == EXIT_USAGE, refused.output
    assert "chat.j2 changed since" in refused.output and "fim.j2" not in refused.output
    with EvalStore(home / "evals.sqlite") as store:
        assert store.run(stopped).status == "interrupted"  # left as it was
        assert len(store.samples(stopped)) == 1
    (templates / "chat.j2").write_text(shown.output)  # put back: the run goes on
    resumed = CliRunner().invoke(cli, ["eval", "run", "humaneval", "--resume", stopped])
    assert resumed.exit_code == 0, resumed.output


def test_a_resumed_run_may_go_at_another_pace(home: Path) -> None:
    first = _run("humaneval", "--limit", "2", "--max-tokens", "16")
    stopped = _interrupted_copy(home, first["run"])
    pace = ["--workers", "2", "--concurrency", "2"]
    resumed = CliRunner().invoke(
        cli, ["eval", "run", "humaneval", "--resume", stopped[-6:], *pace, "--json"]
    )
    assert resumed.exit_code == 0, resumed.output
    summary = json.loads(resumed.output[resumed.output.index("{") :])
    assert summary["run"] == stopped and summary["samples"] == 2
    assert summary["pass_at_k"] == first["pass_at_k"]


@pytest.mark.parametrize(
    ("suite", "manifest", "says"),
    [
        (
            "project:proj",
            {"source": "generated", "config": {"pytest_args": []}},
            "is an `eval project` run of proj",
        ),
        (
            "humaneval",
            {"source": "scored", "config": {"n": 1, "samples_file": "s.jsonl"}},
            "is an `eval score` run of samples made elsewhere (s.jsonl)",
        ),
    ],
)
def test_only_a_run_eval_run_made_is_resumed_by_it(
    home: Path, suite: str, manifest: dict[str, Any], says: str
) -> None:
    with EvalStore(home / "evals.sqlite") as store:
        run_id = store.start(suite, manifest)
        store.finish(run_id, "interrupted", {})
    refused = CliRunner().invoke(cli, ["eval", "run", "humaneval", "--resume", run_id])
    assert refused.exit_code == EXIT_USAGE, refused.output
    assert says in refused.output and "cannot resume it" in refused.output


def _samples_file(home: Path, count: int) -> Path:
    path = home.parent / "samples.jsonl"
    rows = [{"task_id": f"HumanEval/{i}", "completion": "    return None\n"} for i in range(count)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.mark.parametrize(
    ("stop", "exit_code", "status"),
    [
        (KeyboardInterrupt, 130, "interrupted"),
        (None, 130, "interrupted"),  # SIGTERM
        (RuntimeError("broken"), 70, "failed"),
    ],
)
def test_a_scoring_stopped_midway_is_not_left_running(
    home: Path,
    monkeypatch: pytest.MonkeyPatch,
    stop: BaseException | None,
    exit_code: int,
    status: str,
) -> None:
    scored = Scorer.verdict
    calls: list[int] = []
    stopped = threading.Event()

    def stopping_after_one(self: Scorer, *args: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            return scored(self, *args)
        if stop is not None:
            raise stop
        os.kill(os.getpid(), signal.SIGTERM)
        stopped.wait(5)  # the command ends before this sample does
        return scored(self, *args)

    monkeypatch.setattr(Scorer, "verdict", stopping_after_one)
    samples = _samples_file(home, 3)
    result = CliRunner().invoke(
        cli, ["eval", "score", str(samples), "--suite", "humaneval", "--workers", "1"]
    )
    assert result.exit_code == exit_code, result.output
    with EvalStore(home / "evals.sqlite") as store:
        (run,) = store.runs()
        kept = len(store.samples(run.id))  # a signal may come before the first is kept
        assert run.status == status and kept == (1 if stop is not None else kept) <= 1
        assert run.summary is not None and run.summary["samples"] == kept
    # Which file was scored, wherever the command ran, and which version of it.
    config = run.manifest["config"]
    assert config["samples_file"] == str(samples.resolve())
    assert config["samples_sha256"] == hashlib.sha256(samples.read_bytes()).hexdigest()


@pytest.mark.parametrize("command", ["run", "score"])
def test_sigterm_while_the_dataset_is_read_is_an_interruption_that_says_so(
    home: Path, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    def terminated(*args: Any) -> Any:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the signal ends the reading before this does

    monkeypatch.setattr("tether.cli.evals.load", terminated)
    if command == "run":
        args = ["eval", "run", "humaneval", "--limit", "1"]
    else:
        args = ["eval", "score", str(_samples_file(home, 1)), "--suite", "humaneval"]
    stopped = CliRunner().invoke(cli, args)
    assert stopped.exit_code == EXIT_INTERRUPTED, stopped.output
    assert "interrupted" in stopped.output


def test_sigterm_stops_a_run_as_ctrl_c_does(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    answered = InProcessBackend.run
    calls: list[int] = []

    async def terminated_after_one(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) > 1:
            os.kill(os.getpid(), signal.SIGTERM)
        return await answered(self, *args, **kwargs)

    monkeypatch.setattr(InProcessBackend, "run", terminated_after_one)
    handler = signal.getsignal(signal.SIGTERM)
    stopped = CliRunner().invoke(
        cli, ["eval", "run", "humaneval", "--limit", "3", "--max-tokens", "16"]
    )
    assert stopped.exit_code == 130 and "--resume run-" in stopped.output, stopped.output
    assert signal.getsignal(signal.SIGTERM) == handler  # the command's own is gone with it
    with EvalStore(home / "evals.sqlite") as store:
        (run,) = store.runs()
        assert run.status == "interrupted" and run.summary is not None


def test_a_run_with_no_task_scored_has_no_pass_at_1(home: Path) -> None:
    dataset = {"file": "HumanEval.jsonl.gz", "sha256": "0" * 64}
    kept = {"source": "generated", "config": {"n": 1}, "dataset": dataset}
    with EvalStore(home / "evals.sqlite") as store:
        empty = store.start("humaneval", kept)
        store.finish(empty, "interrupted", summarize([], 1))
        old = store.start("humaneval", kept)  # as earlier versions kept it: 0 for no task
        zero = {"value": 0.0, "low": 0.0, "high": 0.0, "tasks": 0}
        store.finish(old, "interrupted", {"tasks": 0, "pass_at_k": {"pass@1": zero}})
        assert [r["pass_at_1"] for r in eval_runs(store)] == [None, None]
        assert eval_run(store, empty)["run"]["pass_at_1"] is None
    runner = CliRunner()
    history = json.loads(runner.invoke(cli, ["eval", "history", "--json"]).output)
    assert [h["pass@1"] for h in history] == [None, None]
    listed = runner.invoke(cli, ["eval", "history"]).output
    assert "pass@1 -" in listed and "0.000" not in listed
    shown = runner.invoke(cli, ["eval", "show", empty])
    assert shown.exit_code == 0 and "pass@1: - (no task scored)" in shown.output
    assert "0.000" not in shown.output
    page = runner.invoke(cli, ["eval", "report", empty, old, "-o", "-"])
    assert page.exit_code == 0 and "0.000" not in page.output
    assert "<circle" not in page.output  # no point at 0 in the trend


def test_a_stopped_run_s_cut_tasks_are_left_out_everywhere_it_is_shown(home: Path) -> None:
    """The summary left out a task a stop cut short, while the report, the dashboard and
    compare counted it: 0.5 on one page, 0.0 on the other."""
    failed = [SampleResult("HumanEval/0", i, "", "failed", False, 0.1) for i in range(2)]
    cut = [SampleResult("HumanEval/1", 0, "", "passed", True, 0.1)]  # 1 of its 2 samples
    dataset = {"file": "HumanEval.jsonl.gz", "sha256": "0" * 64}
    with EvalStore(home / "evals.sqlite") as store:
        runs = []
        for _ in range(2):
            run = store.start(
                "humaneval", {"source": "scored", "config": {"n": 2}, "dataset": dataset}
            )
            for result in failed + cut:
                store.add(run, result)
            runs.append(run)
        running = eval_run(store, runs[0])["run"]["pass_at_1"]  # no summary yet
        store.finish(runs[0], "interrupted", summarize(failed + cut, 2))
        store.finish(runs[1], "interrupted", summarize(failed + cut, 2))
    assert running == 0.0
    shown = CliRunner().invoke(cli, ["eval", "show", runs[0]])
    assert "pass@1: 0.000" in shown.output and "left out: 1 task whose" in shown.output
    page = CliRunner().invoke(cli, ["eval", "report", *runs, "-o", "-"])
    assert page.exit_code == 0 and "0.500" not in page.output and "0.000" in page.output
    compared = json.loads(CliRunner().invoke(cli, ["eval", "compare", *runs, "--json"]).output)
    assert compared["tasks"] == 1


def test_a_samples_file_s_tasks_with_fewer_samples_are_not_taken_for_cut_ones(
    home: Path,
) -> None:
    samples = home.parent / "uneven.jsonl"
    rows = [("HumanEval/0", "    return []\n")] * 2 + [("HumanEval/1", "    return []\n")]
    samples.write_text("".join(json.dumps({"task_id": t, "completion": c}) + "\n" for t, c in rows))
    scored = CliRunner().invoke(
        cli, ["eval", "score", str(samples), "--suite", "humaneval", "--json"]
    )
    assert scored.exit_code == 0, scored.output
    summary = json.loads(scored.stdout.splitlines()[-1])
    assert summary["tasks"] == 2 and "unfinished_tasks" not in summary
    with EvalStore(home / "evals.sqlite") as store:
        (run,) = [r for r in store.runs() if r.id == summary["run"]]
        assert run.manifest["config"]["planned"] == {"HumanEval/0": 2, "HumanEval/1": 1}
        store.reopen(run.id)  # as while it runs: the summary is made from its samples
    shown = CliRunner().invoke(cli, ["eval", "show", summary["run"], "--json"])
    assert json.loads(shown.output)["summary"]["tasks"] == 2


def test_a_pass_at_k_over_fewer_tasks_than_the_run_says_so(home: Path) -> None:
    # Samples made elsewhere, ten for one task and one for another: pass@10 is the first
    # task's alone, which the summary must not pass off as the run's two tasks.
    results = [SampleResult("HumanEval/0", i, "", "passed", True, 0.1) for i in range(10)]
    results.append(SampleResult("HumanEval/1", 0, "", "failed", False, 0.1))
    with EvalStore(home / "evals.sqlite") as store:
        dataset = {"file": "HumanEval.jsonl.gz", "sha256": "0" * 64}
        run = store.start(
            "humaneval", {"source": "scored", "config": {"n": 10}, "dataset": dataset}
        )
        for result in results:
            store.add(run, result)
        planned = {"HumanEval/0": 10, "HumanEval/1": 1}  # as `eval score` counts the file
        store.finish(run, "finished", summarize(results, 10, 0, planned))
    shown = CliRunner().invoke(cli, ["eval", "show", run])
    assert shown.exit_code == 0, shown.output
    lines = {line.split(":")[0].strip(): line for line in shown.output.splitlines()}
    assert "2 tasks" in shown.output.splitlines()[0]
    assert "over" not in lines["pass@1"]  # every task has a sample
    assert "1.000" in lines["pass@10"]
    assert "over 1 of the 2 tasks: the others have fewer than 10 samples" in lines["pass@10"]


def test_a_run_is_named_by_its_id_or_its_end_never_by_a_wildcard(home: Path) -> None:
    with EvalStore(home / "evals.sqlite") as store:
        run = store.start("humaneval", {"source": "generated", "config": {"n": 1}})
        assert store.run(run).id == store.run(run[-6:]).id == run
        for pattern in ("%", "_", "_" * 6, run[:-1] + "_", "%" + run[-3:]):
            with pytest.raises(NotFoundError, match="no run"):
                store.run(pattern)
    shown = CliRunner().invoke(cli, ["eval", "show", "_"])
    assert shown.exit_code == EXIT_USAGE and "no run '_'" in shown.output, shown.output


def test_a_run_under_way_is_shown_with_the_samples_it_has_kept(home: Path) -> None:
    dataset = {"file": "HumanEval.jsonl.gz", "sha256": "0" * 64}
    with EvalStore(home / "evals.sqlite") as store:
        run = store.start(
            "humaneval", {"source": "generated", "config": {"n": 1}, "dataset": dataset}
        )
        store.add(run, SampleResult("HumanEval/0", 0, "", "passed", True, 0.1))
        store.add(run, SampleResult("HumanEval/1", 0, "", "failed", False, 0.1))
        # Another terminal looks at the run while it goes on.
        shown = CliRunner().invoke(cli, ["eval", "show", run])
        assert shown.exit_code == 0, shown.output
        assert "humaneval, 2 tasks, running" in shown.output
        assert "pass@1: 0.500" in shown.output and "samples: failed 1, passed 1" in shown.output
        body = json.loads(CliRunner().invoke(cli, ["eval", "show", run, "--json"]).output)
        assert body["status"] == "running" and body["summary"]["samples"] == 2
    # Its process gone without marking it (killed, or stopped twice while it saved), it is
    # shown as what it is: interrupted, to be resumed.
    body = json.loads(CliRunner().invoke(cli, ["eval", "show", run, "--json"]).output)
    assert body["status"] == "interrupted" and body["summary"]["samples"] == 2
    history = json.loads(CliRunner().invoke(cli, ["eval", "history", "--json"]).output)
    assert [r["status"] for r in history] == ["interrupted"]


def test_a_max_tokens_the_context_cannot_hold_is_refused_before_a_run_is_made(
    home: Path,
) -> None:
    refused = CliRunner().invoke(
        cli, ["eval", "run", "humaneval", "--limit", "1", "--max-tokens", "100000"]
    )
    assert refused.exit_code == EXIT_USAGE, refused.output
    assert "--max-tokens 100000 leaves no room for a prompt" in refused.output
    assert "--resume" not in refused.output  # no run that every resume would fail again
    with EvalStore(home / "evals.sqlite") as store:
        assert store.runs() == []


@pytest.mark.parametrize("command", ["run", "score"])
@pytest.mark.parametrize("stop", ["SIGINT", "SIGTERM"])
# A signal that lands while the main thread runs a weakref callback has its
# KeyboardInterrupt dropped there ("Exception ignored"): the command must still stop.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_stop_while_the_references_are_timed_ends_the_command_at_once(
    home: Path, monkeypatch: pytest.MonkeyPatch, command: str, stop: str
) -> None:
    # The first command on a machine times every reference of the suite: a minute or more
    # of a full suite. A stop meanwhile must not wait for all of them.
    runs: list[int] = []
    lock = threading.Lock()

    def slow(self: Sandbox, program: str, limits: Any, **_: Any) -> Outcome:
        with lock:
            runs.append(1)
            first = len(runs) == 1
        time.sleep(0.1)
        if first:  # Ctrl-C or SIGTERM, while the first reference runs
            os.kill(os.getpid(), getattr(signal, stop))
        time.sleep(0.1)
        return Outcome(Status.PASSED, 0.2, 0)

    monkeypatch.setattr(Sandbox, "run", slow)
    if command == "run":
        args = ["eval", "run", "humaneval", "--limit", "40", "--max-tokens", "4", "--workers", "1"]
    else:
        samples = _samples_file(home, 40)
        args = ["eval", "score", str(samples), "--suite", "humaneval", "--workers", "1"]
    stopped = CliRunner().invoke(cli, args)
    assert stopped.exit_code == 130, stopped.output
    assert len(runs) < 5  # the one under way, not the other 39 references
    times = json.loads(next((home / "cache").glob("reference-times-*.json")).read_text())
    assert 1 <= len(times) < 5  # what was timed is kept for the next run


def test_a_run_is_resumed_by_one_process_at_a_time(tmp_path: Path) -> None:
    tether = [sys.executable, "-m", "tether", "eval", "run", "humaneval"]
    with stub_upstream("    return None\n") as stub:
        stub.answer_delay_s = 60  # the first run is under way while the second starts
        env = tether_env(
            tmp_path,
            TETHER_ENGINE_KIND="openai",
            TETHER_UPSTREAM_BASE_URLS=stub.base_url,
            TETHER_EVALS_DATASETS_DIR=str(DATASETS),
        )
        with subprocess.Popen(
            [*tether, "--limit", "2", "--max-tokens", "8"], env=env, stderr=subprocess.PIPE
        ) as first:
            wait_until(lambda: stub.requests)
            with EvalStore(tmp_path / "data" / "evals.sqlite") as store:
                (run,) = store.runs()
            second = subprocess.run(
                [*tether, "--resume", run.id], env=env, capture_output=True, text=True, timeout=30
            )
            assert second.returncode == EXIT_USAGE, second.stderr
            assert f"run {run.id} is under way in another process (pid {first.pid})" in (
                second.stderr
            )
            assert "Traceback" not in second.stderr
            first.send_signal(signal.SIGKILL)  # killed: its hold on the run goes with it
        stub.answer_delay_s = 0
        resumed = subprocess.run(
            [*tether, "--resume", run.id], env=env, capture_output=True, text=True, timeout=60
        )
    assert resumed.returncode == 0, resumed.stderr
    with EvalStore(tmp_path / "data" / "evals.sqlite") as store:
        assert store.run(run.id).status == "finished"
        assert len(store.samples(run.id)) == 2
    assert not list((tmp_path / "data" / "evals.sqlite.locks").iterdir())  # none left behind


def test_a_run_let_go_leaves_no_lock_file_and_can_be_held_again(tmp_path: Path) -> None:
    path = tmp_path / "evals.sqlite"
    with EvalStore(path) as first, EvalStore(path) as second:
        run = first.start("humaneval", {})  # held by the store that started it
        with pytest.raises(ConfigError, match=f"pid {os.getpid()}"):
            second.hold(run)
        first.close()
        second.hold(run)  # the file the first removed as it let go is not the one held now
        assert (tmp_path / "evals.sqlite.locks" / f"{run}.lock").read_text().startswith("pid ")
    assert not list((tmp_path / "evals.sqlite.locks").iterdir())


def test_run_locks_are_their_owners_only_whatever_the_umask(tmp_path: Path) -> None:
    """A lock names the pid that holds it: like everything under the data home, it is
    not for other local users to read, even where the umask allows it."""
    previous = os.umask(0o022)
    try:
        with EvalStore(tmp_path / "evals.sqlite") as store:
            run = store.start("humaneval", {})
            locks = tmp_path / "evals.sqlite.locks"
            assert stat.S_IMODE(locks.stat().st_mode) == 0o700
            assert stat.S_IMODE((locks / f"{run}.lock").stat().st_mode) == 0o600
    finally:
        os.umask(previous)


def test_a_damaged_run_is_named_and_the_others_still_read(home: Path) -> None:
    dataset = {"file": "HumanEval.jsonl.gz", "sha256": "0" * 64}
    kept = {"source": "generated", "config": {"n": 1}, "dataset": dataset}
    sample = SampleResult("HumanEval/0", 0, "", "passed", True, 0.1)
    with EvalStore(home / "evals.sqlite") as store:
        runs = [store.start("humaneval", kept) for _ in range(3)]
        for run in runs:
            store.add(run, sample)
            store.finish(run, "interrupted", summarize([sample], 1))
    healthy, no_manifest, no_summary = runs
    with closing(sqlite3.connect(home / "evals.sqlite")) as db, db:  # a disk fault, say
        db.execute('UPDATE runs SET manifest = \'{"source": "gen\' WHERE id = ?', (no_manifest,))
        db.execute("UPDATE runs SET summary = '[1, 2' WHERE id = ?", (no_summary,))
    runner = CliRunner()
    listed = runner.invoke(cli, ["eval", "history"])
    assert listed.exit_code == 0 and "Traceback" not in listed.output, listed.output
    assert all(run in listed.output for run in runs)
    assert f"run {no_manifest} is damaged: its manifest is not a JSON object" in listed.output
    assert f"run {no_summary} is damaged: its summary is not a JSON object" in listed.output
    assert f"run {healthy} is damaged" not in listed.output
    history = json.loads(runner.invoke(cli, ["eval", "history", "--json"]).stdout)
    assert {h["id"]: h["damaged"] is None for h in history} == {
        healthy: True,
        no_manifest: False,
        no_summary: False,
    }
    # Summed up again from its samples, as `show` does.
    assert {h["id"]: h["pass@1"] for h in history}[no_summary] == 1.0
    assert f"{no_summary}" in listed.output and "pass@1 -" not in listed.output
    rows = {line.split()[0]: line for line in listed.stdout.splitlines()}
    assert " damaged " in rows[no_manifest] and " interrupted " in rows[healthy]
    shown = runner.invoke(cli, ["eval", "show", no_summary])
    assert shown.exit_code == 0, shown.output
    assert "is damaged: its summary" in shown.output
    assert "pass@1: 1.000" in shown.output  # summed up again from its samples
    shown = runner.invoke(cli, ["eval", "show", no_manifest, "--json"])
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["damaged"] == "its manifest is not a JSON object"
    refused = runner.invoke(cli, ["eval", "run", "humaneval", "--resume", no_manifest])
    assert refused.exit_code == EXIT_USAGE and "cannot be resumed" in refused.output
    report = runner.invoke(cli, ["eval", "report", "-o", "-"])
    assert report.exit_code == 0 and all(run in report.output for run in runs)


@pytest.mark.parametrize(
    "summary",
    [
        '{"pass_at_k": [1], "tasks": 1}',
        '{"pass_at_k": {"pass@1": {"value": "high", "low": 0, "high": 1, "tasks": 1}}}',
        '{"pass_at_k": {"pass@1": {"value": 1.0, "tasks": "x"}}, "tasks": 1}',
        '{"statuses": 5}',
        '{"tasks": "x", "line_coverage": "all"}',
    ],
)
def test_a_run_whose_summary_has_the_wrong_shape_is_summed_up_again(
    home: Path, summary: str
) -> None:
    with EvalStore(home / "evals.sqlite") as store:
        run = store.start("humaneval", {"source": "scored", "config": {"n": 1}})
        store.add(run, SampleResult("HumanEval/0", 0, "", "passed", True, 0.1))
        store.finish(run, "finished", {})
    with closing(sqlite3.connect(home / "evals.sqlite")) as db, db:
        db.execute("UPDATE runs SET summary = ? WHERE id = ?", (summary, run))
    runner = CliRunner()
    for command in (["history"], ["history", "--json"], ["show", run]):
        shown = runner.invoke(cli, ["eval", *command])
        assert shown.exit_code == 0, shown.output
        assert f"run {run} is damaged: its summary is not one tether wrote" in shown.output
    assert "pass@1: 1.000" in shown.output  # from its samples


def test_compare_names_what_the_runs_were_made_with_that_differs(home: Path) -> None:
    engine = {"model": "m", "model_sha256": "a" * 64, "url": "http://one"}
    config = {"n": 1, "style": "completion", "max_tokens": 512, "concurrency": 1}
    made = [
        {"config": config, "engine": engine},
        {  # another style and budget; another server and pace, which change no sample
            "config": {**config, "style": "chat", "max_tokens": 128, "concurrency": 4},
            "engine": {**engine, "url": "http://two"},
        },
    ]
    with EvalStore(home / "evals.sqlite") as store:
        a, b = (store.start("humaneval", {"source": "generated", **m}) for m in made)
        for run in (a, b):
            store.add(run, SampleResult("HumanEval/0", 0, "", "passed", True, 0.1))
    runner = CliRunner()
    compared = runner.invoke(cli, ["eval", "compare", a, b])
    assert compared.exit_code == 0, compared.output
    assert (
        "note: the runs were made differently: max_tokens (512 in A, 128 in B), "
        "style (completion in A, chat in B)\n" in compared.output
    )
    as_json = json.loads(runner.invoke(cli, ["eval", "compare", a, b, "--json"]).stdout)
    assert as_json["differences"] == {
        "max_tokens": {"a": 512, "b": 128},
        "style": {"a": "completion", "b": "chat"},
    }
    same = runner.invoke(cli, ["eval", "compare", a, a])
    assert "made differently" not in same.output
    with EvalStore(home / "evals.sqlite") as store:
        other = store.start("humaneval+", {"source": "generated", **made[0]})
        store.add(other, SampleResult("HumanEval/0", 0, "", "failed", False, 0.1))
    across = json.loads(runner.invoke(cli, ["eval", "compare", a, other, "--json"]).stdout)
    assert across["differences"] == {"suite": {"a": "humaneval", "b": "humaneval+"}}
    noted = runner.invoke(cli, ["eval", "compare", a, other]).output
    assert "made differently: suite (humaneval in A, humaneval+ in B)" in noted


def test_show_counts_one_task_as_one_and_says_when_no_sample_was_scored(home: Path) -> None:
    """A run stopped before its first sample showed "samples: " with nothing after it,
    and a run of one task said "1 tasks"."""
    with EvalStore(home / "evals.sqlite") as store:
        empty = store.start("humaneval", {"source": "scored", "config": {"n": 1}})
        store.finish(empty, "interrupted", summarize([], 1))
        one = store.start("humaneval", {"source": "scored", "config": {"n": 1}})
        store.add(one, SampleResult("HumanEval/0", 0, "", "passed", True, 0.1))
        store.finish(one, "finished", summarize(store.samples(one), 1))
    runner = CliRunner()
    shown = runner.invoke(cli, ["eval", "show", empty])
    assert shown.exit_code == 0, shown.output
    assert f"run {empty}: humaneval, 0 tasks, interrupted\n" in shown.output
    assert "  samples: none scored\n" in shown.output
    shown = runner.invoke(cli, ["eval", "show", one])
    assert f"run {one}: humaneval, 1 task, finished\n" in shown.output
    assert "  samples: passed 1\n" in shown.output


def test_show_tasks_prints_a_failure_s_escape_sequences_escaped(home: Path) -> None:
    """A failure's reason is the last line the generated program wrote: an escape
    sequence in it reached the terminal of whoever ran `eval show --tasks`."""
    with EvalStore(home / "evals.sqlite") as store:
        run = store.start("humaneval", {"source": "scored", "config": {"n": 1}})
        reason = {"reason": "ValueError: \x1b]52;c;aGk=\x07 \x1b[2J"}
        store.add(run, SampleResult("HumanEval/0", 0, "", "failed", False, 0.1, extra=reason))
        store.finish(run, "finished", summarize(store.samples(run), 1))
    shown = CliRunner().invoke(cli, ["eval", "show", run, "--tasks"])
    assert shown.exit_code == 0, shown.output
    assert "\x1b" not in shown.output and "\x07" not in shown.output
    assert "failed: ValueError: \\x1b]52;c;aGk=\\x07 \\x1b[2J" in shown.output
    as_json = CliRunner().invoke(cli, ["eval", "show", run, "--tasks", "--json"]).stdout
    assert json.loads(as_json)["tasks"]["HumanEval/0"]["failures"][0] == {
        "sample": 0,
        "status": "failed",
        "reason": reason["reason"],
    }


def test_compare_says_none_for_a_setting_only_one_run_had(home: Path) -> None:
    """A generated run against a scored samples file listed "limit (2 in A, None in B)":
    Python's None, not words; the JSON keeps null."""
    generated = {"source": "generated", "config": {"n": 1, "limit": 2}}
    scored = {"source": "scored", "config": {"n": 1, "samples_file": "s.jsonl"}}
    with EvalStore(home / "evals.sqlite") as store:
        a, b = (store.start("humaneval", made) for made in (generated, scored))
        for run in (a, b):
            store.add(run, SampleResult("HumanEval/0", 0, "", "passed", True, 0.1))
    runner = CliRunner()
    noted = runner.invoke(cli, ["eval", "compare", a, b])
    assert noted.exit_code == 0, noted.output
    assert "limit (2 in A, none in B), samples_file (none in A, s.jsonl in B)" in noted.output
    assert "None" not in noted.output
    as_json = json.loads(runner.invoke(cli, ["eval", "compare", a, b, "--json"]).stdout)
    assert as_json["differences"]["limit"] == {"a": 2, "b": None}


def test_compare_names_another_window_or_template_and_a_lost_manifest(home: Path) -> None:
    """Runs whose context window or chat template differed compared as made alike, though
    the README says the template moves scores by 10-30 points; a run whose manifest was
    lost showed every option as None."""
    engine = {"model": "m", "n_ctx": 2048, "templates": {"chat": "1d0c" * 16, "fim": "f" * 64}}
    other = {**engine, "n_ctx": 256, "templates": {"chat": "ae0e" * 16, "fim": "f" * 64}}
    config = {"n": 1, "style": "chat", "max_tokens": 96}
    with EvalStore(home / "evals.sqlite") as store:
        a, b = (
            store.start("humaneval", {"source": "generated", "config": config, "engine": e})
            for e in (engine, other)
        )
        lost = store.start("humaneval", {})
        for run in (a, b, lost):
            store.add(run, SampleResult("HumanEval/0", 0, "", "passed", True, 0.1))
    runner = CliRunner()
    compared = json.loads(runner.invoke(cli, ["eval", "compare", a, b, "--json"]).stdout)
    assert compared["differences"] == {
        "n_ctx": {"a": 2048, "b": 256},
        "chat.j2": {"a": "1d0c1d0c1d0c", "b": "ae0eae0eae0e"},
    }
    damaged = json.loads(runner.invoke(cli, ["eval", "compare", a, lost, "--json"]).stdout)
    assert damaged["differences"] == {
        "manifest": {"a": "kept", "b": "unknown (its manifest is lost)"}
    }


def test_a_run_whose_status_is_not_one_tether_writes_is_named_damaged(home: Path) -> None:
    with EvalStore(home / "evals.sqlite") as store:
        run = store.start("humaneval", {"source": "scored"})
    with closing(sqlite3.connect(home / "evals.sqlite")) as db, db:
        db.execute("UPDATE runs SET status = 'weird' WHERE id = ?", (run,))
    listed = CliRunner().invoke(cli, ["eval", "history", "--json"])
    assert listed.exit_code == 0, listed.output
    assert f"run {run} is damaged: its status 'weird' is not one tether writes" in listed.output
    (entry,) = json.loads(listed.stdout)
    assert entry["status"] == "damaged"


def test_a_run_whose_start_time_is_damaged_is_named_and_listed(home: Path) -> None:
    with EvalStore(home / "evals.sqlite") as store:
        runs = [store.start("humaneval", {"source": "scored"}) for _ in range(2)]
    with closing(sqlite3.connect(home / "evals.sqlite")) as db, db:
        db.execute("UPDATE runs SET created = 'yesterday' WHERE id = ?", (runs[0],))
    listed = CliRunner().invoke(cli, ["eval", "history"])
    assert listed.exit_code == 0 and all(run in listed.output for run in runs), listed.output
    assert f"run {runs[0]} is damaged: its start time is not a number" in listed.output
    assert f"run {runs[1]} is damaged" not in listed.output


def test_a_sample_that_writes_a_big_file_fails_and_says_why(home: Path) -> None:
    samples = home.parent / "samples.jsonl"
    big = "    open('big', 'wb').write(b'x' * (64 * 1024 * 1024))\n    return False\n"
    rows = [
        {"task_id": "HumanEval/0", "completion": big},
        {"task_id": "HumanEval/1", "completion": "    return []\n"},
    ]
    samples.write_text("".join(json.dumps(row) + "\n" for row in rows))
    scored = CliRunner().invoke(
        cli, ["eval", "score", str(samples), "--suite", "humaneval", "--json"]
    )
    assert scored.exit_code == 0, scored.output
    *lines, summary = [json.loads(line) for line in scored.stdout.splitlines()]
    by_task = {line["task_id"]: line for line in lines}  # in the order they ended
    big_one = by_task["HumanEval/0"]
    assert big_one["status"] == "failed"  # a limit it ran into, not an escape
    assert big_one["reason"] == "the program wrote a file past the file size limit of 16 MiB"
    other = by_task["HumanEval/1"]
    assert other["status"] == "failed" and other["reason"].startswith("AssertionError")
    assert summary["statuses"] == {"failed": 2}
    with EvalStore(home / "evals.sqlite") as store:
        kept = {s.task_id: s for s in store.samples(summary["run"])}
    assert kept["HumanEval/0"].extra == {"reason": big_one["reason"]}


def test_a_prompt_too_long_for_the_context_fails_its_sample_not_the_run(home: Path) -> None:
    # 1850 tokens leave room for most prompts of a 2048-token window, not for the longest.
    args = ["eval", "run", "humaneval", "--limit", "4", "--max-tokens", "1850", "--json"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    too_long = summary["statuses"].get("too long for the context", 0)
    assert summary["samples"] == 4 and 1 <= too_long < 4, summary
    assert f"warning: {too_long} of the samples were not generated or not tested" in (result.stderr)
    with EvalStore(home / "evals.sqlite") as store:
        assert store.run(summary["run"]).status == "finished"
        kept = [s for s in store.samples(summary["run"]) if s.status == "too long for the context"]
    assert len(kept) == too_long
    for sample in kept:
        assert not sample.passed and sample.extra is not None
        assert (
            "more than the context window: this model's maximum context length is 2048"
            in (sample.extra["reason"])
        )


def test_a_fim_sample_whose_code_was_cut_to_fit_is_not_scored(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The code around the cursor was cut to fit beside --max-tokens, the function's head
    with it, and the answer scored as the task's: a smaller window read as a weaker model."""
    with stub_upstream("    return None\n") as stub:
        stub.max_model_len = 256
        monkeypatch.setenv("TETHER_ENGINE_KIND", "openai")
        monkeypatch.setenv("TETHER_UPSTREAM_BASE_URLS", stub.base_url)
        result = CliRunner().invoke(
            cli,
            ["eval", "run", "humaneval-fim-single", "--limit", "3", "--max-tokens", "48", "--json"],
        )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["statuses"].get("too long for the context", 0) >= 1, summary
    with EvalStore(home / "evals.sqlite") as store:
        cut = [s for s in store.samples(summary["run"]) if s.status == "too long for the context"]
    assert all("was cut to fit the context window" in (s.extra or {})["reason"] for s in cut)


def test_a_run_whose_options_cannot_be_read_is_explained_not_resumed(home: Path) -> None:
    dataset = {"file": "HumanEval.jsonl.gz", "sha256": "0" * 64}
    with EvalStore(home / "evals.sqlite") as store:
        newer = store.start(  # as a newer tether records a run
            "humaneval",
            {"source": "generated", "config": {"n": 1, "sharper": True}, "dataset": dataset},
        )
        store.finish(newer, "interrupted", {})
        odd = store.start("humaneval", {"source": "generated", "config": [1], "engine": "x"})
        store.finish(odd, "interrupted", {})
    runner = CliRunner()
    refused = runner.invoke(cli, ["eval", "run", "humaneval", "--resume", newer])
    assert refused.exit_code == EXIT_USAGE, refused.output
    assert "with options this tether does not know (sharper)" in refused.output
    refused = runner.invoke(cli, ["eval", "run", "humaneval", "--resume", odd])
    assert refused.exit_code == EXIT_USAGE, refused.output
    assert "its manifest's config is not a JSON object and its manifest's engine" in refused.output
    for command in (["show", odd], ["history"]):
        shown = runner.invoke(cli, ["eval", *command])
        assert shown.exit_code == 0 and "Traceback" not in shown.output, shown.output
        assert f"run {odd} is damaged" in shown.output


def test_a_run_whose_options_have_the_wrong_kind_is_not_resumed(home: Path) -> None:
    """Refused before it runs again, not failed midway with the state it had lost."""
    config = {"n": "abc", "max_tokens": 48, "limit": 2, "temperature": None, "style": "prose"}
    with EvalStore(home / "evals.sqlite") as store:
        run = store.start("humaneval", {"source": "generated", "config": config, "engine": {}})
        store.finish(run, "interrupted", {})
    refused = CliRunner().invoke(cli, ["eval", "run", "humaneval", "--resume", run])
    assert refused.exit_code == EXIT_USAGE, refused.output
    assert f"run {run} is damaged: its recorded n, temperature, style cannot be read" in (
        refused.output
    )
    with EvalStore(home / "evals.sqlite") as store:
        assert store.run(run).status == "interrupted"  # as it was


def test_a_run_being_resumed_is_running_again(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = _run("humaneval", "--limit", "2", "--max-tokens", "16")
    stopped = _interrupted_copy(home, first["run"])
    answered = InProcessBackend.run
    seen: list[tuple[str, Any]] = []

    async def looked_at(self: Any, *args: Any, **kwargs: Any) -> Any:
        with EvalStore(home / "evals.sqlite") as store:  # another terminal, meanwhile
            run = store.run(stopped)
            seen.append((run.status, run.summary))
        return await answered(self, *args, **kwargs)

    monkeypatch.setattr(InProcessBackend, "run", looked_at)
    resumed = CliRunner().invoke(cli, ["eval", "run", "humaneval", "--resume", stopped])
    assert resumed.exit_code == 0, resumed.output
    # Not "interrupted" with the summary of when it stopped: that no longer holds.
    assert seen == [("running", None)]


def test_a_sample_with_damaged_figures_still_counts(home: Path) -> None:
    dataset = {"file": "arith", "sha256": "0" * 64}
    with EvalStore(home / "evals.sqlite") as store:
        run = store.start("project:arith", {"source": "generated", "dataset": dataset})
        for task in ("a.py::f", "a.py::g"):
            figures = {"line_coverage": 1.0, "conforming": True}
            store.add(run, SampleResult(task, 0, "", "passed", True, 0.1, extra=figures))
    with closing(sqlite3.connect(home / "evals.sqlite")) as db, db:
        db.execute("UPDATE samples SET extra = '{\"line_cov' WHERE task_id = 'a.py::g'")
    shown = CliRunner().invoke(cli, ["eval", "show", run, "--tasks"])
    assert shown.exit_code == 0 and "Traceback" not in shown.output, shown.output
    assert "2 tasks" in shown.output and "pass@1: 1.000" in shown.output
    assert "line coverage: 1.000" in shown.output  # from the sample whose figures read
    compared = CliRunner().invoke(cli, ["eval", "compare", run, run])
    assert compared.exit_code == 0 and "2 tasks in both" in compared.output, compared.output


def test_each_failed_task_shows_how_it_ended_with_or_without_a_reason(home: Path) -> None:
    with EvalStore(home / "evals.sqlite") as store:
        run = store.start("humaneval", {"source": "generated"})
        store.add(run, SampleResult("t/0", 0, "", "syntax error", False, 0.1))
        store.add(run, SampleResult("t/1", 0, "", "failed", False, 0.1, extra={"reason": "boom"}))
        store.add(run, SampleResult("t/2", 0, "", "passed", True, 0.1))
    lines = CliRunner().invoke(cli, ["eval", "show", run, "--tasks"]).output.splitlines()
    shown = {line.split()[0]: line.split(maxsplit=1)[1] for line in lines if "t/" in line}
    assert shown == {"t/0": "0/1  syntax error", "t/1": "0/1  failed: boom", "t/2": "1/1"}


@pytest.mark.parametrize("command", ["run", "score"])
def test_a_stop_while_a_sample_loops_ends_the_command_at_once(tmp_path: Path, command: str) -> None:
    """Not once the sample reaches its time limit: 41 s here, four times the reference's."""
    cache = tmp_path / "data" / "cache"
    cache.mkdir(parents=True)
    sha = load("humaneval", None).sha256
    (cache / f"reference-times-{sha[:16]}.json").write_text('{"HumanEval/0": 10.0}')
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    looping = "    while True:\n        pass\n"
    samples = tmp_path / "samples.jsonl"
    samples.write_text(json.dumps({"task_id": "HumanEval/0", "completion": looping}) + "\n")
    with stub_upstream(looping) as stub:
        env = tether_env(
            tmp_path,
            TMPDIR=str(scratch),
            TETHER_ENGINE_KIND="openai",
            TETHER_UPSTREAM_BASE_URLS=stub.base_url,
        )
        args = {
            "run": ["run", "humaneval", "--limit", "1", "--max-tokens", "16"],
            "score": ["score", str(samples), "--suite", "humaneval"],
        }[command]
        with subprocess.Popen(
            [sys.executable, "-m", "tether", "eval", *args],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        ) as started:
            wait_until(lambda: any(scratch.glob("tether-sandbox-*")))  # the sample runs
            time.sleep(0.5)
            stopped = time.monotonic()
            started.send_signal(signal.SIGINT)
            assert started.stderr is not None
            said = started.stderr.read()
            assert started.wait(60) == EXIT_INTERRUPTED, said
    assert time.monotonic() - stopped < 10, said
    assert not any(scratch.glob("tether-sandbox-*"))


_BLOCK_ONE = '[{"id": "no-close", "regex": "has_close_elements", "action": "block"}]'


@pytest.mark.parametrize(
    ("rules", "args", "status"),
    [
        ("[]", ["--limit", "4", "--max-tokens", "1850"], "too long for the context"),
        (_BLOCK_ONE, ["--limit", "2", "--max-tokens", "8"], "blocked"),
    ],
    ids=["too-long", "blocked"],
)
def test_through_a_server_too_a_refused_prompt_fails_its_sample_only(
    tmp_path: Path, rules: str, args: list[str], status: str
) -> None:
    datasets = str(DATASETS)
    with tether_server(
        tmp_path, TETHER_EVALS_DATASETS_DIR=datasets, TETHER_POLICY_RULES=rules
    ) as server:
        done = subprocess.run(
            [sys.executable, "-m", "tether", "eval", "run", "humaneval", *args, "--json",
             "--server", server.url],
            env=server.env,
            capture_output=True,
            text=True,
            timeout=120,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    refused = sum(n for name, n in summary["statuses"].items() if name.startswith(status))
    assert 1 <= refused < summary["samples"], summary


def test_a_prompt_the_policy_blocks_fails_its_sample_not_the_run(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TETHER_POLICY_RULES", _BLOCK_ONE)  # HumanEval/0's function
    args = ["eval", "run", "humaneval", "--limit", "2", "--max-tokens", "8", "--json"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["samples"] == 2 and summary["statuses"]["blocked by policy"] == 1, summary
    assert "warning: 1 of the samples were blocked by the policy" in result.stderr
    with EvalStore(home / "evals.sqlite") as store:
        assert store.run(summary["run"]).status == "finished"
        (kept,) = [s for s in store.samples(summary["run"]) if s.status == "blocked by policy"]
    assert kept.task_id == "HumanEval/0" and not kept.passed
    assert kept.extra is not None and "no-close" in kept.extra["reason"]
    shown = CliRunner().invoke(cli, ["eval", "show", summary["run"], "--tasks", "--json"])
    (failure,) = json.loads(shown.stdout)["tasks"]["HumanEval/0"]["failures"]
    assert failure["status"] == "blocked by policy" and "no-close" in failure["reason"]
    shown = CliRunner().invoke(cli, ["eval", "show", summary["run"], "--tasks"])
    assert "HumanEval/0" in shown.output and "0/1  blocked by policy: " in shown.output


def test_chat_style_on_an_infilling_suite_is_refused_before_a_run_is_made(home: Path) -> None:
    args = ["eval", "run", "humaneval-fim-single", "--style", "chat", "--limit", "1"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == EXIT_USAGE, result.output
    assert "--style chat does not apply to humaneval-fim-single" in result.output
    with EvalStore(home / "evals.sqlite") as store:
        assert not store.runs()
