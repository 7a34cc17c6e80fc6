"""Measured energy from Linux powercap (Intel and AMD RAPL) counters, where readable.

Each top-level zone (``intel-rapl:0``, not its subzones, which it already includes) has a
microjoule counter that wraps at ``max_energy_range_uj``. The server samples them every
``interval_s`` and writes the joules spent since the last sample to the ledger; the cost
report then prefers measured energy to the configured power draw. The counters cover the
whole package (other processes too), which the report says.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from pathlib import Path

from tether.closing import Closeable

_TOP_ZONE = re.compile(r"^[a-z-]+rapl:\d+$")


def read_zones(powercap_dir: Path) -> dict[Path, tuple[int, int]] | None:
    """Each top-level zone's (energy_uj, max_energy_range_uj), or None when none is readable."""
    zones: dict[Path, tuple[int, int]] = {}
    try:
        candidates = sorted(powercap_dir.iterdir())
    except OSError:
        return None
    for zone in candidates:
        if not _TOP_ZONE.match(zone.name):
            continue
        try:
            energy = int((zone / "energy_uj").read_text())
            limit = int((zone / "max_energy_range_uj").read_text())
        except (OSError, ValueError):
            continue  # unreadable without privileges on many kernels
        zones[zone] = (energy, limit)
    return zones or None


def joules_between(
    before: dict[Path, tuple[int, int]], after: dict[Path, tuple[int, int]]
) -> float:
    total = 0
    for zone, (end, limit) in after.items():
        if zone not in before:
            continue
        start = before[zone][0]
        total += end - start if end >= start else end + limit - start  # the counter wrapped
    return total / 1_000_000


class EnergyMeter(Closeable):
    """Samples the counters on a thread and hands (ts, seconds, joules) to ``sink``."""

    def __init__(
        self,
        powercap_dir: Path,
        sink: Callable[[float, float, float], None],
        interval_s: float = 60.0,
    ) -> None:
        self.powercap_dir = powercap_dir
        self._sink = sink
        self._interval = interval_s
        self._stop = threading.Event()
        self._last = read_zones(powercap_dir)
        # The interval's length is measured on the monotonic clock: a wall clock stepped
        # meanwhile (NTP, a VM resumed) would make it negative, or hours long.
        self._last_at = time.monotonic()
        self.available = self._last is not None
        self._thread: threading.Thread | None = None
        if self.available:
            self._thread = threading.Thread(target=self._run, name="tether-energy", daemon=True)
            self._thread.start()

    def sample(self) -> None:
        now = read_zones(self.powercap_dir)
        at = time.monotonic()
        if now is None or self._last is None:
            return
        self._sink(time.time(), at - self._last_at, joules_between(self._last, now))
        self._last, self._last_at = now, at

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.sample()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self.sample()  # the last part-interval
