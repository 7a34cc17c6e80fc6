"""Start-up time and idle memory of ``tether serve`` with the default embedded model.

Start-up: from launching the process to the first 200 from ``GET /readyz``, median of
5 fresh launches (goal ≤ 3 s). The launches share one data directory, as restarts on a
real machine do, so only the first computes the model's sha256 (it is cached after).
Memory: resident set size of the server after it is ready, has answered one small
request and has idled for 2 s (goal ≤ 300 MB), alone and with any child processes; USS
(memory private to the process, without the shared model pages) is reported beside.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import psutil

from bench._common import (
    CpuAudit,
    Deadline,
    headline,
    median,
    print_table,
    tether_server_with_home,
    write_result,
)

MB = 1024 * 1024
IDLE_S = 2.0


@dataclass
class Launch:
    ready_s: float
    rss_mb: float
    rss_with_children_mb: float
    uss_mb: float
    children: int


def measure_launch(home: Path) -> Launch:
    with tether_server_with_home(home) as server:
        ready_s = server.ready_at - server.launched_at
        response = httpx.post(
            f"{server.url}/v1/completions",
            headers=server.headers,
            json={"prompt": "Hello", "max_tokens": 4, "temperature": 0, "seed": 0},
            timeout=60.0,
        )
        response.raise_for_status()
        time.sleep(IDLE_S)
        process = psutil.Process(server.proc.pid)
        children = process.children(recursive=True)
        rss = process.memory_info().rss
        rss_all = rss + sum(c.memory_info().rss for c in children)
        uss = process.memory_full_info().uss
    return Launch(ready_s, rss / MB, rss_all / MB, uss / MB, len(children))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--launches", type=int, default=5)
    parser.add_argument("--budget-s", type=float, default=90.0, help="stop early after this")
    args = parser.parse_args()
    deadline = Deadline(args.budget_s)

    launches: list[Launch] = []
    with CpuAudit() as audit, tempfile.TemporaryDirectory(prefix="tether-bench-home-") as home:
        for _ in range(args.launches):
            if launches and deadline.expired():
                break
            launches.append(measure_launch(Path(home)))

    print_table(
        ["launch", "ready s", "RSS MB", "RSS+children MB", "USS MB", "children"],
        [
            [i, x.ready_s, x.rss_mb, x.rss_with_children_mb, x.uss_mb, x.children]
            for i, x in enumerate(launches)
        ],
    )
    ready = median([x.ready_s for x in launches])
    rss = median([x.rss_mb for x in launches])
    rss_all = median([x.rss_with_children_mb for x in launches])
    print(
        f"median ready {ready:.2f} s (goal <= 3), idle RSS {rss:.1f} MB (goal <= 300), "
        f"with children {rss_all:.1f} MB; launch 0 also hashed the model"
    )
    write_result(
        "startup_memory",
        {
            "launches": [asdict(x) for x in launches],
            "idle_s": IDLE_S,
            "ready_median_s": ready,
            "rss_median_mb": rss,
            "rss_with_children_median_mb": rss_all,
            "stopped_early": deadline.hit,
            "foreign_cpu_fraction": audit.foreign_fraction,
            "headline": [
                headline("start-up to /readyz (median)", ready, "s", "<=", 3.0),
                headline("idle RSS", rss, "MB", "<=", 300.0),
                headline("idle RSS incl. children", rss_all, "MB", "<=", 300.0),
            ],
        },
    )


if __name__ == "__main__":
    main()
