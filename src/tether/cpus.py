"""The CPU this process runs on: how many cores it may use, and what the CPU is called."""

from __future__ import annotations

import math
import os
import platform
from collections.abc import Callable
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def usable_cores() -> int:
    """The cores this process may run on: its CPU set where the system keeps one (a Linux
    container's), else every core (macOS has no CPU sets); fewer where a CPU quota (a
    container's CPU limit, such as Kubernetes' resources.limits.cpu) allows less time.

    A quota counts: llama.cpp's threads wait for each other at every step, so one thread
    more than the quota runs makes the whole pool stall while the kernel throttles it.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    quota = cpu_quota()
    return cores if quota is None else max(1, min(cores, math.floor(quota)))


def cpu_quota(
    root: Path = CGROUP_ROOT, membership: Path = Path("/proc/self/cgroup")
) -> float | None:
    """The CPUs' worth of time this process's cgroups allow (cgroup v2 ``cpu.max``, v1
    ``cpu.cfs_quota_us``), the least along its path; None without a quota."""
    try:
        lines = membership.read_text().splitlines()
    except OSError:
        return None
    limits: list[float] = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":  # v2: cpu.max in the unified tree
            limits += _along(root, path, _v2_limit)
        elif "cpu" in controllers.split(","):
            for folder in (root / controllers, root / "cpu", root / "cpu,cpuacct"):
                if folder.is_dir():
                    limits += _along(folder, path, _v1_limit)
                    break
    return min(limits, default=None)


def _along(top: Path, path: str, read: Callable[[Path], float | None]) -> list[float]:
    """The limits set in ``top / path`` and each folder above it, up to ``top``."""
    found = []
    folder = top / path.strip("/")
    while True:
        limit = read(folder)
        if limit is not None:
            found.append(limit)
        if folder == top or top not in folder.parents:
            return found
        folder = folder.parent


def _v2_limit(folder: Path) -> float | None:
    try:
        quota, period = (folder / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        return None


def _v1_limit(folder: Path) -> float | None:
    try:
        quota = int((folder / "cpu.cfs_quota_us").read_text())
        period = int((folder / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return None if quota <= 0 or period <= 0 else quota / period


def cpu_name() -> str:
    """The CPU's model name, as Linux reports it, else as the platform does."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()
