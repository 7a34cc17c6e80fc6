"""Decode throughput: tether's streaming /v1/completions vs raw llama-cpp-python.

Goal: tether reaches at least 95 % of the tokens/second of the same model driven
directly through ``llama_cpp.Llama.create_completion(stream=True)``.

Both sides use the same GGUF, context size, batch size, KV cache type and CPU thread
count (tether's defaults: all cores, a q8_0 cache with flash attention), the same prompt,
``max_tokens``, temperature 0 and seed 0, so they generate the same tokens. The sides
never run at the same time: rounds alternate raw/tether (and swap which goes first), and
the median of each side is compared. Tokens/second is ``max_tokens`` over the time from
sending the request to the end of the stream; every counted generation must have stopped for length.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import time
from dataclasses import dataclass
from typing import Any

import httpx

from bench._common import (
    CpuAudit,
    Deadline,
    headline,
    median,
    model_path,
    print_table,
    tether_server,
    write_result,
)
from tether.settings import EngineSettings

# Completion prompts (no chat template) that do not reach EOS within 128 tokens.
PROMPTS = [
    "The history of computing began",
    "1, 2, 3, 4, 5, 6, 7, 8,",
    "# A long list of Python tips\n\n1.",
]
N_CTX, N_BATCH = 2048, 512


@dataclass
class Run:
    tokens: int  # generated tokens (max_tokens when finish_reason is "length")
    total_s: float  # request sent -> stream ended
    first_s: float  # request sent -> first text
    finish_reason: str
    text: str

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.total_s

    @property
    def decode_tokens_per_s(self) -> float:
        """After the first token: excludes prompt evaluation and request set-up."""
        return (self.tokens - 1) / (self.total_s - self.first_s)


def run_raw(llama: Any, prompt: str, max_tokens: int) -> Run:
    start = time.perf_counter()
    first: float | None = None
    parts: list[str] = []
    finish = ""
    for chunk in llama.create_completion(
        prompt, max_tokens=max_tokens, temperature=0, seed=0, stream=True
    ):
        choice = chunk["choices"][0]
        if choice["text"] and first is None:
            first = time.perf_counter()
        parts.append(choice["text"])
        finish = choice["finish_reason"] or finish
    end = time.perf_counter()
    text = "".join(parts)
    tokens = max_tokens if finish == "length" else len(llama.tokenize(text.encode(), add_bos=False))
    return Run(tokens, end - start, (first or end) - start, finish, text)


def run_tether(
    client: httpx.Client, model: str, prompt: str, max_tokens: int
) -> tuple[Run, int | None]:
    """One streamed request; also returns the usage's completion_tokens."""
    body = {
        "model": model,
        "prompt": prompt,
        "max_tokens": max_tokens,
        "temperature": 0,
        "seed": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    start = time.perf_counter()
    first: float | None = None
    parts: list[str] = []
    finish = ""
    usage_tokens: int | None = None
    with client.stream("POST", "/v1/completions", json=body) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[6:])
            if event.get("usage"):
                usage_tokens = event["usage"]["completion_tokens"]
            for choice in event["choices"]:
                if choice["text"] and first is None:
                    first = time.perf_counter()
                parts.append(choice["text"])
                finish = choice["finish_reason"] or finish
    end = time.perf_counter()
    tokens = max_tokens if finish == "length" else (usage_tokens or 0)
    return Run(tokens, end - start, (first or end) - start, finish, "".join(parts)), usage_tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--budget-s", type=float, default=120.0, help="stop early after this")
    args = parser.parse_args()
    deadline = Deadline(args.budget_s)
    threads = os.cpu_count() or 1  # tether's default
    engine = EngineSettings()
    kv_type = {"f16": 1, "q8_0": 8}[engine.kv_type]  # ggml type ids

    import llama_cpp

    raw: list[Run] = []
    tether: list[Run] = []
    usage_counts: list[int | None] = []
    with contextlib.closing(
        llama_cpp.Llama(
            str(model_path()),
            n_ctx=N_CTX,
            n_batch=N_BATCH,
            n_threads=threads,
            n_threads_batch=threads,
            type_k=kv_type,
            type_v=kv_type,
            flash_attn=engine.kv_type != "f16",
            verbose=False,
        )
    ) as llama:
        # The first prompt that runs to max_tokens (this also warms the raw side up).
        prompt = next(
            (p for p in PROMPTS if run_raw(llama, p, args.max_tokens).finish_reason == "length"),
            None,
        )
        if prompt is None:
            raise SystemExit("every candidate prompt reached EOS early; add a longer-running one")
        with (
            CpuAudit() as audit,
            tether_server("--n-ctx", str(N_CTX)) as server,
            httpx.Client(base_url=server.url, headers=server.headers, timeout=60.0) as client,
        ):
            model = client.get("/v1/models").json()["data"][0]["id"]
            warm, _ = run_tether(client, model, prompt, args.max_tokens)
            if warm.finish_reason != "length":
                raise SystemExit(f"tether stopped early ({warm.finish_reason}); change the prompt")
            for round_index in range(args.rounds):
                if raw and deadline.expired():
                    break
                order = ("raw", "tether") if round_index % 2 == 0 else ("tether", "raw")
                for side in order:
                    if side == "raw":
                        raw.append(run_raw(llama, prompt, args.max_tokens))
                    else:
                        run, used = run_tether(client, model, prompt, args.max_tokens)
                        tether.append(run)
                        usage_counts.append(used)

    bad = [r for r in raw + tether if r.finish_reason != "length"]
    if bad:
        raise SystemExit(f"{len(bad)} generations stopped before max_tokens; results invalid")
    raw_tps = median([r.tokens_per_s for r in raw])
    tether_tps = median([r.tokens_per_s for r in tether])
    raw_decode = median([r.decode_tokens_per_s for r in raw])
    tether_decode = median([r.decode_tokens_per_s for r in tether])
    ratio = tether_tps / raw_tps
    same_text = all(r.text == raw[0].text for r in raw + tether)

    print(f"prompt {prompt!r}, {len(raw)} rounds x {args.max_tokens} tokens, {threads} threads")
    print_table(
        ["side", "median tok/s", "median decode tok/s", "runs tok/s"],
        [
            ["raw llama-cpp", raw_tps, raw_decode, " ".join(f"{r.tokens_per_s:.1f}" for r in raw)],
            [
                "tether HTTP",
                tether_tps,
                tether_decode,
                " ".join(f"{r.tokens_per_s:.1f}" for r in tether),
            ],
        ],
    )
    print(
        f"ratio tether/raw: {ratio:.3f} (goal >= 0.95); decode-only ratio "
        f"{tether_decode / raw_decode:.3f}; identical text on both sides: {same_text}"
    )
    if any(u != args.max_tokens for u in usage_counts):
        print(f"note: tether's usage.completion_tokens were {usage_counts}, not {args.max_tokens}")

    write_result(
        "decode_throughput",
        {
            "prompt": prompt,
            "rounds": len(raw),
            "max_tokens": args.max_tokens,
            "n_threads": threads,
            "n_ctx": N_CTX,
            "raw_tokens_per_s": [r.tokens_per_s for r in raw],
            "tether_tokens_per_s": [r.tokens_per_s for r in tether],
            "raw_decode_tokens_per_s": [r.decode_tokens_per_s for r in raw],
            "tether_decode_tokens_per_s": [r.decode_tokens_per_s for r in tether],
            "raw_median_tokens_per_s": raw_tps,
            "tether_median_tokens_per_s": tether_tps,
            "ratio": ratio,
            "decode_ratio": tether_decode / raw_decode,
            "tether_usage_completion_tokens": usage_counts,
            "identical_text": same_text,
            "stopped_early": deadline.hit,
            "foreign_cpu_fraction": audit.foreign_fraction,
            "headline": [
                headline("decode tok/s, raw llama-cpp", raw_tps, "tok/s"),
                headline("decode tok/s, tether HTTP", tether_tps, "tok/s"),
                headline("decode ratio tether/raw", ratio, "", ">=", 0.95),
            ],
        },
    )


if __name__ == "__main__":
    main()
