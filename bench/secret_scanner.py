"""Secret scanner: detection quality on a generated corpus, scan time, and linear growth.

Goals: recall >= 0.98 with precision >= 0.95 on the corpus of ``secret_corpus.py``
(fake credentials of 25+ providers and personal data in code, config, log and prose
contexts, plus look-alikes; five seeds pooled, so one lucky draw cannot carry it); a p50
scan time <= 1 ms for an 8 KB realistic prompt; and time per KB that stays flat (within
2x) as pathological inputs grow from 16 KB to 1 MB, since every rule runs on RE2, which
never backtracks, and base64 is decoded at most two levels deep.

A secret counts as found when one finding covers all of it; a finding that covers no
expected secret is a false positive. The scanner runs in this process with the built-in
rules, as the server would build it from default settings.
"""

from __future__ import annotations

import argparse
import base64
import functools
import random
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from bench._common import CpuAudit, headline, percentile, print_table, write_result
from bench.secret_corpus import Sample, build_corpus, realistic_prompt
from tether.policy import Scanner, govern

SIZES_KB = [16, 64, 256, 1024]
SEEDS = [1, 2, 3, 4, 5]


def quality(scanner: Scanner, corpus: list[Sample]) -> dict[str, Any]:
    per_kind: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    misses: list[str] = []
    false_positives: list[str] = []
    for sample in corpus:
        findings = scanner.scan(sample.text)
        spans = []
        for secret in sample.secrets:
            start = sample.text.index(secret.value)
            end = start + len(secret.value)
            spans.append((start, end))
            hit = any(f.start <= start and f.end >= end for f in findings)
            per_kind[secret.kind]["expected"] += 1
            per_kind[secret.kind]["found"] += hit
            if not hit:
                misses.append(f"{secret.kind}: {_excerpt(sample.text, start, end)}")
        for f in findings:
            if any(f.start < end and f.end > start for start, end in spans):
                per_kind[sample.kind]["true_findings"] += 1
            else:
                per_kind[sample.kind]["false_findings"] += 1
                false_positives.append(
                    f"{f.rule_id} in {sample.kind}: {_excerpt(sample.text, f.start, f.end)}"
                )
    expected = sum(k["expected"] for k in per_kind.values())
    found = sum(k["found"] for k in per_kind.values())
    true = sum(k["true_findings"] for k in per_kind.values())
    false = sum(k["false_findings"] for k in per_kind.values())
    return {
        "samples": len(corpus),
        "look_alike_samples": sum(1 for s in corpus if not s.secrets),
        "expected": expected,
        "found": found,
        "recall": found / expected,
        "true_findings": true,
        "false_findings": false,
        "precision": true / (true + false) if true + false else float("nan"),
        "per_kind": {kind: dict(counts) for kind, counts in sorted(per_kind.items())},
        "misses": misses,
        "false_positives": false_positives,
    }


def _excerpt(text: str, start: int, end: int) -> str:
    value = text[start:end]
    shown = value if len(value) <= 40 else value[:18] + "..." + value[-18:]
    before = text[max(0, start - 24) : start]
    return repr(before + "[" + shown + "]")


def timings_ms(run: Callable[[], object], count: int, warmup: int = 10) -> list[float]:
    for _ in range(warmup):
        run()
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        run()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


# Pathological inputs: each keeps every prefilter keyword busy and the patterns half-matched.
def no_match(size: int) -> str:
    return "a" * (size - 1) + "!"


