"""JSON answers: what keeping an answer to a JSON schema costs, and how often it holds.

One server on the default model answers the same chat requests twice, in alternating
order: once free (greedy text) and once with ``response_format`` a JSON schema, which
llama.cpp's grammar sampler keeps the answer to. Each answer is streamed, so its decode
rate is the tokens after the first over the time between the first and the last. Reports
the median decode rate of each arm, their ratio (the grammar's cost per token), and the
share of schema answers that parse and have every required field (answers cut by
``max_tokens`` do not). A third arm asks for the same object as a required tool call
(``tool_choice`` naming a function whose parameters are the schema), which comes whole at
the end: it reports how many are calls of that function with every field, and each
answer's time beside the schema arm's (the functions shown in the prompt read first).
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import httpx

from bench._common import (
    CpuAudit,
    Deadline,
    headline,
    median,
    print_table,
    tether_server,
    write_result,
)

FUNCTION = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 40},
        "arguments": {"type": "array", "items": {"type": "string"}, "maxItems": 6},
        "returns": {"enum": ["int", "str", "bool", "list", "dict", "None"]},
        "pure": {"type": "boolean"},
    },
    "required": ["name", "arguments", "returns", "pure"],
    "additionalProperties": False,
}
ASKS = (
    "Describe a Python function that adds two numbers.",
    "Describe a Python function that reverses a string.",
    "Describe a Python function that reads a file and counts its lines.",
    "Describe a Python function that checks whether a number is prime.",
    "Describe a Python function that merges two dictionaries.",
    "Describe a Python function that sorts a list of names.",
)


def _streamed(client: httpx.Client, body: dict[str, Any]) -> tuple[str, int, float]:
    """The answer's text, its tokens, and its decode rate (tokens after the first per
    second between the first and the last)."""
    parts: list[str] = []
    times: list[float] = []
    tokens = 0
    with client.stream("POST", "/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: {"):
                continue
            event = json.loads(line[6:])
            if event.get("usage"):
                tokens = event["usage"]["completion_tokens"]
            for choice in event.get("choices", []):
                if choice["delta"].get("content"):
                    parts.append(choice["delta"]["content"])
                    times.append(time.perf_counter())
    span = times[-1] - times[0] if len(times) > 1 else 0.0
    return "".join(parts), tokens, (tokens - 1) / span if span > 0 else float("nan")


def _holds(text: str) -> bool:
    try:
        answer = json.loads(text)
    except ValueError:
        return False
    return isinstance(answer, dict) and {"name", "arguments", "returns", "pure"} <= set(answer)


def _called(client: httpx.Client, body: dict[str, Any]) -> tuple[bool, float]:
    """Whether the answer is a call of ``describe`` with every field, and its time."""
    started = time.perf_counter()
    response = client.post("/v1/chat/completions", json=body)
    elapsed = time.perf_counter() - started
    response.raise_for_status()
    message = response.json()["choices"][0]["message"]
    calls = message.get("tool_calls") or []
    whole = len(calls) == 1 and calls[0]["function"]["name"] == "describe"
    return whole and _holds(calls[0]["function"]["arguments"]), elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3, help="passes over the asks")
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--budget-s", type=float, default=300, help="no new round after this")
    args = parser.parse_args()
    rates: dict[str, list[float]] = {"free": [], "schema": []}
    seconds: dict[str, list[float]] = {"schema": [], "call": []}
    held = answered = calls_held = 0
    deadline = Deadline(args.budget_s)
    with CpuAudit() as audit, tether_server() as server:
        client = httpx.Client(base_url=server.url, headers=server.headers, timeout=300)
        for round_ in range(args.rounds):
            if deadline.expired():
                break
            for i, ask in enumerate(ASKS):
                body: dict[str, Any] = {
                    "messages": [{"role": "user", "content": ask}],
                    "max_tokens": args.max_tokens,
                    "temperature": 0,
                    "stream": True,
                    "stream_options": {"include_usage": True},
                }
                schema = {"type": "json_schema", "json_schema": {"name": "fn", "schema": FUNCTION}}
                tool = {
                    "type": "function",
                    "function": {"name": "describe", "parameters": FUNCTION},
                }
                called = {
                    **body,
                    "stream": False,
                    "tools": [tool],
                    "tool_choice": {"type": "function", "function": {"name": "describe"}},
                }
                arms = {"free": body, "schema": {**body, "response_format": schema}}
                order = (
                    ("free", "schema", "call")
                    if (round_ + i) % 2 == 0
                    else ("call", "schema", "free")
                )
                for name in order:
                    if name == "call":
                        whole, took = _called(client, called)
                        seconds["call"].append(took)
                        calls_held += whole
                        continue
                    started = time.perf_counter()
                    text, _, rate = _streamed(client, arms[name])
                    rates[name].append(rate)
                    if name == "schema":
                        seconds["schema"].append(time.perf_counter() - started)
                        answered += 1
                        held += _holds(text)
            print(f"round {round_ + 1}/{args.rounds} done", flush=True)
        client.close()
    free, kept = median(rates["free"]), median(rates["schema"])
    share = held / answered if answered else float("nan")
    print_table(
        ["arm", "decode tok/s, median", "answers"],
        [("free text", free, len(rates["free"])), ("JSON schema", kept, len(rates["schema"]))],
    )
    print(f"schema / free: {kept / free:.2f}x; schema answers that hold: {held} of {answered}")
    call_s, schema_s = median(seconds["call"]), median(seconds["schema"])
    print(
        f"required calls that hold: {calls_held} of {len(seconds['call'])}; time per answer, "
        f"call / schema: {call_s:.2f} / {schema_s:.2f} s"
    )
    write_result(
        "structured_outputs",
        {
            "rounds": args.rounds,
            "max_tokens": args.max_tokens,
            "decode_tokens_per_second": {"free": rates["free"], "schema": rates["schema"]},
            "schema_answers": answered,
            "schema_answers_that_hold": held,
            "seconds_per_answer": seconds,
            "required_calls_that_hold": calls_held,
            "foreign_cpu_fraction": audit.foreign_fraction,
            "stopped_early": deadline.hit,
            "headline": [
                headline("decode rate with a JSON schema / free", kept / free, "x"),
                headline("JSON schema answers that hold", share, ""),
                headline(
                    "required tool calls that hold",
                    calls_held / len(seconds["call"]) if seconds["call"] else float("nan"),
                    "",
                ),
            ],
        },
    )


if __name__ == "__main__":
    main()
