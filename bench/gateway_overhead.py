"""Gateway overhead: latency tether adds in front of an OpenAI-compatible upstream.

One ``llama_cpp.server`` (or, with ``--llama-server``, llama.cpp's own server from ``make
llama-server``) serves the default model; tether runs with ``--engine openai``
in front of it. The same non-streaming ``/v1/completions`` request (one token, temperature
0, seed 0) goes directly to the upstream and through tether, alternately, after a few
warm-up rounds: 300 paired one-token requests, so that the model's own time, and its
jitter, stay small beside what the gateway adds. Goal: tether adds at most 2 ms at p50
and 5 ms at p95; the added p50 comes with a 95% bootstrap interval.

A third side, ``bare``, is the floor: ``bare_proxy.py``, a gateway that does only what
every gateway must (read the request, send it on as it came, plainly as tether does,
answer with the upstream's body) on tether's server stack. What it adds is what any Python
gateway pays on the machine (its server, its client, a hop more between processes); tether
over it is what tether's own work costs.

The upstream computes with one thread by default (``--upstream-threads``): on the 2-core
reference machine its compute threads otherwise spin on both cores after every request
and starve whichever process runs next, which then measures the scheduler, not tether.
Both sides talk to the same upstream either way.

A second phase repeats the pairs against ``stub_upstream.py``, which answers at once:
there the difference is tether's own cost, free of the model server's jitter (whose p95
swings by more than the goal from run to run).

By default tether runs as shipped, with its prompt policy, compliance checks, audit log
and traces; ``--no-governance`` measures the bare gateway.

An informational side sends the same request directly with ``stream: true`` and reads
the whole stream: what a gateway that relays a plain request as a stream would pay on top
of the direct figure.

The stub phase also streams: the same request with ``stream: true``, directly and through
tether (which streams it from the stub in turn), each request timed both to the first
text and to the end. There the difference is tether's own cost on a streamed answer.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import httpx

from bench._common import (
    CpuAudit,
    Deadline,
    clean_env,
    headline,
    llama_upstream,
    median,
    percentile,
    print_table,
    tether_server,
    wait_http_ok,
    write_result,
)
from bench._processes import free_port, stop_process
from bench.peer_server import started_llama_server

GOVERNANCE_OFF = {
    "TETHER_POLICY_ENABLED": "false",
    "TETHER_COMPLIANCE_ENABLED": "false",
    "TETHER_AUDIT_ENABLED": "false",
    "TETHER_TRACES_ENABLED": "false",
}
PROMPT = "def fibonacci(n):\n    "
# Against the model: plain, through tether and through the floor; the upstream's stream.
LLAMA_SIDES = ["direct", "tether", "bare", "direct_stream"]
# Against the stub: plain, and streamed (timed to the first text and to the end).
STUB_SIDES = ["direct", "tether", "bare", "direct_stream", "tether_stream"]
MAX_TOKENS = 1


def body(model: str, stream: bool = False) -> dict[str, object]:
    payload: dict[str, object] = {
        "model": model,
        "prompt": PROMPT,
        "max_tokens": MAX_TOKENS,
        "temperature": 0,
        "seed": 0,
    }
    if stream:
        payload.update(stream=True, stream_options={"include_usage": True})
    return payload


def timed_json(client: httpx.Client, payload: dict[str, object]) -> tuple[float, str]:
    start = time.perf_counter()
    try:
        response = client.post("/completions", json=payload)
    except httpx.RemoteProtocolError:
        # llama-server closes a kept-alive connection after some requests, which the
        # client finds out by sending on it: that round is timed again on a new one.
        start = time.perf_counter()
        response = client.post("/completions", json=payload)
    elapsed = time.perf_counter() - start
    response.raise_for_status()
    return elapsed, response.json()["choices"][0]["text"]


def timed_stream_first(
    client: httpx.Client, payload: dict[str, object]
) -> tuple[float, float, str]:
    """Seconds to the first text and to the end of a streamed answer, and its text."""
    start = time.perf_counter()
    first: float | None = None
    parts: list[str] = []
    with client.stream("POST", "/completions", json=payload) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if line.startswith("data: {"):
                parts.extend(c.get("text") or "" for c in json.loads(line[6:])["choices"])
                if first is None and any(parts):
                    first = time.perf_counter() - start
    end = time.perf_counter() - start
    return first or end, end, "".join(parts)


@contextlib.contextmanager
def stub_upstream(delay_ms: float = 0, token_gap_ms: float = 0) -> Iterator[str]:
    """The stub (``stub_upstream.py``), instant unless each answer waits ``delay_ms``, its
    streamed chat answers' words ``token_gap_ms`` apart; yields its base URL."""
    args = (str(delay_ms), str(token_gap_ms))
    with _served("bench.stub_upstream", *args, ready="/v1/models") as base:
        yield base


