"""Saying so when a file could not be opened because no file descriptor was left: under a
low open-file limit (`ulimit -n`) the error otherwise reads as a problem of permissions
or of room on the disk, which changing neither mends."""

from __future__ import annotations

import errno
import os
import resource

# What opening a file fails with when the process (EMFILE) or the system (ENFILE) has no
# descriptor left for it.
RUN_OUT = (errno.EMFILE, errno.ENFILE)


def too_few_files(exc: OSError) -> str | None:
    """What to do where ``exc`` says no more files can be opened; None for another error."""
    if exc.errno == errno.ENFILE:
        return "the system's table of open files is full: close programs that hold many"
    if exc.errno != errno.EMFILE:
        return None
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return (
        f"this process may have {soft} open at most: raise the limit (`ulimit -n 1024`, "
        "LimitNOFILE= under systemd, docker run --ulimit nofile=) and run again"
    )


def files_run_out(path: str | os.PathLike[str] = os.devnull, count: int = 1) -> OSError | None:
    """The error of opening ``path`` ``count`` times at once, where the process or the
    system has no descriptor left for one of them; else None. Asked where a library says
    only that it could not open a file (SQLite's "unable to open database file")."""
    held: list[int] = []
    try:
        for _ in range(count):
            held.append(os.open(path, os.O_RDONLY))
    except OSError as exc:
        if exc.errno in RUN_OUT:
            return exc
    finally:
        for fd in held:
            os.close(fd)
    return None
