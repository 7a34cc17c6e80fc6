"""Usage ledger: what one request's row (with its hourly and daily rollups, in one
transaction) costs on the request path, into a fresh ledger file on this machine's disk."""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench._common import headline, percentile, print_table, write_result
from tether.usage.ledger import UsageLedger, UsageRecord


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=3000)
    args = parser.parse_args()
    took: list[float] = []
    with tempfile.TemporaryDirectory() as tmp, UsageLedger(Path(tmp) / "usage.sqlite") as ledger:
        for i in range(args.requests):
            row = UsageRecord(
                ts=time.time(), request_id=f"r{i}", principal=f"user-{i % 20}", token_id="t",
                model="m", endpoint="/v1/completions", status=200, prompt_tokens=300,
                completion_tokens=20, cached_tokens=200, ttft_ms=40.0, duration_ms=90.0,
                bytes_in=1500, bytes_out=400, completion_id=f"cmpl-{i}", language="python",
            )  # fmt: skip
            started = time.perf_counter()
            ledger.record(row)
            took.append((time.perf_counter() - started) * 1e6)
    p50, p95 = percentile(took, 50), percentile(took, 95)
    print_table(["requests", "p50 µs", "p95 µs"], [(args.requests, p50, p95)])
    write_result(
        "usage_ledger",
        {
            "requests": args.requests,
            "p50_us": p50,
            "p95_us": p95,
            "headlines": [headline("usage ledger row per request, p95", p95, "µs", "<=", 500)],
        },
    )


if __name__ == "__main__":
    main()
