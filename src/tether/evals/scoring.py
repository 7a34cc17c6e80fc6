"""Scoring samples: each one's program run in the sandbox, with a time limit scaled to how
long the suite's reference solution takes on this machine."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from threading import Event, Lock
from typing import Any

from tether.cpus import usable_cores
from tether.databases import private_folder
from tether.evals.datasets import Dataset, Problem
from tether.sandbox import Limits, Outcome, Sandbox, Status

# EvalPlus's rule: a sample may take a few times the reference's time, never less than a
# floor (interpreter start-up and imports are in every run).
TIME_FACTOR = 4.0
TIME_FLOOR_S = 3.0
REFERENCE_LIMIT_S = 120.0


@dataclass(frozen=True)
class Verdict:
    task_id: str
    sample: int
    passed: bool
    status: str
    duration_s: float
    exact: bool | None  # FIM: the middle as the reference has it, whitespace aside
    reason: str | None = None  # why it did not pass: the last line its run wrote

    def as_record(self) -> dict[str, object]:
        return dict(self.__dict__)

    def extra(self) -> dict[str, Any] | None:
        """What a sample keeps besides its status: why it failed, when its run said."""
        return {"reason": self.reason} if self.reason else None


class Scorer:
    def __init__(
        self,
        dataset: Dataset,
        cache_dir: Path,
        *,
        sandbox: Sandbox | None = None,
        workers: int | None = None,
    ) -> None:
        self.dataset = dataset
        self.sandbox = sandbox or Sandbox()
        self.workers = workers or usable_cores()
        self._cache = cache_dir / f"reference-times-{dataset.sha256[:16]}.json"
        self._times: dict[str, float] = _read_times(self._cache)

    def timeout_for(self, problem: Problem) -> float:
        return max(TIME_FLOOR_S, TIME_FACTOR * self._times.get(problem.task_id, 0.0) + 1.0)

    def measure_references(self, task_ids: Iterable[str], stop: Event | None = None) -> None:
        """Time each task's reference solution once; kept for later runs on this machine.

        Stopped (Ctrl-C, or ``stop`` set), it waits only for the references under way, not
        for the rest of the suite, and keeps the times it has."""
        missing = [self.dataset.get(t) for t in dict.fromkeys(task_ids) if t not in self._times]
        if not missing:
            return
        limits = Limits(timeout_s=REFERENCE_LIMIT_S)
        lock = Lock()

        def timed(problem: Problem) -> None:  # kept as each ends, whatever stops the rest
            outcome = self.sandbox.run(problem.program(problem.reference), limits, stop=stop)
            if outcome.stopped:  # cut short: not its time
                return
            with lock:
                self._times[problem.task_id] = outcome.duration_s

        pool = ThreadPoolExecutor(self.workers, thread_name_prefix="tether-reference")
        try:
            futures = [pool.submit(timed, problem) for problem in missing]
            for future in as_completed(futures):
                future.result()  # a sandbox that fails fails the command
                if stop is not None and stop.is_set():
                    break
        finally:
            pool.shutdown(cancel_futures=True)  # waits for the ones under way
            with lock:
                times = dict(self._times)
            self._save_times(times)

    def _save_times(self, times: dict[str, float]) -> None:
        private_folder(self._cache.parent)
        tmp = self._cache.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(times, indent=1, sort_keys=True))
        tmp.replace(self._cache)

    def run(self, problem: Problem, completion: str, stop: Event | None = None) -> Outcome:
        limits = Limits(timeout_s=self.timeout_for(problem))
        return self.sandbox.run(problem.program(completion), limits, stop=stop)

    def verdict(
        self, problem: Problem, sample: int, completion: str, stop: Event | None = None
    ) -> Verdict:
        """How ``completion`` fares; ``stop`` set (the command is stopping) ends its run at
        once, and the verdict is then not one to keep."""
        outcome = self.run(problem, completion, stop)
        fim = self.dataset.suite.mode == "fim"
        exact = completion.strip() == problem.reference.strip() if fim else None
        return Verdict(
            problem.task_id,
            sample,
            outcome.status is Status.PASSED,
            str(outcome.status),
            outcome.duration_s,
            exact,
            None if outcome.status is Status.PASSED else _reason(outcome),
        )


def _reason(outcome: Outcome) -> str | None:
    """The last line of the story of a failure (the error raised, the limit run into, the
    rule broken), short enough to keep with every sample."""
    lines = [line.strip() for line in outcome.detail.splitlines() if line.strip()]
    return lines[-1][:300] if lines else None


def _read_times(path: Path) -> dict[str, float]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}  # none yet, or damaged: measured again
    if not isinstance(data, dict):
        return {}
    # An entry that is not a time (null, text, inf: damaged) is measured again, not trusted:
    # an infinite one would let a sample that hangs hold the run for ever.
    return {
        str(k): float(v)
        for k, v in data.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and 0 <= v < math.inf
    }
