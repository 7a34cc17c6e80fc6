"""Recording overhead: what the audit record and the trace add to each request.

The same pipeline runs the same completion request with and without its recorders
(the audit log and the trace store, as the server wires them), alternately, over an
engine that answers at once, so the difference is the recording alone. The recorders'
own ``record`` calls are timed too. Goal: ≤ 0.5 ms per request at p50.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import AsyncGenerator
from pathlib import Path

from bench._common import headline, median, percentile, print_table, write_result
from tether.audit import AuditLog
from tether.engines.base import (
    EngineInfo,
    EngineStats,
    GenerationChunk,
    GenerationRequest,
    SamplingParams,
)
from tether.pipeline import Completion, CompletionTask, Pipeline, Prepared
from tether.pipeline.recording import AuditRecorder, TraceRecorder
from tether.plugins import build_manager
from tether.settings import load_settings
from tether.traces import TraceStore

PROMPT = "".join(
    f"def handler_{i}(event, context):\n    return process(event)\n\n" for i in range(30)
)
ANSWER = "    result = process(event)\n    log.info('done %s', result)\n    return result\n"


class InstantEngine:
    """Answers every request at once, a few characters a chunk, like a fast model."""

    def info(self) -> EngineInfo:
        return EngineInfo("instant", "1", "instant", 4096, model_sha256="0" * 64)

    async def generate(self, request: GenerationRequest) -> AsyncGenerator[GenerationChunk, None]:
        pieces = [ANSWER[i : i + 6] for i in range(0, len(ANSWER), 6)]
        for piece in pieces[:-1]:
            yield GenerationChunk(text=piece)
        yield GenerationChunk(pieces[-1], "stop", prompt_tokens=300, completion_tokens=20)

    def count_tokens(self, text: str) -> int:
        return len(text) // 4

    async def health(self) -> bool:
        return True

    def stats(self) -> EngineStats:
        return EngineStats()

    async def close(self) -> None:
        return None


class Timed:
    def __init__(self, inner: AuditRecorder | TraceRecorder) -> None:
        self.inner = inner
        self.samples: list[float] = []

    def record(self, prepared: Prepared, completion: Completion) -> None:
        start = time.perf_counter()
        self.inner.record(prepared, completion)
        self.samples.append((time.perf_counter() - start) * 1e6)


async def run(requests: int, home: Path) -> dict[str, object]:
    settings = load_settings(environ={"TETHER_HOME": str(home)})
    engine = InstantEngine()
    plugins = build_manager(settings)
    bare = Pipeline(engine, settings, plugins)
    audit = AuditLog.open(settings)
    traces = TraceStore.from_settings(settings)
    recorded = Pipeline(engine, settings, plugins)
    timed_audit = Timed(AuditRecorder(audit, engine.info()))
    trace_recorder = TraceRecorder(traces, engine.info(), recorded.templates)
    timed_trace = Timed(trace_recorder)
    recorded.recorders += [timed_audit, timed_trace]
    task = CompletionTask(SamplingParams(max_tokens=32), PROMPT)
    times: dict[str, list[float]] = {"without": [], "with": []}
    try:
        for index in range(requests):
            order = [("without", bare), ("with", recorded)]
            for side, pipeline in order if index % 2 else order[::-1]:
                start = time.perf_counter()
                await pipeline.complete(pipeline.prepare(task, stream=False))
                times[side].append((time.perf_counter() - start) * 1000)
    finally:
        audit.close()
        trace_recorder.close()
        traces.close()
    return {
        "times": times,
        "audit_us": timed_audit.samples,
        "trace_us": timed_trace.samples,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tether-bench-recording-") as tmp:
        result = asyncio.run(run(args.requests, Path(tmp)))
    times: dict[str, list[float]] = result["times"]  # type: ignore[assignment]
    audit_us: list[float] = result["audit_us"]  # type: ignore[assignment]
    trace_us: list[float] = result["trace_us"]  # type: ignore[assignment]
    added = median(times["with"]) - median(times["without"])
    rows = [
        [
            "request without recorders (ms)",
            median(times["without"]),
            percentile(times["without"], 95),
        ],
        ["request with recorders (ms)", median(times["with"]), percentile(times["with"], 95)],
        ["audit record() (µs)", median(audit_us), percentile(audit_us, 95)],
        ["trace record() (µs)", median(trace_us), percentile(trace_us, 95)],
    ]
    print(f"{args.requests} requests each side, instant engine, {len(PROMPT)}-character prompt")
    print_table(["measure", "p50", "p95"], rows)
    print(f"recording adds {added:.3f} ms per request at p50 (goal <= 0.5)")
    write_result(
        "recording_overhead",
        {
            "requests": args.requests,
            "without_p50_ms": median(times["without"]),
            "with_p50_ms": median(times["with"]),
            "added_p50_ms": added,
            "audit_record_p50_us": median(audit_us),
            "trace_record_p50_us": median(trace_us),
            "headline": [
                headline("audit + trace added latency p50", added, "ms", "<=", 0.5),
                headline("audit record() p50", median(audit_us), "µs"),
                headline("trace record() p50", median(trace_us), "µs"),
            ],
        },
    )


if __name__ == "__main__":
    main()
