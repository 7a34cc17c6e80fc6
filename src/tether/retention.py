"""When a store applies its retention: every so many writes or seconds, on a monotonic
clock, and never in the host's first interval after it boots."""

from __future__ import annotations

import time
from collections.abc import Callable


def since_boot() -> float:
    """Seconds since this host booted: Linux's boot-time clock, which counts a suspend too;
    elsewhere the monotonic clock, which counts from boot on macOS and Windows."""
    if hasattr(time, "CLOCK_BOOTTIME"):
        return time.clock_gettime(time.CLOCK_BOOTTIME)
    return time.monotonic()


class PruneSchedule:
    """Due every ``every`` writes or ``interval`` seconds, whichever comes first.

    Time is ``since_boot``'s, so a step of the wall clock neither hastens nor holds off a
    prune (the wall clock still says what is old). Nothing is due while the host is in
    its first interval after booting, whatever the count: a host whose clock is years
    ahead at boot and set right soon after would otherwise delete every row it holds.
    Past it, the first write after opening is due: a server restarted more often than
    the interval (or a command that records one answer) still prunes.
    """

    def __init__(
        self, every: int, interval: float, clock: Callable[[], float] | None = None
    ) -> None:
        """``clock``: seconds since boot; this host's (``since_boot``) if None."""
        self.every = every
        self.interval = interval
        self._since_boot = clock if clock is not None else since_boot
        self._writes = 0
        self._last: float | None = None  # not pruned yet in this process

    def wrote(self) -> bool:
        """Count a write; True when a prune is due."""
        self._writes += 1
        now = self._since_boot()
        if self._last is None:
            return now >= self.interval
        return now - self._last >= self.interval or self._writes >= self.every

    def pruned(self) -> None:
        self._writes = 0
        self._last = self._since_boot()
