"""Cache warm-up requests as llama.vim sends them: /infill with ``n_predict: 0``.

llama.vim keeps a ring of chunks from the files the user has opened, yanked or saved,
and each second sends the newest set as ``input_extra`` with ``n_predict: 0``: read this
context into the cache, predict nothing, so the next completion finds it there. This
measures such requests (chunks of 20 lines of tether's own source, one after another,
on the default model) and how many prompt tokens the completion that follows finds in
the cache.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import httpx

from bench._common import CpuAudit, headline, median, print_table, tether_server, write_result

SOURCE = Path(__file__).resolve().parents[1] / "src" / "tether" / "pipeline" / "governance.py"
CHUNK_LINES = 20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5)
    args = parser.parse_args()
    lines = SOURCE.read_text(encoding="utf-8").splitlines()
    rows: list[list[object]] = []
    times_ms: list[float] = []
    predicted = 0
    with (
        CpuAudit() as audit,
        tether_server() as server,
        httpx.Client(base_url=server.url, headers=server.headers, timeout=300.0) as client,
    ):
        extra: list[dict[str, str]] = []
        for index in range(args.requests):
            chunk = "\n".join(lines[index * CHUNK_LINES : (index + 1) * CHUNK_LINES])
            extra.append({"filename": SOURCE.name, "text": chunk})
            body = {"input_prefix": "", "input_suffix": "", "input_extra": extra, "n_predict": 0}
            started = time.perf_counter()
            answer = client.post("/infill", json=body).raise_for_status().json()
            times_ms.append((time.perf_counter() - started) * 1000)
            predicted += answer["tokens_predicted"]
            rows.append(
                [index, times_ms[-1], answer["tokens_evaluated"], answer["tokens_predicted"]]
            )
        completion = {
            "input_prefix": "def main():\n",
            "input_suffix": "\n",
            "input_extra": extra,
            "prompt": "    return",
            "n_predict": 8,
        }
        after = client.post("/infill", json=completion).raise_for_status().json()

    print_table(["request", "ms", "prompt tokens", "predicted"], rows)
    warm_ms = median(times_ms)
    cached = after.get("tokens_cached")  # older servers do not report it
    print(
        f"warm-up median {warm_ms:.0f} ms, {predicted} tokens predicted; the completion after "
        f"found {cached} of {after['tokens_evaluated']} prompt tokens cached"
    )
    write_result(
        "cache_warmup",
        {
            "requests": rows,
            "warmup_median_ms": warm_ms,
            "tokens_predicted": predicted,
            "completion_tokens_cached": cached,
            "completion_tokens_evaluated": after["tokens_evaluated"],
            "foreign_cpu_fraction": audit.foreign_fraction,
            "headline": [
                headline("n_predict 0 warm-up, median", warm_ms, "ms"),
                headline("tokens predicted by warm-ups", predicted, "tokens", "<=", 0),
            ],
        },
    )


if __name__ == "__main__":
    main()
