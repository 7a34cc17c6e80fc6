"""pass@k and how sure we are of it: the unbiased estimator, bootstrap confidence
intervals over tasks, and a paired comparison of two runs with an exact test."""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from tether.errors import RequestError

BOOTSTRAP_RESAMPLES = 2000
CONFIDENCE = 0.95


def pass_at_k(n: int, c: int, k: int) -> float:
    """The unbiased estimator of Chen et al. (2021): 1 - C(n-c, k) / C(n, k)."""
    if not 0 <= c <= n or k < 1 or k > n:
        raise ValueError(f"pass@{k} needs 1 <= k <= n and 0 <= c <= n (n={n}, c={c})")
    if n - c < k:
        return 1.0
    # The product form avoids huge binomials.
    return 1.0 - float(math.prod(1.0 - k / i for i in range(n - c + 1, n + 1)))


@dataclass(frozen=True)
class Estimate:
    value: float
    low: float
    high: float
    tasks: int

    def as_record(self) -> dict[str, float | int]:
        return {"value": self.value, "low": self.low, "high": self.high, "tasks": self.tasks}


# pass@k of no task: a run stopped before its first is scored has no result, not 0.
NO_ESTIMATE: dict[str, float | int | None] = {"value": None, "low": None, "high": None, "tasks": 0}


def recorded_value(record: dict[str, object]) -> float | None:
    """The value of a recorded estimate; None when it has none (stored as 0 for no task
    by earlier versions)."""
    value = record.get("value")
    return float(value) if isinstance(value, int | float) and record.get("tasks") else None


def _interval(values: Sequence[float], seed: int) -> tuple[float, float]:
    """Percentile bootstrap of the mean over tasks, seeded so a report is reproducible."""
    if len(values) < 2:
        return (values[0], values[0]) if values else (0.0, 0.0)
    rng = random.Random(seed)
    count = len(values)
    means = sorted(
        sum(values[rng.randrange(count)] for _ in range(count)) / count
        for _ in range(BOOTSTRAP_RESAMPLES)
    )
    tail = (1 - CONFIDENCE) / 2
    return means[int(tail * len(means))], means[int((1 - tail) * len(means)) - 1]


def estimate(per_task: Mapping[str, tuple[int, int]], k: int, seed: int = 0) -> Estimate | None:
    """Mean pass@k over tasks from (samples, correct) per task, with its interval; None
    when no task has k samples."""
    values = [pass_at_k(n, c, k) for n, c in per_task.values() if n >= k]
    if not values:
        return None
    low, high = _interval(values, seed)
    return Estimate(sum(values) / len(values), low, high, len(values))


@dataclass(frozen=True)
class Comparison:
    tasks: int  # tasks both runs have
    difference: float  # mean pass@1 of B minus A
    low: float
    high: float
    better: int  # tasks where B's pass rate is higher
    worse: int
    p_value: float  # exact two-sided sign test on the tasks that differ

    def as_record(self) -> dict[str, float | int]:
        return dict(self.__dict__)


def compare(
    a: Mapping[str, tuple[int, int]], b: Mapping[str, tuple[int, int]], seed: int = 0
) -> Comparison:
    """B against A on the tasks both ran: paired pass@1 difference and a sign test."""
    common = sorted(a.keys() & b.keys())
    if not common:
        raise RequestError(
            f"the runs have no task in common (A ran {len(a)}, B ran {len(b)}); compare "
            "runs of one suite that both scored some tasks"
        )
    differences = [pass_at_k(b[t][0], b[t][1], 1) - pass_at_k(a[t][0], a[t][1], 1) for t in common]
    better = sum(d > 0 for d in differences)
    worse = sum(d < 0 for d in differences)
    low, high = _interval(differences, seed) if differences else (0.0, 0.0)
    mean = sum(differences) / len(differences) if differences else 0.0
    return Comparison(len(common), mean, low, high, better, worse, sign_test(better, worse))


def sign_test(better: int, worse: int) -> float:
    """Exact two-sided binomial p-value of ``better`` against ``worse`` under p = 1/2
    (McNemar's exact test when each task has one sample)."""
    n = better + worse
    if n == 0:
        return 1.0
    tail: float = sum(math.comb(n, i) for i in range(min(better, worse) + 1)) / 2**n
    return min(1.0, 2 * tail)
