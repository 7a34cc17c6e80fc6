"""``python -m tether`` with each garbage collection's pause appended to the file named by
``BENCH_GC_LOG``: one line per collection, ``generation milliseconds``."""

from __future__ import annotations

import gc
import os
import time
from typing import IO, Any

from tether.cli.main import main


class _PauseLog:
    def __init__(self, out: IO[str]) -> None:
        self._out = out
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            paused_ms = (time.perf_counter() - self._started) * 1000
            self._out.write(f"{info['generation']} {paused_ms:.3f}\n")


if __name__ == "__main__":
    with open(os.environ["BENCH_GC_LOG"], "a", buffering=1) as out:
        gc.callbacks.append(_PauseLog(out))
        main()
