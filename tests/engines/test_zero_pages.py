"""Zeroed memory made while a context is built goes back to the kernel, and only that."""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import mmap
import os
import sys
from pathlib import Path

import pytest

from tests.conftest import make_settings
from tether.engines import zero_pages
from tether.engines.llamacpp import LlamaCppEngine, kv_cache_bytes, load_model
from tether.engines.zero_pages import PAGE, anonymous_regions, release_zero_pages
from tether.models import default_model_path

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/self/maps")
MB = 1024 * 1024


def private_memory(size: int) -> mmap.mmap:
    return mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)


def resident_pages(memory: mmap.mmap) -> list[bool]:
    libc = ctypes.PyDLL(ctypes.util.find_library("c"))
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
    address = ctypes.addressof(ctypes.c_char.from_buffer(memory))
    flags = zero_pages._resident(libc, address, address + len(memory))
    return [bool(flag & 1) for flag in flags]


def test_new_pages_leave_out_what_was_mapped_before() -> None:
    before = {(0x1000, 0x3000), (0x8000, 0x9000)}
    after = {(0x1000, 0x3000), (0x0000, 0x5000), (0x6000, 0xA000)}
    assert list(zero_pages._new_pages(before, after)) == [
        (0x0000, 0x1000),
        (0x3000, 0x5000),
        (0x6000, 0x8000),
        (0x9000, 0xA000),
    ]


def test_long_zero_runs_are_given_back_and_data_stays() -> None:
    before = anonymous_regions()
    memory = private_memory(12 * MB)
    memory[:] = bytes(len(memory))  # every page written, as a memset leaves them
    marker = 6 * MB + 123
    memory[marker] = 0x78
    assert all(resident_pages(memory))

    released = release_zero_pages(before)

    assert released >= 12 * MB - PAGE
    resident = resident_pages(memory)
    assert resident[marker // PAGE]  # the page with data was left alone
    assert sum(resident) <= 4  # the rest went back to the kernel
    assert memory[marker] == 0x78
    assert memory[:marker].count(0) == marker  # and still reads as zeros
    assert memory[marker + 1 :].count(0) == len(memory) - marker - 1
    memory.close()


def test_short_runs_and_memory_mapped_before_are_left_alone() -> None:
    older = private_memory(8 * MB)
    older[:] = bytes(len(older))
    before = anonymous_regions()
    short = private_memory(zero_pages.MIN_RUN + 8 * PAGE)
    short[:] = bytes(len(short))
    short[len(short) // 2] = 1  # two runs of zeros, each shorter than MIN_RUN

    release_zero_pages(before)

    assert all(resident_pages(older))
    assert all(resident_pages(short))
    older.close()
    short.close()


def test_a_mapped_file_named_beyond_ascii_is_read_past(tmp_path: Path) -> None:
    """/proc/self/maps ends the line of a mapped file in its name's bytes: a model whose
    name was not ASCII (or not UTF-8) stopped the engine from starting."""
    named = os.path.join(os.fsencode(tmp_path), b"mod\xe8le-\xc3\xa9.gguf")
    with open(named, "wb") as out:
        out.write(bytes(PAGE))
    before = anonymous_regions()
    with open(named, "rb") as model, mmap.mmap(model.fileno(), 0, prot=mmap.PROT_READ):
        memory = private_memory(8 * MB)
        memory[:] = bytes(len(memory))
        assert release_zero_pages(before) >= 8 * MB
        assert not any(resident_pages(memory))
        memory.close()


def test_without_proc_nothing_is_given_back(monkeypatch: pytest.MonkeyPatch) -> None:
    before = anonymous_regions()
    memory = private_memory(8 * MB)
    memory[:] = bytes(len(memory))
    real_open = os.open

    def refuse_proc(path: str, *args: int) -> int:
        if path == "/proc/self/mem":
            raise PermissionError(path)
        return int(real_open(path, *args))

    monkeypatch.setattr(os, "open", refuse_proc)
    assert release_zero_pages(before) == 0
    assert all(resident_pages(memory))
    memory.close()


def test_nothing_is_given_back_without_a_view_of_what_was_mapped_before() -> None:
    memory = private_memory(8 * MB)
    memory[:] = bytes(len(memory))
    assert release_zero_pages(None) == 0
    assert all(resident_pages(memory))
    memory.close()


def test_nothing_is_given_back_where_huge_pages_are_always_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    before = anonymous_regions()
    memory = private_memory(8 * MB)
    memory[:] = bytes(len(memory))
    monkeypatch.setattr(zero_pages, "_huge_pages_always", lambda: True)
    assert release_zero_pages(before) == 0
    assert all(resident_pages(memory))
    memory.close()


def anonymous_kib() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        line = next(line for line in status if line.startswith("RssAnon:"))
    return int(line.split()[1])


def test_the_engine_holds_its_kv_cache_in_memory_only_once_used(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    cache_bytes = kv_cache_bytes(
        load_model(default_model_path(), vocab_only=True).metadata(), settings.engine
    )
    before = anonymous_kib()
    engine = LlamaCppEngine(settings.engine, default_model_path(), tmp_path / "cache")
    grown = (anonymous_kib() - before) * 1024
    asyncio.run(engine.close())
    assert cache_bytes > 50 * MB  # four sequences of 2,048 tokens
    assert grown < cache_bytes / 4
