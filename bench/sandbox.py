"""Sandboxed execution: throughput on HumanEval's canonical solutions, and the cost per
sample of the sandbox over running the same test without it.

Both sides run the same 164 programs (prompt + canonical solution + tests + check) as one
subprocess each, interleaved task by task so the machine's drift falls on both: the
sandbox (fresh folder, no network, limits, audit hook) and a plain ``python program.py``
in a temporary folder. Throughput is measured with as many workers as cores.
Goals: at least 20 samples/s sandboxed; at most 50 ms added per sample (median).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench._common import CpuAudit, headline, median, percentile, print_table, write_result
from tether.cpus import usable_cores
from tether.evals.datasets import load
from tether.sandbox import Limits, Sandbox


def plain(program: str) -> float:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "program.py"
        path.write_text(program)
        started = time.perf_counter()
        done = subprocess.run([sys.executable, str(path)], cwd=folder, capture_output=True)
        elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"a canonical solution failed without the sandbox: {done.stderr!r}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="throughput runs; median kept")
    args = parser.parse_args()
    problems = load("humaneval", None).problems
    programs = [p.program(p.reference) for p in problems]
    sandbox = Sandbox()
    limits = Limits(timeout_s=30)
    with CpuAudit() as audit:
        sandboxed, bare = [], []
        for program in programs:  # interleaved, one at a time: the cost per sample
            outcome = sandbox.run(program, limits)
            if not outcome.passed:
                raise RuntimeError(f"a canonical solution failed in the sandbox: {outcome}")
            sandboxed.append(outcome.duration_s)
            bare.append(plain(program))
        workers = usable_cores()
        rates = []
        for _ in range(args.rounds):
            started = time.perf_counter()
            with ThreadPoolExecutor(workers) as pool:
                outcomes = list(pool.map(lambda p: sandbox.run(p, limits), programs))
            rates.append(len(programs) / (time.perf_counter() - started))
            assert all(o.passed for o in outcomes)
    added = [(s - b) * 1000 for s, b in zip(sandboxed, bare, strict=True)]
    rate = median(rates)
    rows = [
        ["sandboxed, median ms", median(sandboxed) * 1000],
        ["without sandbox, median ms", median(bare) * 1000],
        ["added per sample, median ms", median(added)],
        ["added per sample, p95 ms", percentile(added, 95)],
        [f"throughput, {workers} workers, samples/s", rate],
    ]
    print_table(["figure", "value"], rows)
    path = write_result(
        "sandbox",
        {
            "samples": len(programs),
            "workers": workers,
            "sandboxed_ms": [s * 1000 for s in sandboxed],
            "plain_ms": [b * 1000 for b in bare],
            "rates": rates,
            "network": sandbox.run("pass", limits).network,
            "foreign_cpu_fraction": audit.foreign_fraction,
            "headline": [
                headline("sandbox throughput, HumanEval canonical", rate, "samples/s", ">=", 20),
                headline("sandbox added per sample, median", median(added), "ms", "<=", 50),
            ],
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
