"""The memory this process may use: the machine's, or less where its cgroups (a container's
memory limit, such as Kubernetes' resources.limits.memory) allow less."""

from __future__ import annotations

import os
from pathlib import Path

from tether.cgroups import CGROUP_ROOT, MEMBERSHIP, cgroup_limits


def usable_memory() -> tuple[int, bool]:
    """Bytes this process may use before the kernel kills it, and whether a cgroup's limit
    sets them: a container sees the host's memory in /proc, so its limit is read apart."""
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    limit = memory_limit()
    return (physical, False) if limit is None or limit >= physical else (limit, True)


def memory_limit(root: Path = CGROUP_ROOT, membership: Path = MEMBERSHIP) -> int | None:
    """The least memory limit along this process's cgroups (v2 ``memory.max``, v1
    ``memory.limit_in_bytes``) in bytes; None without one."""
    limits = cgroup_limits("memory", _v2_limit, _v1_limit, root, membership)
    return int(min(limits)) if limits else None


def _v2_limit(folder: Path) -> float | None:
    try:
        text = (folder / "memory.max").read_text().strip()
        return None if text == "max" else int(text)
    except (OSError, ValueError):
        return None


def _v1_limit(folder: Path) -> float | None:
    # v1 writes a page-rounded 2**63 for "no limit": min() with the machine's keeps it moot.
    try:
        limit = int((folder / "memory.limit_in_bytes").read_text())
    except (OSError, ValueError):
        return None
    return None if limit <= 0 else limit
