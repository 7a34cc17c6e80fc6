"""Editor typing: FIM latency while someone types into a ~1,500-token Python file.

An editor resends the whole file on each keystroke burst: ``prompt`` is the text up to
the cursor and ``suffix`` the rest (``/v1/completions``, max_tokens 16, temperature 0).
The first request reaches a freshly started server (cold: nothing cached); each of the
next 20 adds 3-5 typed characters at the cursor (warm: the file is already in the KV
cache). Goal: median warm latency at most 40 % of the cold one. The sequence runs
three times, each on a new server with a different file and cursor position, and the
medians over runs are reported.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

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

TARGET_TOKENS = 1500
STEP_SIZES = (3, 4, 5, 4)  # characters per keystroke burst, cycled
STEPS = 20
MAX_TOKENS = 16

NOUNS = ["order", "invoice", "customer", "product", "shipment", "account", "report", "ticket"]
VERBS = ["load", "validate", "normalize", "summarize", "export", "merge", "filter", "archive"]
FIELDS = ["name", "email", "amount", "created_at", "status", "quantity", "price", "owner"]

TEMPLATES = [
    '''def {verb}_{noun}(path: str) -> dict[str, object]:
    """{Verb} one {noun} record read from ``path``."""
    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    if "{field}" not in data:
        raise ValueError(f"{{path}}: missing {field}")
    return {{key: value for key, value in data.items() if value is not None}}
''',
    '''class {Noun}Repository:
    """Keeps {noun} objects in memory, indexed by id."""

    def __init__(self) -> None:
        self._items: dict[int, {Noun}] = {{}}

    def add(self, item: {Noun}) -> None:
        self._items[item.id] = item

    def find_by_{field}(self, value: object) -> list[{Noun}]:
        return [item for item in self._items.values() if item.{field} == value]
''',
    """@dataclass
class {Noun}:
    id: int
    {field}: str
    tags: list[str] = field(default_factory=list)

    def describe(self) -> str:
        return f"{Noun} #{{self.id}} ({{self.{field}}})"
""",
    """def {verb}_{noun}s(items: list[dict[str, object]], limit: int = 100) -> list[object]:
    results = []
    for index, item in enumerate(items):
        if index >= limit:
            break
        value = item.get("{field}")
        if value is None:
            logger.warning("skipping {noun} %d without {field}", index)
            continue
        results.append(value)
    return results
""",
    """async def fetch_{noun}(client: httpx.AsyncClient, {noun}_id: int) -> dict[str, object]:
    response = await client.get(f"/api/{noun}s/{{{noun}_id}}")
    response.raise_for_status()
    payload = response.json()
    return {{"id": {noun}_id, "{field}": payload.get("{field}")}}
""",
    """def test_{verb}_{noun}_rejects_empty_{field}() -> None:
    with pytest.raises(ValueError):
        {verb}_{noun}({{"{field}": ""}})
""",
]

HEADER = '''"""Business logic for the back office service."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

import httpx
import pytest

