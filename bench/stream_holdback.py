"""What holding back possible secrets costs a live stream: time to first text, on vs off.

Two tether servers over the default model, identical but for
``compliance.stream_holdback``, get the same streamed ``/v1/completions`` requests
alternately (code prompts, max_tokens 32, temperature 0, seed 0). The answers hold no
secret, so both sides must stream the same text (checked); the difference in time to the
first text is what the holdback costs: text waits until a run of token characters ends.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

import httpx

from bench._common import (
    CpuAudit,
    Deadline,
    Streamed,
    headline,
    median,
    percentile,
    print_table,
    tether_server,
    write_result,
)

PROMPTS = [
    "def parse_config(path):\n    ",
    "class LRUCache:\n    def __init__(self, capacity):\n",
    "import os\nimport sys\n\n\ndef main():\n",
    "# Return the n-th Fibonacci number.\ndef fib(n):\n",
]
OFF = {"TETHER_COMPLIANCE_STREAM_HOLDBACK": "false"}


async def streamed_text(client: httpx.AsyncClient, prompt: str) -> tuple[Streamed, str]:
    """One streamed answer, timed, and the text its events carried."""
    body: dict[str, Any] = {
        "prompt": prompt, "max_tokens": 32, "temperature": 0, "seed": 0, "stream": True,
    }  # fmt: skip
    loop = asyncio.get_running_loop()
    start = loop.time()
    first: float | None = None
    pieces: list[str] = []
    async with client.stream("POST", "/v1/completions", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: {"):
                continue
            choices = json.loads(line[6:]).get("choices") or []
            text = "".join(choice.get("text") or "" for choice in choices)
            if text:
                first = first or loop.time()
                pieces.append(text)
    end = loop.time()
    return Streamed(200, (first or end) - start, end - start, len(pieces)), "".join(pieces)


async def run(args: argparse.Namespace) -> None:
    deadline = Deadline(args.budget_s)
    ttft: dict[str, list[float]] = {"on": [], "off": []}
    events: dict[str, list[int]] = {"on": [], "off": []}
    same = True
    with CpuAudit() as audit, tether_server() as on, tether_server(env=OFF) as off:
        async with (
            httpx.AsyncClient(base_url=on.url, headers=on.headers, timeout=60.0) as on_client,
            httpx.AsyncClient(base_url=off.url, headers=off.headers, timeout=60.0) as off_client,
        ):
            clients = {"on": on_client, "off": off_client}
            for index in range(args.warmup + args.pairs):
                if deadline.expired():
                    break
                prompt = PROMPTS[index % len(PROMPTS)]
                texts = {}
                for side in ["on", "off"] if index % 2 else ["off", "on"]:
                    timing, texts[side] = await streamed_text(clients[side], prompt)
                    if index >= args.warmup:
                        ttft[side].append(timing.ttft_s * 1000)
                        events[side].append(timing.tokens)
                same = same and texts["on"] == texts["off"]
    paired = median([a - b for a, b in zip(ttft["on"], ttft["off"], strict=True)])
    print("streamed /v1/completions, max_tokens 32, holdback on vs off")
    print_table(
        ["holdback", "n", "ttft p50 ms", "ttft p95 ms", "text events p50"],
        [
            [side, len(v), percentile(v, 50), percentile(v, 95), median(events[side])]
            for side, v in ttft.items()
        ],
    )
    print(f"the holdback adds {paired:.2f} ms to the first text (paired median); "
          f"same text on both sides: {same}")  # fmt: skip
    write_result(
        "stream_holdback",
        {
            "samples_ms": ttft,
            "events": events,
            "paired_median_ms": paired,
            "identical_text": same,
            "stopped_early": deadline.hit,
            "foreign_cpu_fraction": audit.foreign_fraction,
            "headline": [headline("stream holdback added time to first text", paired, "ms")],
        },
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=4)
    parser.add_argument("--budget-s", type=float, default=150.0, help="stop early after this")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
