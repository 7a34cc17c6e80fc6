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
_CLONE_NEWNET, _CLONE_NEWUSER, _CLONE_NEWNS = 0x40000000, 0x10000000, 0x20000
_MS_BIND, _MS_REC, _MS_SLAVE = 0x1000, 0x4000, 0x80000
_MOUNT_SETATTR, _AT_FDCWD, _AT_RECURSIVE, _MOUNT_ATTR_RDONLY = 442, -100, 0x8000, 1
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
        # Not signal.pthread_kill: it names a thread of this process, never another's.
        elif event in ("os.kill", "os.killpg", "resource.prlimit"):
            if args[0] not in (getpid(), 0):  # another's limits end it as a signal would
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
_FS_MAKE_CHAR, _FS_MAKE_BLOCK = 1 << 6, 1 << 11
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
    # No device nodes in its folder: as root, a program made one of the disk there, which
    # these rules let it open and read raw unless a device cgroup refuses.
    in_home = handled & ~(_FS_EXECUTE | _FS_MAKE_CHAR | _FS_MAKE_BLOCK)
    rules = [(home, in_home), ("/dev/null", _FS_READ_FILE | _FS_WRITE_FILE)]
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


# seccomp, for what the audit hook never sees (os.setpriority raises no event, and ctypes
# makes a function of any address without one, so a program calls C past the hook): the
# system calls a program never needs and the other fences leave open are refused (EPERM).
# Forks (a child in a session of its own outlived the run), exec, ptrace, signals to any
# process but itself and changes to another's limits, priority or processors (which it may
# make to any of its user's), sockets but TCP's and UDP's, only in a network namespace of
# its own (a Unix socket reaches the machine's: its session bus, an SSH agent), io_uring
# (which opens and connects without the calls a filter sees), key rings, mounts and
# namespaces, and what root could do to the machine: its clock, its name, its modules. clone
# only makes a thread; clone3 reads as missing, so the C library falls back to clone. By
# architecture: its audit number, then the numbers of each system call.
_SECCOMP_ARCHES: dict[str, tuple[int, dict[str, int]]] = {
    "x86_64": (0xC000003E, {
        "fork": 57, "vfork": 58, "execve": 59, "execveat": 322, "clone": 56, "ptrace": 101,
        "process_vm_readv": 310, "process_vm_writev": 311, "kcmp": 312, "kill": 62,
        "tkill": 200, "tgkill": 234, "rt_sigqueueinfo": 129, "rt_tgsigqueueinfo": 297,
        "socket": 41, "unshare": 272, "setns": 308, "mount": 165, "umount2": 166,
        "pivot_root": 155, "chroot": 161, "keyctl": 250, "add_key": 248, "request_key": 249,
        "bpf": 321, "perf_event_open": 298, "userfaultfd": 323, "init_module": 175,
        "finit_module": 313, "delete_module": 176, "kexec_load": 246, "kexec_file_load": 320,
        "reboot": 169, "swapon": 167, "swapoff": 168, "acct": 163, "syslog": 103,
        "open_by_handle_at": 304, "sethostname": 170, "setdomainname": 171,
        "settimeofday": 164, "clock_settime": 227, "clock_adjtime": 305, "adjtimex": 159,
        "iopl": 172, "ioperm": 173, "prlimit64": 302, "setpriority": 141,
        "sched_setaffinity": 203, "sched_setscheduler": 144, "sched_setparam": 142,
        "sched_setattr": 314, "ioprio_set": 251, "migrate_pages": 256, "move_pages": 279,
    }),
    "aarch64": (0xC00000B7, {
        "execve": 221, "execveat": 281, "clone": 220, "ptrace": 117,
        "process_vm_readv": 270, "process_vm_writev": 271, "kcmp": 272, "kill": 129,
        "tkill": 130, "tgkill": 131, "rt_sigqueueinfo": 138, "rt_tgsigqueueinfo": 240,
        "socket": 198, "unshare": 97, "setns": 268, "mount": 40, "umount2": 39,
        "pivot_root": 41, "chroot": 51, "keyctl": 219, "add_key": 217, "request_key": 218,
        "bpf": 280, "perf_event_open": 241, "userfaultfd": 282, "init_module": 105,
        "finit_module": 273, "delete_module": 106, "kexec_load": 104, "kexec_file_load": 294,
        "reboot": 142, "swapon": 224, "swapoff": 225, "acct": 89, "syslog": 116,
        "open_by_handle_at": 265, "sethostname": 161, "setdomainname": 162,
        "settimeofday": 170, "clock_settime": 112, "clock_adjtime": 266, "adjtimex": 171,
        "prlimit64": 261, "setpriority": 140, "sched_setaffinity": 122,
        "sched_setscheduler": 119, "sched_setparam": 118, "sched_setattr": 274,
        "ioprio_set": 30, "migrate_pages": 238, "move_pages": 239,
    }),
}  # fmt: skip
_SECCOMP_COMMON = {  # numbered alike on both
    "pidfd_send_signal": 424, "pidfd_getfd": 438, "io_uring_setup": 425,
    "io_uring_enter": 426, "io_uring_register": 427, "open_tree": 428, "move_mount": 429,
    "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433, "mount_setattr": 442,
    "process_madvise": 440,
}  # fmt: skip
_CLONE3, _CLONE_THREAD, _AF_INET, _AF_INET6 = 435, 0x10000, 2, 10
_OF_A_PROCESS = ("prlimit64", "sched_setaffinity", "sched_setscheduler", "sched_setparam",
                 "sched_setattr")  # fmt: skip
