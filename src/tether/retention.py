"""When a store applies its retention: every so many writes or seconds, on the monotonic
clock, and never in its first interval."""

from __future__ import annotations

import time
from collections.abc import Callable


class PruneSchedule:
    """Due every ``every`` writes or ``interval`` seconds, whichever comes first.

    Time is the monotonic clock's, so a step of the wall clock neither hastens nor holds
    off a prune (the wall clock still says what is old). Nothing is due in the first
    interval after opening, whatever the count: a host whose clock is years ahead at boot
    and set right soon after would otherwise delete every row it holds.
    """

    def __init__(
        self, every: int, interval: float, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.every = every
        self.interval = interval
        self._monotonic = monotonic
        self._writes = 0
        self._last = monotonic()
        self._first_done = False

    def wrote(self) -> bool:
        """Count a write; True when a prune is due."""
        self._writes += 1
        elapsed = self._monotonic() - self._last
        if elapsed >= self.interval:
            return True
        return self._first_done and self._writes >= self.every

    def pruned(self) -> None:
        self._writes = 0
        self._last = self._monotonic()
        self._first_done = True
