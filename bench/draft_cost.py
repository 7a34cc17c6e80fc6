"""What checking drafted tokens costs: one llama_decode of 1 + d tokens against one of 1.

Prompt-lookup drafting (``engine.prompt_lookup``) pays off only when a step that checks
``d`` drafted tokens costs much less than ``d + 1`` steps. This measures it directly on
the default model, after ``--context`` tokens of context, for each KV cache type as the
engine runs it (q8_0 with flash attention, f16 without), medians of ``--repeats``: the
cost of each extra token as a share of a one-token step (``r``). With every drafted token
kept, a suggestion can be at most ``(d + 1) / (1 + r d)`` times faster, below ``1 / r``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from bench._common import CpuAudit, headline, model_path, print_table, write_result
from tether.cpus import usable_cores
from tether.engines.llamacpp import load_model, native_stderr_silenced

KV_TYPES = (("q8_0", 8, 1), ("f16", 1, 0))  # name, ggml type, flash attention
BATCH = 512
SIZES = (1, 5, 9, 17)


def _feed(
    llama: Any, ctx: Any, batch: Any, tokens: list[int], start: int, all_logits: bool
) -> None:
    batch.n_tokens = len(tokens)
    for i, token in enumerate(tokens):
        batch.token[i] = token
        batch.pos[i] = start + i
        batch.n_seq_id[i] = 1
        batch.seq_id[i][0] = 0
        batch.logits[i] = 1 if all_logits or i == len(tokens) - 1 else 0
    if llama.llama_decode(ctx, batch) != 0:
        raise RuntimeError("llama_decode failed")


def step_ms(kv_type: int, flash: int, context: int, repeats: int) -> dict[int, float]:
    import llama_cpp

    model = load_model(model_path())
    params = llama_cpp.llama_context_default_params()
    params.n_ctx = context + BATCH
    params.n_batch = params.n_ubatch = BATCH
    params.type_k = params.type_v = kv_type
    params.flash_attn_type = flash
    params.n_threads = params.n_threads_batch = usable_cores()  # as the engine
    with native_stderr_silenced():
        ctx = llama_cpp.llama_init_from_model(model.model, params)
    batch = llama_cpp.llama_batch_init(BATCH, 0, 1)
    memory = llama_cpp.llama_get_memory(ctx)
    try:
        for start in range(0, context, BATCH):
            size = min(BATCH, context - start)
            _feed(llama_cpp, ctx, batch, [100 + i % 500 for i in range(size)], start, False)
        medians = {}
        for size in SIZES:
            times = []
            for _ in range(repeats):
                began = time.perf_counter()
                _feed(llama_cpp, ctx, batch, [200] * size, context, True)
                times.append(time.perf_counter() - began)
                llama_cpp.llama_memory_seq_rm(memory, 0, context, -1)
            medians[size] = statistics.median(times) * 1000
        return medians
    finally:
        llama_cpp.llama_batch_free(batch)
        llama_cpp.llama_free(ctx)
        model.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--context", type=int, default=3000, help="tokens already in the cache")
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    results: dict[str, dict[str, Any]] = {}
    with CpuAudit() as audit:
        for name, kv_type, flash in KV_TYPES:
            ms = step_ms(kv_type, flash, args.context, args.repeats)
            extra = {d - 1: (ms[d] - ms[1]) / (d - 1) / ms[1] for d in SIZES if d > 1}
            results[name] = {"step_ms": ms, "extra_token_share": extra}
    print_table(
        ["cache", *(f"{d} tokens, ms" for d in SIZES), "r at d=8"],
        [
            [n, *(r["step_ms"][d] for d in SIZES), r["extra_token_share"][8]]
            for n, r in results.items()
        ],
    )
    write_result(
        "draft_cost",
        {
            "context": args.context,
            "results": results,
            "foreign_cpu_fraction": audit.foreign_fraction,
            "headline": [
                headline(
                    f"extra drafted token / one-token step, {n}", r["extra_token_share"][8], ""
                )
                for n, r in results.items()
            ],
        },
    )


if __name__ == "__main__":
    main()
