"""Governance overhead: a completion with the policy scanner and compliance checks on vs off.

Two tether servers over the default model, identical but for ``policy.enabled`` and
``compliance.enabled``, get the same ``/v1/completions`` request alternately: a ~2 KB
prompt of code and prose, max_tokens 16, temperature 0, seed 0. The prompt holds nothing
the policy changes, so both servers show the model the same tokens and generate the same
answer (checked); after the first request each answers from its KV cache, so the
difference is what scanning the prompt and checking the answer cost. Goal: ≤ 5 ms p50.
"""

from __future__ import annotations

import argparse
import time

import httpx

from bench._common import (
    CpuAudit,
    Deadline,
    headline,
    median,
    percentile,
    print_table,
    tether_server,
    write_result,
)

PROMPT = (
    '"""Billing helpers: invoices, taxes and overdue reminders."""\n\n'
    "import decimal\nfrom dataclasses import dataclass\n\n\n"
    + "".join(
        f"@dataclass\nclass Invoice{i}:\n    number: str\n    amount: decimal.Decimal\n\n"
        f"    def total_with_tax(self, rate: decimal.Decimal) -> decimal.Decimal:\n"
        f"        return (self.amount * (1 + rate)).quantize(decimal.Decimal('0.01'))\n\n\n"
        for i in range(8)
    )
    + "def overdue(invoices, today):\n    "
)
OFF = {"TETHER_POLICY_ENABLED": "false", "TETHER_COMPLIANCE_ENABLED": "false"}


def timed(client: httpx.Client) -> tuple[float, str]:
    body = {"prompt": PROMPT, "max_tokens": 16, "temperature": 0, "seed": 0}
    start = time.perf_counter()
    response = client.post("/v1/completions", json=body)
    elapsed = time.perf_counter() - start
    response.raise_for_status()
    return elapsed * 1000, response.json()["choices"][0]["text"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--budget-s", type=float, default=120.0, help="stop early after this")
    args = parser.parse_args()
    deadline = Deadline(args.budget_s)
    times: dict[str, list[float]] = {"on": [], "off": []}
    answers: set[str] = set()
    with (
        CpuAudit() as audit,
        tether_server() as on,
        tether_server(env=OFF) as off,
        httpx.Client(base_url=on.url, headers=on.headers, timeout=60.0) as on_client,
        httpx.Client(base_url=off.url, headers=off.headers, timeout=60.0) as off_client,
    ):
        clients = {"on": on_client, "off": off_client}
        for index in range(args.warmup + args.pairs):
            if deadline.expired():
                break
            order = ["on", "off"] if index % 2 else ["off", "on"]
            for side in order:
                elapsed, answer = timed(clients[side])
                answers.add(answer)
                if index >= args.warmup:
                    times[side].append(elapsed)
    stats = {
        side: {"p50_ms": percentile(v, 50), "p95_ms": percentile(v, 95), "n": len(v)}
        for side, v in times.items()
    }
    added = stats["on"]["p50_ms"] - stats["off"]["p50_ms"]
    paired = median([a - b for a, b in zip(times["on"], times["off"], strict=True)])
    print(f"/v1/completions, {len(PROMPT)}-character prompt, max_tokens 16")
    print_table(
        ["governance", "n", "p50 ms", "p95 ms"],
        [[side, s["n"], s["p50_ms"], s["p95_ms"]] for side, s in stats.items()],
    )
    print(
        f"governance adds {added:.2f} ms at p50 (goal <= 5); paired median {paired:.2f} ms; "
        f"same answer on both sides: {len(answers) == 1}"
    )
    write_result(
        "governance_overhead",
        {
            "prompt_chars": len(PROMPT),
            "sides": stats,
            "samples_ms": times,
            "added_p50_ms": added,
            "paired_median_ms": paired,
            "identical_answers": len(answers) == 1,
            "stopped_early": deadline.hit,
            "foreign_cpu_fraction": audit.foreign_fraction,
            "headline": [headline("governance added latency p50", added, "ms", "<=", 5.0)],
        },
    )


if __name__ == "__main__":
    main()
