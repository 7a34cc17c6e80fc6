"""What the stream holdback costs a piece as a line grows: it must not grow with the line.

A gateway passes an upstream's answer on a token at a time, and each piece goes through
the holdback, on the event loop. Minified code, base64 or a model looping without a
newline makes one long line; a holdback whose cost per piece grows with the line makes
the stream quadratic and holds up every other request meanwhile. Here one-word pieces are
fed on one line (and, for comparison, with a newline every ten words) at growing lengths,
with the rules the default settings withhold; the figure is the median microseconds per
piece over rounds, and the ratio of the longest line's to the shortest's (goal: about 1).
"""

from __future__ import annotations

import argparse
import time

from bench._common import headline, median, print_table, write_result
from tether.pipeline.holdback import SecretHoldback, SecretKeywords
from tether.settings import Settings


def per_piece_us(rules: SecretKeywords, words: int, newline_every: int | None) -> float:
    """Microseconds per piece to stream ``words`` one-word pieces through a holdback."""
    pieces = [
        f"w{i}\n" if newline_every and (i + 1) % newline_every == 0 else f"w{i} "
        for i in range(words)
    ]
    holdback = SecretHoldback(rules)
    started = time.perf_counter()
    sent = "".join(holdback.feed(piece) for piece in pieces)
    elapsed = time.perf_counter() - started
    assert sent == "".join(pieces), "the holdback kept back text that holds no secret"
    return elapsed / words * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--lengths", type=int, nargs="+", default=[2_000, 8_000, 32_000])
    args = parser.parse_args()
    rules = SecretKeywords.from_settings(Settings())
    assert rules is not None, "the default settings withhold secrets"
    rows, levels = [], []
    for words in args.lengths:
        for shape, every in (("one line", None), ("10 words a line", 10)):
            times = [per_piece_us(rules, words, every) for _ in range(args.rounds)]
            levels.append({"words": words, "shape": shape, "us_per_piece": times})
            rows.append([words, shape, f"{median(times):.1f}"])
    print_table(["pieces", "shape", "µs per piece (median)"], rows)
    one_line = [median(lv["us_per_piece"]) for lv in levels if lv["shape"] == "one line"]
    growth = one_line[-1] / one_line[0]
    print(f"one line, {args.lengths[-1]} pieces against {args.lengths[0]}: {growth:.2f}x per piece")
    write_result(
        "holdback_scaling",
        {
            "levels": levels,
            "headline": [
                headline("per-piece cost, longest line / shortest", growth, "x", "<=", 2.0)
            ],
        },
    )


if __name__ == "__main__":
    main()
