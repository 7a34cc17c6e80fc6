"""Latency under load: time to first token and total time, p50/p95, at concurrency 1, 4, 16.

Each level sends a fixed number of streamed ``/v1/completions`` requests (max_tokens 32,
temperature 0, seed 0) from that many concurrent clients; TTFT (first text) and total
time (stream end) come from the same request. The server runs with its default settings
(``engine.n_parallel`` sequences batched together); requests beyond them wait in tether's
queue, so 429 answers are counted, not expected.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import asdict, dataclass

import httpx

from bench._common import (
    CpuAudit,
    Deadline,
    Server,
    Streamed,
    headline,
    percentile,
    print_table,
    stream_completion,
    tether_server,
    write_result,
)
from tether.settings import EngineSettings

N_PARALLEL = EngineSettings().n_parallel
MAX_TOKENS = 32
LEVELS = [(1, 16), (4, 32), (16, 48)]  # (concurrency, requests)
PROMPTS = [
    "def parse_config(path):\n    ",
    "The history of computing began",
    "class LRUCache:\n    def __init__(self, capacity):\n",
    "import os\nimport sys\n\n\ndef main():\n",
    "SELECT name, email FROM users WHERE",
    "A short guide to unit testing in Python:\n\n1.",
    "function debounce(fn, wait) {\n",
    "# TODO: handle the error case\nif response.status_code != 200:\n",
]


async def one_request(client: httpx.AsyncClient, model: str, prompt: str) -> Streamed:
    body = {"model": model, "prompt": prompt, "max_tokens": MAX_TOKENS, "temperature": 0}
    return await stream_completion(client, {**body, "seed": 0})


@dataclass
class Level:
    concurrency: int
    requests: int
    ok: int
    status_429: int
    other_errors: int
    ttft_p50_ms: float
    ttft_p95_ms: float
    total_p50_ms: float
    total_p95_ms: float
    completion_tokens: int
    wall_s: float
    stopped_early: bool

    @property
    def tokens_per_s(self) -> float:
        return self.completion_tokens / self.wall_s


async def run_level(
    server: Server, model: str, concurrency: int, count: int, budget_s: float
) -> Level:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    samples: list[Streamed] = []
    next_index = 0
    deadline = Deadline(budget_s)

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal next_index
        while next_index < count and not deadline.expired():
            index = next_index
            next_index += 1
            samples.append(await one_request(client, model, PROMPTS[index % len(PROMPTS)]))

    async with httpx.AsyncClient(
        base_url=server.url, headers=server.headers, timeout=60.0, limits=limits
    ) as client:
        await one_request(client, model, PROMPTS[0])  # warm the connection and the model
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        wall = time.perf_counter() - started

    ok = [s for s in samples if s.status == 200]
    ttft = [s.ttft_s * 1000 for s in ok]
    total = [s.total_s * 1000 for s in ok]
    return Level(
        concurrency=concurrency,
        requests=len(samples),
        ok=len(ok),
        status_429=sum(s.status == 429 for s in samples),
        other_errors=sum(s.status not in (200, 429) for s in samples),
        ttft_p50_ms=percentile(ttft, 50),
        ttft_p95_ms=percentile(ttft, 95),
        total_p50_ms=percentile(total, 50),
        total_p95_ms=percentile(total, 95),
        completion_tokens=sum(s.tokens for s in ok),
        wall_s=wall,
        stopped_early=deadline.hit,
    )


async def run_all_levels(
    server: Server, levels: list[tuple[int, int]], budget_s: float
) -> list[Level]:
    async with httpx.AsyncClient(base_url=server.url, headers=server.headers) as client:
        model = (await client.get("/v1/models")).json()["data"][0]["id"]
    return [await run_level(server, model, c, n, budget_s / len(levels)) for c, n in levels]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="multiply request counts")
    parser.add_argument("--budget-s", type=float, default=120.0, help="stop early after this")
    args = parser.parse_args()
    levels = [(c, max(c, round(n * args.scale))) for c, n in LEVELS]

    with CpuAudit() as audit, tether_server() as server:
        results = asyncio.run(run_all_levels(server, levels, args.budget_s))

    print(f"n_parallel {N_PARALLEL}, max_tokens {MAX_TOKENS}, streamed /v1/completions")
    print_table(
        ["conc", "reqs", "ok", "429", "TTFT p50", "TTFT p95", "total p50", "total p95", "tok/s"],
        [
            [
                r.concurrency,
                r.requests,
                r.ok,
                r.status_429,
                r.ttft_p50_ms,
                r.ttft_p95_ms,
                r.total_p50_ms,
                r.total_p95_ms,
                r.tokens_per_s,
            ]
            for r in results
        ],
    )
    print("(times in ms; tok/s = completion tokens of the level / its wall time)")
    figures = []
    for r in results:
        figures.append(headline(f"latency c={r.concurrency} TTFT p50", r.ttft_p50_ms, "ms"))
        figures.append(headline(f"latency c={r.concurrency} total p95", r.total_p95_ms, "ms"))
    write_result(
        "latency",
        {
            "n_parallel": N_PARALLEL,
            "max_tokens": MAX_TOKENS,
            "levels": [{**asdict(r), "tokens_per_s": r.tokens_per_s} for r in results],
            "foreign_cpu_fraction": audit.foreign_fraction,
            "headline": figures,
        },
    )


if __name__ == "__main__":
    main()
