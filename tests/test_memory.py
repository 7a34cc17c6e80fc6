"""The memory a process may use: a container's limit, read from its cgroups, caps the
machine's memory that /proc reports, and `tether doctor` measures the engine against it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import make_settings
from tests.helpers import cgroup_tree
from tether import memory
from tether.cli import info
from tether.models import default_model_path

GIB = 2**30


@pytest.mark.parametrize(
    ("files", "membership", "limit"),
    [
        # cgroup v2, a Kubernetes pod limited to 2 GiB, its container to 1 GiB
        (
            {"kubepods/pod1/memory.max": f"{2 * GIB}\n", "kubepods/pod1/c1/memory.max": f"{GIB}\n"},
            "0::/kubepods/pod1/c1\n",
            GIB,
        ),
        # the pod's limit is the lower one: it applies to the container inside it too
        (
            {"kubepods/pod1/memory.max": f"{GIB}\n", "kubepods/pod1/c1/memory.max": "max\n"},
            "0::/kubepods/pod1/c1\n",
            GIB,
        ),
        ({"memory.max": "max\n"}, "0::/\n", None),
        # cgroup v1, docker --memory 3g; its cpu controller is mounted apart
        (
            {"memory/docker/abc/memory.limit_in_bytes": f"{3 * GIB}\n"},
            "4:cpu,cpuacct:/docker/abc\n12:memory:/docker/abc\n",
            3 * GIB,
        ),
        ({"memory/memory.limit_in_bytes": "garbage\n"}, "12:memory:/\n", None),
        ({}, "garbage\n", None),
    ],
)
def test_a_memory_limit_is_read_along_the_cgroup_path(
    tmp_path: Path, files: dict[str, str], membership: str, limit: int | None
) -> None:
    root, listed = cgroup_tree(tmp_path, files, membership)
    assert memory.memory_limit(root, listed) == limit


def test_a_limit_below_the_machine_s_memory_is_what_may_be_used(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    monkeypatch.setattr(memory, "memory_limit", lambda: GIB // 2)
    assert memory.usable_memory() == (GIB // 2, True)
    # v1's "no limit" is a number near 2**63: the machine's memory stands
    monkeypatch.setattr(memory, "memory_limit", lambda: 2**63 - 4096)
    assert memory.usable_memory() == (physical, False)
    monkeypatch.setattr(memory, "memory_limit", lambda: None)
    assert memory.usable_memory() == (physical, False)


def test_doctor_names_a_container_limit_the_engine_would_pass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pod limited to 64 MiB: the model alone is larger, and the kernel would kill the
    server as it loads; the host's memory, which /proc shows, would have passed it."""
    settings = make_settings(tmp_path)
    fits = info._memory_check(settings, default_model_path())
    assert fits["ok"], fits
    monkeypatch.setattr(info, "usable_memory", lambda: (64 * 2**20, True))
    check = info._memory_check(settings, default_model_path())
    assert not check["ok"]
    assert "more than this container's memory limit of 64 MiB" in check["detail"]
    assert "engine.n_ctx" in check["fix"]