logger = logging.getLogger(__name__)
'''

TYPED = (
    "def total_{noun}_value(items: list[dict[str, float]]) -> float:\n"
    '    return sum(item["price"] * item["quantity"] for item in items)\n'
)


def build_file(seed: int, count_tokens: Callable[[str], int]) -> tuple[list[str], int]:
    """Blocks of a Python module, added until it reaches ``TARGET_TOKENS``."""
    rng = random.Random(seed)
    blocks = [HEADER]
    while True:
        noun, verb, fld = rng.choice(NOUNS), rng.choice(VERBS), rng.choice(FIELDS)
        template = rng.choice(TEMPLATES)
        blocks.append(
            template.format(noun=noun, Noun=noun.title(), verb=verb, Verb=verb.title(), field=fld)
        )
        tokens = count_tokens("\n\n".join(blocks))
        if tokens >= TARGET_TOKENS:
            return blocks, tokens


@dataclass
class Request:
    typed_chars: int
    latency_s: float
    prompt_tokens: int
    completion_tokens: int


@dataclass
class Run:
    file_seed: int
    file_tokens: int
    cursor_fraction: float
    requests: list[Request] = field(default_factory=list)
    # Share of the warm requests' prompt tokens that tether reports as reused from the KV
    # cache (its tether_engine_*prompt_tokens gauges); None if the server lacks them.
    warm_cached_fraction: float | None = None

    @property
    def cold_ms(self) -> float:
        return self.requests[0].latency_s * 1000

    @property
    def warm_median_ms(self) -> float:
        return median([r.latency_s for r in self.requests[1:]]) * 1000

    @property
    def warm_max_ms(self) -> float:
        return max(r.latency_s for r in self.requests[1:]) * 1000

    @property
    def ratio(self) -> float:
        return self.warm_median_ms / self.cold_ms

    def as_json(self) -> dict[str, object]:
        figures = ("cold_ms", "warm_median_ms", "warm_max_ms", "ratio")
        return {**asdict(self), **{name: getattr(self, name) for name in figures}}


def prompt_token_gauges(client: httpx.Client) -> tuple[float, float] | None:
    """(prompt tokens, cached prompt tokens) from /metrics, if tether exports them."""
    values: dict[str, float] = {}
    for line in client.get("/metrics").text.splitlines():
        name, _, value = line.partition(" ")
        name = name.removesuffix("_total")  # a counter's, since tether exports them as such
        if name in ("tether_engine_prompt_tokens", "tether_engine_cached_prompt_tokens"):
            values[name] = float(value)
    if len(values) != 2:
        return None
    return values["tether_engine_prompt_tokens"], values["tether_engine_cached_prompt_tokens"]


def run_sequence(run: Run, blocks: list[str], noun: str, deadline: Deadline) -> None:
    """One cold request, then ``STEPS`` warm ones, each with a few more typed characters."""
    cut = max(1, round(len(blocks) * run.cursor_fraction))
    prefix = "\n\n".join(blocks[:cut]) + "\n\n"
    suffix = "\n\n" + "\n\n".join(blocks[cut:])
    typed = TYPED.format(noun=noun)
    positions = [0]
    for step in range(STEPS):
        positions.append(positions[-1] + STEP_SIZES[step % len(STEP_SIZES)])
    assert positions[-1] <= len(typed), "typed text too short for the steps"

    requests = run.requests
    after_cold: tuple[float, float] | None = None
    with (
        tether_server() as server,
        httpx.Client(base_url=server.url, headers=server.headers, timeout=60.0) as client,
    ):
        client.get("/v1/models").raise_for_status()  # open the connection, not the model
        for chars in positions:
            if len(requests) >= 2 and deadline.expired():
                break
            body = {
                "prompt": prefix + typed[:chars],
                "suffix": suffix,
                "max_tokens": MAX_TOKENS,
                "temperature": 0,
                "seed": 0,
            }
            start = time.perf_counter()
            response = client.post("/v1/completions", json=body)
            latency = time.perf_counter() - start
            response.raise_for_status()
            usage = response.json()["usage"]
            requests.append(
                Request(chars, latency, usage["prompt_tokens"], usage["completion_tokens"])
            )
            if len(requests) == 1:
                after_cold = prompt_token_gauges(client)
        after_warm = prompt_token_gauges(client)
    if after_cold is not None and after_warm is not None and after_warm[0] > after_cold[0]:
        prompt, cached = (w - c for w, c in zip(after_warm, after_cold, strict=True))
        run.warm_cached_fraction = cached / prompt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--budget-s", type=float, default=150.0, help="stop early after this")
    args = parser.parse_args()
    deadline = Deadline(args.budget_s)

    import llama_cpp

    from tether.engines.llamacpp import native_stderr_silenced

    with native_stderr_silenced():
        vocab = llama_cpp.Llama(str(model_path()), vocab_only=True, verbose=False)

    def count_tokens(text: str) -> int:
        return len(vocab.tokenize(text.encode("utf-8"), add_bos=False))

    runs: list[Run] = []
    with CpuAudit() as audit:
        for run_index in range(args.runs):
            if runs and deadline.expired():
                break
            fraction = (0.5, 0.75, 0.9)[run_index % 3]
            blocks, file_tokens = build_file(run_index, count_tokens)
            run = Run(run_index, file_tokens, fraction)
            run_sequence(run, blocks, NOUNS[run_index % len(NOUNS)], deadline)
            runs.append(run)

    print(f"FIM via /v1/completions, max_tokens {MAX_TOKENS}, {STEPS} typing steps per run")
    print_table(
        [
            "run",
            "file tok",
            "cursor",
            "prefix tok",
            "cold ms",
            "warm p50",
            "warm max",
            "ratio",
            "KV",
        ],
        [
            [
                i,
                r.file_tokens,
                r.cursor_fraction,
                r.requests[0].prompt_tokens,
                r.cold_ms,
                r.warm_median_ms,
                r.warm_max_ms,
                r.ratio,
                "n/a" if r.warm_cached_fraction is None else f"{r.warm_cached_fraction:.1%}",
            ]
            for i, r in enumerate(runs)
        ],
    )
    cold_ms = median([r.cold_ms for r in runs])
    warm_ms = median([r.warm_median_ms for r in runs])
    ratio = median([r.ratio for r in runs])
    print("(ms; KV = warm prompt tokens reused from the KV cache, per tether's /metrics)")
    print(
        f"median cold {cold_ms:.1f} ms, warm {warm_ms:.1f} ms, warm/cold {ratio:.3f} (goal <= 0.40)"
    )
    write_result(
        "editor_typing",
        {
            "max_tokens": MAX_TOKENS,
            "steps": STEPS,
            "runs": [r.as_json() for r in runs],
            "stopped_early": deadline.hit,
            "cold_ms": cold_ms,
            "warm_median_ms": warm_ms,
            "ratio": ratio,
            "foreign_cpu_fraction": audit.foreign_fraction,
            "headline": [
                headline("typing cold FIM latency", cold_ms, "ms"),
                headline("typing warm FIM latency (median)", warm_ms, "ms"),
                headline("typing warm/cold ratio", ratio, "", "<=", 0.40),
            ],
        },
    )


if __name__ == "__main__":
    main()
