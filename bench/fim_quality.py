"""Infilling quality of the FIM prompt choices for a model without FIM tokens.

Runs the three HumanEval infilling sets (single-line, multi-line, random span light) with
each ``engine.fim_template`` choice, greedy, the same tasks for all (``--limit`` spreads
them over the set), and prints per set and choice: exact match and pass@1 with 95%
intervals, the median time to generate one answer, and the paired pass@1 difference
against the first choice (the previous default, prefix-only) with an exact sign test.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench._common import BENCH_DIR, median, print_table, write_result
from tether.evals.metrics import compare, estimate
from tether.evals.store import EvalStore, SampleResult, per_task

SETS = ("humaneval-fim-single", "humaneval-fim-multi", "humaneval-fim-span")
TEMPLATES = ("prefix-only", "prefix-editor", "chat-infill")
LATENCY_GROWTH_GOAL = 0.10  # an answer may take at most 10% longer than prefix-only's


def _run(suite: str, template: str, args: argparse.Namespace, home: Path) -> str:
    env = {
        **os.environ,
        "TETHER_HOME": str(home),
        "TETHER_EVALS_DATASETS_DIR": str(args.datasets),
        "TETHER_ENGINE_FIM_TEMPLATE": template,
    }
    command = [
        sys.executable, "-m", "tether", "eval", "run", suite, "--json",
        "--limit", str(args.limit), "--max-tokens", str(args.max_tokens),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"{suite} with {template}: {done.stderr[-2000:]}")
    summary: dict[str, Any] = json.loads(done.stdout[done.stdout.index("{") :])
    return str(summary["run"])


def _exact(samples: list[SampleResult]) -> dict[str, tuple[int, int]]:
    return {s.task_id: (1, int(bool(s.exact))) for s in samples}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=200, help="tasks per set")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=SETS)
    parser.add_argument("--templates", nargs="+", default=list(TEMPLATES))
    parser.add_argument(
        "--datasets", type=Path, default=BENCH_DIR.parent.parent / "shared" / "datasets"
    )
    args = parser.parse_args()
    rows: list[list[Any]] = []
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="tether-fim-bench-") as folder:
        home = Path(folder)
        for suite in args.sets:
            runs = {template: _run(suite, template, args, home) for template in args.templates}
            with EvalStore(home / "evals.sqlite") as store:
                samples = {template: store.samples(run) for template, run in runs.items()}
            base = args.templates[0]
            base_latency = median([s.generate_s or 0.0 for s in samples[base]])
            results[suite] = {}
            for template, found in samples.items():
                passed = estimate(per_task(found), 1)
                exact = estimate(_exact(found), 1)
                if passed is None or exact is None:
                    raise SystemExit(f"{suite} with {template}: no task was scored")
                latency = median([s.generate_s or 0.0 for s in found])
                against = compare(per_task(samples[base]), per_task(found))
                growth = latency / base_latency - 1 if base_latency else 0.0
                results[suite][template] = {
                    "pass@1": passed.as_record(),
                    "exact_match": exact.as_record(),
                    "median_generate_s": latency,
                    "latency_growth": growth,
                    "latency_within_goal": growth <= LATENCY_GROWTH_GOAL,
                    f"against_{base}": against.as_record(),
                }
                rows.append(
                    [
                        suite.removeprefix("humaneval-fim-"),
                        template,
                        passed.tasks,
                        f"{exact.value:.3f} [{exact.low:.3f}, {exact.high:.3f}]",
                        f"{passed.value:.3f} [{passed.low:.3f}, {passed.high:.3f}]",
                        f"{latency * 1000:.0f}",
                        f"{growth:+.0%}",
                        f"{against.difference:+.3f} (p={against.p_value:.2g})",
                    ]
                )
    print_table(
        ["set", "template", "tasks", "exact match", "pass@1", "ms/answer", "vs base",
         f"pass@1 vs {args.templates[0]}"],
        rows,
    )  # fmt: skip
    record = {"limit": args.limit, "max_tokens": args.max_tokens, "sets": results}
    print(f"wrote {write_result('fim_quality', record)}")


if __name__ == "__main__":
    main()
