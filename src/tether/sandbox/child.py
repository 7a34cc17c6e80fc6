"""The sandboxed side: runs one untrusted program and reports by its exit status alone.

Run by path (``python -I -S child.py``), never imported by tether, and stdlib only, so it
starts in milliseconds. It reads its orders as JSON from stdin, then, before a line of the
program runs: caps its resources, leaves the network (a namespace of its own where the
kernel allows), points HOME and TMPDIR at its folder, and installs an audit hook that ends
the process on anything the program may not do. The hook cannot be removed, and ends the
process with ``os._exit`` so no ``try`` in the program can swallow it.

Exit statuses: the secret ``passed`` code from the orders (so a program that exits on its
own cannot pass by accident), then FAILED, SYNTAX, VIOLATION, OUT_OF_MEMORY below.
"""

from __future__ import annotations

import errno
import json
import os
import resource
import sys
import traceback
from typing import Any, NoReturn

FAILED, SYNTAX, VIOLATION, OUT_OF_MEMORY = 1, 2, 3, 4
_CLONE_NEWNET, _CLONE_NEWUSER = 0x40000000, 0x10000000
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
_FS_EVENTS = {  # audit event -> indexes of its path arguments
    "os.remove": (0,),
    "os.rmdir": (0,),
    "os.mkdir": (0,),
    "os.rename": (0, 1),
    "os.replace": (0, 1),
    "os.link": (0, 1),
    "os.symlink": (0, 1),
    "os.truncate": (0,),
    "os.chmod": (0,),
    "os.chown": (0,),
    "os.utime": (0,),
    "shutil.rmtree": (0,),
    "shutil.copyfile": (1,),
    "shutil.copytree": (1,),
    "shutil.move": (1,),
}
_FORBIDDEN = (
    "socket.connect",
    "socket.bind",
    "socket.sendto",
    "socket.sendmsg",
    "socket.getaddrinfo",
    "socket.gethostbyname",
    "socket.gethostbyaddr",
    "subprocess.Popen",
    "os.system",
    "os.exec",
    "os.posix_spawn",
    "os.spawn",
    "os.fork",
    "os.forkpty",
    "pty.spawn",
    "ctypes.dlopen",
    "ctypes.dlsym",
    "ctypes.addressof",
    "ctypes.cdata",
    "ctypes.PyObj_FromPtr",
)


class _Fence:
    """What the program may touch: write in its folder, read there and in ``readable``."""

    def __init__(self, home: str, readable: list[str], isolated: bool) -> None:
        self.home = home
        # In a network namespace of its own, loopback reaches nothing but the program itself.
        self.isolated = isolated
        self.writable = (home, "/dev/null")
        own = os.path.realpath(__file__)  # a traceback quotes it
        self.readable = (home, own, *(os.path.realpath(p) for p in readable))

    def violation(self, why: str) -> NoReturn:
        try:
            with open(os.path.join(self.home, "violation.txt"), "w") as handle:
                handle.write(why[:500])
        finally:
            os._exit(VIOLATION)

    def _loopback(self, event: str, args: tuple[Any, ...]) -> bool:
        """Sockets within the namespace: they reach nothing but the program itself."""
        if not self.isolated:
            return False
        if event in ("socket.bind", "socket.connect"):
            return _local(args[1])
        return event == "socket.getaddrinfo" and _local((args[0], 0))

    def hook(self, event: str, args: tuple[Any, ...]) -> None:
        if event == "open":
            path, mode, flags = args
            if path is None or isinstance(path, int):
                return
            writes = (mode and any(c in mode for c in "wax+")) or (flags & _WRITE_FLAGS)
            if not _inside(path, self.writable if writes else self.readable):
                self.violation(f"{'write' if writes else 'read'} {path}")
        elif event in _FS_EVENTS:
            for index in _FS_EVENTS[event]:
                if index < len(args) and not _inside(args[index], self.writable):
                    self.violation(f"{event} {args[index]}")
        elif self._loopback(event, args):
            return
        elif event in ("os.kill", "os.killpg", "signal.pthread_kill"):
            if args[0] not in (os.getpid(), 0):
                self.violation(f"{event} {args[0]}")
        elif event.startswith(_FORBIDDEN):
            self.violation(event)


def _local(address: Any) -> bool:
    """A loopback address, or a Unix socket (a path)."""
    if isinstance(address, str | bytes):
        return True
    host = address[0] if isinstance(address, tuple) and address else ""
    return host in ("localhost", "::1", "") or str(host).startswith("127.")


def _inside(path: Any, roots: tuple[str, ...]) -> bool:
    try:
        real = os.path.realpath(os.fsdecode(path))
    except (TypeError, ValueError):
        return False
    return any(real == root or real.startswith(root + os.sep) for root in roots)


def _limit(name: str, value: int) -> None:
    if value:
        kind = getattr(resource, name)
        resource.setrlimit(kind, (value, value))


def _leave_the_network() -> str:
    """A network namespace of our own holds only a loopback device that is down."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.unshare(_CLONE_NEWNET) == 0:
            return "namespace"
        if libc.unshare(_CLONE_NEWUSER | _CLONE_NEWNET) == 0:
            return "user namespace"
    except (OSError, AttributeError):  # AttributeError: a C library without unshare (macOS)
        pass
    return "audit hook only"


def main() -> None:
    orders = json.loads(sys.stdin.readline())
    home = os.path.realpath(orders["folder"])
    sys.path[:0] = orders["path"]
    os.chdir(home)
    os.environ.update(HOME=home, TMPDIR=home, TMP=home, TEMP=home)
    isolation = _leave_the_network() if orders["network_namespace"] else "audit hook only"
    with open("sandbox.json", "w") as handle:
        json.dump({"network": isolation}, handle)
    _limit("RLIMIT_AS", orders["memory_bytes"])
    _limit("RLIMIT_CPU", orders["cpu_seconds"])
    _limit("RLIMIT_FSIZE", orders["file_bytes"])
    _limit("RLIMIT_NPROC", orders["processes"])
    source_path = os.path.join(home, "program.py")
    with open(source_path) as handle:
        source = handle.read()
    try:
        code = compile(source, source_path, "exec")
    except (SyntaxError, ValueError):
        os._exit(SYNTAX)
    fence = _Fence(home, orders["readable"], isolated=isolation != "audit hook only")
    sys.stdin.close()
    sys.stdin = open(os.devnull)  # noqa: SIM115
    sys.addaudithook(fence.hook)
    try:
        exec(code, {"__name__": "__main__", "__builtins__": __builtins__})
    except MemoryError:
        os._exit(OUT_OF_MEMORY)
    except OSError as exc:
        if exc.errno == errno.EFBIG:  # it wrote past its file size limit
            fence.violation(f"wrote a file past {orders['file_bytes']} bytes")
        traceback.print_exc(limit=-8)
        sys.stderr.flush()
        os._exit(FAILED)
    except BaseException:  # an assertion, any error, or an exit of its own: not a pass
        traceback.print_exc(limit=-8)  # for a person reading the failure; never the verdict
        sys.stderr.flush()
        os._exit(FAILED)
    sys.stdout.flush()
    os._exit(orders["passed"])


if __name__ == "__main__":
    main()
