"""JSON answers beside streams: how long running streams wait as a large grammar arrives.

One embedded server on the default model keeps ``--streams`` free-text streams running
(``/v1/completions``, greedy, each token sent as it is made) and times the gap between
each stream's tokens. In the loaded phases a client meanwhile sends, back to back, chat
requests that force a call of one of ``--functions`` functions (``tool_choice``
required: the answer keeps to a grammar of every function's parameters, 128 KB for 30),
or with ``--via format`` the same schema as ``response_format`` behind a short prompt;
the same request each time, as an agent sends its tools every turn, so its prompt comes
from the KV cache and what is left of a request's cost to the streams is the start of
its sequence. Quiet and loaded phases alternate, so drifts in the machine affect both.

With ``--other-src`` a second server runs another tree's code (``git worktree add``), and
the two take turns, a block of both phases each, so both see the same machine; the
answers the two give the JSON requests (greedy and seeded) are compared byte for byte.
Reports each server's gap p50 / p99 / max in both phases (medians over the blocks), and
the loaded p99 and max of the other code over this one's.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from bench._common import (
    CpuAudit,
    Deadline,
    Server,
    headline,
    median,
    percentile,
    print_table,
    tether_server,
    write_result,
)

ANSWER_TOKENS = 48  # of the JSON answers compared between the codes
SETTLE_S = 0.3  # after a phase starts, gaps are not counted: the last phase's may still end


def functions(count: int) -> list[dict[str, Any]]:
    """Function tools of a few parameters each, as an agent framework sends them."""
    tools = []
    for i in range(count):
        parameters = {
            "type": "object",
            "properties": {
                "path": {"type": "string", "maxLength": 200},
                "lines": {"type": "array", "items": {"type": "integer"}, "maxItems": 50},
                "mode": {"enum": ["read", "write", "append"]},
                "note": {"type": "string", "pattern": "^[a-z]{1,40}$"},
            },
            "required": ["path", "lines", "mode", "note"],
        }
        tools.append(
            {
                "type": "function",
                "function": {
                    "name": f"tool_{i}",
                    "description": f"Tool number {i}.",
                    "parameters": parameters,
                },
            }
        )
    return tools


def json_bodies(count: int, via: str, max_tokens: int) -> list[dict[str, Any]]:
    """The JSON requests, greedy and seeded in turn."""
    tools = functions(count)
    messages = [{"role": "user", "content": "Read lines 3 to 9 of setup.py."}]
    if via == "tools":
        body: dict[str, Any] = {"messages": messages, "tools": tools, "tool_choice": "required"}
    else:
        from tether.server.tool_calls import Function, ToolOffer

        call = ToolOffer(
            tuple(Function(t["function"]["name"], "", t["function"]["parameters"]) for t in tools)
        )
        body = {"messages": messages, "response_format": json.loads(call.answer_format())}
    # n_predict 0 (llama.cpp's bound, which chat takes too): the sequence starts, nothing is
    # generated; else max_tokens.
    body["n_predict" if max_tokens == 0 else "max_tokens"] = max_tokens
    return [{**body, "temperature": 0}, {**body, "temperature": 0.9, "seed": 7}]


class Stream:
    """A free-text stream, restarted when it ends, timing the gap between its tokens."""

    def __init__(self, server: Server, index: int, max_tokens: int) -> None:
        self._client = httpx.Client(base_url=server.url, headers=server.headers, timeout=120)
        self._body = {
            "prompt": f"# Notes on module {index}\n\nThe module",
            "max_tokens": max_tokens,
            "temperature": 0,
            "stream": True,
        }
        self.gaps: list[tuple[float, float]] = []  # (when the token came, gap before it, ms)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            last = None
            with self._client.stream("POST", "/v1/completions", json=self._body) as response:
                response.raise_for_status()
                for line in response.iter_lines():
                    if self._stop.is_set():
                        break
                    if not line.startswith("data: {"):
                        continue
                    if not any(c.get("text") for c in json.loads(line[6:]).get("choices", [])):
                        continue
                    now = time.perf_counter()
                    if last is not None:
                        self.gaps.append((now, (now - last) * 1000))
                    last = now

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._client.close()


def block(
    server: Server, args: argparse.Namespace, bodies: list[dict[str, Any]], loaded_first: bool
) -> tuple[dict[str, list[float]], list[str], int]:
    """One quiet and one loaded phase on ``server``: the gaps of each (ms), the JSON
    answers, and the JSON requests sent."""
    streams = [Stream(server, i, args.stream_tokens) for i in range(args.streams)]
    phases: list[tuple[str, float, float]] = []
    answers: list[str] = []
    sent = 0
    try:
        with httpx.Client(base_url=server.url, headers=server.headers, timeout=120) as client:
            time.sleep(0.5)  # every stream has begun
            for name in ("loaded", "quiet") if loaded_first else ("quiet", "loaded"):
                start = time.perf_counter()
                end = start + args.phase_s
                while time.perf_counter() < end:
                    if name == "quiet":
                        time.sleep(0.05)
                        continue
                    answers.append(_answer(client, bodies[sent % 2]))
                    sent += 1
                phases.append((name, start + SETTLE_S, time.perf_counter()))
    finally:
        for stream in streams:
            stream.close()
    gaps: dict[str, list[float]] = {"quiet": [], "loaded": []}
    for stream in streams:
        for when, gap in stream.gaps:
            for name, start, end in phases:
                if start <= when < end:
                    gaps[name].append(gap)
    return gaps, answers, sent


def warm_up(server: Server, args: argparse.Namespace, bodies: list[dict[str, Any]]) -> list[str]:
    """Each stream's prompt in a sequence of its own, and the JSON requests' in the one
    left, read once, each grammar met once (a stream that took the JSON requests' sequence
    would have them read their prompt again); the JSON answers of ``ANSWER_TOKENS``."""
    streams = [Stream(server, i, args.stream_tokens) for i in range(args.streams)]
    try:
        time.sleep(1.0)
        with httpx.Client(base_url=server.url, headers=server.headers, timeout=300) as client:
            for body in bodies:
                client.post("/v1/chat/completions", json=body).raise_for_status()
            answered = [{**body, "n_predict": ANSWER_TOKENS} for body in bodies]
            return [_answer(client, body) for body in answered]
    finally:
        for stream in streams:
            stream.close()


def _answer(client: httpx.Client, body: dict[str, Any]) -> str:
    response = client.post("/v1/chat/completions", json=body)
    response.raise_for_status()
    message = response.json()["choices"][0]["message"]
    return json.dumps([message.get("content"), message.get("tool_calls")])


def summary(gaps: list[float]) -> dict[str, float]:
    return {
        "n": len(gaps),
        "p50_ms": percentile(gaps, 50),
        "p90_ms": percentile(gaps, 90),
        "p99_ms": percentile(gaps, 99),
        "max_ms": max(gaps, default=float("nan")),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4, help="blocks of both phases a server")
    parser.add_argument("--phase-s", type=float, default=4.0)
    parser.add_argument("--streams", type=int, default=3)
    parser.add_argument("--functions", type=int, default=30)
    parser.add_argument("--via", choices=("format", "tools"), default="format")
    parser.add_argument(
        "--json-tokens", type=int, default=0, help="a JSON answer's tokens; 0: none, the start"
    )
    parser.add_argument("--stream-tokens", type=int, default=1500)
    # llama.cpp's threads wait on each other every step: with another program on the cores,
    # 2 threads on 2 cores took 49 s for 100 tokens that 1 thread made in 0.3 s.
    parser.add_argument("--threads", type=int, default=1, help="llama.cpp's; 0: every core")
    parser.add_argument("--other-src", type=Path, help="the other code's src folder")
    parser.add_argument("--port", type=int, help="this server's port (the other's: the next)")
    parser.add_argument("--budget-s", type=float, default=300, help="no new block after this")
    args = parser.parse_args()

    settings = {
        **({"TETHER_ENGINE_N_THREADS": str(args.threads)} if args.threads else {}),
        "TETHER_ENGINE_N_PARALLEL": str(args.streams + 1),
        "TETHER_ENGINE_N_CTX": "8192" if args.via == "tools" else "2048",  # the functions
        "TETHER_ENGINE_STREAM_INTERVAL_MS": "0",  # a gap is between two tokens,
        "TETHER_COMPLIANCE_STREAM_HOLDBACK": "false",  # which no check holds back
    }
    bodies = json_bodies(args.functions, args.via, args.json_tokens)
    names = ["this", "other"] if args.other_src else ["this"]
    envs = {"this": settings, "other": {**settings}}
    if args.other_src:
        envs["other"]["PYTHONPATH"] = str(args.other_src.resolve())
    ports = {"this": args.port, "other": args.port + 1 if args.port else None}
    deadline = Deadline(args.budget_s)
    blocks: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    answers: dict[str, set[str]] = {name: set() for name in names}
    with CpuAudit() as audit, tether_server(env=envs["this"], port=ports["this"]) as this:
        servers = {"this": this}
        other_server = (
            tether_server(env=envs["other"], port=ports["other"]) if args.other_src else None
        )
        try:
            if other_server is not None:
                servers["other"] = other_server.__enter__()
            for name in names:
                answers[name].update(warm_up(servers[name], args, bodies))
            for round_ in range(args.rounds):
                if deadline.expired():
                    break
                order = names if round_ % 2 == 0 else names[::-1]
                for name in order:
                    gaps, said, sent = block(servers[name], args, bodies, round_ % 4 >= 2)
                    answers[name].update(said)
                    blocks[name].append(
                        {
                            "quiet": summary(gaps["quiet"]),
                            "loaded": summary(gaps["loaded"]),
                            "json_requests": sent,
                        }
                    )
                print(f"round {round_ + 1}/{args.rounds} done", flush=True)
        finally:
            if other_server is not None:
                other_server.__exit__(None, None, None)

    def across(name: str, phase: str, figure: str) -> float:
        return median([b[phase][figure] for b in blocks[name]])

    def added(name: str, figure: str) -> float:
        """What the JSON requests add to ``figure``: loaded less quiet, paired by block."""
        return median([b["loaded"][figure] - b["quiet"][figure] for b in blocks[name]])

    rows = []
    for name in names:
        for phase in ("quiet", "loaded"):
            rows.append(
                [
                    name,
                    phase,
                    sum(b[phase]["n"] for b in blocks[name]),
                    across(name, phase, "p50_ms"),
                    across(name, phase, "p90_ms"),
                    across(name, phase, "p99_ms"),
                    across(name, phase, "max_ms"),
                ]
            )
    print_table(["code", "phase", "gaps", "p50 ms", "p90 ms", "p99 ms", "max ms"], rows)
    rates = {
        name: median([b["json_requests"] / args.phase_s for b in blocks[name]]) for name in names
    }
    print(
        "JSON requests a second while loaded: "
        + ", ".join(f"{n} {r:.1f}" for n, r in rates.items())
    )
    adds = {name: {f: added(name, f) for f in ("p50_ms", "p99_ms", "max_ms")} for name in names}
    for name, add in adds.items():
        print(
            f"{name}: the JSON requests add {add['p50_ms']:.1f} / {add['p99_ms']:.1f} / "
            f"{add['max_ms']:.1f} ms to the gap p50 / p99 / max (median of the blocks)"
        )
    result: dict[str, Any] = {
        "rounds": len(blocks["this"]),
        "phase_s": args.phase_s,
        "streams": args.streams,
        "functions": args.functions,
        "via": args.via,
        "other_src": str(args.other_src or ""),
        "blocks": blocks,
        "json_requests_per_s": rates,
        "added_ms": adds,
        "foreign_cpu_fraction": audit.foreign_fraction,
        "stopped_early": deadline.hit,
    }
    loaded_p99 = across("this", "loaded", "p99_ms")
    quiet_p99 = across("this", "quiet", "p99_ms")
    result["headline"] = [
        headline("stream gap p99 as large grammars arrive / without", loaded_p99 / quiet_p99, "x"),
        headline("stream gap p50 added by large grammars' arrivals", adds["this"]["p50_ms"], "ms"),
    ]
    if args.other_src:
        same = answers["this"] == answers["other"]
        p99_ratio = across("other", "loaded", "p99_ms") / loaded_p99
        max_ratio = across("other", "loaded", "max_ms") / across("this", "loaded", "max_ms")
        print(
            f"other / this while loaded: p99 {p99_ratio:.2f}x, max {max_ratio:.2f}x; "
            f"JSON answers {'the same' if same else 'DIFFER'} ({len(answers['this'])} distinct)"
        )
        result.update(same_answers=same, loaded_p99_other_over_this=p99_ratio)
        result["loaded_max_other_over_this"] = max_ratio
        result["headline"].append(headline("loaded gap p99, other code / this", p99_ratio, "x"))
        added_ratio = adds["other"]["p50_ms"] / adds["this"]["p50_ms"]
        print(f"other / this, gap p50 added by the JSON requests: {added_ratio:.2f}x")
        result["added_p50_other_over_this"] = added_ratio
        result["headline"].append(
            headline("gap p50 added by the JSON requests, other code / this", added_ratio, "x")
        )
    write_result("grammar_stall", result)


if __name__ == "__main__":
    main()
