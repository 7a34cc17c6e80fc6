"""Dashboard: page loads with real amounts of data, in a real browser.

Seeds a data directory with 100,000 traces (the last 14 days) and a year of usage
(``--usage-rows``, 1,000,000 by default: about 2,700 requests a day), starts `tether serve`
on it, and measures (a) each page's API calls over HTTP, p50 of ``--rounds``, and (b) each
page loaded in Chromium, from navigation to its data on screen, median of ``--rounds``.
Goal: every page <= 300 ms.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sqlite3
import tempfile
import time
from dataclasses import astuple
from pathlib import Path

import httpx

from bench._common import (
    headline,
    median,
    percentile,
    print_table,
    tether_server_with_home,
    write_result,
)
from bench.trace_store import sample_trace
from tether.traces import TraceStore
from tether.usage.ledger import UsageLedger, UsageRecord, rebuild_rollups

PAGES = {
    "overview": ["/v1/dashboard/overview?period=365d", "/v1/dashboard/overview?period=24h"],
    "usage": ["/v1/dashboard/usage?since=365d&by=principal",
              "/v1/dashboard/usage?since=30d&by=day"],
    "funnel": ["/v1/dashboard/funnel?period=365d&by=language"],
    "traces": ["/v1/dashboard/traces", "/v1/dashboard/traces/facets",
               "/v1/dashboard/traces?finding=py.eval&principal=user-3"],
    "audit": ["/v1/dashboard/audit"],
    "store": ["/v1/dashboard/store"],
    "evals": ["/v1/dashboard/evals"],
}  # fmt: skip


HEADINGS = {
    "overview": "Overview",
    "usage": "Usage and cost",
    "funnel": "Completion funnel",
    "traces": "Traces",
    "audit": "Audit",
    "store": "Function store",
    "evals": "Evaluations",
}


def seed(home: Path, usage_rows: int, traces: int) -> None:
    data = home / "data"
    data.mkdir(parents=True)
    now = time.time()
    rng = random.Random(1)
    with UsageLedger(data / "usage.sqlite"):
        pass  # the schema
    db = sqlite3.connect(data / "usage.sqlite")
    rows = (
        astuple(UsageRecord(
            ts=now - rng.uniform(0, 365 * 86_400), request_id=f"r{i}",
            principal=f"user-{rng.randrange(40)}", token_id="tid", model=rng.choice(["a", "b"]),
            endpoint=rng.choice(["/v1/completions", "/tabby/v1/completions"]),
            status=200 if rng.random() < 0.98 else 429, prompt_tokens=rng.randint(50, 2000),
            completion_tokens=rng.randint(1, 120), cached_tokens=rng.randint(0, 1500),
            ttft_ms=rng.lognormvariate(4, 0.8), duration_ms=rng.lognormvariate(6, 0.8),
            bytes_in=rng.randint(200, 9000), bytes_out=rng.randint(100, 4000),
            completion_id=f"cmpl-{i}", language=rng.choice(["python", "typescript", "go"]),
        ))
        for i in range(usage_rows)
    )  # fmt: skip
    columns = ", ".join("?" for _ in range(16))
    with db:
        db.executemany(
            "INSERT INTO usage (ts, request_id, principal, token_id, model, endpoint, status, "
            "prompt_tokens, completion_tokens, cached_tokens, ttft_ms, duration_ms, bytes_in, "
            f"bytes_out, completion_id, language) VALUES ({columns})",
            rows,
        )
        db.executemany(
            "INSERT OR IGNORE INTO completion_events VALUES (?, ?, ?)",
            ((f"cmpl-{i}", rng.choice(["view", "select"]), now) for i in range(0, usage_rows, 5)),
        )
        rebuild_rollups(db)
    db.close()
    with TraceStore(data / "traces.sqlite", prune_every=10**9) as store:
        for i in range(traces):
            trace = sample_trace(i)
            trace.created = now - rng.uniform(0, 13 * 86_400)
            trace.principal = f"user-{i % 40}"
            store.record(trace)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--usage-rows", type=int, default=1_000_000)
    parser.add_argument("--traces", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    home = Path(tempfile.mkdtemp(prefix="tether-bench-dashboard-"))
    try:
        started = time.perf_counter()
        seed(home, args.usage_rows, args.traces)
        seeded_s = time.perf_counter() - started
        print(f"seeded {args.usage_rows:,} usage rows, {args.traces:,} traces: {seeded_s:.0f} s")
        with tether_server_with_home(home) as server:
            api_ms: dict[str, float] = {}
            with httpx.Client(base_url=server.url, headers=server.headers, timeout=60) as client:
                for page, calls in PAGES.items():
                    for call in calls:
                        assert client.get(call).status_code == 200, call
                    times = []
                    for _ in range(args.rounds):
                        t0 = time.perf_counter()
                        for call in calls:
                            client.get(call)
                        times.append((time.perf_counter() - t0) * 1000)
                    api_ms[page] = percentile(times, 50)
            page_ms: dict[str, float] = {}
            load_ms: dict[str, float] = {}
            chromium = shutil.which("chromium") or shutil.which("chromium-browser")
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=chromium)
                tab = browser.new_page()
                tab.goto(f"{server.url}/ui")
                tab.get_by_label("Token").fill(server.token)
                tab.get_by_role("button", name="Log in").click()
                tab.wait_for_selector("main:not([aria-busy]) h1")
                done = "main:not([aria-busy]) h1:not(:has-text('Log in'))"
                for page in PAGES:
                    moves, loads = [], []
                    for _ in range(args.rounds):
                        # Within the app: from another page, by its link.
                        away = "overview" if page != "overview" else "usage"
                        tab.goto(f"{server.url}/ui#/{away}")
                        tab.wait_for_selector(done)
                        t0 = time.perf_counter()
                        tab.goto(f"{server.url}/ui#/{page}")
                        tab.wait_for_selector(
                            f"main:not([aria-busy]) h1:text-is('{HEADINGS[page]}')"
                        )
                        moves.append((time.perf_counter() - t0) * 1000)
                        # A fresh load of the page: HTML, script, session and data.
                        tab.goto("about:blank")
                        t0 = time.perf_counter()
                        tab.goto(f"{server.url}/ui#/{page}")
                        tab.wait_for_selector(
                            f"main:not([aria-busy]) h1:text-is('{HEADINGS[page]}')"
                        )
                        loads.append((time.perf_counter() - t0) * 1000)
                    page_ms[page] = median(moves)
                    load_ms[page] = median(loads)
                browser.close()
    finally:
        shutil.rmtree(home, ignore_errors=True)
    rows = [(p, api_ms[p], page_ms[p], load_ms[p]) for p in PAGES]
    print_table(["page", "API calls p50 ms", "in-app median ms", "fresh load median ms"], rows)
    worst = max(load_ms.values())
    write_result(
        "dashboard",
        {
            "usage_rows": args.usage_rows,
            "traces": args.traces,
            "rounds": args.rounds,
            "api_ms_p50": api_ms,
            "in_app_ms_median": page_ms,
            "fresh_load_ms_median": load_ms,
            "headlines": [headline("slowest dashboard page load", worst, "ms", "<=", 300)],
        },
    )


if __name__ == "__main__":
    main()
