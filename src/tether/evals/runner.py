"""An evaluation run: generate samples through the pipeline, score each in the sandbox as it
arrives, and keep every result the moment it is known.

Generation goes through the same pipeline as any request (policy, templates, traces), on
the embedded engine or a server, ``concurrency`` requests at a time; scoring runs in a
pool of ``workers`` sandboxes beside it. Interrupted, a run keeps what finished and
resumes from there.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
import typing
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, Literal, TypeVar

from tether.engines.base import SamplingParams
from tether.errors import ContextLengthError, PolicyBlockedError
from tether.evals.datasets import Dataset, Problem
from tether.evals.metrics import NO_ESTIMATE, Estimate, estimate
from tether.evals.scoring import Scorer
from tether.evals.store import EvalStore, SampleResult, decided_tasks, per_task
from tether.markdown import fenced_blocks
from tether.pipeline import ChatTask, Completion, CompletionTask, FimInput, FimTask
from tether.pipeline.task import Task
from tether.settings import MAX_SEED

Generate = Callable[[Task], Awaitable[Completion]]
T = TypeVar("T")
Style = Literal["completion", "chat"]
KS = (1, 10, 100)
# A sample whose prompt with --max-tokens is past the model's context window: not generated.
TOO_LONG = "too long for the context"
BLOCKED = "blocked by policy"  # the prompt, or the answer's checks: no code to test


@dataclass(frozen=True)
class RunConfig:
    n: int = 1  # samples per task
    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 512
    seed: int = 0  # sample i of every task uses seed + i, wrapping past MAX_SEED
    style: Style = "completion"
    limit: int | None = None  # N tasks, spread evenly over the suite
    concurrency: int = 1
    workers: int | None = None
    snippets: bool | None = None  # the function store in prompts; None: store.retrieve

    def params(self, sample: int) -> SamplingParams:
        return SamplingParams(
            max_tokens=self.max_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            seed=(self.seed + sample) % (MAX_SEED + 1),
        )

    def as_record(self) -> dict[str, Any]:
        return dict(self.__dict__)


def unreadable_options(recorded: dict[str, Any]) -> list[str]:
    """The options of a recorded run whose value is not one RunConfig can hold (damaged,
    or edited by hand): resumed, they would fail the run midway."""
    hints = typing.get_type_hints(RunConfig)
    return [
        name for name, value in recorded.items() if name in hints and not _fits(value, hints[name])
    ]


def _fits(value: Any, hint: Any) -> bool:
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return (
            isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        )
    if typing.get_origin(hint) is Literal:
        return value in typing.get_args(hint)
    return any(_fits(value, one) for one in typing.get_args(hint))  # int | None, say


_CHAT = (
    "Complete the following Python code. Answer with the whole code, in one ```python "
    "block.\n```python\n{prompt}```"
)


def task_for(problem: Problem, mode: str, config: RunConfig, sample: int) -> Task:
    """What the model is asked for one sample of ``problem``."""
    params = config.params(sample)
    if mode == "fim":
        fim = FimInput(prefix=problem.prompt, suffix=problem.suffix, language="python")
        return FimTask(params, fim)
    if config.style == "chat":
        content = _CHAT.format(prompt=problem.prompt)
        return ChatTask(params, [{"role": "user", "content": content}])
    return CompletionTask(replace(params, stop=problem.stops), problem.prompt)


def completion_of(problem: Problem, config: RunConfig, mode: str, text: str) -> str:
    """The part of an answer that goes where the suite expects its completion."""
    if mode == "fim":
        return text
    if config.style == "chat":
        blocks = [block.code for block in fenced_blocks(text)]
        code = max(blocks, key=len) if blocks else text
        # The answer repeats the prompt's code; the suite appends a completion to it.
        return (
            code.removeprefix(problem.prompt) if code.startswith(problem.prompt) else ("\n" + code)
        )
    for stop in problem.stops:  # an upstream may not honour every stop sequence
        cut = text.find(stop)
        if cut >= 0:
            text = text[:cut]
    return text


def spread(items: list[T], limit: int | None) -> list[T]:
    """At most ``limit`` of ``items``, evenly spaced (the same ones every time)."""
    if limit is None or limit >= len(items):
        return items
    step = len(items) / limit
    return [items[int(i * step)] for i in range(limit)]


class Progress:
    """What a run tells its watcher; the CLI draws it as a bar."""

    def __init__(self, total: int, report: Callable[[int, int, float], None]) -> None:
        self.total = total
        self.done = 0
        self.started = time.monotonic()
        self._report = report

    def step(self) -> None:
        self.done += 1
        self._report(self.done, self.total, time.monotonic() - self.started)


async def run_eval(
    generate: Generate,
    dataset: Dataset,
    scorer: Scorer,
    store: EvalStore,
    run_id: str,
    config: RunConfig,
    progress: Callable[[int, int, float], None] = lambda done, total, seconds: None,
) -> dict[str, Any]:
    """Every sample not yet stored for ``run_id``; returns the run's summary."""
    problems = spread(list(dataset.problems), config.limit)
    done = store.done(run_id)
    todo = [(p, i) for p in problems for i in range(config.n) if (p.task_id, i) not in done]
    # In a thread: a Ctrl-C or SIGTERM meanwhile stops the run now, not once the references
    # of the whole suite are timed (a minute or more the first time on a machine).
    stop = threading.Event()
    try:
        await asyncio.to_thread(scorer.measure_references, [p.task_id for p, _ in todo], stop)
    finally:
        stop.set()
    tracker = Progress(len(todo), progress)
    gate = asyncio.Semaphore(config.concurrency)
    loop = asyncio.get_running_loop()
    mode = dataset.suite.mode
    halt = threading.Event()
    with ThreadPoolExecutor(scorer.workers, thread_name_prefix="tether-score") as pool:

        async def one(problem: Problem, sample: int) -> None:
            async with gate:
                task = task_for(problem, mode, config, sample)
                made = await generate_sample(generate, task, problem.task_id, sample)
            if isinstance(made, SampleResult):  # refused, or its answer withheld
                store.add(run_id, made)
                tracker.step()
                return
            answer, generated = made
            completion = completion_of(problem, config, mode, answer.text)
            verdict = await loop.run_in_executor(
                pool, scorer.verdict, problem, sample, completion, halt
            )
            store.add(
                run_id,
                SampleResult(
                    task_id=problem.task_id,
                    sample=sample,
                    completion=completion,
                    status=verdict.status,
                    passed=verdict.passed,
                    duration_s=verdict.duration_s,
                    exact=verdict.exact,
                    generate_s=generated,
                    tokens=answer.completion_tokens,
                    trace_id=answer.id or None,
                    extra=verdict.extra(),
                ),
            )
            tracker.step()

        try:
            await all_or_none([one(p, i) for p, i in todo])
        finally:
            # Stopped: the samples under test end now, not at their time limit (a sample that
            # loops for ever holds it), which the pool would wait out.
            halt.set()
    return summarize(store.samples(run_id), config.n)


