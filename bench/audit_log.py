"""Audit log: sustained append rate, caller-side append latency, and verify rate.

Goals: >= 20,000 records/s appended with checkpoints on (records durable at each
checkpoint), append() p50 <= 0.5 ms on the caller's thread, `verify` >= 100,000
records/s over the written log, and an inclusion or consistency proof in <= 1 ms (the
server answers them on its event loop). Then `verify` again with many idle heartbeat
checkpoints added, for the time they take and whether its memory grows with them. The log
lives in a throw-away temp data dir.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench._common import headline, percentile, print_table, write_result
from tether.audit import segments
from tether.audit.checkpoint import parse_verifier_key
from tether.audit.log import AuditLog, audit_folder
from tether.audit.verify import verify
from tether.settings import load_settings


def sample_record(i: int) -> dict[str, Any]:
    """What the pipeline passes for a typical completion: commitments, one finding."""
    return {
        "request_id": f"cmpl-{i:08x}",
        "principal": "alice",
        "token_id": "tok_3f9a",
        "endpoint": "/v1/completions",
        "model_sha256": "ab" * 32,
        "params": {"max_tokens": 64, "temperature": 0.2, "top_p": 0.95, "seed": i},
        "policy": [{"rule": "secrets.generic", "action": "redact", "line": 3}],
        "findings": [{"rule": "py.eval", "severity": "error", "line": 2}],
        "prompt": ("def handler(event):\n    return process(event)\n" * 40)[:1500],
        "completion": "    return value\n" * 4,
    }


def _traced_peak(run: Callable[[], object]) -> int:
    """The most memory Python held at once during ``run``, in bytes."""
    tracemalloc.start()
    try:
        run()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _add_heartbeats(path: Path, count: int) -> None:
    """Repeat the last checkpoint ``count`` times, 10 s apart, as an idle server signs it."""
    last = json.loads(path.read_bytes().splitlines()[-1])
    with path.open("a") as file:
        for i in range(1, count + 1):
            file.write(json.dumps({**last, "time": last["time"] + 10 * i}) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=100_000, help="records appended and verified")
    parser.add_argument("--repeat", type=int, default=3, help="verify runs; the best counts")
    parser.add_argument(
        "--heartbeats",
        type=int,
        default=100_000,
        help="idle heartbeat checkpoints added for the last verify (11.6 days' at 10 s)",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="tether-bench-audit-") as tmp:
        settings = load_settings(environ={"TETHER_HOME": tmp})
        fields = [sample_record(i) for i in range(args.n)]
        log = AuditLog.open(settings)
        append_us: list[float] = []
        start = time.perf_counter()
        for record in fields:
            t0 = time.perf_counter()
            log.append(record)
            append_us.append((time.perf_counter() - t0) * 1e6)
        log.flush()  # sustained = until the last record is written, signed and fsynced
        append_s = time.perf_counter() - start
        log.close()

        folder = audit_folder(settings)
        key = parse_verifier_key((folder / "verifier.key").read_text())
        size_mb = sum(p.stat().st_size for p in folder.glob("segment-*.jsonl")) / 1024 / 1024
        verify_s: list[float] = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            report = verify(folder, key)
            verify_s.append(time.perf_counter() - t0)
            if not report.ok or report.records != args.n:
                raise SystemExit(f"verify failed on the benchmark log: {report.error}")
        # What a command answering in process pays before its first record: the chain
        # checked and the Merkle tree rebuilt from every record on disk.
        open_s: list[float] = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            AuditLog.open(settings).close()
            open_s.append(time.perf_counter() - t0)
        # What GET /v1/audit/proof/{seq} and /v1/audit/consistency/{size} cost the server,
        # on its event loop: a record spread over the log, against the latest checkpoint.
        proof_us: list[float] = []
        consistency_us: list[float] = []
        log = AuditLog.open(settings)
        try:
            for seq in range(0, args.n, max(1, args.n // 50)):
                t0 = time.perf_counter()
                log.inclusion_proof(seq)
                proof_us.append((time.perf_counter() - t0) * 1e6)
                t0 = time.perf_counter()
                log.consistency_proof(seq + 1)
                consistency_us.append((time.perf_counter() - t0) * 1e6)
        finally:
            log.close()
        # An idle server signs a checkpoint each heartbeat: verify again with many of them,
        # for the time and the memory they add.
        plain_peak = _traced_peak(lambda: verify(folder, key))
        _add_heartbeats(folder / segments.CHECKPOINTS, args.heartbeats)
        beats_s: list[float] = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            report = verify(folder, key)
            beats_s.append(time.perf_counter() - t0)
            if not report.ok:
                raise SystemExit(f"verify failed with heartbeats: {report.error}")
        beats_peak = _traced_peak(lambda: verify(folder, key))

    append_rate = args.n / append_s
    verify_rate = args.n / min(verify_s)
    figures = [
        headline("audit append sustained", append_rate, "records/s", ">=", 20_000.0),
        headline("audit append p50", percentile(append_us, 50), "µs", "<=", 500.0),
        headline("audit append p95", percentile(append_us, 95), "µs"),
        headline("audit verify", verify_rate, "records/s", ">=", 100_000.0),
        headline("audit open", args.n / min(open_s), "records/s"),
        headline(f"audit verify, {args.heartbeats} heartbeats more", min(beats_s), "s"),
        headline("audit verify peak memory", plain_peak / 2**20, "MB"),
        headline(f"same, {args.heartbeats} heartbeats more", beats_peak / 2**20, "MB"),
        headline("audit inclusion proof p50", percentile(proof_us, 50), "µs", "<=", 1000.0),
        headline("audit consistency proof p50", percentile(consistency_us, 50), "µs", "<=", 1000.0),
    ]
    print_table(
        ["figure", "value", "goal", "result"],
        [[f["metric"], f"{f['value']:.1f} {f['unit']}", f["goal"], f["pass"]] for f in figures],
    )
    path = write_result(
        "audit_log",
        {
            "records": args.n,
            "checkpoints": report.checkpoints,
            "log_mb": size_mb,
            "append_s": append_s,
            "append_us": {
                "p50": percentile(append_us, 50),
                "p95": percentile(append_us, 95),
                "p99": percentile(append_us, 99),
                "max": max(append_us),
            },
            "verify_s": verify_s,
            "open_s": open_s,
            "heartbeats": args.heartbeats,
            "verify_with_heartbeats_s": beats_s,
            "verify_peak_bytes": {"plain": plain_peak, "with_heartbeats": beats_peak},
            "inclusion_proof_us": proof_us,
            "consistency_proof_us": consistency_us,
            "headline": figures,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
