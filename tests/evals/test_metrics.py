from __future__ import annotations

import math

import numpy as np
import pytest

from tether.errors import RequestError
from tether.evals.metrics import compare, estimate, pass_at_k, sign_test
from tether.evals.runner import spread


def _reference(n: int, c: int, k: int) -> float:
    """The estimator as the HumanEval paper writes it (numpy)."""
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


@pytest.mark.parametrize("n", [1, 5, 20, 200])
def test_pass_at_k_is_the_unbiased_estimator(n: int) -> None:
    for c in range(n + 1):
        for k in (1, 10, 100):
            if k <= n:
                assert pass_at_k(n, c, k) == pytest.approx(_reference(n, c, k))
                expected = 1 - math.comb(n - c, k) / math.comb(n, k)
                assert pass_at_k(n, c, k) == pytest.approx(expected)


def test_pass_at_k_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        pass_at_k(5, 6, 1)
    with pytest.raises(ValueError):
        pass_at_k(5, 1, 10)


def test_the_interval_holds_the_estimate_and_narrows_with_more_tasks() -> None:
    few = {f"t{i}": (1, i % 2) for i in range(10)}
    many = {f"t{i}": (1, i % 2) for i in range(1000)}
    a, b = estimate(few, 1), estimate(many, 1)
    assert a is not None and b is not None
    assert a.low <= a.value <= a.high and b.low <= b.value <= b.high
    assert b.high - b.low < a.high - a.low
    assert estimate(few, 1, seed=7) == estimate(few, 1, seed=7)  # seeded, reproducible


def test_sign_test_is_exact() -> None:
    assert sign_test(0, 0) == 1.0
    assert sign_test(10, 0) == pytest.approx(2 / 2**10)
    assert sign_test(7, 3) == pytest.approx(2 * sum(math.comb(10, i) for i in range(4)) / 2**10)


def test_comparison_is_paired_on_common_tasks() -> None:
    a = {"x": (1, 0), "y": (1, 1), "z": (1, 0), "only-a": (1, 1)}
    b = {"x": (1, 1), "y": (1, 1), "z": (1, 1), "only-b": (1, 0)}
    result = compare(a, b)
    assert result.tasks == 3 and result.better == 2 and result.worse == 0
    assert result.difference == pytest.approx(2 / 3)
    with pytest.raises(RequestError, match="no task in common"):  # not "no difference"
        compare({"only-a": (1, 1)}, {"only-b": (1, 0)})


def test_limit_spreads_tasks_over_the_suite() -> None:
    tasks = [f"t{i}" for i in range(10)]
    assert spread(tasks, 3) == ["t0", "t3", "t6"]
    assert spread(tasks, 3) == spread(tasks, 3)  # the same tasks every time
    assert spread(tasks, None) == tasks and spread(tasks, 50) == tasks


def test_no_task_scored_is_no_result_not_zero() -> None:
    from tether.evals.runner import summarize

    assert estimate({}, 1) is None and estimate({"t": (1, 1)}, 10) is None
    assert summarize([], 1)["pass_at_k"]["pass@1"] == {
        "value": None,
        "low": None,
        "high": None,
        "tasks": 0,
    }


def test_a_task_whose_samples_were_not_all_scored_is_left_out() -> None:
    """A stop cuts the samples that take longest, mostly failing ones: a task counted from
    the ones that ended first looked better than it is (1/1 instead of 1/2)."""
    from tether.evals.runner import summarize
    from tether.evals.store import SampleResult

    def sample(task: str, index: int, passed: bool) -> SampleResult:
        return SampleResult(task, index, "", "passed" if passed else "failed", passed, 0.1)

    results = [sample("a", 0, True), sample("b", 0, True), sample("b", 1, False)]
    summary = summarize(results, 2)
    assert summary["tasks"] == 1 and summary["unfinished_tasks"] == 1
    assert summary["pass_at_k"]["pass@1"]["value"] == 0.5
    # Samples planned per task (a samples file may give some tasks fewer): all scored.
    planned = summarize(results, 2, 0, {"a": 1, "b": 2})
    assert planned["tasks"] == 2 and "unfinished_tasks" not in planned
    assert planned["pass_at_k"]["pass@1"]["value"] == 0.75
