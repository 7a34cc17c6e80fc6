"""Run untrusted Python (generated code, its tests, callable snippets) and learn only how
it ended.

One subprocess per run, in a fresh temporary folder that is removed afterwards, with no
network, capped memory, CPU time, file size and processes, a wall-clock timeout, a pinned
``TZ`` and ``PYTHONHASHSEED``, and an audit hook that stops writes outside its folder,
reads of the user's files, new processes and signals to others, backed where Linux has
Landlock by the kernel's own confinement (see ``child.py``). The
verdict comes from the exit status, never from what the program printed.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

_CHILD = Path(__file__).with_name("child.py")
_FAILED, _SYNTAX, _VIOLATION, _OUT_OF_MEMORY = 1, 2, 3, 4
_TAIL = 2000  # characters of stderr kept for a failure's story
_RESULT_LIMIT = 1 << 20  # bytes of result.json read back
_MARK_LIMIT = 1 << 12  # bytes of sandbox.json and violation.txt read back


class Status(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    TIMEOUT = "timeout"
    OUT_OF_MEMORY = "out of memory"
    SYNTAX_ERROR = "syntax error"
    VIOLATION = "sandbox violation"


@dataclass(frozen=True)
class Limits:
    timeout_s: float = 10.0  # wall clock
    memory_mb: int = 4096  # address space: some reference solutions need gigabytes
    file_mb: int = 16  # largest file the program may write
    processes: int = 64
    # Descriptors open at once: each socket pair or pipe holds kernel memory, which the
    # address space limit does not count (at the inherited limit, gigabytes of it).
    open_files: int = 1024
    # What the program may add to its folder, all files together: a file each at the file
    # limit would otherwise fill the disk under /tmp within its time.
    disk_mb: int = 256
    entries: int = 10_000


@dataclass(frozen=True)
class Outcome:
    status: Status
    duration_s: float
    exit_code: int | None
    detail: str = ""  # what a violation tried, or the tail of stderr
    network: str = ""  # how the network was taken away
    kernel: str = ""  # how the kernel confines it besides the hook: "landlock N" or "none"
    syscalls: str = ""  # the system calls refused it: "seccomp", or "none"
    mounts: str = ""  # "read-only" (all but its folder, in a mount namespace), or "none"
    # What the program wrote to ``result.json`` (figures such as coverage): data, never
    # the verdict, which comes from the exit status alone.
    data: dict[str, Any] | None = None
    stopped: bool = False  # ended by the caller's ``stop``, not by the program: no verdict

    @property
    def passed(self) -> bool:
        return self.status is Status.PASSED


@dataclass(frozen=True)
class Sandbox:
    """Where runs start: which Python, which import paths, which folders it may read."""

    python: str = sys.executable
    path: Sequence[str] = field(default_factory=lambda: _package_paths())
    readable: Sequence[str] = field(default_factory=lambda: _readable_roots())
    network_namespace: bool = True

    def run(
        self,
        program: str,
        limits: Limits = Limits(),
        files: Mapping[str, str] = {},
        stop: threading.Event | None = None,
    ) -> Outcome:
        """Run ``program`` (Python source) with ``files`` beside it; how did it end?

        ``stop`` set (the command is being interrupted) ends the program at once, not at its
        time limit: failed, with "stopped" for its story."""
        folder = Path(tempfile.mkdtemp(prefix="tether-sandbox-"))
        try:
            return self._run_in(folder, program, limits, files, stop)
        finally:
            _remove(folder)

    def _run_in(
        self,
        folder: Path,
        program: str,
        limits: Limits,
        files: Mapping[str, str],
        stop: threading.Event | None,
    ) -> Outcome:
        _write(folder / "program.py", program)
        for name, text in files.items():
            target = folder / name
            target.parent.mkdir(parents=True, exist_ok=True)
            _write(target, text)
        passed = 32 + secrets.randbelow(90)  # the program cannot know it, so cannot fake it
        orders = {
            "folder": str(folder),
            "path": list(self.path),
            "readable": list(self.readable),
            "network_namespace": self.network_namespace,
            "memory_bytes": limits.memory_mb * 1024 * 1024,
            "cpu_seconds": max(1, int(limits.timeout_s) + 1),
            "file_bytes": limits.file_mb * 1024 * 1024,
            "processes": limits.processes,
            "open_files": limits.open_files,
            "passed": passed,
        }
        env = {
            "PATH": "/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "TZ": "UTC",
            "PYTHONHASHSEED": "0",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONUTF8": "1",
        }
        oom_kills_before = _oom_kills()
        grown = _Growth(folder, limits)
        started = time.perf_counter()
        # What it prints counts for nothing, so is not kept, and of stderr only the end, for
        # a failure's story: as files they would count against the file size limit, and a
        # correct solution that prints a lot would fail.
        stderr = _Tail()
        with stderr:
            process = subprocess.Popen(
                [self.python, "-s", "-S", str(_CHILD)],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=stderr.write_end,
                cwd=folder,
                env=env,
                start_new_session=True,  # its own process group, all killed together
            )
            stderr.started()
            killed = stopped = False
            try:
                ended = _wait(process, _orders_line(orders), limits.timeout_s, stop, grown)
                stopped = not ended and not grown.exceeded
            except subprocess.TimeoutExpired:
                killed = True
                _kill_group(process)
            finally:
                _kill_group(process)  # anything it left behind goes with it
                if process.stdin is not None:  # stopped before its orders were all handed
                    process.stdin.close()
        duration = time.perf_counter() - started
        if stopped:
            return Outcome(Status.FAILED, duration, process.returncode, "stopped", stopped=True)
        if grown.exceeded:  # a limit it ran into, as the file size limit: not an escape
            return Outcome(Status.FAILED, duration, process.returncode, grown.exceeded)
        oom_kills_during = _oom_kills() > oom_kills_before
        return _outcome(
            folder, process.returncode, passed, killed, duration, oom_kills_during, stderr.text()
        )


class _Tail:
    """A pipe for a program's stderr, read in a thread that keeps only its last bytes."""

    KEPT = 64 * 1024

    def __init__(self) -> None:
        self._read_end, self.write_end = os.pipe()
        self._kept = bytearray()
        self._reader = threading.Thread(
            target=self._read, name="tether-sandbox-stderr", daemon=True
        )

    def __enter__(self) -> _Tail:
        return self

    def started(self) -> None:
        """The program holds its end now: ours goes, so the pipe ends when the program's
        processes do."""
        os.close(self.write_end)
        self.write_end = -1
        self._reader.start()

    def _read(self) -> None:
        try:
            with contextlib.suppress(OSError):
                while piece := os.read(self._read_end, 1 << 16):
                    self._kept += piece
                    del self._kept[: -self.KEPT]
        finally:
            os.close(self._read_end)

    def __exit__(self, *_: object) -> None:
        if self.write_end >= 0:  # the program never started
            os.close(self.write_end)
            self.write_end = -1
            os.close(self._read_end)
            return
        # Its processes were killed: the pipe has ended, and the reader closes its end. One
        # that outlived the run (where no filter stops a fork) would keep the pipe open: its
        # end closed under the reader, the reader would read the next file to take that
        # number, a client's connection in a server.
        self._reader.join(timeout=2.0)

    def text(self) -> str:
        return self._kept.decode("utf-8", "replace")


