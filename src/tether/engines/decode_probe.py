"""Whether llama.cpp decodes a model on this CPU, found out in a child process.

A llama.cpp built with kernels the CPU cannot run kills the process that decodes. Its AMX
matrix kernels, built in wherever the compiler sees a CPU that reports AMX, crash on
virtual machines that report AMX but do not let a process use it. The child takes the
crash; the parent says which rebuild fixes it. ``tether doctor`` always probes; the
embedded engine probes before it serves only a build with AMX kernels, once per build,
model and CPU.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import platform
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tether.cpus import cpu_name
from tether.databases import private_folder
from tether.errors import ModelError

_PROBE = """
import sys
from llama_cpp import Llama
llm = Llama(sys.argv[1], n_ctx=128, verbose=False)
llm.eval(llm.tokenize(b"def add(a, b):\\n    return a + b\\n\\nprint(add(1, 2))"))
llm.eval(llm.tokenize(b" #", add_bos=False))
"""
_NO_AMX = "-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
_REBUILD = (
    f"rebuild llama-cpp-python for this CPU without AMX: CMAKE_ARGS=\"-DCMAKE_C_FLAGS='{_NO_AMX}' "
    f"-DCMAKE_CXX_FLAGS='{_NO_AMX}'\" pip install --force-reinstall --no-cache-dir "
    "--no-deps llama-cpp-python (or delete .venv and run `make serve`)"
)
_AMX_KERNELS = "AMX_INT8 = 1"  # how llama_print_system_info names them


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    detail: str
    fix: str = ""
    crashed: bool = False  # killed by a signal: the build, not the model or the load


def probe_decode(
    model: Path, command: Sequence[str] | None = None, timeout_s: float = 120
) -> ProbeResult:
    """Decode a few tokens of ``model`` in a child; ``command`` replaces the child's."""
    # -P: nothing from the folder tether runs in is imported in place of the standard library.
    argv = list(command) if command else [sys.executable, "-P", "-c", _PROBE, str(model)]
    try:
        child = subprocess.run(argv, capture_output=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return ProbeResult(
            False,
            f"no answer in {timeout_s:g} s",
            "see whether other processes take every core (`top`); if not, set "
            "engine.n_threads below the number of cores",
        )
    if child.returncode == 0:
        return ProbeResult(True, "decodes the model on this CPU")
    if child.returncode < 0:
        why = f"crashed ({signal.Signals(-child.returncode).name}) while decoding"
        return ProbeResult(False, why, _REBUILD, crashed=True)
    last = (child.stderr.decode(errors="replace").strip().splitlines() or [""])[-1]
    return ProbeResult(
        False,
        f"failed to load or decode it (exit {child.returncode}): {last}",
        f"check that {model} is a whole GGUF file (reinstall the package it came from), "
        "or set engine.model_path to another",
    )


def check_amx_build(
    model: Path,
    system_info: str,
    cache_dir: Path,
    probe: Callable[[Path], ProbeResult] = probe_decode,
) -> None:
    """Refuse to serve with AMX kernels that crash on this CPU, rather than crash on the
    first request. A build without them is not probed; a pass is remembered."""
    if _AMX_KERNELS not in system_info:
        return
    passed = cache_dir / f"decode-probe-{_fingerprint(model, system_info)}.ok"
    if passed.exists():
        return
    result = probe(model)
    if result.ok:
        with contextlib.suppress(OSError):  # a cache it cannot write: probe at each start
            private_folder(cache_dir)
            passed.touch()
    elif result.crashed:
        raise ModelError(f"llama.cpp {result.detail} a test prompt on this CPU; {result.fix}")
    # Other failures are the engine's to report as it loads the model.


def _fingerprint(model: Path, system_info: str) -> str:
    stat = model.stat()
    parts = (
        importlib.metadata.version("llama-cpp-python"),
        system_info,
        platform.node(),  # a VM image moves between hosts; the probe is per machine
        cpu_name(),
        str(model.resolve()),
        str(stat.st_size),
        str(stat.st_mtime_ns),
    )
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]
