"""Prompt-lookup drafting for suggestions: time and identical output, with and without.

Each task is a real file (a module of Python's standard library, cut at a top-level
statement to about ``--lines`` lines) and an edit instruction; it goes to two servers, one
drafting ``--draft`` tokens a step from the prompt and one not (``engine.prompt_lookup``
0), one after the other in alternating order, as ``POST /v1/suggestions``. Reports each
arm's median time per suggestion, the median of the per-task speed-ups, how many patches
differ between the arms (the goal is none: drafting changes only how many tokens a step
checks), and the share of drafted tokens the model kept.
"""

from __future__ import annotations

import argparse
import ast
import re
import sysconfig
import time
from pathlib import Path
from typing import Any

import httpx

from bench._common import (
    CpuAudit,
    Deadline,
    headline,
    median,
    print_table,
    tether_server,
    write_result,
)

MODULES = (
    "colorsys",
    "fnmatch",
    "genericpath",
    "reprlib",
    "quopri",
    "heapq",
    "glob",
    "netrc",
    "sched",
    "copy",
)
INSTRUCTIONS = (
    "Add type hints to every function.",
    "Add a one-line docstring to every function that lacks one.",
    "Rename every local variable called `i` to `index`.",
)


def cut(source: str, lines: int) -> str:
    """``source`` up to the last top-level statement that ends by line ``lines``."""
    tree = ast.parse(source)
    end = max((node.end_lineno or 0) for node in tree.body if (node.end_lineno or 0) <= lines)
    return "".join(source.splitlines(keepends=True)[:end])


def tasks(limit: int, lines: int) -> list[tuple[str, str, str]]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    found = []
    for i, name in enumerate(MODULES[:limit]):
        source = cut((stdlib / f"{name}.py").read_text(), lines)
        found.append((f"{name}.py", source, INSTRUCTIONS[i % len(INSTRUCTIONS)]))
    return found


def _draft_counts(client: httpx.Client) -> dict[str, float]:
    text = client.get("/metrics").text
    counts = {}
    for outcome in ("drafted", "accepted"):
        found = re.search(
            rf'tether_engine_draft_tokens(?:_total)?{{outcome="{outcome}"}} (\S+)', text
        )
        counts[outcome] = float(found.group(1)) if found else 0.0
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--limit", type=int, default=6, help="files (at most 10)")
    parser.add_argument("--lines", type=int, default=200, help="lines per file, about")
    parser.add_argument("--draft", type=int, default=8, help="tokens drafted per step")
    parser.add_argument("--temperature", type=float, default=0.0)
    parser.add_argument("--n-ctx", type=int, default=8192, help="room for file and answer")
    parser.add_argument("--kv-type", choices=("q8_0", "f16"), default="q8_0")
    parser.add_argument("--budget-s", type=float, default=1200, help="no new task after this")
    args = parser.parse_args()
    chosen = tasks(args.limit, args.lines)
    common = {
        "TETHER_ENGINE_N_CTX": str(args.n_ctx),
        "TETHER_ENGINE_N_PARALLEL": "1",
        "TETHER_ENGINE_KV_TYPE": args.kv_type,
    }
    arms: dict[str, dict[str, list[Any]]] = {
        name: {"seconds": [], "tokens": [], "patch": []} for name in ("lookup", "plain")
    }
    deadline = Deadline(args.budget_s)
    with (
        CpuAudit() as audit,
        tether_server(env={**common, "TETHER_ENGINE_PROMPT_LOOKUP": str(args.draft)}) as on,
        tether_server(env={**common, "TETHER_ENGINE_PROMPT_LOOKUP": "0"}) as off,
    ):
        clients = {
            name: httpx.Client(base_url=server.url, headers=server.headers, timeout=900)
            for name, server in (("lookup", on), ("plain", off))
        }
        for i, (path, source, instruction) in enumerate(chosen):
            if deadline.expired():
                chosen = chosen[:i]
                break
            body = {
                "path": path,
                "source": source,
                "instruction": instruction,
                "temperature": args.temperature,
                "seed": 7,
            }
            order = ("lookup", "plain") if i % 2 == 0 else ("plain", "lookup")
            for name in order:
                started = time.perf_counter()
                response = clients[name].post("/v1/suggestions", json=body)
                response.raise_for_status()
                answer = response.json()
                arms[name]["seconds"].append(time.perf_counter() - started)
                arms[name]["tokens"].append(answer["usage"]["completion_tokens"])
                arms[name]["patch"].append(answer["patch"])
            print(
                f"{i + 1}/{len(chosen)} {path} ({len(source.splitlines())} lines): "
                f"{arms['plain']['seconds'][-1]:.1f} s plain, "
                f"{arms['lookup']['seconds'][-1]:.1f} s with lookup, "
                f"{arms['lookup']['tokens'][-1]} tokens",
                flush=True,
            )
        drafts = _draft_counts(clients["lookup"])
        for client in clients.values():
            client.close()
    speedups = [
        plain / lookup
        for plain, lookup in zip(arms["plain"]["seconds"], arms["lookup"]["seconds"], strict=True)
    ]
    differ = sum(
        a != b for a, b in zip(arms["plain"]["patch"], arms["lookup"]["patch"], strict=True)
    )
    kept = drafts["accepted"] / drafts["drafted"] if drafts["drafted"] else 0.0
    summary = {
        name: {
            "seconds_median": median(arm["seconds"]),
            "tokens_per_second_median": median(
                [t / s for t, s in zip(arm["tokens"], arm["seconds"], strict=True)]
            ),
        }
        for name, arm in arms.items()
    }
    print_table(
        ["arm", "seconds per suggestion, median", "tokens/s, median"],
        [(n, s["seconds_median"], s["tokens_per_second_median"]) for n, s in summary.items()],
    )
    print(
        f"speed-up median {median(speedups):.2f}x (per task: "
        f"{', '.join(f'{s:.2f}' for s in speedups)}); patches that differ: {differ} of "
        f"{len(chosen)}; drafted tokens kept: {kept:.1%} of {drafts['drafted']:.0f}"
    )
    write_result(
        "suggest_lookup" if args.kv_type == "q8_0" else f"suggest_lookup_{args.kv_type}",
        {
            "tasks": [
                {"path": p, "lines": len(s.splitlines()), "instruction": i} for p, s, i in chosen
            ],
            "draft": args.draft,
            "kv_type": args.kv_type,
            "temperature": args.temperature,
            "summary": summary,
            "speedups": speedups,
            "differing_patches": differ,
            "drafts": drafts,
            "foreign_cpu_fraction": audit.foreign_fraction,
            "stopped_early": deadline.hit,
            "headline": [
                headline("suggestion speed-up, prompt lookup", median(speedups), "x", ">=", 2.0),
                headline("patches that differ with prompt lookup", differ, "", "<=", 0),
                headline("drafted tokens kept", kept, ""),
            ],
        },
    )


if __name__ == "__main__":
    main()
