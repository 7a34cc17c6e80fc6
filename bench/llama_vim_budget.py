"""llama.vim's completions with and without its time limit (``t_max_predict_ms``).

llama.vim asks ``/infill`` for up to 128 tokens (``n_predict``) and, with
``t_max_predict_ms`` (500 ms in its defaults), for the answer to end with the first line it
finishes once it has been generating that long: a suggestion in the editor sooner, and the
sequence free sooner for the next keystroke. This sends llama.vim's request at cursor
positions in tether's own source (the lines before and after the cursor, the fields
llama.vim asks for), once with the limit and once without, alternating which goes first,
and reports the median time to the answer, tokens predicted, and how many answers the
limit cut. Both carry llama.vim's ``n_indent`` (the cursor line's indentation): a line
that starts further left, or a blank line, ends the answer. Before each pair, the
cursor's context is read into the cache with ``n_predict: 0``, as llama.vim's warm-ups do
while the user types, so both answers can find it there and the times compare the
generating. Each cut answer must be the start of the same request's uncut answer (same
seed): the check is printed.

The second request of each pair follows the first at once, as llama.vim's next request
follows an answer: how long it takes to read its prompt, and whether it found the prompt
in the cache, show whether an answer tether ended early (cut by the time limit, or by the
editor's hole being filled) leaves its sequence's cache to the next request.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench._common import CpuAudit, headline, median, print_table, tether_server, write_result

SOURCE = Path(__file__).resolve().parents[1] / "src" / "tether" / "pipeline" / "service.py"
N_PREFIX, N_SUFFIX = 64, 16  # lines before and after the cursor
N_PREDICT, LIMIT_MS = 128, 500
FIELDS = [  # what llama.vim asks for
    "content",
    "timings/prompt_n",
    "timings/prompt_ms",
    "timings/prompt_per_token_ms",
    "timings/prompt_per_second",
    "timings/predicted_n",
    "timings/predicted_ms",
    "timings/predicted_per_token_ms",
    "timings/predicted_per_second",
    "truncated",
    "tokens_cached",
]


def request(lines: list[str], row: int, limit_ms: int | None) -> dict[str, object]:
    """llama.vim's /infill at the end of line ``row``, with its time limit or none."""
    body: dict[str, object] = {
        "input_prefix": "\n".join(lines[max(0, row - N_PREFIX) : row]) + "\n",
        "prompt": lines[row],
        "input_suffix": "\n" + "\n".join(lines[row + 1 : row + 1 + N_SUFFIX]),
        "input_extra": [],
        "n_predict": N_PREDICT,
        "n_indent": len(lines[row]) - len(lines[row].lstrip(" \t")),  # the cursor line's
        "top_k": 40,
        "top_p": 0.90,
        "samplers": ["top_k", "top_p", "infill"],
        "stream": False,
        "cache_prompt": True,
        "t_max_prompt_ms": 500,
        "response_fields": [*FIELDS, "tokens_evaluated"],  # for the cached share
    }
    if limit_ms is not None:
        body["t_max_predict_ms"] = limit_ms
    return body


def field(answer: dict[str, Any], path: str) -> Any:
    """``path`` of the answer, flattened as ``response_fields`` asks or nested (older
    servers ignore the field); None where the server does not give it."""
    if path in answer:
        return answer[path]
    value: Any = answer
    for key in path.split("/"):
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


@dataclass
class Answer:
    ms: float
    content: str
    predicted: int
    prompt_ms: float
    prompt_read: int  # prompt tokens not found in the cache


def ask(client: httpx.Client, body: dict[str, object]) -> Answer:
    started = time.perf_counter()
    answer = client.post("/infill", json=body).raise_for_status().json()
    return Answer(
        ms=(time.perf_counter() - started) * 1000,
        content=str(answer["content"]),
        predicted=int(field(answer, "timings/predicted_n")),
        prompt_ms=float(field(answer, "timings/prompt_ms") or math.nan),
        prompt_read=int(answer["tokens_evaluated"]) - int(answer["tokens_cached"]),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--positions", type=int, default=8)
    args = parser.parse_args()
    lines = SOURCE.read_text(encoding="utf-8").splitlines()
    # Cursors at the end of lines that open a block, spread over the file.
    openers = [i for i, line in enumerate(lines) if line.rstrip().endswith(":") and i > N_PREFIX]
    rows_at = openers[:: max(1, len(openers) // args.positions)][: args.positions]
    arms: dict[str, list[Answer]] = {"limit": [], "none": []}
    after: list[Answer] = []  # the second request of each pair
    table: list[list[object]] = []
    with (
        CpuAudit() as audit,
        tether_server() as server,
        httpx.Client(base_url=server.url, headers=server.headers, timeout=300.0) as client,
    ):
        for index, row in enumerate(rows_at):
            client.post("/infill", json={**request(lines, row, None), "n_predict": 0})  # warm
            order = [("limit", LIMIT_MS), ("none", None)]
            for arm, limit in order if index % 2 == 0 else order[::-1]:
                arms[arm].append(ask(client, request(lines, row, limit)))
            after.append(arms[order[1 - index % 2][0]][-1])
            limited, full = arms["limit"][-1], arms["none"][-1]
            table.append(
                [row + 1, limited.ms, full.ms, limited.predicted, full.predicted,
                 "yes" if limited.content != full.content else "no",
                 after[-1].prompt_read, after[-1].prompt_ms]
            )  # fmt: skip

    print_table(
        ["line", "limit ms", "none ms", "limit tok", "none tok", "cut", "next read", "next ms"],
        table,
    )
    ms = {arm: median([a.ms for a in answers]) for arm, answers in arms.items()}
    tokens = {arm: median([float(a.predicted) for a in answers]) for arm, answers in arms.items()}
    pairs = list(zip(arms["limit"], arms["none"], strict=True))
    cut = sum(limited.content != full.content for limited, full in pairs)
    prefix_ok = sum(full.content.startswith(limited.content) for limited, full in pairs)
    cached_after = sum(a.prompt_read <= 1 for a in after)  # the last token is always read
    after_ms = median([a.ms for a in after])
    print(
        f"t_max_predict_ms {LIMIT_MS}: median {ms['limit']:.0f} ms, {tokens['limit']:.0f} "
        f"tokens; without: {ms['none']:.0f} ms, {tokens['none']:.0f} tokens "
        f"({ms['none'] / ms['limit']:.2f}x); {cut} of {len(pairs)} answers cut; {prefix_ok} of "
        f"{len(pairs)} limited answers begin the uncut one"
    )
    print(
        f"the request right after an answer: found its prompt cached {cached_after} of "
        f"{len(after)} times; its answer took {after_ms:.0f} ms (median)"
    )
    write_result(
        "llama_vim_budget",
        {
            "source": SOURCE.name,
            "n_predict": N_PREDICT,
            "t_max_predict_ms": LIMIT_MS,
            "positions": table,
            "median_ms": ms,
            "median_predicted": tokens,
            "cut": cut,
            "limited_is_prefix": prefix_ok,
            "next_found_cached": cached_after,
            "next_answer_ms": after_ms,
            "foreign_cpu_fraction": audit.foreign_fraction,
            "headline": [
                headline("llama.vim answer, t_max_predict_ms 500, median", ms["limit"], "ms"),
                headline("limited answers begin the uncut", prefix_ok, "", ">=", len(pairs)),
                headline("next request found its prompt", cached_after, "", ">=", len(after)),
            ],
        },
    )


if __name__ == "__main__":
    main()
