"""Text files someone named: an error that names one that is not UTF-8, and writes in one step.

A write goes to a temporary file beside the target, which then replaces it: an interrupted
run leaves the old file or the new one, never part of either, and the target keeps its
permissions. A target that is not a regular file (``/dev/null``, ``/dev/stdout``, a FIFO)
is written into, as a shell's ``>`` would, never replaced.
"""

from __future__ import annotations

import codecs
import contextlib
import errno
import os
import re
import secrets
import stat
from pathlib import Path

from tether.errors import RequestError


def read_text(path: Path, *, exact: bool = False) -> str:
    """The UTF-8 text of ``path``, with its line endings as Python reads them (``\\n``),
    or exactly as stored when ``exact`` (a file to patch keeps its ``\\r\\n``)."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RequestError(not_utf8(path, data, exc)) from None
    return text if exact else text.replace("\r\n", "\n").replace("\r", "\n")


# A line and its end, as files, editors and git end one: at "\n", "\r\n" or a lone "\r".
_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z")


def file_lines(text: str, *, keepends: bool = False) -> list[str]:
    """``text``'s lines where a file's lines end: at "\\n", "\\r\\n" or a lone "\\r", as
    ``str.splitlines`` does, but not at a form feed, U+2028, U+0085 or "\\x1c", where it
    also ends one and editors and git do not (a line read so was cut in two). As
    ``splitlines``, no empty line follows a final line end."""
    lines = _LINE.findall(text)
    return lines if keepends else [line.rstrip("\r\n") for line in lines]


# UTF-32's marks first: UTF-32-LE's begins with UTF-16-LE's.
_WIDE_MARKS = (
    (codecs.BOM_UTF32_LE, "UTF-32"),
    (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16"),
    (codecs.BOM_UTF16_BE, "UTF-16"),
)


def not_utf8(path: Path, data: bytes, exc: UnicodeDecodeError) -> str:
    """Why ``data``, the bytes of ``path``, is not UTF-8 text, and what to do. Windows
    PowerShell 5.1 writes UTF-16 with ``>`` and ``Out-File``: "invalid start byte at byte
    0" did not say that the file is text, only in another encoding."""
    wide = next((name for mark, name in _WIDE_MARKS if data.startswith(mark)), None)
    if wide is not None:
        return (
            f"{path} is not UTF-8 text: it begins with a {wide} byte-order mark, as "
            "Windows PowerShell's > and Out-File write; save it as UTF-8"
        )
    return (
        f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start}); "
        "pass a text file, or save it as UTF-8"
    )


# What a client that sent one is told.
LONE_SURROGATE_FIX = (
    "a \\u escape names a lone UTF-16 surrogate, which is not text; escape a character "
    "beyond U+FFFF as a pair, or send it as UTF-8"
)


def lone_surrogate(value: object) -> str | None:
    """Where in ``value`` (a string, or JSON data) a lone UTF-16 surrogate sits, which JSON's
    ``\\u`` escapes can spell but UTF-8 cannot hold; None when there is none. The place is a
    dotted path, empty for ``value`` itself."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return ""
        return None
    if not isinstance(value, dict | list):
        return None
    for key, item in value.items() if isinstance(value, dict) else enumerate(value):
        found = lone_surrogate(item)
        if found is not None:
            return f"{key}.{found}" if found else str(key)
    return None


def without_surrogates(text: str) -> str:
    """``text`` with each lone surrogate (a byte of a name that is not UTF-8) as U+FFFD."""
    if lone_surrogate(text) is None:
        return text
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` (or make it) with ``text`` in one step, keeping its mode, and its
    owner where this process may give it (root rewriting another user's file); a file that
    could not stay its owner's, or its group's, loses set-user-ID, or set-group-ID."""
    try:
        kind: int | None = path.stat().st_mode  # through links: /dev/stdout is one to a pipe
    except FileNotFoundError:
        kind = None
    if kind is not None and stat.S_ISDIR(kind):
        raise IsADirectoryError(21, "it is a folder; give a file name", str(path))
    if kind is not None and not stat.S_ISREG(kind):
        with path.open("wb") as out:
            out.write(text.encode("utf-8"))
        return
    path = path.resolve()  # through a symlink to the file it names, not over the link
    # Everything after is done by name in one open folder: the mode and owner given to
    # the new file are those of the file it replaces, whatever links change meanwhile.
    folder = _open_folder(path)
    try:
        _replace_in(folder, path, text)
    finally:
        os.close(folder)


def _open_folder(path: Path) -> int:
    """The folder ``path`` is in, open to work in by name. A folder this user may write in
    and search but not list (a drop folder) is opened only as a place (O_PATH, Linux)."""
    try:
        try:
            return os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        except PermissionError:
            if not hasattr(os, "O_PATH"):
                raise
            return os.open(path.parent, os.O_PATH | os.O_DIRECTORY)
    except OSError as exc:  # named by the file asked for, as the write's own errors are
        why = f"{exc.strerror} in its folder {path.parent}, where it is written anew whole"
        raise OSError(exc.errno, why, str(path)) from exc


def _replace_in(folder: int, path: Path, text: str) -> None:
    try:
        was: os.stat_result | None = os.stat(path.name, dir_fd=folder, follow_symlinks=False)
    except FileNotFoundError:
        was = None  # a new file: the umask decides its mode, as for any new file
    if was is not None and not stat.S_ISREG(was.st_mode):
        why = "it was changed into a link or other non-file while being written; try again"
        raise OSError(errno.EAGAIN, why, str(path))
    tmp = f".{path.name}.{secrets.token_hex(4)}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666, dir_fd=folder)
    except OSError as exc:  # named by the file asked for, not a temporary never heard of
        why = f"{exc.strerror} in its folder {path.parent}, where it is written anew whole"
        raise OSError(exc.errno, why, str(path)) from exc
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(text.encode("utf-8"))
            out.flush()
            if was is not None:
                _keep_owner(out.fileno(), was)
                os.fchmod(
                    out.fileno(), _mode_for(out.fileno(), was)
                )  # after chown: it clears setgid
            os.fsync(out.fileno())
        os.replace(tmp, path.name, src_dir_fd=folder, dst_dir_fd=folder)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=folder)
        raise
    with contextlib.suppress(OSError):  # the new name survives a power cut too (not where
        os.fsync(folder)  # the folder is open only as a place: O_PATH takes no fsync)


def _keep_owner(fd: int, was: os.stat_result) -> None:
    """Give the file open as ``fd`` the owner and group of the file it replaces. Only root
    may give a file away: a source file `sudo tether suggest --apply` rewrote, or a data
    directory's ``verifier.key``, had become root's, and its user could no longer save it
    in place. Anyone else keeps the file as their own."""
    if (was.st_uid, was.st_gid) == (os.geteuid(), os.getegid()):
        return
    with contextlib.suppress(PermissionError):
        os.fchown(fd, was.st_uid, was.st_gid)


def _mode_for(fd: int, was: os.stat_result) -> int:
    """The mode of the file the file open as ``fd`` replaces, less set-user-ID where it is
    not that file's owner's and set-group-ID where not its group's: those bits say whom a
    file runs as, and a rewrite that could not keep the owner (a root without the
    capability to give files away) would otherwise make another user's set-user-ID file
    its own."""
    mode = stat.S_IMODE(was.st_mode)
    now = os.fstat(fd)
    if now.st_uid != was.st_uid:
        mode &= ~stat.S_ISUID
    if now.st_gid != was.st_gid:
        mode &= ~stat.S_ISGID
    return mode
