"""Which files ``tether check`` and ``tether corpus index`` read, and how they are shown.

A folder expands to the files git would track (tracked or untracked, not ignored) when it
lies in a git work tree, else to every file under it outside hidden folders and
``node_modules``; so does a folder git ignores as a whole, when it is named. Of those,
files over ``MAX_FILE_BYTES``, files and folders that cannot be read (their
permissions) and anything that is not a regular file (a FIFO, a socket, a device) are
left out and listed as skipped, and only regular files are ever opened. A file named
explicitly is always read, whatever its size, and one that cannot be read (nor a named
folder that cannot be listed, nor a link to nothing) is an error that says what to do.

Text is UTF-8 (a BOM is dropped); a Python file may declare another encoding (PEP 263).
A file that opens with a UTF-16 or UTF-32 byte order mark is read in that encoding (as
editors do) unless the rest is NUL-free UTF-8; its NUL bytes do not make it binary. Bytes
that do not decode are read as U+FFFD, so the rest of the file is still checked, and
``tether check`` reports the file (rule ``encoding``).
"""

from __future__ import annotations

import codecs
import contextlib
import errno
import io
import os
import re
import stat
import subprocess
import tokenize
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tether.errors import RequestError

MAX_FILE_BYTES = 1 << 20  # larger files in a folder are generated or minified
_SKIPPED_DIRS = {"node_modules", "__pycache__"}
_SNIFF_BYTES = 8000  # as git: a NUL byte in the first 8000 bytes makes a file binary
_PYTHON_SUFFIXES = {".py", ".pyi", ".pyw"}


@dataclass(frozen=True)
class Skipped:
    """A file of a folder that was not checked, and why."""

    path: Path
    reason: str


@dataclass(frozen=True)
class SourceText:
    """A file's text; ``bad_at`` is where the first byte that did not decode stands."""

    text: str
    bad_at: int | None = None


def walk(root: Path, unlisted: list[Skipped] | None = None) -> Iterator[Path]:
    """Entries under ``root`` in a stable order, skipping hidden folders and node_modules;
    a folder that cannot be listed (its permissions) is added to ``unlisted``, where given,
    rather than passed over unsaid."""

    def cannot_list(exc: OSError) -> None:
        if unlisted is not None and exc.filename is not None:
            why = f"a folder that cannot be read ({exc.strerror or exc})"
            unlisted.append(Skipped(Path(exc.filename), why))

    for folder, dirs, files in os.walk(root, onerror=cannot_list):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in _SKIPPED_DIRS)
        for name in sorted(files):
            yield Path(folder) / name


def select(
    candidates: Iterable[Path], *, max_bytes: int | None = MAX_FILE_BYTES, text_only: bool = False
) -> tuple[list[Path], list[Skipped]]:
    """The readable regular files among ``candidates`` no larger than ``max_bytes``, and
    those skipped.

    Paths that no longer exist (deleted, or links to nothing) are dropped; with
    ``text_only``, so are binary files.
    """
    files: list[Path] = []
    skipped: list[Skipped] = []
    for path in candidates:
        try:
            info = path.stat()
        except FileNotFoundError:
            continue
        except OSError as exc:
            skipped.append(Skipped(path, f"cannot be read ({exc.strerror or exc})"))
            continue
        if not stat.S_ISREG(info.st_mode):
            skipped.append(Skipped(path, "not a regular file"))
        elif max_bytes is not None and info.st_size > max_bytes:
            skipped.append(Skipped(path, f"over {max_bytes >> 20} MiB; name the file to check it"))
        elif (why := _unreadable(path)) is not None:
            skipped.append(Skipped(path, why))
        elif not text_only or not is_binary(path):
            files.append(path)
    return files, skipped


