"""Context compression: time to first token and exact match of FIM requests that carry
context files, with ``generation.compress_context`` on and off, side by side.

Each task is a HumanEval single-line infilling problem; its request (llama.cpp's
``/infill``, streamed, greedy) carries ``--files`` other HumanEval problems, whole (prompt,
solution, rest), as context files, as an editor sends open files. Two servers run, one
with compression and one without; each task goes to both, one after the other, in
alternating order. Reports the median time to the first streamed text, the prompt
tokens the engine read, and exact match of the inserted line, for both.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import time
from pathlib import Path
from typing import Any

import httpx

from bench._common import headline, median, print_table, tether_server, write_result

DATASET = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "humaneval-infilling"


def load_tasks() -> list[dict[str, Any]]:
    path = DATASET / "HumanEval-SingleLineInfilling.jsonl.gz"
    with gzip.open(path, "rt") as handle:
        return [json.loads(line) for line in handle]


def _stream(client: httpx.Client, body: dict[str, Any]) -> tuple[float, str, int]:
    """(seconds to the first text, the whole text, prompt tokens) of one streamed /infill."""
    started = time.perf_counter()
    first, parts, prompt_tokens = 0.0, [], 0
    with client.stream("POST", "/infill", json=body) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: "):
                continue
            event = json.loads(line[6:])
            if event.get("content") and not first:
                first = time.perf_counter() - started
            parts.append(event.get("content", ""))
            prompt_tokens = event.get("tokens_evaluated", prompt_tokens) or prompt_tokens
    return first or time.perf_counter() - started, "".join(parts), prompt_tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--limit", type=int, default=20, help="tasks, spread over the set")
    parser.add_argument("--files", type=int, default=3, help="context files per request")
    parser.add_argument("--max-tokens", type=int, default=48)
    args = parser.parse_args()
    tasks = load_tasks()
    base: dict[str, str] = {}  # whole programs by problem, for context files
    for task in tasks:
        problem = task["task_id"].split("/")[2]
        base.setdefault(problem, task["prompt"] + task["canonical_solution"] + task["suffix"])
    chosen = tasks[:: max(1, len(tasks) // args.limit)][: args.limit]
    rng = random.Random(7)
    arms: dict[str, dict[str, list[Any]]] = {
        name: {"ttft": [], "exact": [], "prompt_tokens": []} for name in ("on", "off")
    }
    with (
        tether_server(env={"TETHER_GENERATION_COMPRESS_CONTEXT": "true"}) as on,
        tether_server(env={"TETHER_GENERATION_COMPRESS_CONTEXT": "false"}) as off,
    ):
        clients = {
            name: httpx.Client(base_url=server.url, headers=server.headers, timeout=300)
            for name, server in (("on", on), ("off", off))
        }
        for i, task in enumerate(chosen):
            problem = task["task_id"].split("/")[2]
            others = rng.sample([p for p in base if p != problem], args.files)
            body = {
                "input_prefix": task["prompt"],
                "input_suffix": task["suffix"],
                "input_extra": [{"filename": f"problem_{p}.py", "text": base[p]} for p in others],
                "n_predict": args.max_tokens,
                "temperature": 0,
                "stream": True,
            }
            order = ("on", "off") if i % 2 == 0 else ("off", "on")
            for name in order:
                ttft, text, prompt_tokens = _stream(clients[name], body)
                arms[name]["ttft"].append(ttft * 1000)
                arms[name]["prompt_tokens"].append(prompt_tokens)
                expected = task["canonical_solution"].strip()
                arms[name]["exact"].append(text.strip() == expected)
            print(f"{i + 1}/{len(chosen)} {task['task_id']}", flush=True)
        for client in clients.values():
            client.close()
    summary = {
        name: {
            "ttft_ms_median": median(arm["ttft"]),
            "prompt_tokens_median": median(arm["prompt_tokens"]),
            "exact_match": sum(arm["exact"]) / len(arm["exact"]),
        }
        for name, arm in arms.items()
    }
    print_table(
        ["compression", "TTFT median ms", "prompt tokens median", "exact match"],
        [(n, s["ttft_ms_median"], s["prompt_tokens_median"], s["exact_match"])
         for n, s in summary.items()],
    )  # fmt: skip
    ratio = summary["on"]["ttft_ms_median"] / summary["off"]["ttft_ms_median"]
    write_result(
        "context_compression",
        {
            "tasks": len(chosen),
            "files": args.files,
            "summary": summary,
            "headlines": [
                headline("TTFT with compression / without", ratio, "x", "<=", 1.0),
                headline(
                    "exact match with compression minus without",
                    summary["on"]["exact_match"] - summary["off"]["exact_match"],
                    "",
                    ">=",
                    0.0,
                ),
            ],
        },
    )


if __name__ == "__main__":
    main()
