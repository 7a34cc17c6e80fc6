"""Cores and the CPU's name, where Linux's CPU sets and /proc are missing too (macOS)."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import pytest

from tether import cpus


def test_the_cores_are_this_processs_cpu_set() -> None:
    assert cpus.usable_cores() == len(os.sched_getaffinity(0))


def test_without_cpu_sets_every_core_counts(monkeypatch: pytest.MonkeyPatch) -> None:
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
