"""Usage ledger: what one request's row (with its hourly and daily rollups, in one
transaction) costs on the request path, into a fresh ledger file on this machine's disk;
and what a report's sums cost over a busy day (``--report-rows`` requests in the last 20
hours, loaded in bulk and rolled up as ``rebuild_rollups`` does), for the last 12 hours
and the last 30 days, grouped by principal and in total as ``tether usage report --by
principal`` reads them."""

from __future__ import annotations

import argparse
import random
import sqlite3
import tempfile
import time
from contextlib import closing
from dataclasses import astuple, fields
from pathlib import Path

from bench._common import headline, median, percentile, print_table, write_result
from tether.usage.ledger import UsageLedger, UsageRecord, rebuild_rollups
from tether.usage.reader import LedgerReader

_HOUR = 3600.0


def _row(i: int, ts: float, rng: random.Random) -> UsageRecord:
    return UsageRecord(
        ts=ts, request_id=f"r{i}", principal=f"user-{rng.randrange(40)}", token_id="t",
        model=rng.choice(["m1", "m2", "m3"]),
        endpoint=rng.choice(["/v1/completions", "/v1/chat/completions", "/infill"]),
        status=200, prompt_tokens=rng.randint(5, 2000), completion_tokens=rng.randint(0, 300),
        cached_tokens=rng.randint(0, 5), ttft_ms=rng.uniform(5, 3000),
        duration_ms=rng.uniform(1, 20_000), bytes_in=1500, bytes_out=400,
    )  # fmt: skip


def record_cost(requests: int) -> tuple[float, float]:
    """p50 and p95, in µs, of one ``UsageLedger.record``."""
    took: list[float] = []
    with tempfile.TemporaryDirectory() as tmp, UsageLedger(Path(tmp) / "usage.sqlite") as ledger:
        for i in range(requests):
            row = UsageRecord(
                ts=time.time(), request_id=f"r{i}", principal=f"user-{i % 20}", token_id="t",
                model="m", endpoint="/v1/completions", status=200, prompt_tokens=300,
                completion_tokens=20, cached_tokens=200, ttft_ms=40.0, duration_ms=90.0,
                bytes_in=1500, bytes_out=400, completion_id=f"cmpl-{i}", language="python",
            )  # fmt: skip
            started = time.perf_counter()
            ledger.record(row)
            took.append((time.perf_counter() - started) * 1e6)
    return percentile(took, 50), percentile(took, 95)


def report_cost(rows: int, rounds: int) -> dict[str, float]:
    """Median ms of a report's two sums (by principal, and the total) per period."""
    rng = random.Random(7)
    now = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "usage.sqlite"
        UsageLedger(path, retention_days=10_000).close()
        with closing(sqlite3.connect(path)) as db:
            db.execute("BEGIN")
            names = [f.name for f in fields(UsageRecord)]
            db.executemany(
                f"INSERT INTO usage ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
                (astuple(_row(i, rng.uniform(now - 20 * _HOUR, now), rng)) for i in range(rows)),
            )
            rebuild_rollups(db)
            db.execute("COMMIT")
        took: dict[str, float] = {}
        with LedgerReader(path, missing_ok=False) as reader:
            for name, span in (("12h", 12 * _HOUR), ("30d", 30 * 24 * _HOUR)):
                times = []
                for _ in range(rounds):
                    started = time.perf_counter()
                    reader.totals(now - span, now, "principal")
                    reader.totals(now - span, now, None)
                    times.append((time.perf_counter() - started) * 1000)
                took[name] = median(times)
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--report-rows", type=int, default=300_000)
    parser.add_argument("--report-rounds", type=int, default=5)
    args = parser.parse_args()
    p50, p95 = record_cost(args.requests)
    print_table(["requests", "p50 µs", "p95 µs"], [(args.requests, p50, p95)])
    report = report_cost(args.report_rows, args.report_rounds)
    print_table(
        ["ledger rows (last 20 h)", "report since", "median ms"],
        [(args.report_rows, since, ms) for since, ms in report.items()],
    )
    write_result(
        "usage_ledger",
        {
            "requests": args.requests,
            "p50_us": p50,
            "p95_us": p95,
            "report_rows": args.report_rows,
            "report_ms": report,
            "headlines": [
                headline("usage ledger row per request, p95", p95, "µs", "<=", 500),
                headline(
                    f"usage report over {args.report_rows:,} requests in 20 h, since 30d",
                    report["30d"],
                    "ms",
                    "<=",
                    500,
                ),
            ],
        },
    )


if __name__ == "__main__":
    main()
