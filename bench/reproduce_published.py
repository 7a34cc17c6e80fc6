"""Reproduce published pass@1 figures with the model they were published for.

Qwen2.5-Coder-0.5B (base), greedy, from the Qwen2.5-Coder technical report (arXiv
2409.12186, Table 5): HumanEval 28.0, HumanEval+ 23.8, MBPP+ 47.1. Give that model's GGUF
with ``--model PATH`` (tether downloads nothing); each suite runs greedy in completion style
through tether's pipeline, and the published figure must fall inside the run's 95%
interval. Quantisation and the exact prompt bytes move such figures by points; the
manifest of each run records all of them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from bench._common import print_table, write_result

PUBLISHED = {"humaneval": 0.280, "humaneval+": 0.238, "mbpp+": 0.471}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="Qwen2.5-Coder-0.5B GGUF")
    parser.add_argument("--datasets", type=Path, default=Path("../shared/datasets"))
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    if not args.model.is_file():
        raise SystemExit(f"no model file at {args.model}")
    env = {
        **os.environ,
        "TETHER_ENGINE_MODEL_PATH": str(args.model),
        "TETHER_ENGINE_N_PARALLEL": str(args.concurrency),
        "TETHER_EVALS_DATASETS_DIR": str(args.datasets),
    }
    rows, results = [], {}
    for suite, published in PUBLISHED.items():
        command = [
            sys.executable, "-m", "tether", "eval", "run", suite, "--json",
            "--concurrency", str(args.concurrency),
        ]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, env=env)
        if done.returncode != 0:
            raise SystemExit(f"{suite}: {done.stderr[-2000:]}")
        summary = json.loads(done.stdout[done.stdout.index("{") :])
        measured = summary["pass_at_k"]["pass@1"]
        inside = measured["low"] <= published <= measured["high"]
        results[suite] = {"published": published, "measured": measured, "within": inside}
        rows.append(
            [suite, published, measured["value"], measured["low"], measured["high"], inside]
        )
    print_table(["suite", "published", "measured", "low", "high", "within CI"], rows)
    print(f"wrote {write_result('reproduce_published', {'model': str(args.model), **results})}")


if __name__ == "__main__":
    main()
