"""The gateway's CPU time for each token it streams on: this code against another.

Where the model runs on the same cores (a laptop, a small node), every token's work in
the gateway is taken from the model, so the gateway's streaming throughput against the
upstream's (issue goal: at least 0.97x) rests on it. Two gateways, this code and
``--other-src`` (without it, this same code twice), stand in front of the stub upstream,
which streams code a word an event, ``--gap-ms`` apart as a model decodes (a gateway that
waits between tokens finds its caches cold at each, which a stub streaming flat out never
shows). Each round streams ``--requests`` chat answers of ``--tokens`` words through each
gateway in turn, in a random order, and reads the gateway's CPU time (user and system,
from /proc) around them. The figures: microseconds of CPU per token streamed, the median
over rounds for each side, and the median of the rounds' ratios. Governance, the answer's
checks (the secret holdback on every piece), traces and audit are on, as shipped.
"""

from __future__ import annotations

import argparse
import json
import os
import random
from pathlib import Path

import httpx

from bench._common import median, print_table, tether_server, write_result
from bench.gateway_overhead import stub_upstream

SIDES = ("this", "other")


def cpu_seconds(pid: int) -> float:
    """The CPU time ``pid`` has used, user and system, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stream_answer(client: httpx.Client, model: str, tokens: int) -> str:
    """Stream one chat answer of ``tokens`` words; its text."""
    body = {
        "model": model,
        "messages": [{"role": "user", "content": "Write the invoice total."}],
        "max_tokens": tokens,
        "stream": True,
    }
    text = []
    with client.stream("POST", "/chat/completions", json=body) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if line.startswith("data: {"):
                chunk = json.loads(line.removeprefix("data: "))
                text += [c["delta"].get("content") or "" for c in chunk["choices"]]
    return "".join(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--other-src", type=Path, help="the other code's src folder")
    parser.add_argument("--gap-ms", type=float, default=6.0, help="between the stub's words")
    parser.add_argument("--tokens", type=int, default=256, help="words in each answer")
    parser.add_argument("--requests", type=int, default=8, help="answers per side per round")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    other_env = {"PYTHONPATH": str(args.other_src.resolve())} if args.other_src else {}
    per_token: dict[str, list[float]] = {side: [] for side in SIDES}
    with (
        stub_upstream(token_gap_ms=args.gap_ms) as stub,
        tether_server("--engine", "openai", "--upstream", stub) as this,
        tether_server("--engine", "openai", "--upstream", stub, env=other_env) as other,
    ):
        servers = {"this": this, "other": other}
        clients = {
            side: httpx.Client(base_url=f"{server.url}/v1", headers=server.headers, timeout=120)
            for side, server in servers.items()
        }
        model = clients["this"].get("/models").json()["data"][0]["id"]
        for side in SIDES:  # warm-up: the first answers pay for imports and caches
            expected = stream_answer(clients[side], model, args.tokens)
        for _ in range(args.rounds):
            for side in random.sample(SIDES, len(SIDES)):
                pid = servers[side].proc.pid
                before = cpu_seconds(pid)
                for _ in range(args.requests):  # each the same code, passed on whole
                    assert stream_answer(clients[side], model, args.tokens) == expected
                spent = cpu_seconds(pid) - before
                per_token[side].append(spent / (args.requests * args.tokens) * 1e6)
        for client in clients.values():
            client.close()

    ratios = [a / b for a, b in zip(per_token["this"], per_token["other"], strict=True) if b]
    figures = {
        "this_cpu_us_per_token": median(per_token["this"]),
        "other_cpu_us_per_token": median(per_token["other"]),
        "this_over_other": median(ratios),
    }
    compared = args.other_src or "this same code"
    print(
        f"{args.rounds} rounds of {args.requests} answers of {args.tokens} words, "
        f"{args.gap_ms:g} ms apart; other: {compared}"
    )
    print_table(
        ["gateway", "CPU µs per token, median of rounds", "rounds"],
        [
            ["this", figures["this_cpu_us_per_token"], per_token["this"]],
            ["other", figures["other_cpu_us_per_token"], per_token["other"]],
        ],
    )
    print(f"this / other, median of the rounds' ratios: {figures['this_over_other']:.3f}")
    write_result(
        "gateway_stream_cpu",
        {
            "other_src": str(args.other_src or ""),
            "gap_ms": args.gap_ms,
            "tokens": args.tokens,
            "requests": args.requests,
            "rounds": args.rounds,
            "per_round_us": per_token,
            "figures": figures,
        },
    )


if __name__ == "__main__":
    main()