_ARGUMENTS_CHECKED = ("kill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo", "socket",
                      "setpriority", "ioprio_set", *_OF_A_PROCESS)  # fmt: skip
_PRIO_PROCESS, _IOPRIO_WHO_PROCESS = 0, 1
_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 22, 2
_ALLOW, _KILL_PROCESS, _ERRNO = 0x7FFF0000, 0x80000000, 0x00050000
_LOAD, _JEQ, _JGE, _JSET, _RETURN = 0x20, 0x15, 0x35, 0x45, 0x06  # classic BPF, constants
_ARGUMENTS = 16  # offset of the first argument's low 32 bits in struct seccomp_data


def _seccomp_program(machine: str, pid: int, isolated: bool) -> list[tuple[int, int, int, int]]:
    """The filter for ``machine``, as (code, jump if true, jump if false, constant)."""
    arch, numbers = _SECCOMP_ARCHES[machine]
    numbers = {**numbers, **_SECCOMP_COMMON}
    refuse = (_RETURN, 0, 0, _ERRNO | errno.EPERM)
    program = [(_LOAD, 0, 0, 4), (_JEQ, 1, 0, arch), (_RETURN, 0, 0, _KILL_PROCESS)]
    program.append((_LOAD, 0, 0, 0))
    if machine == "x86_64":  # the x32 numbering of the same calls
        program += [(_JGE, 0, 1, 0x40000000), refuse]

    def allowed_when(name: str, *conditions: tuple[int, list[int]]) -> None:
        """``name`` only when each (argument, values) holds: the argument is one of them."""
        body: list[tuple[int, int, int, int]] = []
        for argument, values in conditions:
            body.append((_LOAD, 0, 0, _ARGUMENTS + 8 * argument))
            count = len(values)
            body.extend((_JEQ, count - i, 0, value) for i, value in enumerate(values))
            body.append(refuse)
        program.append((_JEQ, 0, len(body) + 1, numbers[name]))
        program.extend([*body, (_RETURN, 0, 0, _ALLOW)])

    program += [(_JEQ, 0, 1, _CLONE3), (_RETURN, 0, 0, _ERRNO | errno.ENOSYS)]
    program += [(_JEQ, 0, 4, numbers["clone"]), (_LOAD, 0, 0, _ARGUMENTS)]
    program += [(_JSET, 1, 0, _CLONE_THREAD), refuse, (_RETURN, 0, 0, _ALLOW)]
    # A block whose call did not match was jumped over whole: the number is still loaded.
    itself = [0, pid]
    allowed_when("kill", (0, [pid, 0, -pid & 0xFFFFFFFF]))  # itself, its group (only itself)
    for name in ("tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo"):
        allowed_when(name, (0, [pid]))
    # Another process's limits, priority or processors (tether's own, as its user may):
    # RLIMIT_CPU of 1 s, or a file size of 0, ends the server as surely as a signal.
    for name in _OF_A_PROCESS:
        allowed_when(name, (0, itself))
    allowed_when("setpriority", (0, [_PRIO_PROCESS]), (1, itself))
    allowed_when("ioprio_set", (0, [_IOPRIO_WHO_PROCESS]), (1, itself))
    allowed_when("socket", (0, [_AF_INET, _AF_INET6] if isolated else []))
    denied = set(numbers) - {"clone", *_ARGUMENTS_CHECKED}
    for name in sorted(denied):
        program += [(_JEQ, 0, 1, numbers[name]), refuse]
    return [*program, (_RETURN, 0, 0, _ALLOW)]


