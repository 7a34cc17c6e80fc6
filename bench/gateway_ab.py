"""This code against another, both as gateways in front of the stub, request by request.

A change of a tenth of a millisecond is lost between two runs of ``gateway_overhead``,
whose figures move by more than that from run to run. Here both gateways run at once, in
front of the same stub upstream, and take the same requests in a random order each round:
the median of the per-round differences shows such a change. ``--other-src`` is the
``src`` folder of the code to compare with (``git worktree add /tmp/before HEAD~1`` makes
one); without it, the other gateway runs this same code, which measures how far two
processes of the same code differ. ``--other-setting TETHER_NAME=VALUE`` (repeatable) sets
the other gateway alone: with ``TETHER_COMPLIANCE_ENABLED=false``, what checking answers
costs a request. The stub answers at once unless ``--stub-delay-ms`` has it wait as a model
would: a gateway that sleeps through that wait wakes with its caches cold, and each step of
its path costs more than the instant stub shows.

Each round sends a plain ``/v1/completions``, a streamed one (time to its first text) and
an editor's ``/v1/fim/completions`` with three files of context (which the policy reads,
the compressor cuts and the policy reads again) to each gateway.
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import httpx

from bench._common import headline, median, print_table, tether_server, write_result
from bench.gateway_overhead import body, stub_upstream, timed_json, timed_stream_first

KINDS = ("plain", "first_text", "fim_context")
SIDES = ("this", "other")
# Three files an editor sends beside the cursor: code with comments and docstrings.
CONTEXT = [
    {
        "filename": f"billing/part{n}.py",
        "text": "".join(
            f"# Invoice helpers, part {n}: totals and taxes.\n"
            f"def total_{n}_{i}(items, rate):  # items: (price, count) pairs\n"
            f'    """The total of ``items`` with tax at ``rate``."""\n'
            f"    return sum(p * c for p, c in items) * (1 + rate)\n\n\n"
            for i in range(6)
        ),
    }
    for n in range(3)
]


def fim_body(model: str) -> dict[str, object]:
    return {
        "model": model,
        "prompt": "def overdue(invoices, today):\n    ",
        "suffix": "\n\n\ndef reminders(invoices):\n    pass\n",
        "context": CONTEXT,
        "max_tokens": 8,
        "temperature": 0,
    }


def timed_fim(client: httpx.Client, payload: dict[str, object]) -> float:
    start = time.perf_counter()
    client.post("/fim/completions", json=payload).raise_for_status()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--other-src", type=Path, help="the other code's src folder")
    parser.add_argument(
        "--other-setting",
        action="append",
        default=[],
        metavar="TETHER_NAME=VALUE",
        help="a setting of the other gateway only (repeatable): what one part costs, "
        "e.g. TETHER_COMPLIANCE_ENABLED=false",
    )
    parser.add_argument(
        "--stub-delay-ms",
        type=float,
        default=0,
        help="each stub answer waits this long, as a model's would (default: none)",
    )
    parser.add_argument("--rounds", type=int, default=800)
    parser.add_argument("--warmup", type=int, default=20)
    args = parser.parse_args()
    other_env = {"PYTHONPATH": str(args.other_src.resolve())} if args.other_src else {}
    for setting in args.other_setting:
        name, is_set, value = setting.partition("=")
        if not is_set or not name.startswith("TETHER_"):
            parser.error(f"--other-setting {setting!r}: write it as TETHER_NAME=VALUE")
        other_env[name] = value
    times: dict[tuple[str, str], list[float]] = {(s, k): [] for s in SIDES for k in KINDS}
    with (
        stub_upstream(args.stub_delay_ms) as stub,
        tether_server("--engine", "openai", "--upstream", stub) as this,
        tether_server("--engine", "openai", "--upstream", stub, env=other_env) as other,
    ):
        clients = {
            side: httpx.Client(base_url=f"{server.url}/v1", headers=server.headers, timeout=30)
            for side, server in (("this", this), ("other", other))
        }
        model = clients["this"].get("/models").json()["data"][0]["id"]
        for index in range(args.warmup + args.rounds):
            for side in random.sample(SIDES, len(SIDES)):
                plain = timed_json(clients[side], body(model))[0]
                first = timed_stream_first(clients[side], body(model, stream=True))[0]
                fim = timed_fim(clients[side], fim_body(model))
                if index >= args.warmup:
                    times[(side, "plain")].append(plain * 1000)
                    times[(side, "first_text")].append(first * 1000)
                    times[(side, "fim_context")].append(fim * 1000)
        for client in clients.values():
            client.close()

    figures = {
        kind: {
            "this_p50_ms": median(times[("this", kind)]),
            "other_p50_ms": median(times[("other", kind)]),
            "paired_difference_ms": median(
                [a - b for a, b in zip(times[("this", kind)], times[("other", kind)], strict=True)]
            ),
        }
        for kind in KINDS
    }
    compared = " ".join([str(args.other_src or "this same code"), *args.other_setting])
    delay = f", the stub waiting {args.stub_delay_ms:g} ms" if args.stub_delay_ms else ""
    print(f"{args.rounds} rounds{delay}; other: {compared}")
    print_table(
        ["request", "this p50 ms", "other p50 ms", "this - other, paired median ms"],
        [[kind, *figures[kind].values()] for kind in KINDS],
    )
    write_result(
        "gateway_ab",
        {
            "other_src": str(args.other_src or ""),
            "other_settings": args.other_setting,
            "rounds": args.rounds,
            "stub_delay_ms": args.stub_delay_ms,
            "figures": figures,
            "headline": [
                headline(f"gateway A/B: {kind}, this minus other", f["paired_difference_ms"], "ms")
                for kind, f in figures.items()
            ],
        },
    )


if __name__ == "__main__":
    main()
