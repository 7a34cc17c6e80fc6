"""Large prompts beside small ones: how long a small request waits while big ones arrive.

tether runs as shipped (prompt policy, compliance checks, audit log, traces) with
``--engine openai`` in front of ``stub_upstream.py``, which answers at once, so every
millisecond measured is tether's own. A client sends small ``/v1/completions`` requests
one after another and times each; in the loaded rounds a second client meanwhile sends
prompts of ``--large-kb`` KB back to back (source code, which the policy scans for
secrets and personal data). Quiet and loaded rounds alternate, so drifts in the machine
affect both alike.

Before a prompt reaches the engine its every text is governed, and a FIM request's code
is tokenized to fit the context: about 55 µs a KB. Done on the event loop, one large
prompt holds up every other request for that long.
"""

from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path

import httpx

from bench._common import (
    CpuAudit,
    Deadline,
    headline,
    percentile,
    print_table,
    tether_server,
    write_result,
)
from bench.gateway_overhead import stub_upstream

SOURCE = Path(__file__).resolve().parents[1] / "src" / "tether" / "pipeline" / "service.py"


def large_prompt(kb: int) -> str:
    text = SOURCE.read_text(encoding="utf-8")
    return (text * (kb * 1024 // len(text) + 1))[: kb * 1024]


def small_request(client: httpx.Client) -> float:
    start = time.perf_counter()
    response = client.post("/completions", json={"prompt": "def add(a, b):\n", "max_tokens": 8})
    elapsed = time.perf_counter() - start
    response.raise_for_status()
    return elapsed * 1000


class LargeSender:
    """Sends large prompts back to back on its own connection while ``on`` is set."""

    def __init__(self, base_url: str, headers: dict[str, str], prompt: str) -> None:
        self.on = threading.Event()
        self._stop = threading.Event()
        self._client = httpx.Client(base_url=base_url, headers=headers, timeout=120.0)
        self._body = {"prompt": prompt, "max_tokens": 8}
        self.times_ms: list[float] = []
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self.on.wait(timeout=0.05):
                continue
            start = time.perf_counter()
            self._client.post("/completions", json=self._body).raise_for_status()
            self.times_ms.append((time.perf_counter() - start) * 1000)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6, help="quiet and loaded rounds each")
    parser.add_argument("--per-round", type=int, default=40, help="small requests a round")
    parser.add_argument("--large-kb", type=int, default=1024)
    parser.add_argument("--budget-s", type=float, default=120.0, help="stop early after this")
    args = parser.parse_args()

    deadline = Deadline(args.budget_s)
    quiet: list[float] = []
    loaded: list[float] = []
    with (
        CpuAudit() as audit,
        stub_upstream() as upstream,
        tether_server("--engine", "openai", "--upstream", upstream) as server,
        httpx.Client(base_url=f"{server.url}/v1", headers=server.headers, timeout=60.0) as client,
    ):
        for _ in range(5):
            small_request(client)  # warm up
        sender = LargeSender(f"{server.url}/v1", server.headers, large_prompt(args.large_kb))
        try:
            for _ in range(args.rounds):
                if deadline.expired():
                    break
                quiet.extend(small_request(client) for _ in range(args.per_round))
                sender.on.set()
                time.sleep(0.2)  # the first large prompt is on its way
                loaded.extend(small_request(client) for _ in range(args.per_round))
                sender.on.clear()
                time.sleep(0.5)  # the last large prompt is answered
        finally:
            sender.close()

    def stats(values: list[float]) -> dict[str, float]:
        return {
            "n": len(values),
            "p50_ms": percentile(values, 50),
            "p95_ms": percentile(values, 95),
            "max_ms": max(values, default=float("nan")),
        }

    sides = {"quiet": stats(quiet), "loaded": stats(loaded), "large": stats(sender.times_ms)}
    print_table(
        ["requests", "n", "p50 ms", "p95 ms", "max ms"],
        [[name, s["n"], s["p50_ms"], s["p95_ms"], s["max_ms"]] for name, s in sides.items()],
    )
    added_p50 = sides["loaded"]["p50_ms"] - sides["quiet"]["p50_ms"]
    added_p95 = sides["loaded"]["p95_ms"] - sides["quiet"]["p95_ms"]
    print(
        f"{args.large_kb} KB prompts beside small requests add {added_p50:.1f} ms at p50 and "
        f"{added_p95:.1f} ms at p95 to the small ones"
    )
    write_result(
        "large_prompt_stall",
        {
            "large_kb": args.large_kb,
            "sides": sides,
            "quiet_ms": quiet,
            "loaded_ms": loaded,
            "large_ms": sender.times_ms,
            "added_p50_ms": added_p50,
            "added_p95_ms": added_p95,
            "stopped_early": deadline.hit,
            "foreign_cpu_fraction": audit.foreign_fraction,
            "headline": [
                headline("small request p95 added by large prompts", added_p95, "ms"),
            ],
        },
    )


if __name__ == "__main__":
    main()
