"""Run every benchmark, one after another, and summarise the headline figures and goals.

Each benchmark runs as its own process (in its own process group, so a hung one and
any servers it started can be stopped together) and writes bench/results/NAME.json;
this script prints one table of the headline figures with their goals and writes
bench/results/summary.json. It exits 0 when every benchmark ran, whether or not the
goals were met (it is a report), and 1 when any benchmark crashed or timed out.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

from bench._common import BENCH_DIR, RESULTS_DIR, print_table

# (script, hard time limit in seconds); each script also stops itself within its budget.
BENCHMARKS = [
    ("decode_throughput", 240),
    ("latency", 240),
    ("editor_typing", 300),
    ("gateway_overhead", 200),
    ("large_prompt_stall", 180),
    ("cache_warmup", 300),
    ("llama_vim_budget", 300),
    ("startup_memory", 180),
    ("gc_pauses", 300),
    ("peer_server", 900),
    ("secret_scanner", 180),
    ("compliance_checks", 120),
    ("governance_overhead", 180),
    ("stream_holdback", 180),
    ("holdback_scaling", 120),
    ("trace_store", 120),
    ("recording_overhead", 120),
    ("audit_log", 180),
    ("sandbox", 180),
    ("usage_ledger", 60),
    ("dashboard", 600),
    ("context_compression", 600),
    ("suggest_lookup", 1500),
    ("draft_cost", 180),
    ("structured_outputs", 360),
    ("grammar_stall", 300),
]


def run_one(name: str, limit_s: float) -> tuple[str, float]:
    """Run ``bench/NAME.py``; returns (status, seconds)."""
    result_file = RESULTS_DIR / f"{name}.json"
    result_file.unlink(missing_ok=True)  # a crash must not leave an old result looking new
    print(f"\n=== {name} ===", flush=True)
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", f"bench.{name}"], cwd=BENCH_DIR.parent, start_new_session=True
    )
    try:
        returncode = proc.wait(limit_s)
    except subprocess.TimeoutExpired:
        _stop_group(proc)
        return "timed out", time.monotonic() - started
    finally:
        if proc.poll() is None:  # interrupted: take the servers it started down with it
            _stop_group(proc)
    elapsed = time.monotonic() - started
    if returncode != 0:
        return f"crashed (exit {returncode})", elapsed
    if not result_file.is_file():
        return "no result file", elapsed
    return "ok", elapsed


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the benchmark's process group (its servers too), then SIGKILL what is left."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(15.0)
    time.sleep(1.0)  # servers in the group get the same SIGTERM; give them a moment
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def main() -> int:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    runs: list[dict[str, Any]] = []
    for name, limit in BENCHMARKS:
        status, seconds = run_one(name, limit)
        data: dict[str, Any] = {}
        if status == "ok":
            data = json.loads((RESULTS_DIR / f"{name}.json").read_text())
        runs.append(
            {
                "benchmark": name,
                "status": status,
                "seconds": seconds,
                "foreign_cpu_fraction": data.get("foreign_cpu_fraction"),
                "stopped_early": bool(data.get("stopped_early"))
                or any(level.get("stopped_early") for level in data.get("levels", [])),
                "headline": data.get("headline", []),
            }
        )

    rows = []
    for run in runs:
        if run["status"] != "ok":
            rows.append([run["benchmark"], run["status"], "", "", "CRASH"])
        for figure in run["headline"]:
            verdict = {True: "pass", False: "FAIL", None: "-"}[figure["pass"]]
            value = f"{figure['value']:.3f} {figure['unit']}".rstrip()
            rows.append([run["benchmark"], figure["metric"], value, figure["goal"], verdict])
    print("\n=== summary ===")
    print_table(["benchmark", "figure", "value", "goal", "result"], rows)
    noisy = [
        f"{r['benchmark']} ({r['foreign_cpu_fraction']:.0%})"
        for r in runs
        if (r["foreign_cpu_fraction"] or 0) > 0.05
    ]
    if noisy:
        print("warning: other processes used the CPU during: " + ", ".join(noisy))
    early = [r["benchmark"] for r in runs if r["stopped_early"]]
    if early:
        print("warning: stopped early (time budget): " + ", ".join(early))
    total = sum(r["seconds"] for r in runs)
    print(f"total {total:.0f} s")

    summary = {
        "timestamp": time.time(),
        "cpu_count": os.cpu_count(),
        "total_s": total,
        "benchmarks": runs,
        "goals_met": all(f["pass"] is not False for r in runs for f in r["headline"]),
        "all_ran": all(r["status"] == "ok" for r in runs),
    }
    path = RESULTS_DIR / "summary.json"
    path.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {path}")
    return 0 if summary["all_ran"] else 1


if __name__ == "__main__":
    sys.exit(main())
