"""A llama.cpp built with AMX kernels is tried in a child before the engine serves: a
build that crashes on this CPU is refused with the rebuild that fixes it, once per build."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tether.engines.decode_probe import ProbeResult, check_amx_build, probe_decode
from tether.errors import ModelError
from tether.models import default_model_path

AMX = "CPU : AVX2 = 1 | AVX512 = 1 | AMX_INT8 = 1 | LLAMAFILE = 1 | "
NO_AMX = "CPU : AVX2 = 1 | AVX512 = 1 | LLAMAFILE = 1 | "


class Probe:
    def __init__(self, result: ProbeResult) -> None:
        self.result = result
        self.calls = 0

    def __call__(self, model: Path) -> ProbeResult:
        self.calls += 1
        return self.result


def test_a_build_without_amx_kernels_is_not_probed(tmp_path: Path) -> None:
    probe = Probe(ProbeResult(False, "crashed (SIGSEGV) while decoding", "x", crashed=True))
    check_amx_build(default_model_path(), NO_AMX, tmp_path, probe)
    assert probe.calls == 0


def test_amx_kernels_that_crash_here_are_refused_with_the_rebuild(tmp_path: Path) -> None:
    crash = [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGILL)"]
    with pytest.raises(ModelError) as refused:
        check_amx_build(
            default_model_path(), AMX, tmp_path, lambda model: probe_decode(model, crash)
        )
    message = refused.value.message
    assert "crashed (SIGILL) while decoding" in message
    assert "-mno-amx-int8" in message and "--force-reinstall" in message
    assert not list(tmp_path.iterdir())  # nothing remembered: the next start probes again


def test_amx_kernels_that_work_are_probed_once(tmp_path: Path) -> None:
    probe = Probe(ProbeResult(True, "decodes the model on this CPU"))
    cache = tmp_path / "cache"
    for _ in range(3):
        check_amx_build(default_model_path(), AMX, cache, probe)
    assert probe.calls == 1
    # Another build (a reinstalled llama.cpp reports other features) is probed afresh.
    check_amx_build(default_model_path(), AMX + "OPENMP = 1 | ", cache, probe)
    assert probe.calls == 2


def test_other_failures_are_left_to_the_engines_own_load(tmp_path: Path) -> None:
    probe = Probe(ProbeResult(False, "no answer in 120 s", "see `top`"))
    check_amx_build(default_model_path(), AMX, tmp_path, probe)  # no error here
    check_amx_build(default_model_path(), AMX, tmp_path, probe)
    assert probe.calls == 2  # and nothing remembered


def test_the_embedded_engine_will_not_start_on_amx_kernels_that_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tether.engines import decode_probe, llamacpp
    from tether.settings import EngineSettings

    monkeypatch.setattr(llamacpp, "_system_info", lambda: AMX)
    monkeypatch.setattr(decode_probe, "_PROBE", "import os, signal; os.kill(os.getpid(), 11)")
    with pytest.raises(ModelError, match=r"crashed \(SIGSEGV\).*rebuild llama-cpp-python"):
        llamacpp.LlamaCppEngine(EngineSettings(), default_model_path(), tmp_path)


def test_a_cache_it_cannot_write_only_costs_a_probe_at_each_start(tmp_path: Path) -> None:
    probe = Probe(ProbeResult(True, "decodes the model on this CPU"))
    blocked = tmp_path / "file"
    blocked.write_text("")  # a file where the cache folder would be
    check_amx_build(default_model_path(), AMX, blocked / "cache", probe)
    check_amx_build(default_model_path(), AMX, blocked / "cache", probe)
    assert probe.calls == 2
