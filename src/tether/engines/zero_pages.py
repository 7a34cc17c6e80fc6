"""Give back to the kernel the memory llama.cpp zeroes when it makes a context.

llama.cpp clears its KV cache when it allocates it, so every page of the cache is in
memory from the start, though no sequence has used it yet: 96 MB for the default model's
four sequences of 2,048 tokens. A page of private anonymous memory that is advised away
(``MADV_DONTNEED``) reads back as zeros, so handing back pages that hold only zeros
changes nothing the context reads; the kernel gives each page again when a sequence
first writes to it. Memory then grows with the cache's use, up to the same bound.

Only memory that appeared while the context was made is looked at, and only long runs of
zero pages in it, as a memset of a large buffer leaves them. While the pages are read
and advised away no other Python thread runs: every call keeps the GIL and the switch
interval is lifted, so nothing written meanwhile can be lost. The engine's own threads
do not run yet. Where transparent huge pages are always on, a page written again brings
back its whole 2 MB and the kernel gathers the rest too, so nothing is handed back.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import re
import sys
from collections.abc import Iterator

PAGE = mmap.PAGESIZE
MIN_RUN = 4 * 1024 * 1024  # shorter runs of zeros are left alone
_MADV_DONTNEED = 4
_CHUNK_PAGES = 256
# A private, writable mapping with no file behind it: "start-end rw-p 00000000 00:00 0".
# Read as bytes: the lines of mapped files end in their names, which may be in any encoding.
_ANONYMOUS = re.compile(rb"^([0-9a-f]+)-([0-9a-f]+) rw-p 0+ 00:00 0\s*$")

Region = tuple[int, int]


def anonymous_regions() -> set[Region] | None:
    """This process's private anonymous writable mappings, as (start, end) addresses;
    None where they cannot be read (not Linux, no /proc, no file descriptor left)."""
    regions: set[Region] = set()
    try:
        with open("/proc/self/maps", "rb") as maps:
            for line in maps:
                match = _ANONYMOUS.match(line)
                if match:
                    regions.add((int(match[1], 16), int(match[2], 16)))
    except OSError:
        return None
    return regions


def _huge_pages_always() -> bool:
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled", "rb") as setting:
            return b"[always]" in setting.read()
    except OSError:
        return False


def _new_pages(before: set[Region], after: set[Region]) -> Iterator[Region]:
    """The address ranges in ``after`` that no region in ``before`` covered."""
    old = sorted(before)
    for start, end in sorted(after - before):
        cuts = [(s, e) for s, e in old if s < end and e > start]
        position = start
        for s, e in cuts:
            if s > position:
                yield position, s
            position = max(position, e)
        if position < end:
            yield position, end


def _resident(libc: ctypes.PyDLL, start: int, end: int) -> bytes:
    """One byte per page of [start, end): its low bit says whether the page is in memory."""
    pages = (end - start) // PAGE
    vector = ctypes.create_string_buffer(pages)
    if libc.mincore(start, end - start, vector) != 0:  # unmapped meanwhile, or no mincore
        return bytes(pages)
    return vector.raw


def _zero_runs(libc: ctypes.PyDLL, memory: int, start: int, end: int) -> Iterator[Region]:
    """Runs of resident pages holding only zeros within [start, end), read through
    ``memory`` (``/proc/self/mem``), which fails where a page is gone instead of
    faulting."""
    resident = _resident(libc, start, end)
    buffer = ctypes.create_string_buffer(_CHUNK_PAGES * PAGE)
    zeros = ctypes.create_string_buffer(_CHUNK_PAGES * PAGE)

    def reads_zeros(address: int, size: int) -> bool:
        read = libc.pread64(memory, buffer, size, address)
        return bool(read == size and libc.memcmp(buffer, zeros, size) == 0)

    run_start: int | None = None
    for first in range(0, len(resident), _CHUNK_PAGES):
        flags = resident[first : first + _CHUNK_PAGES]
        address = start + first * PAGE
        size = len(flags) * PAGE
        if all(flag & 1 for flag in flags) and reads_zeros(address, size):
            run_start = address if run_start is None else run_start
            continue
        if not any(flag & 1 for flag in flags):  # none of it in memory: nothing to give
            if run_start is not None:
                yield run_start, address
                run_start = None
            continue
        for page, flag in enumerate(flags):  # part of the chunk is absent or holds data
            here = address + page * PAGE
            if flag & 1 and reads_zeros(here, PAGE):
                run_start = here if run_start is None else run_start
            elif run_start is not None:
                yield run_start, here
                run_start = None
    if run_start is not None:
        yield run_start, end


def _libc() -> ctypes.PyDLL | None:
    """The C library's calls this needs, each keeping the GIL (PyDLL); None without them."""
    libc = ctypes.PyDLL(None, use_errno=True)  # the process's own symbols: libc's among them
    try:
        libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
        libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        # pread64 takes a 64-bit offset on 32-bit systems too, where pread's is 32 bits.
        libc.pread64.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_int64]
        libc.pread64.restype = ctypes.c_ssize_t
        libc.memcmp.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_size_t]
    except AttributeError:
        return None
    return libc


def release_zero_pages(before: set[Region] | None) -> int:
    """Hand back long runs of zero pages in memory mapped since ``before`` was taken;
    the bytes handed back (0 where the system offers no way)."""
    if before is None or _huge_pages_always():
        return 0
    libc = _libc()
    after = anonymous_regions()
    if libc is None or after is None:
        return 0
    try:
        memory = os.open("/proc/self/mem", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return 0
    # From here on nothing gives up the GIL, and the interpreter is not to hand it over.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(60.0)
    released = 0
    try:
        for start, end in _new_pages(before, after):
            for run_start, run_end in _zero_runs(libc, memory, start, end):
                size = run_end - run_start
                if size >= MIN_RUN and libc.madvise(run_start, size, _MADV_DONTNEED) == 0:
                    released += size
    finally:
        sys.setswitchinterval(interval)
        os.close(memory)
    return released
