"""Limits a Linux container sets on this process, read from its cgroups (v2 and v1)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
MEMBERSHIP = Path("/proc/self/cgroup")

Reader = Callable[[Path], float | None]


def cgroup_limits(
    controller: str,
    read_v2: Reader,
    read_v1: Reader,
    root: Path = CGROUP_ROOT,
    membership: Path = MEMBERSHIP,
) -> list[float]:
    """Every limit ``controller`` sets on this process: read in the folder of each cgroup
    it belongs to and each folder above it, as a limit anywhere up the path applies."""
    try:
        lines = membership.read_text().splitlines()
    except OSError:
        return []
    limits: list[float] = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":  # v2: one unified tree
            limits += _along(root, path, read_v2)
        elif controller in controllers.split(","):
            # v1 mounts a controller joined with others (cpu,cpuacct) or alone (memory)
            for folder in (root / controllers, root / controller):
                if folder.is_dir():
                    limits += _along(folder, path, read_v1)
                    break
    return limits


def _along(top: Path, path: str, read: Reader) -> list[float]:
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