class _Growth:
    """What a program added to its folder, against ``disk_mb`` and ``entries``."""

    def __init__(self, folder: Path, limits: Limits) -> None:
        self.folder, self.limits = folder, limits
        self.bytes, self.entries = _folder_size(folder)  # what it was given
        self.exceeded = ""  # which limit it went past, once it has
        self._next = 0.0  # when to look again

    def past_limits(self) -> bool:
        began = time.monotonic()
        if began < self._next:
            return False
        size, entries = _folder_size(self.folder)
        # A large folder (a project under test) is walked less often: a tenth of the time
        # at most goes to walking it.
        self._next = began + 10 * (time.monotonic() - began)
        if size - self.bytes > self.limits.disk_mb * 1024 * 1024:
            self.exceeded = (
                f"the program kept more than {self.limits.disk_mb} MiB in its folder "
                "(the sandbox's disk limit)"
            )
        elif entries - self.entries > self.limits.entries:
            self.exceeded = (
                f"the program made more than {self.limits.entries:,} files and folders "
                "(the sandbox's limit)"
            )
        return bool(self.exceeded)


def _folder_size(folder: Path) -> tuple[int, int]:
    """Bytes the files under ``folder`` take on disk, and how many entries it holds."""
    size = entries = 0
    for root, dirs, files in os.walk(folder):
        for name in (*dirs, *files):
            entries += 1
            with contextlib.suppress(OSError):  # gone meanwhile
                size += os.lstat(os.path.join(root, name)).st_blocks * 512
    return size, entries


_GROWTH_EVERY_S = 0.1  # also how soon a stop is seen