def _unreadable(path: Path) -> str | None:
    """Why the regular file ``path`` cannot be opened to be read (its permissions), or
    None: one file of a folder that cannot be is left out, not the end of the run."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        os.close(os.open(path, flags))
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    return None


def is_binary(path: Path) -> bool:
    """Whether ``path`` holds a NUL byte early on, as git decides (False if unreadable),
    and is not UTF-16 or UTF-32 text with a byte order mark."""
    try:
        head = _read_regular(path, _SNIFF_BYTES)
    except (OSError, RequestError):
        return False  # reading it later reports the problem
    return b"\0" in head and not _wide_text_head(head)


def is_wide_text(path: Path) -> bool:
    """Whether ``path`` is UTF-16 or UTF-32 text with a byte order mark, which tether reads
    as editors do and tools that read only UTF-8 (ruff) cannot."""
    try:
        head = _read_regular(path, _SNIFF_BYTES)
    except (OSError, RequestError):
        return False
    return _wide_text_head(head)


# UTF-32's marks first: UTF-32-LE's starts with UTF-16-LE's.
_WIDE_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


def _wide_encoding(data: bytes) -> tuple[str, bytes] | None:
    """The UTF-16 or UTF-32 encoding whose byte order mark opens ``data``, and the bytes
    after the mark; None for any other start, or for a mark followed by NUL-free UTF-8,
    where the two bytes are stray ones before UTF-8 text (UTF-16 text that holds a line
    break or an ASCII character holds a NUL byte)."""
    for bom, encoding in _WIDE_BOMS:
        if data.startswith(bom):
            body = data[len(bom) :]
            if body and b"\0" not in body and _is_utf8(body):
                return None
            return encoding, body
    return None


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _wide_text_head(head: bytes) -> bool:
    """Whether the first bytes of a file, cut anywhere, are UTF-16 or UTF-32 text after its
    byte order mark: they decode, and to no NUL character."""
    wide = _wide_encoding(head)
    if wide is None:
        return False
    encoding, body = wide
    try:
        text = codecs.getincrementaldecoder(encoding)().decode(body, final=False)
    except UnicodeDecodeError:
        return False
    return "\0" not in text


def _read_regular(path: Path, size: int = -1) -> bytes:
    """Up to ``size`` bytes of ``path`` (all with -1); never blocks on a FIFO or device."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    with open(os.open(path, flags), "rb") as file:
        if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
            raise RequestError(f"{path} is not a regular file; name source files or folders")
        return file.read(size)


def decode_source(data: bytes, *, python: bool = False) -> SourceText:
    """``data`` as text: UTF-8 (a BOM is not code), UTF-16 or UTF-32 after their BOM, or a
    Python file's declared encoding; bytes that do not decode become U+FFFD."""
    wide = _wide_encoding(data)
    if wide is not None:
        encoding, body = wide
        try:
            return SourceText(body.decode(encoding))
        except UnicodeDecodeError as exc:
            bad_at = len(body[: exc.start].decode(encoding))
        return SourceText(body.decode(encoding, errors="replace"), bad_at=bad_at)
    encoding = "utf-8-sig"
    if python:
        with contextlib.suppress(SyntaxError):  # a malformed declaration: read as UTF-8
            encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
    try:
        return SourceText(data.decode(encoding))
    except (UnicodeDecodeError, LookupError):
        pass
    body = data.removeprefix(codecs.BOM_UTF8)
    try:
        return SourceText(body.decode("utf-8"), bad_at=0)  # UTF-8, but not as declared
    except UnicodeDecodeError as exc:
        bad_at = len(body[: exc.start].decode("utf-8"))
    return SourceText(body.decode("utf-8", errors="replace"), bad_at=bad_at)


def read_source(path: Path) -> SourceText:
    """The whole text of the regular file ``path``.

    Raises OSError when it cannot be read, RequestError when it is not a regular file.
    """
    return decode_source(_read_regular(path), python=path.suffix.lower() in _PYTHON_SUFFIXES)


# What git says of a folder it could not list, and goes on: its new files are not listed.
# The folder is named as it is, from the top of the work tree: a line end in it is read
# as part of it, and the reason after it has no quote.
_UNLISTED = re.compile(
    rb"^warning: could not open directory '(.*?)': ([^\n']*)$", re.MULTILINE | re.DOTALL
)


