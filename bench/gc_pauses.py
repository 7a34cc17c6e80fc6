"""Garbage-collection pauses in a serving tether under steady streaming load.

A collection holds the GIL while it walks the objects the collector tracks: the event
loop and the engine's steps wait until it ends, so a long one stalls every stream. The
server runs under ``bench._gc_traced_serve``, which logs each collection's pause; the
load is ``--streams`` clients each asking for 64-token streamed completions, one after
another, for ``--seconds``. Reported per generation: the collections during the load,
their median and longest pause, and the time paused per minute of load.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import httpx

from bench._common import (
    BENCH_DIR,
    CpuAudit,
    headline,
    median,
    print_table,
    stream_completion,
    tether_server,
    write_result,
)
from bench.latency import PROMPTS


async def load(url: str, headers: dict[str, str], streams: int, seconds: float) -> int:
    """Streamed completions from ``streams`` clients for ``seconds``: how many answered."""
    end = time.monotonic() + seconds
    answered = 0
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=120.0) as client:

        async def client_loop(stream: int) -> None:
            nonlocal answered
            index = 0
            while time.monotonic() < end:
                text = f"# client {stream}, request {index}\n{PROMPTS[index % len(PROMPTS)]}"
                body = {"prompt": text, "max_tokens": 64, "temperature": 0}
                answer = await stream_completion(client, body)
                answered += answer.status == 200
                index += 1

        await asyncio.gather(*(client_loop(stream) for stream in range(streams)))
    return answered


def pauses(log: Path, skip: int) -> list[tuple[int, float]]:
    """(generation, milliseconds) of the collections logged after the first ``skip``."""
    lines = log.read_text().splitlines()[skip:]
    return [(int(gen), float(ms)) for gen, ms in (line.split() for line in lines)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=180.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tether-bench-gc-") as tmp:
        log = Path(tmp) / "gc.log"
        log.touch()
        # The server runs from a scratch directory: the checkout must be on its path.
        env = {"BENCH_GC_LOG": str(log), "PYTHONPATH": str(BENCH_DIR.parent)}
        with CpuAudit() as audit, tether_server(env=env, module="bench._gc_traced_serve") as srv:
            asyncio.run(load(srv.url, srv.headers, 1, 2.0))  # warm: model pages, first paths
            at_start = len(log.read_text().splitlines())
            started = time.monotonic()
            answered = asyncio.run(load(srv.url, srv.headers, args.streams, args.seconds))
            minutes = (time.monotonic() - started) / 60
            during = pauses(log, at_start)

    rows, figures = [], {}
    for generation in (0, 1, 2):
        times = [ms for gen, ms in during if gen == generation]
        figures[generation] = {
            "collections": len(times),
            "median_ms": median(times),
            "max_ms": max(times, default=0.0),
            "paused_ms_per_minute": sum(times) / minutes,
        }
        rows.append([generation, *figures[generation].values()])
    print_table(["generation", "collections", "median ms", "max ms", "paused ms/min"], rows)
    longest = max((ms for _, ms in during), default=0.0)
    print(
        f"{answered} answers in {minutes:.1f} min at {args.streams} streams; longest pause "
        f"{longest:.1f} ms"
    )
    write_result(
        "gc_pauses",
        {
            "streams": args.streams,
            "minutes": minutes,
            "answered": answered,
            "generations": figures,
            "foreign_cpu_fraction": audit.foreign_fraction,
            "headline": [
                headline("longest collector pause under load", longest, "ms"),
                headline("full collections under load", figures[2]["collections"], ""),
            ],
        },
    )


if __name__ == "__main__":
    main()
