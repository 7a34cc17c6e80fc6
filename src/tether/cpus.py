"""The CPU this process runs on: how many cores it may use, and what the CPU is called."""

from __future__ import annotations

import math
import os
import platform
from pathlib import Path

from tether.cgroups import CGROUP_ROOT, MEMBERSHIP, cgroup_limits


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


def cpu_quota(root: Path = CGROUP_ROOT, membership: Path = MEMBERSHIP) -> float | None:
    """The CPUs' worth of time this process's cgroups allow (cgroup v2 ``cpu.max``, v1
    ``cpu.cfs_quota_us``), the least along its path; None without a quota."""
    limits = cgroup_limits("cpu", _v2_limit, _v1_limit, root, membership)
    return min(limits, default=None)


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