def _git_files(root: Path, unlisted: list[Skipped]) -> list[Path] | None:
    """The files git would track under ``root``; None outside a work tree, or where git
    ignores ``root`` itself (a build folder, a virtual environment): named, it is read
    as a folder outside git is, not taken for one without files. A folder git could not
    list its new files in (its permissions) is added to ``unlisted``."""
    try:
        ignored = subprocess.run(
            ["git", "check-ignore", "-q", "."], cwd=root, check=False, capture_output=True
        )
    except OSError:
        return None
    if ignored.returncode == 0:
        return None
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=root,
            capture_output=True,
            check=True,
            env={**os.environ, "LC_ALL": "C"},  # its warnings in English, to be read
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    warnings = list(_UNLISTED.finditer(listed.stderr))
    if warnings:  # named from the top of the work tree, not from ``root``
        prefix = subprocess.run(
            ["git", "rev-parse", "--show-prefix"], cwd=root, capture_output=True, check=False
        ).stdout.removesuffix(b"\n")
        for warned in warnings:
            folder = os.fsdecode(warned[1].removeprefix(prefix).rstrip(b"/"))
            why = f"a folder that cannot be read ({os.fsdecode(warned[2])})"
            unlisted.append(Skipped(root / folder if folder else root, why))
    # Names as the system spells them, as os.walk gives them: decoded as UTF-8 under a
    # Latin-1 or EUC-JP locale, a name beyond ASCII led to no file, and was left out.
    names = listed.stdout.split(b"\0")
    return sorted(root / os.fsdecode(name) for name in names if name)


def expand(
    paths: Iterable[Path],
    suffixes: Collection[str] | None,
    *,
    max_bytes: int | None = MAX_FILE_BYTES,
) -> tuple[list[Path], list[Skipped]]:
    """Files named in ``paths``, folders expanded to their files with one of ``suffixes``
    (all text files when None), and the files of folders that were skipped (see
    :func:`select`).

    A path that does not exist raises FileNotFoundError; a named path that is neither a
    folder nor a regular file, or that cannot be read, raises RequestError.
    """
    found: dict[Path, None] = {}
    skipped: list[Skipped] = []
    for path in paths:
        if _named_folder(path):
            unlisted: list[Skipped] = []  # folders
            listed = _git_files(path, unlisted)
            candidates = [
                file
                for file in (listed if listed is not None else walk(path, unlisted))
                if suffixes is None or file.suffix.lower() in suffixes
            ]
            candidates, leaving = _within(path, candidates)
            files, left_out = select(candidates, max_bytes=max_bytes, text_only=suffixes is None)
            found.update(dict.fromkeys(files))
            skipped += unlisted + leaving + left_out
        else:
            found[path] = None
    named = {_resolved(file) for file in found}
    return list(found), [s for s in skipped if _resolved(s.path) not in named]


def _named_folder(path: Path) -> bool:
    """Whether ``path``, named to be checked, is a folder, else a regular file; one that
    does not exist raises FileNotFoundError, and one that is neither, or that cannot be
    read (its permissions, a link to nothing or a loop of links), RequestError that says
    what to do: a folder left unread was checked as one without files."""
    what_to_do = "give this user read access to it, or leave it out of PATHS"
    try:
        info = path.stat()
    except FileNotFoundError:
        if not _is_link(path):
            raise FileNotFoundError(path) from None  # named by its path, as the caller says
        raise RequestError(
            f"{path} is a link to nothing ({_link_target(path)}); name the file it should "
            "lead to, mend the link, or leave it out of PATHS"
        ) from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # no access would help
            raise RequestError(
                f"{path} is a loop of links ({_link_target(path)}); mend the link, or leave "
                "it out of PATHS"
            ) from exc
        raise RequestError(f"{path} cannot be read ({exc.strerror or exc}); {what_to_do}") from exc
    if stat.S_ISDIR(info.st_mode):
        try:
            with os.scandir(path):
                pass
        except OSError as exc:
            raise RequestError(
                f"{path} is a folder that cannot be read ({exc.strerror or exc}); {what_to_do}"
            ) from exc
        return True
    if not stat.S_ISREG(info.st_mode):
        raise RequestError(f"{path} is not a regular file; name source files or folders")
    why = _unreadable(path)
    if why is not None:
        raise RequestError(f"{path} {why}; {what_to_do}")
    return False


