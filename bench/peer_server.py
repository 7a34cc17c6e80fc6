"""tether's embedded engine against llama.cpp's own server, side by side in one run.

Both serve the default model with the same shape: tether's default sequences and context
per request, the same KV cache type, every core. llama-server comes from ``make
llama-server`` (built from the llama.cpp source the installed llama-cpp-python vendors).
Every prompt is new to both servers; answers are greedy.

Rounds measure each server in turn (alternating which goes first) on streamed
``/v1/completions`` requests of 64 tokens: at 1 stream, time to first token and decode
rate (tokens after the first over the time after the first); at 4 and 16 streams, total
throughput (completion tokens over wall time) and, at 16, time to first token p50/p95.
A third arm is tether as a gateway (``--engine openai``) in front of that same
llama-server: its streaming throughput over the upstream's (goal ≥ 0.97x). One server's
own rounds spread by 10-25% on a shared machine, so the figures judged against the goals
come from pairs, each the same work on one server and then the other, the order
alternating, reported as the median of the per-pair figures with its 95% bootstrap
interval:

- time to first token at 1 stream: the same new prompt to each server through llama.cpp's
  ``/completion``, two tokens, so that the first is streamed as in any longer answer
  (repeated with one token, whose answer tether checks and records before it goes out:
  reported, not the goal). Both servers report ``timings.prompt_ms``, so each difference
  splits into the servers' own time to read the prompt (tether's counts from handing the
  prompt to its engine: tokenizing and the hand-offs between threads are in it) and the
  rest (HTTP, preparing, the response); it is also reported by which server went first,
  since on a small machine each server's prompt reading depends on which process ran
  just before;
- decode rate at 1 stream: whole 64-token answers, the ratio of the two rates;
- total throughput at 4 and 16 streams: a burst of one request per stream on each, the
  ratio of the two totals.

Last come the resident memory of each server and 200 concurrent streaming clients on
tether alone with its default settings: how many were answered, how many got 429, and
its memory.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench._common import (
    CpuAudit,
    Deadline,
    Streamed,
    headline,
    median,
    median_interval,
    model_path,
    percentile,
    print_table,
    stream_completion,
    tether_server,
    wait_http_ok,
    write_result,
)
from bench._processes import free_port, stop_process
from bench.latency import PROMPTS
from tether.cpus import usable_cores
from tether.settings import EngineSettings

LLAMA_SERVER = Path(__file__).resolve().parents[1] / "build/llama.cpp/bin/llama-server"
MAX_TOKENS = 64
# Paired differences spread by ~5 ms on this kind of machine; 240 pairs bring the 95%
# interval of their median to about a millisecond either side (80 pairs: two).
TTFT_PAIRS = 240
ONE_TOKEN_PAIRS = 80
DECODE_PAIRS = 40  # whole answers: the decode rates' ratio, pair by pair
BURST_PAIRS = {4: 12, 16: 6}  # streams: pairs of bursts, one request per stream each
PAIR_TOKENS = 2  # the first token is not the last: it streams as in any longer answer


_issued = itertools.count()


def prompt(index: int) -> str:
    """A prompt no earlier request began with: neither server answers from a cached prompt
    (llama-server keeps finished prompts in host memory; tether in its sequences)."""
    return f"# request {next(_issued)}\n{PROMPTS[index % len(PROMPTS)]}"


@dataclass
class Peer:
    name: str
    url: str
    headers: dict[str, str]
    pid: int


async def stream_one(client: httpx.AsyncClient, prompt: str, max_tokens: int) -> Streamed:
    body = {"prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "seed": 0}
    return await stream_completion(client, body)


async def concurrent(peer: Peer, streams: int, requests: int) -> tuple[float, list[Streamed]]:
    """``requests`` answers from ``streams`` clients at once: wall seconds and answers."""
    # No keep-alive: llama-server closes a connection after a few requests, and a reused
    # connection it has closed fails the request; a loopback connect costs both the same.
    limits = httpx.Limits(max_connections=streams, max_keepalive_connections=0)
    async with httpx.AsyncClient(
        base_url=peer.url, headers=peer.headers, timeout=600.0, limits=limits
    ) as client:
        queue = list(range(requests))
        answers: list[Streamed] = []

        async def worker() -> None:
            while queue:
                index = queue.pop()
                answers.append(await stream_one(client, prompt(index), MAX_TOKENS))

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(streams)))
        return time.perf_counter() - started, answers


@dataclass(frozen=True)
class TimedAnswer:
    ttft_ms: float  # from sending the request to the first text, at the client
    prompt_ms: float  # the server's own timings.prompt_ms: its time to read the prompt
    total_ms: float  # to the end of the answer, at the client
    tokens: int  # the server's tokens_predicted

    @property
    def decode_tok_s(self) -> float:
        """Tokens after the first over the time after the first, at the client."""
        after = (self.total_ms - self.ttft_ms) / 1000
        return (self.tokens - 1) / after if self.tokens > 1 and after > 0 else math.nan


async def timed_answer(client: httpx.AsyncClient, text: str, max_tokens: int) -> TimedAnswer:
    """A streamed llama.cpp ``/completion`` (both servers speak it): the client's times to
    the first text and to the end, and the server's own account of reading the prompt and
    of the tokens it predicted."""
    body = {"prompt": text, "n_predict": max_tokens, "temperature": 0, "seed": 0, "stream": True}
    started = time.perf_counter()
    first: float | None = None
    prompt_ms = math.nan
    tokens = 0
    async with client.stream("POST", "/completion", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: {"):
                continue
            event = json.loads(line[6:])
            if event.get("content") and first is None:
                first = time.perf_counter()
            if "timings" in event:
                prompt_ms = float(event["timings"]["prompt_ms"])
                tokens = int(event.get("tokens_predicted", 0))
    end = time.perf_counter()
    return TimedAnswer(((first or end) - started) * 1000, prompt_ms, (end - started) * 1000, tokens)


async def answer_pairs(
    first: Peer, second: Peer, pairs: int, max_tokens: int
) -> list[tuple[TimedAnswer, TimedAnswer]]:
    """The same new prompt answered by ``first`` and by ``second``, one request at a
    time, whichever went first last time going second."""
    limits = httpx.Limits(max_keepalive_connections=0)
    async with (
        httpx.AsyncClient(
            base_url=first.url, headers=first.headers, timeout=120.0, limits=limits
        ) as one,
        httpx.AsyncClient(
            base_url=second.url, headers=second.headers, timeout=120.0, limits=limits
        ) as two,
    ):
        times: list[tuple[TimedAnswer, TimedAnswer]] = []
        for index in range(pairs):
            text = prompt(index)
            order = [(0, one), (1, two)] if index % 2 == 0 else [(1, two), (0, one)]
            answers: dict[int, TimedAnswer] = {}
            for slot, client in order:
                answers[slot] = await timed_answer(client, text, max_tokens)
            times.append((answers[0], answers[1]))
    return times


def pair_figures(pairs: list[tuple[TimedAnswer, TimedAnswer]]) -> dict[str, Any]:
    """Medians of the per-pair differences (tether minus llama-server): the whole, the
    servers' own prompt reading, the rest (HTTP, preparing, the response), and the whole
    again by which server went first; with a 95% interval for the whole."""
    deltas = [mine.ttft_ms - theirs.ttft_ms for mine, theirs in pairs]
    return {
        "delta_ms": median(deltas),
        "delta_ci95_ms": median_interval(deltas),
        "prompt_delta_ms": median([mine.prompt_ms - theirs.prompt_ms for mine, theirs in pairs]),
        "outside_delta_ms": median(
            [
                (mine.ttft_ms - mine.prompt_ms) - (theirs.ttft_ms - theirs.prompt_ms)
                for mine, theirs in pairs
            ]
        ),
        "delta_by_order_ms": {
            first: median([m.ttft_ms - t.ttft_ms for m, t in pairs[parity::2]])
            for parity, first in enumerate(("tether first", "llama-server first"))
        },
        "medians_ms": {
            "tether": median([mine.ttft_ms for mine, _ in pairs]),
            "llama-server": median([theirs.ttft_ms for _, theirs in pairs]),
        },
    }


def decode_figures(pairs: list[tuple[TimedAnswer, TimedAnswer]]) -> dict[str, Any]:
    """The median of the per-pair ratios of decode rates (tether over llama-server), with
    its 95% interval: the same prompt and greedy answer on each, one after the other."""
    ratios = [
        mine.decode_tok_s / theirs.decode_tok_s
        for mine, theirs in pairs
        if not math.isnan(mine.decode_tok_s) and not math.isnan(theirs.decode_tok_s)
    ]
    return {
        "ratio": median(ratios),
        "ratio_ci95": median_interval(ratios),
        "pairs": len(ratios),
        "tok_s": {
            "tether": median([mine.decode_tok_s for mine, _ in pairs]),
            "llama-server": median([theirs.decode_tok_s for _, theirs in pairs]),
        },
    }


async def burst_pairs(first: Peer, second: Peer, pairs: int, streams: int) -> list[float]:
    """Total throughput of ``streams`` requests at once on ``first`` over the same on
    ``second``, a burst on each in turn (whichever went first last time going second)."""
    ratios = []
    for index in range(pairs):
        order = [first, second] if index % 2 == 0 else [second, first]
        rate = {}
        for peer in order:
            wall, answers = await concurrent(peer, streams, streams)
            rate[peer.name] = sum(a.tokens for a in answers) / wall
        ratios.append(rate[first.name] / rate[second.name])
    return ratios


@dataclass
class Round:
    server: str
    ttft_1_ms: float
    decode_1_tok_s: float
    total_4_tok_s: float
    total_16_tok_s: float
    ttft_16_p50_ms: float
    ttft_16_p95_ms: float


async def measure(peer: Peer) -> Round:
    _, single = await concurrent(peer, 1, 8)  # enough for a TTFT median within ~1 ms
    decode = [
        (a.tokens - 1) / (a.total_s - a.ttft_s) for a in single if a.tokens > 1 and a.status == 200
    ]
    wall_4, four = await concurrent(peer, 4, 8)
    wall_16, sixteen = await concurrent(peer, 16, 16)
    ttft_16 = [a.ttft_s * 1000 for a in sixteen if a.status == 200]
    return Round(
        server=peer.name,
        ttft_1_ms=median([a.ttft_s * 1000 for a in single]),
        decode_1_tok_s=median(decode),
        total_4_tok_s=sum(a.tokens for a in four) / wall_4,
        total_16_tok_s=sum(a.tokens for a in sixteen) / wall_16,
        ttft_16_p50_ms=percentile(ttft_16, 50),
        ttft_16_p95_ms=percentile(ttft_16, 95),
    )


@contextlib.contextmanager
def llama_server(engine: EngineSettings) -> Iterator[Peer]:
    with started_llama_server(
        "--ctx-size",
        str(engine.n_ctx * engine.n_parallel),
        "--parallel",
        str(engine.n_parallel),
        "--batch-size",
        str(engine.n_batch),
        "--ubatch-size",
        str(engine.n_batch),
        "--threads",
        str(usable_cores()),
        "--cache-type-k",
        engine.kv_type,
        "--cache-type-v",
        engine.kv_type,
        "--flash-attn",
        "on" if engine.kv_type != "f16" else "off",
    ) as (url, pid):
        yield Peer("llama-server", url, {}, pid)


@contextlib.contextmanager
def started_llama_server(*args: str) -> Iterator[tuple[str, int]]:
    """llama.cpp's own server (``make llama-server``) on the default model with ``args``;
    yields its URL and its pid."""
    if not LLAMA_SERVER.exists():
        raise SystemExit(f"{LLAMA_SERVER} is missing: run `make llama-server` first")
    port = free_port()
    cmd = [str(LLAMA_SERVER), "--model", str(model_path()), "--port", str(port), *args]
    with tempfile.TemporaryDirectory(prefix="tether-bench-llama-server-") as tmp:
        log = Path(tmp) / "llama-server.log"
        with log.open("ab") as log_file:
            proc = subprocess.Popen(
                [*cmd, "--no-webui"], stdout=log_file, stderr=subprocess.STDOUT, cwd=tmp
            )
        try:
            wait_http_ok(f"http://127.0.0.1:{port}/health", proc, 120.0, log)
            yield f"http://127.0.0.1:{port}", proc.pid
        finally:
            stop_process(proc)


def rss_mb(pid: int) -> float:
    return float(psutil.Process(pid).memory_info().rss) / 2**20


async def many_clients(peer: Peer, clients: int) -> dict[str, float]:
    """``clients`` streaming requests at once (16 tokens each): statuses and memory."""
    peak = rss_mb(peer.pid)
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=0)
    async with httpx.AsyncClient(
        base_url=peer.url, headers=peer.headers, timeout=600.0, limits=limits
    ) as client:
        tasks = [asyncio.create_task(stream_one(client, prompt(i), 16)) for i in range(clients)]
        started = time.perf_counter()
        while not all(task.done() for task in tasks):
            peak = max(peak, rss_mb(peer.pid))
            await asyncio.sleep(0.2)
        answers = [task.result() for task in tasks]
    return {
        "clients": clients,
        "answered": sum(a.status == 200 for a in answers),
        "status_429": sum(a.status == 429 for a in answers),
        "other": sum(a.status not in (200, 429) for a in answers),
        "wall_s": time.perf_counter() - started,
        "peak_rss_mb": peak,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--budget-s", type=float, default=450.0, help="stop early after this")
    args = parser.parse_args()
    engine = EngineSettings()
    deadline = Deadline(args.budget_s)
    rounds: list[Round] = []
    with (
        CpuAudit() as audit,
        tether_server() as tether,
        llama_server(engine) as peer,
        tether_server("--engine", "openai", "--upstream", f"{peer.url}/v1") as gateway,
    ):
        peers = [
            Peer("tether", tether.url, tether.headers, tether.proc.pid),
            peer,
            Peer("gateway", gateway.url, gateway.headers, gateway.proc.pid),
        ]
        for p in peers:  # warm all: model pages, connections
            asyncio.run(concurrent(p, 1, 1))
        for index in range(args.rounds):
            if deadline.expired():
                break
            shift = index % len(peers)  # each goes first in turn
            for p in peers[shift:] + peers[:shift]:
                print(f"round {index + 1}: {p.name}", flush=True)
                rounds.append(asyncio.run(measure(p)))
        print(f"time to first token, {TTFT_PAIRS} pairs of {PAIR_TOKENS} tokens", flush=True)
        pairs = asyncio.run(answer_pairs(peers[0], peers[1], TTFT_PAIRS, PAIR_TOKENS))
        print(f"time to first token, {ONE_TOKEN_PAIRS} pairs of 1 token", flush=True)
        last_pairs = asyncio.run(answer_pairs(peers[0], peers[1], ONE_TOKEN_PAIRS, 1))
        print(f"decode rate, {DECODE_PAIRS} pairs of {MAX_TOKENS} tokens", flush=True)
        decode_pairs = asyncio.run(answer_pairs(peers[0], peers[1], DECODE_PAIRS, MAX_TOKENS))
        bursts: dict[int, list[float]] = {}
        for streams, count in BURST_PAIRS.items():
            print(f"total throughput, {count} pairs of {streams}-request bursts", flush=True)
            bursts[streams] = asyncio.run(burst_pairs(peers[0], peers[1], count, streams))
        memory = {p.name: rss_mb(p.pid) for p in peers[:2]}
        print(f"{args.clients} clients at once: tether", flush=True)
        crowd = asyncio.run(many_clients(peers[0], args.clients))

    fields = [f for f in Round.__dataclass_fields__ if f != "server"]
    summary = {
        name: {f: median([getattr(r, f) for r in rounds if r.server == name]) for f in fields}
        for name in ("tether", "llama-server", "gateway")
    }
    throughput = ("decode_1_tok_s", "total_4_tok_s", "total_16_tok_s")
    ratio = {f: summary["tether"][f] / summary["llama-server"][f] for f in throughput}
    gateway_ratio = {f: summary["gateway"][f] / summary["llama-server"][f] for f in throughput}
    ttft_rounds_delta_ms = summary["tether"]["ttft_1_ms"] - summary["llama-server"]["ttft_1_ms"]
    ttft = pair_figures(pairs)
    one_token = pair_figures(last_pairs)
    decode = decode_figures(decode_pairs)
    burst: dict[int, dict[str, Any]] = {
        streams: {"ratio": median(r), "ratio_ci95": median_interval(r), "ratios": r}
        for streams, r in bursts.items()
    }
    by_order = ttft["delta_by_order_ms"]
    print_table(["server", *fields], [[n, *(summary[n][f] for f in fields)] for n in summary])
    print()
    print(
        f"tether / llama-server: decode 1 stream {ratio['decode_1_tok_s']:.3f}x, "
        f"total 4 streams {ratio['total_4_tok_s']:.3f}x, 16 streams "
        f"{ratio['total_16_tok_s']:.3f}x; time to first token at 1 stream "
        f"{ttft['delta_ms']:+.2f} ms (median of {len(pairs)} paired differences, 95% "
        f"interval {ttft['delta_ci95_ms'][0]:+.2f} to {ttft['delta_ci95_ms'][1]:+.2f}; medians "
        f"{ttft['medians_ms']['tether']:.1f} vs {ttft['medians_ms']['llama-server']:.1f} ms; "
        f"reading the prompt {ttft['prompt_delta_ms']:+.2f} ms, the rest "
        f"{ttft['outside_delta_ms']:+.2f} ms; tether first {by_order['tether first']:+.2f} "
        f"ms, llama-server first {by_order['llama-server first']:+.2f} ms; "
        f"{ttft_rounds_delta_ms:+.1f} ms between the rounds' medians; "
        f"{one_token['delta_ms']:+.2f} ms on one-token answers); memory tether "
        f"{memory['tether']:.0f} MB, llama-server "
        f"{memory['llama-server']:.0f} MB"
    )
    print(
        f"decode at 1 stream, paired: {decode['ratio']:.3f}x (median of {decode['pairs']} "
        f"per-pair ratios, 95% interval {decode['ratio_ci95'][0]:.3f} to "
        f"{decode['ratio_ci95'][1]:.3f}; medians {decode['tok_s']['tether']:.1f} vs "
        f"{decode['tok_s']['llama-server']:.1f} tok/s)"
    )
    for streams, figures in burst.items():
        low, high = figures["ratio_ci95"]
        print(
            f"total at {streams} streams, paired: {figures['ratio']:.3f}x (median of "
            f"{len(figures['ratios'])} bursts' ratios, 95% interval {low:.3f} to {high:.3f})"
        )
    print(
        f"gateway in front of llama-server / llama-server: decode 1 stream "
        f"{gateway_ratio['decode_1_tok_s']:.3f}x, total 4 streams "
        f"{gateway_ratio['total_4_tok_s']:.3f}x, 16 streams "
        f"{gateway_ratio['total_16_tok_s']:.3f}x"
    )
    print(
        f"{crowd['clients']} concurrent streaming clients: {crowd['answered']} answered, "
        f"{crowd['status_429']} x 429, {crowd['other']} other errors in {crowd['wall_s']:.1f} s; "
        f"peak RSS {crowd['peak_rss_mb']:.0f} MB"
    )
    headlines = [
        headline(
            "peer: decode at 1 stream vs llama-server, paired", decode["ratio"], "x", ">=", 1.0
        ),
        *(
            headline(
                f"peer: total at {streams} streams vs llama-server, paired",
                figures["ratio"],
                "x",
                ">=",
                1.0,
            )
            for streams, figures in burst.items()
        ),
        headline("peer: TTFT at 1 stream vs llama-server", ttft["delta_ms"], "ms", "<=", 2.0),
        *(
            headline(f"gateway: {f} vs its upstream", gateway_ratio[f], "x", ">=", 0.97)
            for f in throughput
        ),
        headline(
            f"peer: {args.clients} streaming clients answered",
            crowd["answered"],
            "",
            ">=",
            args.clients,
        ),
    ]
    path = write_result(
        "peer_server",
        {
            "engine": {
                "n_parallel": engine.n_parallel,
                "n_ctx": engine.n_ctx,
                "kv_type": engine.kv_type,
                "n_batch": engine.n_batch,
            },
            "rounds": [asdict(r) for r in rounds],
            "summary": summary,
            "ratio": ratio,
            "gateway_ratio": gateway_ratio,
            "ttft_1_delta_ms": ttft["delta_ms"],
            "ttft_1_pairs": ttft,
            "ttft_1_pairs_ms": [(m.ttft_ms, t.ttft_ms) for m, t in pairs],
            "ttft_1_pair_prompt_ms": [(m.prompt_ms, t.prompt_ms) for m, t in pairs],
            "ttft_1_pair_tokens": PAIR_TOKENS,
            "ttft_1_one_token": one_token,
            "ttft_1_one_token_pairs_ms": [(m.ttft_ms, t.ttft_ms) for m, t in last_pairs],
            "ttft_1_rounds_delta_ms": ttft_rounds_delta_ms,
            "decode_1_pairs": decode,
            "total_burst_pairs": burst,
            "decode_1_pairs_tok_s": [(m.decode_tok_s, t.decode_tok_s) for m, t in decode_pairs],
            "rss_mb": memory,
            "many_clients": crowd,
            "foreign_cpu_fraction": audit.foreign_fraction,
            "headline": headlines,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
