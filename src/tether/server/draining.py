"""Stopping without cutting anyone off, and ending the work of a revoked token.

On SIGTERM (or Ctrl-C) the server stops accepting connections and lets the requests it
is serving finish, for ``server.shutdown_grace_s``. What still generates then is ended
with an answer that says so: a stream gets an error event (and ``[DONE]`` where its API
sends one), a plain request a 503 with Retry-After, so that clients retry elsewhere
instead of reading a cut connection. Either way the answer as far as it went is
recorded, charged and audited before the server closes its logs.

A token revoked while its requests generate ends them the same way at once (a 401, or
an error event): a leaked token's stream does not run on to its end after it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Iterator
from contextlib import contextmanager

from tether.errors import AuthError, ShuttingDownError


class Drain:
    """The generation work in flight, which ``expire`` ends when the grace is over, and
    ``revoke`` where its token was revoked."""

    def __init__(self) -> None:
        self._tasks: dict[asyncio.Task[object], str | None] = {}  # task -> its token's id
        self._ended: list[asyncio.Task[object]] = []  # what ``expire`` cancelled
        self._revoked: set[asyncio.Task[object]] = set()  # what ``revoke`` cancelled
        self.expired = False

    @contextmanager
    def covering(self, token_id: str | None = None) -> Iterator[None]:
        """Within this block, the current task is ended by ``expire``, and by ``revoke``
        of ``token_id``."""
        task = asyncio.current_task()
        assert task is not None  # a request always runs in a task
        self._tasks[task] = token_id
        if self.expired:  # it came this far after the grace ran out: it ends at once
            task.cancel()
            self._ended.append(task)
        try:
            yield
        finally:
            self._tasks.pop(task, None)
            self._revoked.discard(task)

    def revoke(self, token_ids: Collection[str]) -> int:
        """End the work of the tokens ``token_ids``; how many requests were ended."""
        ending = [
            task
            for task, owner in self._tasks.items()
            if owner in token_ids and task not in self._revoked
        ]
        for task in ending:
            self._revoked.add(task)
            task.cancel()
        return len(ending)

    def was_revoked(self, task: asyncio.Task[object]) -> bool:
        """Whether ``revoke`` ended ``task``'s work."""
        return task in self._revoked

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
    def revoked_error() -> AuthError:
        return AuthError(
            "the token was revoked while this request ran, and its answer was ended here; "
            "ask an admin for another token"
        )

    @staticmethod
    def error() -> ShuttingDownError:
        return ShuttingDownError(
            "the server is shutting down and ended this request; send it again (another "
            "replica, or this one once it is back, will answer it)",
            retry_after_s=1,
        )
