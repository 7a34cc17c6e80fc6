"""Cores and the CPU's name, where Linux's CPU sets and /proc are missing too (macOS)."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import pytest

from tests.helpers import cgroup_tree
from tether import cpus


def test_the_cores_are_this_processs_cpu_set_within_its_quota() -> None:
    quota = cpus.cpu_quota()
    allowed = len(os.sched_getaffinity(0))
    expected = allowed if quota is None else max(1, min(allowed, int(quota)))
    assert cpus.usable_cores() == expected


@pytest.mark.parametrize(
    ("files", "membership", "quota"),
    [
        # cgroup v2, a Kubernetes pod limited to 1.5 CPUs, its container to 2
        (
            {
                "kubepods/pod1/cpu.max": "150000 100000\n",
                "kubepods/pod1/c1/cpu.max": "200000 100000\n",
            },
            "0::/kubepods/pod1/c1\n",
            1.5,
        ),
        ({"cpu.max": "max 100000\n"}, "0::/\n", None),
        # cgroup v1, docker --cpus 3
        (
            {
                "cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "300000\n",
                "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n",
            },
            "12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n",
            3.0,
        ),
        (
            {"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"},
            "3:cpu:/\n",
            None,
        ),
        ({}, "garbage\n", None),
    ],
)
def test_a_cpu_quota_is_read_along_the_cgroup_path(
    tmp_path: Path, files: dict[str, str], membership: str, quota: float | None
) -> None:
    root, listed = cgroup_tree(tmp_path, files, membership)
    assert cpus.cpu_quota(root, listed) == quota


def test_a_quota_below_the_cpu_set_caps_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)))
    monkeypatch.setattr(cpus, "cpu_quota", lambda: 2.5)
    assert cpus.usable_cores() == 2
    monkeypatch.setattr(cpus, "cpu_quota", lambda: 0.2)
    assert cpus.usable_cores() == 1
    monkeypatch.setattr(cpus, "cpu_quota", lambda: None)
    assert cpus.usable_cores() == 64


def test_without_cpu_sets_every_core_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpus, "cpu_quota", lambda: None)
    monkeypatch.delattr(os, "sched_getaffinity")
    monkeypatch.setattr(os, "cpu_count", lambda: 10)
    assert cpus.usable_cores() == 10
    monkeypatch.setattr(os, "cpu_count", lambda: None)  # "cannot tell"
    assert cpus.usable_cores() == 1


def test_the_cpu_is_named_from_proc_or_else_the_platform(monkeypatch: pytest.MonkeyPatch) -> None:
    if Path("/proc/cpuinfo").exists() and "model name" in Path("/proc/cpuinfo").read_text():
        assert cpus.cpu_name() and cpus.cpu_name() in Path("/proc/cpuinfo").read_text()

    def missing(self: Path, *args: object, **kwargs: object) -> str:
        raise FileNotFoundError(self)

    monkeypatch.setattr(Path, "read_text", missing)
    monkeypatch.setattr(platform, "processor", lambda: "arm")
    assert cpus.cpu_name() == "arm"
