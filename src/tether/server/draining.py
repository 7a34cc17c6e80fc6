"""Stopping without cutting anyone off.

On SIGTERM (or Ctrl-C) the server stops accepting connections and lets the requests it
is serving finish, for ``server.shutdown_grace_s``. What still generates then is ended
with an answer that says so: a stream gets an error event (and ``[DONE]`` where its API
sends one), a plain request a 503 with Retry-After, so that clients retry elsewhere
instead of reading a cut connection. Either way the answer as far as it went is
recorded, charged and audited before the server closes its logs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

from tether.errors import ShuttingDownError


class Drain:
    """The generation work in flight, which ``expire`` ends when the grace is over."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[object]] = set()
        self._ended: list[asyncio.Task[object]] = []  # what ``expire`` cancelled
        self.expired = False

    @contextmanager
    def covering(self) -> Iterator[None]:
        """Within this block, the current task is ended by ``expire``."""
        task = asyncio.current_task()
        assert task is not None  # a request always runs in a task
        self._tasks.add(task)
        if self.expired:  # it came this far after the grace ran out: it ends at once
            task.cancel()
            self._ended.append(task)
        try:
            yield
        finally:
            self._tasks.discard(task)

    def expire(self) -> None:
        """The grace is over: cancel every task still covered (each catches it), once."""
        if self.expired:  # a second cancellation would cut short the first one's answer
            return
        self.expired = True
        for task in list(self._tasks):
            task.cancel()
            self._ended.append(task)

    async def settled(self, timeout_s: float) -> None:
        """Until each request ``expire`` ended has recorded and sent its answer, or
        ``timeout_s``: its task still runs after the cancellation it catches."""
        pending = [task for task in self._ended if not task.done()]
        if pending:
            await asyncio.wait(pending, timeout=timeout_s)

    @staticmethod
    def error() -> ShuttingDownError:
        return ShuttingDownError(
            "the server is shutting down and ended this request; send it again (another "
            "replica, or this one once it is back, will answer it)",
            retry_after_s=1,
        )