async def all_or_none(work: list[Awaitable[None]]) -> None:
    """Await all of ``work`` together; on the first failure, cancel the rest and wait for
    them to end before raising it. ``asyncio.gather`` leaves them running: they went on
    writing through a backend closed under them (a stray ``coroutine ... was never
    awaited`` from an HTTP connect cut short) until the event loop's end cancelled them."""
    tasks = [asyncio.ensure_future(w) for w in work]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def generate_sample(
    generate: Generate, task: Task, task_id: str, sample: int
) -> tuple[Completion, float] | SampleResult:
    """The answer to ``task`` and the seconds it took; or, where there is no code to test,
    the failed sample that says why: a prompt refused (too long, blocked by the policy), an
    answer the checks withheld, or one to code cut to fit the window (not the task set).
    One such sample fails alone, not the whole run."""
    started = time.perf_counter()
    try:
        answer = await generate(task)
    except (ContextLengthError, PolicyBlockedError) as exc:
        status = BLOCKED if isinstance(exc, PolicyBlockedError) else TOO_LONG
        return SampleResult(task_id, sample, "", status, False, 0.0, extra={"reason": exc.message})
    generated = time.perf_counter() - started

    def untested(status: str, reason: str) -> SampleResult:
        return SampleResult(
            task_id,
            sample,
            "",
            status,
            False,
            0.0,
            generate_s=generated,
            tokens=answer.completion_tokens,
            trace_id=answer.id or None,
            extra={"reason": reason},
        )

    if answer.truncated:  # the code around the cursor was cut: not the task the suite set
        return untested(
            TOO_LONG,
            "the code around the cursor was cut to fit the context window beside "
            "max_tokens; lower --max-tokens or raise engine.n_ctx",
        )
    if answer.blocked:
        rules = ", ".join(answer.findings.blocking) or "-"
        return untested(BLOCKED, f"the answer was blocked by the checks: {rules}")
    return answer, generated


def summarize(
    results: list[SampleResult], n: int, seed: int = 0, planned: Mapping[str, int] | None = None
) -> dict[str, Any]:
    """pass@k (with intervals) for every k the samples allow, and what the samples did.
    A task with fewer samples scored than planned (``planned``, else ``n`` a task: a run
    was stopped) is left out of pass@k: a stop cuts the samples that take longest, mostly
    the failing ones, so what was scored of it would count it too well."""
    tasks = per_task(results)
    decided = decided_tasks(results, n, planned)
    summary: dict[str, Any] = {
        "tasks": len(decided),
        "samples": len(results),
        "pass_at_k": {f"pass@{k}": _record(estimate(decided, k, seed)) for k in KS if k <= n},
        "statuses": _count(r.status for r in results),
    }
    if len(decided) < len(tasks):
        summary["unfinished_tasks"] = len(tasks) - len(decided)
    exact = [r.exact for r in results if r.exact is not None]
    if exact:
        summary["exact_match"] = sum(exact) / len(exact)
    return summary


def _record(found: Estimate | None) -> dict[str, Any]:
    return found.as_record() if found is not None else dict(NO_ESTIMATE)


def _count(values: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return counts


__all__ = ["RunConfig", "run_eval", "summarize", "task_for"]
