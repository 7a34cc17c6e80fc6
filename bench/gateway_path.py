"""Where a gateway request's time goes: tether and the floor, moment by moment.

Both gateways stand in front of the stub upstream (``stub_upstream.py``), which waits
``--stub-delay-ms`` before each answer as a model would, and take the same plain
one-token ``/v1/completions`` in turn. Each runs with ``path_marks/sitecustomize.py``,
which notes when each request passed each step; the medians of those moments, from the
request's first byte read, show which part of the path tether's added time sits in:

- before the upstream: reading the request, the middlewares, routing, the token check,
  the body's validation, governing and rendering the prompt, sending it on;
- the upstream's own time (the same for both: the stub's);
- after the upstream: reading its answer, checking and recording it, writing the response.

The marks cost time of their own (a few microseconds each, more in tether, which has more
of them): the sums here run above ``gateway_overhead.py``'s, which times the requests from
outside. Read the parts, not the totals.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import httpx

from bench._common import BENCH_DIR, median, print_table, tether_server, write_result
from bench.gateway_overhead import bare_proxy, body, stub_upstream

SIDES = ("tether", "floor")
# The parts of the path, as (name, from mark, to mark), on both sides.
PARTS = (
    ("before the upstream", "begin", "upstream_written"),
    ("the upstream", "upstream_written", "upstream_answered"),
    ("after the upstream", "upstream_answered", "sent"),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stub-delay-ms", type=float, default=50.0)
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--src", type=Path, help="tether's src folder to run (default: this)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tether-bench-marks-") as tmp:
        files = {side: Path(tmp) / f"{side}.json" for side in SIDES}
        marks = str(BENCH_DIR / "path_marks")
        marked = {"PYTHONPATH": marks}
        tether_path = f"{marks}:{args.src.resolve()}" if args.src else marks
        with (
            stub_upstream(args.stub_delay_ms) as stub,
            bare_proxy(stub, {**marked, "BENCH_MARKS_FILE": str(files["floor"])}) as floor,
            tether_server(
                "--engine",
                "openai",
                "--upstream",
                stub,
                env={"PYTHONPATH": tether_path, "BENCH_MARKS_FILE": str(files["tether"])},
            ) as server,
            httpx.Client(base_url=f"{server.url}/v1", headers=server.headers) as to_tether,
            httpx.Client(base_url=floor) as to_floor,
        ):
            model = to_tether.get("/models").json()["data"][0]["id"]
            for _ in range(args.warmup + args.rounds):
                to_tether.post("/completions", json=body(model)).raise_for_status()
                to_floor.post("/completions", json=body(model)).raise_for_status()
        # The gateways have stopped, and written every request's marks.
        rows = {side: json.loads(files[side].read_text())[-args.rounds :] for side in SIDES}
    moments = {side: _medians(rows[side]) for side in SIDES}
    parts = {
        name: {side: _part(rows[side], start, end) for side in SIDES} for name, start, end in PARTS
    }
    print(f"{args.rounds} requests each, the stub waiting {args.stub_delay_ms:g} ms")
    print_table(
        ["part", "tether ms", "floor ms", "tether - floor ms"],
        [[name, p["tether"], p["floor"], p["tether"] - p["floor"]] for name, p in parts.items()],
    )
    print()
    print_table(["tether's step", "ms from the request's start"], list(moments["tether"].items()))
    write_result(
        "gateway_path",
        {
            "rounds": args.rounds,
            "stub_delay_ms": args.stub_delay_ms,
            "src": str(args.src or ""),
            "parts_ms": parts,
            "moments_ms": moments,
        },
    )


def _medians(rows: list[dict[str, float]]) -> dict[str, float]:
    """Each mark's median moment, in the order they come."""
    names = {name for row in rows for name in row}
    found = {name: median([row[name] for row in rows if name in row]) for name in names}
    return dict(sorted(found.items(), key=lambda item: item[1]))


def _part(rows: list[dict[str, float]], start: str, end: str) -> float:
    return median([row[end] - row[start] for row in rows])


if __name__ == "__main__":
    main()