def _filter_system_calls(isolated: bool) -> str:
    """Install the seccomp filter on this process (for good: it is inherited and cannot be
    removed); "seccomp" once it holds, "none" where the kernel or architecture has none."""
    import ctypes

    machine = os.uname().machine
    if machine not in _SECCOMP_ARCHES or sys.byteorder != "little":
        return "none"
    instructions = _seccomp_program(machine, os.getpid(), isolated)

    class Instruction(ctypes.Structure):
        _fields_ = [
            ("code", ctypes.c_ushort),
            ("jt", ctypes.c_ubyte),
            ("jf", ctypes.c_ubyte),
            ("k", ctypes.c_uint32),
        ]

    class Program(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(Instruction))]

    table = (Instruction * len(instructions))(*(Instruction(*i) for i in instructions))
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            return "none"
        program = Program(len(instructions), table)
        if libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(program), 0, 0):
            return "none"
    except (OSError, AttributeError):
        return "none"
    return "seccomp"


def _limit(name: str, value: int) -> None:
    if value:
        kind = getattr(resource, name)
        resource.setrlimit(kind, (value, value))


def _leave_the_machine(home: str, network: bool) -> tuple[str, str]:
    """Namespaces of its own, where the kernel allows (as root, or with user namespaces): a
    network one (``network``) holds only a loopback device that is down; in a mount one
    every mount is read-only but its folder's. A user namespace comes first, root's too, so
    that the program keeps no power over the machine (root's would set its clock or own any
    file). Says how the network went ("user namespace", "namespace", "audit hook only") and
    the mounts ("read-only", "none")."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        net = _CLONE_NEWNET if network else 0
        for flags in (_CLONE_NEWUSER | net | _CLONE_NEWNS, net | _CLONE_NEWNS,
                      _CLONE_NEWUSER | net, net):  # fmt: skip
            if flags and libc.unshare(flags) == 0:
                isolation = "audit hook only"
                if flags & _CLONE_NEWNET:
                    isolation = "user namespace" if flags & _CLONE_NEWUSER else "namespace"
                mounts = _read_only_but(libc, home) if flags & _CLONE_NEWNS else "none"
                return isolation, mounts
    except (OSError, AttributeError):  # AttributeError: a C library without unshare (macOS)
        pass
    return "audit hook only", "none"


def _read_only_but(libc: Any, home: str) -> str:
    """In a mount namespace of its own: every mount read-only but ``home``, bound on itself
    and left writable. Landlock leaves a file's mode, owner, times and attributes to anyone
    who may open its folder, and the hook sees only Python's calls: a program that called C
    past it made tether's signing key readable to all. "read-only" once it holds, else
    "none" (as on kernels before 5.12, which have no mount_setattr)."""
    import ctypes

    class MountAttributes(ctypes.Structure):
        _fields_ = [(name, ctypes.c_uint64) for name in ("set", "clear", "propagation", "userns")]

    def set_attributes(path: str, recursive: int, attributes: MountAttributes) -> bool:
        size = ctypes.sizeof(attributes)
        at = (_AT_FDCWD, os.fsencode(path), recursive, ctypes.byref(attributes), size)
        return bool(libc.syscall(_MOUNT_SETATTR, *at) == 0)

    libc.syscall.restype = ctypes.c_long
    libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_void_p]
    read_only = MountAttributes(_MOUNT_ATTR_RDONLY, 0, 0, 0)
    writable = MountAttributes(0, _MOUNT_ATTR_RDONLY, 0, 0)
    folder = os.fsencode(home)
    # Nothing done here reaches the machine's mounts; the folder is its own mount, and can
    # be made read-only and writable again before everything else is made read-only.
    if libc.mount(None, b"/", None, _MS_REC | _MS_SLAVE, None) != 0:
        return "none"
    if libc.mount(folder, folder, None, _MS_BIND, None) != 0:
        return "none"
    if not (set_attributes(home, 0, read_only) and set_attributes(home, 0, writable)):
        return "none"
    if not set_attributes("/", _AT_RECURSIVE, read_only):
        return "none"
    if not set_attributes(home, 0, writable):
        os._exit(FAILED)  # its folder as read-only as the rest: it could not even start
    os.chdir(home)  # the folder's own mount, not the one now under it
    return "read-only"


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
    isolation, mounts = _leave_the_machine(home, orders["network_namespace"])
    _limit("RLIMIT_AS", orders["memory_bytes"])
    _limit("RLIMIT_CPU", orders["cpu_seconds"])
    _limit("RLIMIT_FSIZE", orders["file_bytes"])
    _limit("RLIMIT_NPROC", orders["processes"])
    _limit(
        "RLIMIT_NOFILE", min(orders["open_files"], resource.getrlimit(resource.RLIMIT_NOFILE)[1])
    )
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
    filtered = _filter_system_calls(isolated)
    with open("sandbox.json", "w") as handle:
        how = {"network": isolation, "kernel": confined, "syscalls": filtered, "mounts": mounts}
        json.dump(how, handle)
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