def _link_target(path: Path) -> str:
    try:
        return f"it leads to {os.readlink(path)}"
    except OSError as exc:
        return str(exc.strerror or exc)


def _within(folder: Path, candidates: list[Path]) -> tuple[list[Path], list[Skipped]]:
    """The candidates that stay inside ``folder``, and the links that lead out of it: a
    folder's files are what git would track there, not /etc/passwd through a link a pull
    request added (a named link is still checked)."""
    root = _resolved(folder)
    kept: list[Path] = []
    leaving: list[Skipped] = []
    links = {file for file in candidates if _is_link(file)}
    # A link to another file of the folder is that file: checked once, under its own name.
    # Only a folder with links pays for resolving every file.
    own = {_resolved(file) for file in candidates if file not in links} if links else set()
    for file in candidates:
        if file not in links:
            kept.append(file)
            continue
        target = _resolved(file)
        if target != file.absolute() and not target.exists():  # a loop is read, and said
            leaving.append(Skipped(file, "a link to nothing"))
        elif not target.is_relative_to(root):
            leaving.append(Skipped(file, "a link out of the folder; name it to check it"))
        elif target not in own:
            kept.append(file)
    return kept, leaving


def _is_link(path: Path) -> bool:
    """Whether ``path`` is a symbolic link; False where it cannot be looked at (a folder
    above it closed to this user), for ``select`` to leave it out saying so."""
    try:
        return path.is_symlink()
    except OSError:
        return False


def _resolved(path: Path) -> Path:
    """``path`` with its links followed; as it stands where they loop."""
    try:
        return path.resolve()
    except (RuntimeError, OSError):  # Python 3.11 raises RuntimeError for a link loop
        return path.absolute()


def git_top(cwd: Path) -> Path | None:
    """The top of the git work tree around ``cwd``, which paths kept beyond one run
    (baselines, SARIF) are relative to, so any subfolder gives the same paths; None
    outside git."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--show-toplevel"], cwd=cwd, capture_output=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return Path(os.fsdecode(done.stdout.rstrip(b"\n")))


def display_path(path: Path, base: Path | None = None) -> str:
    """``path`` relative to ``base`` (the working directory) when inside it, POSIX style;
    a link by its own name, not its target's (which may lie outside)."""
    return DisplayPaths(base)(path)


class DisplayPaths:
    """:func:`display_path` of many paths from one ``base``, which is resolved once, and so
    is each folder they lie in: resolving both for each of 30,000 files or findings took
    seconds."""

    def __init__(self, base: Path | None = None) -> None:
        self._base = (base or Path.cwd()).resolve()
        self._folders: dict[Path, Path] = {}

    def __call__(self, path: Path) -> str:
        if path.name in ("", ".."):
            resolved = _resolved(path)
        else:
            folder = self._folders.get(path.parent)
            if folder is None:
                folder = self._folders[path.parent] = _resolved(path.parent)
            resolved = folder / path.name
        try:
            return resolved.relative_to(self._base).as_posix()
        except ValueError:
            return resolved.as_posix()


class GivenNames(DisplayPaths):
    """:class:`DisplayPaths`, but a path inside ``base`` (without ``..``) by the name it
    was given, through a linked folder too, not by its target's: the name the user gave.
    What lies at the two names is one file; what is kept beyond one run (a baseline's
    paths, SARIF's from the top of the repository) names it where it lies, as
    :func:`display_path` does, so that it is the same whichever name found it."""

    def __init__(self, base: Path | None = None) -> None:
        super().__init__(base)
        self._given = (base or Path.cwd()).absolute()

    def __call__(self, path: Path) -> str:
        if ".." not in path.parts:  # `link/..` leads where the link's target is
            absolute = path.absolute()
            for base in (self._base, self._given):
                if absolute.is_relative_to(base):
                    return absolute.relative_to(base).as_posix()
        return super().__call__(path)
