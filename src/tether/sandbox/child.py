"""The sandboxed side: runs one untrusted program and reports by its exit status alone.

Run by path (``python -I -S child.py``), never imported by tether, and stdlib only, so it
starts in milliseconds. It reads its orders as JSON from stdin, then, before a line of the
program runs: caps its resources, leaves the network (a namespace of its own where the
kernel allows), points HOME and TMPDIR at its folder, and installs an audit hook that ends
the process on anything the program may not do. The hook cannot be removed, and ends the
process with ``os._exit`` so no ``try`` in the program can swallow it; it keeps its state
in a closure, out of the program's reach (the program gets a ``__main__`` of its own).

An audit hook is not a security boundary (PEP 578): a program that finds its way around
it is still held by the kernel where Linux offers Landlock, which confines the process to
reading the Python installation and its folder, writing only its folder, executing
nothing, signalling no one outside, and (without a network namespace) no TCP at all.

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
import types
from collections.abc import Callable
from typing import Any, NoReturn
from urllib.parse import parse_qs, unquote, urlsplit

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
_LISTINGS = ("os.listdir", "os.scandir")  # what a folder holds is read as its files are
# _posixsubprocess.fork_exec (under subprocess) forks, and runs Python in the child, with
# no audit event: a program started children in sessions of their own that outlived it.
# It is loaded before the program runs, its fork_exec a violation; loading it afresh is.
_FORBIDDEN_MODULES = frozenset({"_posixsubprocess"})


def _fence(
    home: str, readable: list[str], isolated: bool
) -> Callable[[str, tuple[Any, ...]], None]:
    """The audit hook: write in ``home``, read there and in ``readable``; in a network
    namespace of its own (``isolated``), loopback sockets, which reach only the program.

    Everything it uses is bound here, so that a program that rebinds this module's names
    changes nothing; the hook itself is referenced only by the interpreter."""
    own = os.path.realpath(__file__)  # a traceback quotes it
    writable = (home, "/dev/null")
    readable_roots = (home, own, *(os.path.realpath(p) for p in readable))
    fs_events, forbidden, write_flags = dict(_FS_EVENTS), tuple(_FORBIDDEN), _WRITE_FLAGS
    forbidden_modules, listings = _FORBIDDEN_MODULES, _LISTINGS
    inside, local, exit_now, getpid = _inside, _local, os._exit, os.getpid
    is_folder, database_path, link_target = os.path.isdir, _database_path, _link_target

    def violation(why: str) -> NoReturn:
        try:
            with open(os.path.join(home, "violation.txt"), "w") as handle:
                handle.write(why[:500])
        finally:
            exit_now(VIOLATION)

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event == "open":
            path, mode, flags = args
            if path is None or isinstance(path, int):
                return
            writes = (mode and any(c in mode for c in "wax+")) or (flags & write_flags)
            if not inside(path, writable if writes else readable_roots):
                violation(f"{'write' if writes else 'read'} {path}")
            # os.open (mode None) of a folder outside: paths relative to its descriptor
            # (dir_fd) reach where the cwd-relative paths this hook sees do not.
            if mode is None and not inside(path, writable) and is_folder(path):
                violation(f"open the folder {path} as a descriptor")
        elif event in listings:
            path = "." if args[0] is None else args[0]  # the working directory's
            if not (isinstance(path, int) or inside(path, readable_roots)):
                violation(f"list {path}")
        elif event == "sqlite3.connect":
            path, read_only = database_path(args[0])
            if path is not None and not inside(path, readable_roots if read_only else writable):
                violation(f"open the database {path}")
        elif event in fs_events:
            for index in fs_events[event]:
                if index < len(args) and not inside(args[index], writable):
                    violation(f"{event} {args[index]}")
            # A link out of the folder, taken from a descriptor's folder (dir_fd), would
            # lead where the path this hook sees from the working directory does not.
            if event == "os.symlink" and not inside(link_target(args[0], args[1]), writable):
                violation(f"link to {args[0]}")
        elif isolated and event in ("socket.bind", "socket.connect"):
            if not local(args[1], home, inside):
                violation(f"{event} {args[1]!r}"[:200])
        elif isolated and event == "socket.getaddrinfo":
            if not local((args[0], 0), home, inside):
                violation(event)
        elif event == "import" and args[0] in forbidden_modules:
            violation(f"import {args[0]} afresh (it starts processes)")
        elif event in ("os.kill", "os.killpg", "signal.pthread_kill"):
            if args[0] not in (getpid(), 0):
                violation(f"{event} {args[0]}")
        elif event.startswith(forbidden):
            violation(event)

    return hook


def _local(address: Any, home: str, inside: Callable[[Any, tuple[str, ...]], bool]) -> bool:
    """A loopback address, a Unix socket's name in the network namespace's own abstract
    space, or a Unix socket's path inside ``home``. A path elsewhere (``/run/user/1000/bus``,
    an SSH agent's) is a socket of the machine's, which no network namespace takes away.
    ``inside`` is the hook's own, out of the program's reach."""
    if isinstance(address, str | bytes):
        return address[:1] in ("\0", b"\0") or inside(address, (home,))
    host = address[0] if isinstance(address, tuple) and address else ""
    return host in ("localhost", "::1", "") or str(host).startswith("127.")


def _link_target(target: Any, link: Any) -> Any:
    """Where a link at ``link`` to ``target`` leads, as the kernel would read it."""
    try:
        return os.path.join(os.path.dirname(os.path.abspath(os.fsdecode(link))), target)
    except (TypeError, ValueError):
        return target


def _database_path(database: Any) -> tuple[Any, bool]:
    """The file ``sqlite3.connect`` opens (a ``file:`` URI's path, decoded), None for
    memory; and whether only to read it (a URI's ``mode=ro``). What the program's SQL
    opens (ATTACH, VACUUM INTO) raises no audit event: the kernel's confinement holds it."""
    try:
        name = os.fsdecode(database)
    except TypeError:
        return database, False
    if name in ("", ":memory:"):
        return None, False
    if not name.startswith("file:"):
        return name, False
    uri = urlsplit(name)
    path = unquote(uri.path)
    read_only = parse_qs(uri.query).get("mode") == ["ro"]
    return (path or None) if path != ":memory:" else None, read_only


def _inside(path: Any, roots: tuple[str, ...]) -> bool:
    try:
        real = os.path.realpath(os.fsdecode(path))
    except (TypeError, ValueError):
        return False
    return any(real == root or real.startswith(root + os.sep) for root in roots)


# Landlock (linux/landlock.h): the system calls, and the rights this child handles.
_LANDLOCK_CREATE, _LANDLOCK_ADD_RULE, _LANDLOCK_RESTRICT = 444, 445, 446
_PR_SET_NO_NEW_PRIVS = 38
_FS_EXECUTE, _FS_WRITE_FILE, _FS_READ_FILE, _FS_READ_DIR = 1, 2, 4, 8
_FS_RIGHTS_BY_ABI = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 5: (1 << 16) - 1}
_FILE_RIGHTS = _FS_EXECUTE | _FS_WRITE_FILE | _FS_READ_FILE | (1 << 14) | (1 << 15)
_NET_BIND_TCP, _NET_CONNECT_TCP = 1, 2
_SCOPE_ABSTRACT_UNIX, _SCOPE_SIGNAL = 1, 2
# Read by the dynamic loader (the shared libraries of extension modules, which the audit
# hook never sees) and by numeric libraries, besides the Python installation.
_SYSTEM_READABLE = (
    "/lib", "/lib64", "/usr/lib", "/usr/lib64", "/usr/local/lib", "/etc/ld.so.cache",
    "/sys/devices/system/cpu", "/proc/cpuinfo",
)  # fmt: skip


def _confine(home: str, readable: list[str], no_tcp: bool) -> str:
    """Have the kernel hold the process to reading ``readable`` and ``home``, writing
    ``home``, executing nothing and signalling no one outside; without a network
    namespace (``no_tcp``) also to no TCP. Says what it got: "landlock N", or "none"
    where the kernel lacks Landlock (the audit hook then stands alone)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.syscall.restype = ctypes.c_long
        abi = libc.syscall(_LANDLOCK_CREATE, None, ctypes.c_size_t(0), ctypes.c_uint32(1))
        if abi < 1:
            return "none"

        class Ruleset(ctypes.Structure):
            _fields_ = [
                ("fs", ctypes.c_uint64),
                ("net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64),
            ]

        class PathBeneath(ctypes.Structure):
            _pack_ = 1
            _fields_ = [("allowed", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]

        handled = _FS_RIGHTS_BY_ABI[max(v for v in _FS_RIGHTS_BY_ABI if v <= abi)]
        net = (_NET_BIND_TCP | _NET_CONNECT_TCP) if no_tcp and abi >= 4 else 0
        scoped = (_SCOPE_ABSTRACT_UNIX | _SCOPE_SIGNAL) if abi >= 6 else 0
        size = 24 if abi >= 6 else 16 if abi >= 4 else 8
        attr = Ruleset(handled, net, scoped)
        ruleset = libc.syscall(_LANDLOCK_CREATE, ctypes.byref(attr), ctypes.c_size_t(size), 0)
        if ruleset < 0:
            return "none"
        try:
            confined = _restrict(libc, ruleset, home, handled, readable, PathBeneath)
        finally:
            os.close(ruleset)
        return f"landlock {abi}" if confined else "none"
    except (OSError, AttributeError):  # no C library to call (not Linux)
        return "none"


def _restrict(
    libc: Any, ruleset: int, home: str, handled: int, readable: list[str], rule_type: Any
) -> bool:
    """Add the rules to ``ruleset`` and enforce it on this process; False if refused."""
    import ctypes

    reading = _FS_READ_FILE | _FS_READ_DIR
    rules = [(home, handled & ~_FS_EXECUTE), ("/dev/null", _FS_READ_FILE | _FS_WRITE_FILE)]
    own = os.path.realpath(__file__)
    rules += [(path, reading) for path in (own, *readable, *_SYSTEM_READABLE)]
    for path, rights in rules:
        try:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except OSError:
            continue  # a root that does not exist here
        try:
            if not os.path.isdir(path):
                rights &= _FILE_RIGHTS
            rule = rule_type(rights & handled, fd)
            if libc.syscall(_LANDLOCK_ADD_RULE, ruleset, 1, ctypes.byref(rule), 0) < 0:
                return False
        finally:
            os.close(fd)
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        return False
    return bool(libc.syscall(_LANDLOCK_RESTRICT, ruleset, 0) == 0)


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


def _out_of_memory(home: str) -> NoReturn:
    """End with OUT_OF_MEMORY, leaving first the mark that makes the status believed (a
    program may exit with 4 itself); the failed allocation is freed, so this small one fits."""
    try:
        with open(os.path.join(home, "memory.txt"), "w") as handle:
            handle.write("MemoryError")
    finally:
        os._exit(OUT_OF_MEMORY)


def _disarm_fork_exec(home: str) -> None:
    """Make _posixsubprocess.fork_exec a violation; a program that imports subprocess
    (pytest does) gets this module, cached, and Popen's own audit event still ends it."""
    import _posixsubprocess

    exit_now = os._exit

    def fork_exec(*_args: Any, **_kwargs: Any) -> NoReturn:
        try:
            with open(os.path.join(home, "violation.txt"), "w") as handle:
                handle.write("_posixsubprocess.fork_exec (starts a process)")
        finally:
            exit_now(VIOLATION)

    _posixsubprocess.fork_exec = fork_exec


def main() -> None:
    orders = json.loads(sys.stdin.readline())
    home = os.path.realpath(orders["folder"])
    sys.path[:0] = orders["path"]
    os.chdir(home)
    os.environ.update(HOME=home, TMPDIR=home, TMP=home, TEMP=home)
    isolation = _leave_the_network() if orders["network_namespace"] else "audit hook only"
    _limit("RLIMIT_AS", orders["memory_bytes"])
    _limit("RLIMIT_CPU", orders["cpu_seconds"])
    _limit("RLIMIT_FSIZE", orders["file_bytes"])
    _limit("RLIMIT_NPROC", orders["processes"])
    source_path = os.path.join(home, "program.py")
    try:
        with open(source_path, encoding="utf-8") as handle:
            source = handle.read()
        code = compile(source, source_path, "exec")
    except (SyntaxError, ValueError) as exc:  # UnicodeDecodeError too: not UTF-8
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)  # why, for its reader
        sys.stderr.flush()
        os._exit(SYNTAX)
    isolated = isolation != "audit hook only"
    sys.stdin.close()
    sys.stdin = open(os.devnull)  # noqa: SIM115
    confined = _confine(home, orders["readable"], no_tcp=not isolated)
    with open("sandbox.json", "w") as handle:
        json.dump({"network": isolation, "kernel": confined}, handle)
    program = types.ModuleType("__main__")
    sys.modules["__main__"] = program  # `import __main__` finds the program, not this file
    _disarm_fork_exec(home)
    sys.addaudithook(_fence(home, orders["readable"], isolated))  # held by nothing else
    try:
        exec(code, program.__dict__)
    except MemoryError:
        _out_of_memory(home)
    except OSError as exc:
        traceback.print_exc(limit=-8)
        if exc.errno == errno.EFBIG:  # a limit it ran into, as time or memory: not an escape
            limit = orders["file_bytes"] / (1024 * 1024)
            print(
                f"the program wrote a file past the file size limit of {limit:g} MiB",
                file=sys.stderr,
            )
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