def _wait(
    process: subprocess.Popen[bytes],
    orders: bytes,
    timeout_s: float,
    stop: threading.Event | None,
    grown: _Growth,
) -> bool:
    """Hand ``process`` its orders and wait for it to end: True once it has, False when
    ``stop`` was set first or its folder grew past its limits; TimeoutExpired past
    ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    given: bytes | None = orders  # once: communicate again after a timeout loses nothing
    while stop is None or not stop.is_set():
        left = deadline - time.monotonic()
        try:
            process.communicate(given, timeout=max(0.0, min(left, _GROWTH_EVERY_S)))
            return True
        except subprocess.TimeoutExpired:
            if left <= _GROWTH_EVERY_S:
                raise
        given = None
        if grown.past_limits():
            break
    return False


def _remove(folder: Path) -> None:
    """Remove a run's folder whole. A folder in it that the program closed to its own user
    (``chmod 0``, which it may do in its folder) is opened up first, or all it held would
    stay under /tmp after the run, up to the disk limit each time."""
    shutil.rmtree(folder, ignore_errors=True)
    if not folder.exists():
        return
    for root, dirs, _files in os.walk(folder):  # each folder opened before it is listed
        for name in dirs:
            path = os.path.join(root, name)
            if not os.path.islink(path):  # its processes are gone: nothing swaps it now
                with contextlib.suppress(OSError):
                    os.chmod(path, 0o700)
    shutil.rmtree(folder, ignore_errors=True)


def _write(path: Path, text: str) -> None:
    # A lone surrogate is written as the bytes it stands for, which are not UTF-8: the
    # program then fails as a syntax error, not the scoring as a whole.
    path.write_bytes(text.encode("utf-8", "surrogatepass"))


def _orders_line(orders: Mapping[str, object]) -> bytes:
    return json.dumps(orders).encode() + b"\n"


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # already gone
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _outcome(
    folder: Path,
    code: int,
    passed: int,
    killed: bool,
    duration: float,
    oom_kills_during: bool,
    stderr: str,
) -> Outcome:
    confinement = _read(folder / "sandbox.json")
    if killed or code in (-signal.SIGXCPU, -signal.SIGALRM):
        status = Status.TIMEOUT
    elif code == passed:
        status = Status.PASSED
    # A program may end itself with any status (os._exit): the sandbox's own are believed
    # only with what the child leaves before using them. Its confinement is written once
    # the source has compiled, and the hook writes why before it ends a program.
    elif code == _SYNTAX and not confinement:
        status = Status.SYNTAX_ERROR
    elif code == _VIOLATION and (folder / "violation.txt").exists():
        status = Status.VIOLATION
    elif (code == _OUT_OF_MEMORY and (folder / "memory.txt").exists()) or (
        code == -signal.SIGKILL and oom_kills_during  # the kernel's OOM killer, not itself
    ):
        status = Status.OUT_OF_MEMORY
    else:
        status = Status.FAILED
    detail = _read(folder / "violation.txt") if status is Status.VIOLATION else stderr[-_TAIL:]
    if status is Status.FAILED and not detail.strip():  # it left no traceback to show
        if code < 0:
            detail = f"ended by signal {_signal_name(-code)}"
        else:  # os._exit, or its output closed: it ended before its tests did
            detail = f"exited with status {code} before its tests finished, saying nothing"
    try:
        how = json.loads(confinement) if confinement else {}
        network, kernel = str(how.get("network", "")), str(how.get("kernel", ""))
        syscalls, mounts = str(how.get("syscalls", "")), str(how.get("mounts", ""))
    except (ValueError, AttributeError):
        network = kernel = syscalls = mounts = ""
    data = _result(folder)
    return Outcome(status, duration, code, detail, network, kernel, syscalls, mounts, data)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


def _oom_kills() -> int:
    """How many processes the kernel's out-of-memory killer has ended since boot (Linux
    4.13+; 0 where unknown): a SIGKILL during a run that moved it was most likely its."""
    try:
        with open("/proc/vmstat", "rb") as handle:
            for line in handle:
                if line.startswith(b"oom_kill "):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _result(folder: Path) -> dict[str, Any] | None:
    text = _read(folder / "result.json", _RESULT_LIMIT)
    try:
        data = json.loads(text) if text else None
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _read(path: Path, limit: int = _MARK_LIMIT) -> str:
    """What a file the program left in its folder says, read by tether's own user: only a
    plain file of at most ``limit`` bytes with no other name. A link would lead to a file
    of that user's (its signing key, read back as a violation's story), a named pipe would
    hold the reader forever, a hard link is a file from elsewhere; each reads as nothing."""
    try:
        seen = os.lstat(path)
        if not stat.S_ISREG(seen.st_mode) or seen.st_nlink != 1 or seen.st_size > limit:
            return ""
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return ""
    with os.fdopen(fd, "rb") as handle:
        opened = os.fstat(fd)
        if (opened.st_dev, opened.st_ino) != (seen.st_dev, seen.st_ino):
            return ""
        return handle.read(limit).decode("utf-8", "replace")


def _package_paths() -> list[str]:
    """Where the program's imports come from: this Python's packages, without .pth files."""
    paths = sysconfig.get_paths()
    return list(dict.fromkeys([paths["purelib"], paths["platlib"]]))


def _readable_roots() -> list[str]:
    """Folders a program may read besides its own: the Python installation and system data."""
    paths = sysconfig.get_paths()
    roots = [
        sys.prefix,
        sys.base_prefix,
        sys.exec_prefix,
        paths["stdlib"],
        paths["platstdlib"],
        paths["purelib"],
        paths["platlib"],
        "/usr/lib",
        "/usr/share/zoneinfo",
        "/etc/localtime",
        "/dev/null",
        "/dev/urandom",
        "/proc/self",
    ]
    return list(dict.fromkeys(roots))
