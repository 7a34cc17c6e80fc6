"""`make install` builds llama.cpp without AMX kernels on x86 only: compilers for other
CPUs refuse the flags, and a user's own CMAKE_ARGS still reach the build. On every CPU it
leaves out llama-cpp-python's multimodal library, which tether never loads."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _install_commands(arch: str, **env: str) -> str:
    """What `make install` would run on ``arch``, printed, not run."""
    made = subprocess.run(
        ["make", "-n", "-B", ".venv/.installed", f"ARCH={arch}"],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return next(line for line in made.stdout.splitlines() if "CMAKE_ARGS=" in line)


@pytest.mark.parametrize("arch", ["x86_64", "amd64"])
def test_x86_builds_leave_out_the_amx_kernels(arch: str) -> None:
    assert "-mno-amx-int8" in _install_commands(arch)


@pytest.mark.parametrize("arch", ["aarch64", "arm64", "riscv64"])
def test_other_cpus_get_no_x86_flags(arch: str) -> None:
    assert "amx" not in _install_commands(arch)


@pytest.mark.parametrize("arch", ["x86_64", "aarch64"])
def test_the_multimodal_library_is_not_built(arch: str) -> None:
    assert "-DLLAVA_BUILD=OFF" in _install_commands(arch)


_LOAD_THE_MODEL = """
import sys
from tether.engines.llamacpp import load_model
from tether.models import default_model_path
import tether.server.app, tether.cli.main
load_model(default_model_path()).close()
print(sorted(m for m in sys.modules if "mtmd" in m or "llava" in m))
"""


def test_the_multimodal_library_is_not_loaded() -> None:
    """Loading llama-cpp-python and the model, as the server does, loads nothing of the
    multimodal library, so a build without it serves."""
    loaded = subprocess.run(
        [sys.executable, "-c", _LOAD_THE_MODEL],
        capture_output=True,
        text=True,
        check=True,
    )
    assert loaded.stdout.strip() == "[]"


def test_the_users_own_cmake_args_still_reach_the_build() -> None:
    line = _install_commands("aarch64", CMAKE_ARGS="-DGGML_BLAS=ON")
    assignment = line.split(" .venv/bin/python")[0].strip()  # CMAKE_ARGS="...", as make runs it
    shell = subprocess.run(
        ["sh", "-c", f"{assignment} sh -c 'echo \"$CMAKE_ARGS\"'"],
        env={**os.environ, "CMAKE_ARGS": "-DGGML_BLAS=ON"},
        capture_output=True,
        text=True,
        check=True,
    )
    # Last, so that the user's own settings win over the Makefile's.
    assert shell.stdout.split() == ["-DLLAVA_BUILD=OFF", "-DGGML_BLAS=ON"]
