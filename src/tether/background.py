"""One thread that writes records off the request path, in the order they were given.

An SQLite insert takes a tenth of a millisecond or more; on the event loop it would sit
between one answer and the next request. A failed write is logged and the writes after
it still run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tether.closing import Closeable

log = logging.getLogger("tether.server")


class BackgroundWriter(Closeable):
    def __init__(self, name: str, what: str) -> None:
        self.what = what  # for the log: "a trace", "a usage row"
        self._pool = ThreadPoolExecutor(1, thread_name_prefix=name)

    def submit(self, write: Callable[..., object], *args: Any) -> None:
        self._pool.submit(self._run, write, args)

    def _run(self, write: Callable[..., object], args: tuple[Any, ...]) -> None:
        try:
            write(*args)
        except Exception:  # a full or broken disk must not stop the writes after it
            log.exception("could not write %s", self.what)

    def flush(self) -> None:
        """Wait until everything submitted so far is written."""
        self._pool.submit(lambda: None).result()

    def close(self) -> None:
        """Write what is queued, then stop the thread."""
        self._pool.shutdown(wait=True)
