"""Trace store: the cost ``record()`` adds to each request, and ``get()`` for explain.

Goal: record() p95 <= 1000 µs for a realistic trace (a 6 KB prompt, two context
snippets, a few findings) into a store that already holds thousands, with retention at
its default cadence. The store is a throw-away file in a temp dir on this machine's disk.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench._common import headline, percentile, print_table, write_result
from tether.findings import Finding
from tether.traces import Trace, TraceStore, trace_from


def sample_trace(i: int) -> Trace:
    finding = Finding("secrets.generic", "a token", "policy", "redact", line=3, column=5)
    return trace_from(
        id=f"cmpl-{i:08x}",
        kind="fim",
        endpoint="/v1/completions",
        prompt=("def handler(event):\n    return process(event)\n" * 140)[:6000],
        output="    return value\n" * 8,
        principal="bench",
        model="bench-model",
        model_sha256="ab" * 32,
        engine="llamacpp",
        template="qwen",
        template_digest="cd" * 8,
        context=[{"filename": f"m{k}.py", "text": "x = 1\n" * 60, "score": 0.5} for k in (1, 2)],
        policy=[finding],
        findings=[Finding("py.eval", "eval", "compliance", "annotate", "error", line=2)],
        sampling={"max_tokens": 64, "temperature": 0.2, "top_p": 0.95, "seed": i},
        timings={"govern": 0.001, "render": 0.0001, "ttft": 0.05, "total": 0.4},
        prompt_tokens=1500,
        completion_tokens=40,
        finish_reason="stop",
        system_fingerprint="fp_bench",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--warm", type=int, default=5000, help="traces already stored")
    parser.add_argument("-n", type=int, default=3000, help="timed records and gets")
    args = parser.parse_args()

    with (
        tempfile.TemporaryDirectory(prefix="tether-bench-traces-") as tmp,
        TraceStore(Path(tmp) / "traces.sqlite") as store,
    ):
        traces = [sample_trace(i) for i in range(args.warm + args.n)]
        for trace in traces[: args.warm]:
            store.record(trace)
        record_us: list[float] = []
        for trace in traces[args.warm :]:
            start = time.perf_counter()
            store.record(trace)
            record_us.append((time.perf_counter() - start) * 1e6)
        get_us: list[float] = []
        for trace in traces[args.warm :]:
            start = time.perf_counter()
            store.get(trace.id)
            get_us.append((time.perf_counter() - start) * 1e6)
        size_mb = store.size_bytes() / 1024 / 1024
        stored = store.count()

    figures = [
        headline("trace record p50", percentile(record_us, 50), "µs"),
        headline("trace record p95", percentile(record_us, 95), "µs", "<=", 1000.0),
        headline("trace get p50", percentile(get_us, 50), "µs"),
    ]
    print_table(
        ["figure", "value", "goal", "result"],
        [[f["metric"], f"{f['value']:.1f} {f['unit']}", f["goal"], f["pass"]] for f in figures],
    )
    path = write_result(
        "trace_store",
        {
            "warm_traces": args.warm,
            "timed": args.n,
            "trace_json_bytes": len(traces[0].to_json()),
            "stored": stored,
            "size_mb": size_mb,
            "record_us": {
                "p50": percentile(record_us, 50),
                "p95": percentile(record_us, 95),
                "p99": percentile(record_us, 99),
                "max": max(record_us),
            },
            "get_us": {"p50": percentile(get_us, 50), "p95": percentile(get_us, 95)},
            "headline": figures,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
