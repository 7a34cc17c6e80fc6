"""Shared helpers for the benchmarks: ports, server processes, statistics, results.

Every process started here is stopped by the context manager that started it, whatever
happens inside the ``with`` block.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench._processes import free_port, stop_process

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"

# SIGTERM (e.g. from run_all.py on a timeout) unwinds like Ctrl-C, so the ``finally``
# blocks below stop the servers a benchmark started.
signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


def model_path() -> Path:
    from tether.models import default_model_path

    return default_model_path()


def clean_env(**extra: str) -> dict[str, str]:
    """The current environment without TETHER_* settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
    env.update(extra)
    return env


def _log_tail(path: Path, chars: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def wait_http_ok(
    url: str, proc: subprocess.Popen[Any], timeout: float, log: Path | None = None
) -> float:
    """Poll GET ``url`` until 200; returns the monotonic time it answered."""
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                tail = _log_tail(log) if log else ""
                raise RuntimeError(f"process exited with {proc.returncode} before {url}:\n{tail}")
            with contextlib.suppress(httpx.HTTPError):
                if client.get(url).status_code == 200:
                    return time.monotonic()
            time.sleep(0.02)
    tail = _log_tail(log) if log else ""
    raise TimeoutError(f"{url} not ready after {timeout:.0f} s:\n{tail}")


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    url: str
    token: str
    port: int
    launched_at: float  # time.monotonic() just before Popen
    ready_at: float  # time.monotonic() when /readyz first answered 200

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@contextlib.contextmanager
def tether_server(
    *args: str,
    timeout: float = 120.0,
    env: dict[str, str] | None = None,
    module: str = "tether",
    port: int | None = None,
) -> Iterator[Server]:
    """``tether serve`` on ``port`` (default a free one) with throw-away data and runtime
    dirs; ``env`` adds TETHER_* settings (and may set PYTHONPATH: another tree's code);
    ``module`` is what ``python -m`` runs (tether's CLI, or a wrapper)."""
    with tempfile.TemporaryDirectory(prefix="tether-bench-") as tmp:
        yield from _tether_server_in(Path(tmp), args, timeout, env or {}, module, port)


def _tether_server_in(
    tmp: Path,
    args: Sequence[str],
    timeout: float,
    settings: dict[str, str] | None = None,
    module: str = "tether",
    port: int | None = None,
) -> Iterator[Server]:
    data_dir, run_dir, log = tmp / "data", tmp / "run", tmp / "server.log"
    data_dir.mkdir(exist_ok=True)
    port = port or free_port()
    cmd = [sys.executable, "-m", module, "serve", "--port", str(port), *args]
    env = clean_env(
        TETHER_HOME=str(data_dir), TETHER_SERVER_RUNTIME_DIR=str(run_dir), **(settings or {})
    )
    with log.open("ab") as log_file:
        launched = time.monotonic()
        # cwd=tmp: no tether.toml from the checkout can change the configuration.
        proc = subprocess.Popen(cmd, env=env, cwd=tmp, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        ready = wait_http_ok(f"http://127.0.0.1:{port}/readyz", proc, timeout, log)
        record = json.loads((run_dir / f"server-{port}.json").read_text())
        yield Server(proc, record["url"], record["token"], port, launched, ready)
    finally:
        stop_process(proc)


@contextlib.contextmanager
def tether_server_with_home(home: Path, *args: str, timeout: float = 120.0) -> Iterator[Server]:
    """Like ``tether_server`` but keeps data (e.g. the model hash cache) in ``home``."""
    yield from _tether_server_in(home, args, timeout)


@contextlib.contextmanager
def llama_upstream(
    n_ctx: int = 2048, timeout: float = 120.0, n_threads: int | None = None
) -> Iterator[str]:
    """``llama_cpp.server`` over the default model; yields its base URL (ending in /v1)."""
    with tempfile.TemporaryDirectory(prefix="tether-bench-upstream-") as tmp:
        log = Path(tmp) / "upstream.log"
        port = free_port()
        cmd = [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(model_path()),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            str(n_ctx),
            *(["--n_threads", str(n_threads)] if n_threads else []),
        ]
        with log.open("ab") as log_file:
            proc = subprocess.Popen(
                cmd, env=clean_env(), cwd=tmp, stdout=log_file, stderr=subprocess.STDOUT
            )
        try:
            base = f"http://127.0.0.1:{port}/v1"
            wait_http_ok(f"{base}/models", proc, timeout, log)
            yield base
        finally:
            stop_process(proc)


@dataclass
class Streamed:
    """One streamed ``/v1/completions`` answer as a client sees it."""

    status: int
    ttft_s: float  # request sent -> first text
    total_s: float  # request sent -> stream ended
    tokens: int  # usage.completion_tokens, else the text chunks counted


async def stream_completion(client: httpx.AsyncClient, body: dict[str, Any]) -> Streamed:
    """POST ``body`` (streamed, with usage asked for) and time the answer."""
    body = {**body, "stream": True, "stream_options": {"include_usage": True}}
    start = time.perf_counter()
    first: float | None = None
    chunks = usage = 0
    async with client.stream("POST", "/v1/completions", json=body) as response:
        if response.status_code != 200:
            await response.aread()
            end = time.perf_counter() - start
            return Streamed(response.status_code, end, end, 0)
        async for line in response.aiter_lines():
            if not line.startswith("data: {"):
                continue
            event = json.loads(line[6:])
            if event.get("usage"):
                usage = event["usage"]["completion_tokens"]
            if any(choice.get("text") for choice in event.get("choices") or []):
                chunks += 1
                first = first or time.perf_counter()
    end = time.perf_counter()
    return Streamed(200, (first or end) - start, end - start, usage or chunks)


def percentile(values: Sequence[float], p: float) -> float:
    """Linear-interpolated percentile (``p`` in 0..100), as numpy's default."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100.0
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def median_interval(
    values: Sequence[float], confidence: float = 0.95, resamples: int = 2000
) -> tuple[float, float]:
    """A bootstrap confidence interval for the median of ``values`` (seeded, so the same
    values give the same interval): how far the median could move by chance alone."""
    if not values:
        return math.nan, math.nan
    draw = random.Random(0)
    medians = sorted(
        statistics.median(draw.choices(values, k=len(values))) for _ in range(resamples)
    )
    tail = (1.0 - confidence) / 2 * 100
    return percentile(medians, tail), percentile(medians, 100 - tail)


def write_result(name: str, data: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    payload = {"benchmark": name, "cpu_count": os.cpu_count(), "timestamp": time.time(), **data}
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[_cell(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 100 else f"{value:.1f}"
    return str(value)


class Deadline:
    """A time budget: loops stop starting new work once it has run out."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._end = time.monotonic() + seconds
        self.hit = False

    def expired(self) -> bool:
        if time.monotonic() >= self._end:
            if not self.hit:
                print(
                    f"warning: time budget of {self.seconds:.0f} s spent; stopping early",
                    file=sys.stderr,
                )
            self.hit = True
        return self.hit


def headline(
    metric: str, value: float, unit: str, goal_op: str | None = None, goal: float | None = None
) -> dict[str, Any]:
    """One figure for the summary; ``goal_op`` is '<=' or '>=' when there is a goal."""
    passed: bool | None = None
    if goal_op is not None and goal is not None and not math.isnan(value):
        passed = value <= goal if goal_op == "<=" else value >= goal
    text = f"{goal_op} {goal:g} {unit}".rstrip() if goal_op is not None and goal is not None else ""
    return {"metric": metric, "value": value, "unit": unit, "goal": text, "pass": passed}


class CpuAudit:
    """Measures how much CPU *other* processes used while a benchmark ran.

    The benchmarks assume an otherwise idle machine: on a 2-core box, a test suite in
    another terminal slows llama.cpp (which uses every core) down many times over.
    ``foreign_fraction`` is the share of all cores' time spent by processes other than
    this one and its children; above 5 % a warning is printed.
    """

    def __init__(self) -> None:
        self.foreign_fraction = math.nan
        self._start = (0.0, 0.0, 0.0)

    def __enter__(self) -> CpuAudit:
        self._start = self._sample()
        return self

    def __exit__(self, *exc: object) -> None:
        end = self._sample()
        wall = end[0] - self._start[0]
        foreign = (end[1] - self._start[1]) - (end[2] - self._start[2])
        self.foreign_fraction = max(0.0, foreign) / (wall * (os.cpu_count() or 1))
        if self.foreign_fraction > 0.05:
            print(
                f"warning: other processes used {self.foreign_fraction:.0%} of the CPU "
                "during this benchmark; figures may be pessimistic",
                file=sys.stderr,
            )

    @staticmethod
    def _sample() -> tuple[float, float, float]:
        import psutil

        t = psutil.cpu_times()
        busy = t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)
        own = os.times()
        ours = own.user + own.system + own.children_user + own.children_system
        for child in psutil.Process().children(recursive=True):
            with contextlib.suppress(psutil.Error):
                c = child.cpu_times()
                ours += c.user + c.system
        return time.monotonic(), busy, ours