def near_misses(size: int) -> str:
    fragments = [
        "AKIA", "ghp_", "sk-", "sk-ant-api03-", "xoxb-1-", "eyJhbGci.eyJ", "tth_", "AIza",
        "-----BEGIN PRIVATE KEY-----\n", "postgres://u:", "password = '", "secret: ",
        "a@b.", "+1 (", "4111 1111 ", "DE89 3704 ", "hooks.slack.com/services/",
        "SG.", "npm_", "hf_", "glpat-", "pypi-AgEIcHlwaS5vcmc", ":AA", "MTA", "heroku ",
    ]  # fmt: skip
    unit = "".join(fragment + "x" * 7 for fragment in fragments)
    return (unit * (size // len(unit) + 1))[:size]


def dense_matches(size: int) -> str:
    unit = "jane.doe@acme-corp.io AKIAQWERTYUIOPASDFGH +1 415 555 2671 "
    return (unit * (size // len(unit) + 1))[:size]


def long_runs(size: int) -> str:
    """Runs that stay inside the token alphabets, so greedy classes never stop early."""
    unit = "sk-" + "A1b2C3d4" * 512 + " "
    return (unit * (size // len(unit) + 1))[:size]


def nested_base64(size: int) -> str:
    """Base64 wrapped at 76 columns of base64 of near misses: every level is decoded and
    read, down to the near misses two levels in."""
    # Each level is 4/3 of the one inside, a newline every 76; a multiple of 9 pads neither.
    plain = near_misses(size * 9 * 76 // (16 * 77) // 9 * 9)
    inner = base64.b64encode(base64.b64encode(plain.encode())).decode()
    return "\n".join(inner[i : i + 76] for i in range(0, len(inner), 76))


def failed_blocks(size: int) -> str:
    """Text beyond ASCII of 64-column lines of base64 of random bytes, in pairs: each pair
    looks like a wrapped block, fails to decode, and is read again a line at a time."""
    rng = random.Random(size)
    pair = base64.b64encode(rng.randbytes(96)).decode()
    unit = f"{pair[:64]}\n{pair[64:]}\n; é\n"
    return (unit * (size // len(unit) + 1))[:size]


ADVERSARIAL: dict[str, Callable[[int], str]] = {
    "no match (a...a!)": no_match,
    "near misses": near_misses,
    "dense matches": dense_matches,
    "long token runs": long_runs,
    "nested base64": nested_base64,
    "failed blocks beyond ASCII": failed_blocks,
}


def growth(scanner: Scanner, repeats: int) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    for name, make in ADVERSARIAL.items():
        results[name] = {}
        for kb in SIZES_KB:
            text = make(kb * 1024)
            best = min(timings_ms(functools.partial(scanner.scan, text), repeats, warmup=1))
            results[name][f"{kb}"] = best
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200, help="timed scans of the 8 KB prompt")
    parser.add_argument("--repeats", type=int, default=3, help="timed scans per adversarial size")
    parser.add_argument("--show", type=int, default=15, help="misses and false positives shown")
    args = parser.parse_args()

    started = time.perf_counter()
    scanner = Scanner()
    build_ms = (time.perf_counter() - started) * 1000
    corpora = {seed: build_corpus(seed) for seed in SEEDS}
    prompt = realistic_prompt(size=8192)

    with CpuAudit() as audit:
        q = quality(scanner, [sample for corpus in corpora.values() for sample in corpus])
        per_seed = {seed: quality(scanner, corpus) for seed, corpus in corpora.items()}
        scan = timings_ms(lambda: scanner.scan(prompt), args.runs)
        full = timings_ms(lambda: govern(prompt, scanner.scan(prompt)), args.runs)
        grown = growth(scanner, args.repeats)

    rows = [
        [kind, c.get("expected", 0), c.get("found", 0), c.get("false_findings", 0)]
        for kind, c in q["per_kind"].items()
    ]
    print_table(["kind", "expected", "found", "false findings"], rows)
    recalls = {seed: r["recall"] for seed, r in per_seed.items()}
    precisions = {seed: r["precision"] for seed, r in per_seed.items()}
    print(
        f"\nper seed: recall {min(recalls.values()):.3f}-{max(recalls.values()):.3f}, "
        f"precision {min(precisions.values()):.3f}-{max(precisions.values()):.3f}"
    )
    for title, lines in [("missed", q["misses"]), ("false positives", q["false_positives"])]:
        if lines:
            print(f"\n{title} ({len(lines)}):")
            for line in lines[: args.show]:
                print("  " + line)

    print()
    per_kb = {name: {kb: ms / int(kb) for kb, ms in sizes.items()} for name, sizes in grown.items()}
    print_table(
        ["adversarial input", *(f"{kb} KB ms" for kb in SIZES_KB), "ms/KB 16K", "ms/KB 1M"],
        [
            [name, *sizes.values(), per_kb[name]["16"], per_kb[name]["1024"]]
            for name, sizes in grown.items()
        ],
    )
    worst_growth = max(per_kb[n]["1024"] / per_kb[n]["16"] for n in per_kb)
    worst_1mb = max(sizes["1024"] for sizes in grown.values())

    figures = [
        headline("secret recall", q["recall"], "", ">=", 0.98),
        headline("secret precision", q["precision"], "", ">=", 0.95),
        headline("scan 8 KB prompt p50", percentile(scan, 50), "ms", "<=", 1.0),
        headline("scan+govern 8 KB prompt p50", percentile(full, 50), "ms"),
        headline("adversarial ms/KB growth 16 KB -> 1 MB, worst", worst_growth, "x", "<=", 2.0),
        headline("adversarial 1 MB scan, worst", worst_1mb, "ms"),
    ]
    print()
    print_table(
        ["figure", "value", "goal", "result"],
        [
            [f["metric"], f"{f['value']:.3f} {f['unit']}".rstrip(), f["goal"], f["pass"]]
            for f in figures
        ],
    )
    path = write_result(
        "secret_scanner",
        {
            "rules": len(scanner.rules),
            "build_ms": build_ms,
            "prompt_chars": len(prompt),
            "prompt_findings": len(scanner.scan(prompt)),
            "scan_ms": {"p50": percentile(scan, 50), "p95": percentile(scan, 95), "n": len(scan)},
            "scan_govern_ms": {"p50": percentile(full, 50), "p95": percentile(full, 95)},
            "adversarial_ms": grown,
            "adversarial_ms_per_kb": per_kb,
            "seeds": SEEDS,
            "recall_per_seed": recalls,
            "precision_per_seed": precisions,
            "quality": q,
            "foreign_cpu_fraction": audit.foreign_fraction,
            "headline": figures,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
