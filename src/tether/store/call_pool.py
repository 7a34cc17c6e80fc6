"""Where stored functions run: threads of their own, with a bounded line of calls waiting.

A call holds its thread while the sandbox runs (up to ``store.call_timeout_s``). In
asyncio's default pool a few slow calls took every thread that search, vetting and the
rest of the server use; here they only wait for one another. A call that would wait
behind ``max_waiting`` others is refused at once, as a full engine queue is: 429 with
Retry-After.
"""

from __future__ import annotations

import asyncio
import contextvars
import math
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from tether.closing import Closeable
from tether.errors import OverloadedError

T = TypeVar("T")


class CallPool(Closeable):
    def __init__(self, workers: int, max_waiting: int) -> None:
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="tether-call")
        self._workers = workers
        self._max_waiting = max_waiting
        self._lock = threading.Lock()
        self._admitted = 0  # running or waiting, until the thread is done with it

    @property
    def in_flight(self) -> int:
        """Calls running or waiting for a thread."""
        return self._admitted

    async def run(self, work: Callable[[threading.Event], T], timeout_s: float) -> T:
        """``work(stop)`` on a call thread (with this task's context variables, such as who
        calls), or OverloadedError when the line is full; ``timeout_s`` is how long a call
        may take, for Retry-After.

        Cancelled (the caller went away), ``stop`` is set: a call running ends at once and
        one waiting for a thread does not start, each still going through ``work`` so
        that it is recorded, and neither holds a thread that the next caller waits for."""
        self._admit(timeout_s)
        stop = threading.Event()
        context = contextvars.copy_context()
        future = self._executor.submit(context.run, work, stop)
        future.add_done_callback(self._leave)
        waiting = asyncio.wrap_future(future)
        try:
            # Shielded: cancelling the wrapper would cancel a waiting call, never recorded.
            return await asyncio.shield(waiting)
        except asyncio.CancelledError:
            stop.set()
            waiting.add_done_callback(_retrieved)  # how it ended is the work's to record
            raise

    def _admit(self, timeout_s: float) -> None:
        with self._lock:
            if self._admitted >= self._workers + self._max_waiting:
                # The wait is in the message too: over MCP the refusal is a tool's error,
                # which carries no Retry-After header.
                wait = max(1, math.ceil(timeout_s))
                raise OverloadedError(
                    f"{self._workers} function calls are running and {self._max_waiting} "
                    f"are waiting; retry in {wait} s, or raise store.call_workers / "
                    "store.call_queue",
                    retry_after_s=wait,
                )
            self._admitted += 1

    def _leave(self, _: Future[Any]) -> None:
        with self._lock:
            self._admitted -= 1

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    def wait_for_calls(self) -> None:
        """Take no more calls, and wait for those admitted (stopped ones end at once)."""
        self._executor.shutdown(wait=True)


def _retrieved(done: asyncio.Future[Any]) -> None:
    if not done.cancelled():
        done.exception()  # read, so asyncio does not log it as never retrieved