@contextlib.contextmanager
def _served(
    module: str, *args: str, ready: str, env: dict[str, str] | None = None
) -> Iterator[str]:
    """``python -m module PORT *args``, with ``env`` added to its environment, until it
    answers ``ready``; yields its base URL."""
    port = free_port()
    command = [sys.executable, "-m", module, str(port), *args]
    proc = subprocess.Popen(command, env=clean_env(**(env or {})))
    try:
        wait_http_ok(f"http://127.0.0.1:{port}{ready}", proc, 30.0, None)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        stop_process(proc)


@contextlib.contextmanager
def llama_server(threads: int) -> Iterator[str]:
    """llama.cpp's own server on the default model, one sequence; yields its base URL
    (ending in /v1)."""
    args = ("--ctx-size", "2048", "--parallel", "1", "--threads", str(threads))
    with started_llama_server(*args) as (url, _):
        yield f"{url}/v1"


@contextlib.contextmanager
def bare_proxy(upstream: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """The floor (``bare_proxy.py``) in front of ``upstream``, with ``env`` added to its
    environment; yields its base URL."""
    with _served("bench.bare_proxy", upstream, ready="/health", env=env) as base:
        yield base


def run_pairs(
    upstream: str,
    sides_wanted: list[str],
    pairs: int,
    warmup: int,
    deadline: Deadline,
    env: dict[str, str] | None = None,
) -> tuple[dict[str, list[float]], dict[str, set[str]], bool]:
    """Interleave the sides against ``upstream``; times in ms, texts seen per side. A
    streamed side's request is timed twice: to the end (``<side>``) and to the first text
    (``<who>_first``)."""
    times: dict[str, list[float]] = {}
    texts: dict[str, set[str]] = {side: set() for side in sides_wanted}
    with (
        tether_server("--engine", "openai", "--upstream", upstream, env=env) as server,
        bare_proxy(upstream) as floor,
        httpx.Client(base_url=upstream, timeout=60.0) as direct,
        httpx.Client(base_url=f"{server.url}/v1", headers=server.headers, timeout=60.0) as gw,
        httpx.Client(base_url=floor, timeout=60.0) as bare,
    ):
        upstream_model = direct.get("/models").json()["data"][0]["id"]
        tether_model = gw.get("/models").json()["data"][0]["id"]
        sides: dict[str, Callable[[], tuple[dict[str, float], str]]] = {
            "direct": lambda: plain("direct", direct, body(upstream_model)),
            "tether": lambda: plain("tether", gw, body(tether_model)),
            "bare": lambda: plain("bare", bare, body(upstream_model)),
            "direct_stream": lambda: streamed("direct", direct, body(upstream_model, True)),
            "tether_stream": lambda: streamed("tether", gw, body(tether_model, True)),
        }
        for index in range(warmup + pairs):
            if deadline.expired():
                return times, texts, True
            # Rotate which side goes first so none always follows the same neighbour.
            shift = index % len(sides_wanted)
            for side in sides_wanted[shift:] + sides_wanted[:shift]:
                elapsed, text = sides[side]()
                if index >= warmup:
                    for name, seconds in elapsed.items():
                        times.setdefault(name, []).append(seconds * 1000)
                    texts[side].add(text)
    return times, texts, False


def plain(
    who: str, client: httpx.Client, payload: dict[str, object]
) -> tuple[dict[str, float], str]:
    elapsed, text = timed_json(client, payload)
    return {who: elapsed}, text


def streamed(
    who: str, client: httpx.Client, payload: dict[str, object]
) -> tuple[dict[str, float], str]:
    first, end, text = timed_stream_first(client, payload)
    return {f"{who}_stream": end, f"{who}_first": first}, text


def p50_difference_interval(
    these: list[float], those: list[float], resamples: int = 2000
) -> tuple[float, float]:
    """A 95% bootstrap interval (seeded) for p50(``these``) minus p50(``those``): how far
    the added p50 could move by chance alone."""
    draw = random.Random(0)
    differences = sorted(
        percentile(draw.choices(these, k=len(these)), 50)
        - percentile(draw.choices(those, k=len(those)), 50)
        for _ in range(resamples)
    )
    return percentile(differences, 2.5), percentile(differences, 97.5)


def summarize(times: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    return {
        side: {"p50_ms": percentile(v, 50), "p95_ms": percentile(v, 95), "n": len(v)}
        for side, v in times.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=300)
    parser.add_argument("--stub-pairs", type=int, default=400)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--upstream-threads", type=int, default=1)
    parser.add_argument("--budget-s", type=float, default=120.0, help="stop early after this")
    parser.add_argument(
        "--llama-server",
        action="store_true",
        help="llama.cpp's own server (make llama-server) as the model upstream, not "
        "llama-cpp-python's",
    )
    parser.add_argument(
        "--no-governance",
        action="store_true",
        help="switch off policy, compliance, audit and traces: the bare gateway",
    )
    args = parser.parse_args()
    env = GOVERNANCE_OFF if args.no_governance else None

    deadline = Deadline(args.budget_s)
    with CpuAudit() as audit:
        model_server = (
            llama_server(args.upstream_threads)
            if args.llama_server
            else llama_upstream(n_ctx=2048, n_threads=args.upstream_threads)
        )
        with model_server as upstream:
            times, texts, stopped = run_pairs(
                upstream,
                LLAMA_SIDES,
                args.pairs,
                args.warmup,
                deadline,
                env,
            )
        with stub_upstream() as stub:
            stub_times, _, stub_stopped = run_pairs(
                stub,
                STUB_SIDES,
                args.stub_pairs,
                args.warmup,
                deadline,
                env,
            )

    stats = summarize(times)
    stub_stats = summarize(stub_times)
    added_p50 = stats["tether"]["p50_ms"] - stats["direct"]["p50_ms"]
    added_p95 = stats["tether"]["p95_ms"] - stats["direct"]["p95_ms"]
    own_p50 = stub_stats["tether"]["p50_ms"] - stub_stats["direct"]["p50_ms"]
    own_p95 = stub_stats["tether"]["p95_ms"] - stub_stats["direct"]["p95_ms"]
    stream_added = {
        what: {
            p: stub_stats[f"tether_{what}"][f"{p}_ms"] - stub_stats[f"direct_{what}"][f"{p}_ms"]
            for p in ("p50", "p95")
        }
        for what in ("first", "stream")
    }
    # Informational: tether against the upstream's streaming path, and the median of the
    # per-round differences (the sides alternate, so this cancels slow drifts).
    beyond_stream_p50 = stats["tether"]["p50_ms"] - stats["direct_stream"]["p50_ms"]
    paired = median([t - d for t, d in zip(times["tether"], times["direct"], strict=True)])
    interval = p50_difference_interval(times["tether"], times["direct"])
    # The floor: what the least gateway adds, and what tether adds over it.
    floor = {
        name: {
            "bare_added_p50_ms": sides["bare"]["p50_ms"] - sides["direct"]["p50_ms"],
            "tether_over_bare_p50_ms": sides["tether"]["p50_ms"] - sides["bare"]["p50_ms"],
        }
        for name, sides in (("llama", stats), ("stub", stub_stats))
    }
    same_text = len(set().union(*texts.values())) == 1
    print(f"/v1/completions max_tokens {MAX_TOKENS}, {len(times['direct'])} interleaved rounds")
    print_table(
        ["upstream", "side", "n", "p50 ms", "p95 ms"],
        [["llama", side, s["n"], s["p50_ms"], s["p95_ms"]] for side, s in stats.items()]
        + [["stub", side, s["n"], s["p50_ms"], s["p95_ms"]] for side, s in stub_stats.items()],
    )
    print(
        f"llama upstream: tether adds {added_p50:.2f} ms at p50 (95% interval "
        f"{interval[0]:.2f} to {interval[1]:.2f}; goal <= 2), {added_p95:.2f} ms at p95 "
        f"(goal <= 5); same text on all sides: {same_text}"
    )
    for name, figures in floor.items():
        print(
            f"{name} upstream, the floor: a bare gateway adds "
            f"{figures['bare_added_p50_ms']:.2f} ms at p50; tether adds "
            f"{figures['tether_over_bare_p50_ms']:.2f} ms over it"
        )
    print(f"instant stub upstream: tether adds {own_p50:.2f} ms at p50, {own_p95:.2f} ms at p95")
    print(
        f"instant stub upstream, streamed: tether adds "
        f"{stream_added['first']['p50']:.2f} ms at p50 "
        f"({stream_added['first']['p95']:.2f} at p95) to the first text, "
        f"{stream_added['stream']['p50']:.2f} ms ({stream_added['stream']['p95']:.2f}) to the end"
    )
    print(
        f"informational: median paired difference {paired:.2f} ms; tether p50 minus "
        f"direct streaming p50 {beyond_stream_p50:.2f} ms"
    )
    write_result(
        "gateway_overhead",
        {
            "max_tokens": MAX_TOKENS,
            "upstream_threads": args.upstream_threads,
            "upstream": "llama-server" if args.llama_server else "llama_cpp.server",
            "governance": not args.no_governance,
            "prompt": PROMPT,
            "sides": stats,
            "stub_sides": stub_stats,
            "samples_ms": times,
            "stub_samples_ms": stub_times,
            "added_p50_ms": added_p50,
            "added_p50_interval_ms": interval,
            "added_p95_ms": added_p95,
            "floor": floor,
            "stub_added_p50_ms": own_p50,
            "stub_added_p95_ms": own_p95,
            "stub_streamed_added_ms": stream_added,
            "paired_median_difference_ms": paired,
            "tether_minus_direct_stream_p50_ms": beyond_stream_p50,
            "identical_text": same_text,
            "stopped_early": stopped or stub_stopped,
            "foreign_cpu_fraction": audit.foreign_fraction,
            "headline": [
                headline("gateway added p50 (llama upstream)", added_p50, "ms", "<=", 2.0),
                headline("gateway added p95 (llama upstream)", added_p95, "ms", "<=", 5.0),
                headline("gateway added p50 (instant stub)", own_p50, "ms", "<=", 2.0),
                headline("gateway added p95 (instant stub)", own_p95, "ms", "<=", 5.0),
            ],
        },
    )


if __name__ == "__main__":
    main()
