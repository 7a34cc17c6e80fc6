"""Telling a damaged SQLite file from other database errors, and finding which one it is;
making each file readable by its owner only; opening one only to read it.

tether keeps its stores, traces, usage ledger and evaluation runs in SQLite files under the
data directory. A disk fault or a copy taken mid-write can damage one; SQLite then fails
the statements that touch the damaged pages. That is not a fault in tether, and the user
can mend it, so it is reported as such, with how to find the file.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
from collections.abc import Callable
from contextlib import closing, suppress
from pathlib import Path

from tether import __version__
from tether.errors import ConfigError
from tether.openfiles import files_run_out, too_few_files

_DAMAGE = frozenset({"SQLITE_CORRUPT", "SQLITE_NOTADB"})

MEND = "restore it from a backup, or move it aside and tether starts a new, empty one"
ADVICE = f"`tether doctor` names the damaged file: {MEND}"


log = logging.getLogger(__name__)


def schema_version(db: sqlite3.Connection) -> int:
    """The schema number a database's writer stamped (``PRAGMA user_version``)."""
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def newer_schema_message(
    what: str, path: Path, found: int, readable: int, *, may_start_empty: bool = False
) -> str:
    """Why ``path`` is refused: a newer tether wrote it (this one is older, after a roll
    back, or a copy of newer data came here), and this one would misread it."""
    return (
        f"{path}, {what}, was written by a newer tether (schema {found}; this tether, "
        f"{__version__}, reads schema {readable} at most): "
        + newer_schema_remedy(path, found, may_start_empty=may_start_empty)
    )


def newer_schema_remedy(path: Path, found: int, *, may_start_empty: bool = False) -> str:
    """What to do about ``path`` of a newer schema: only that file goes back, as the audit
    log's later records and checkpoints must stay (``may_start_empty``: a new, empty one
    may replace it)."""
    aside = f"; or move {path.name} aside, and a new, empty one starts" if may_start_empty else ""
    return (
        f"upgrade tether again, to one that reads schema {found}, or, to stay on this one, "
        f"put back {path.name} from the copy of the data directory taken before the "
        f"upgrade (removing its -wal and -shm first) and keep audit/ as it is{aside}"
    )


def say_upgraded(
    what: str, path: Path, found: int, new: int, changes: str, *, older_read_it: bool
) -> None:
    """Say in the log what upgrading ``path`` from schema ``found`` did, and whether an
    older tether still opens it."""
    if older_read_it:
        after = "older tethers still read it"
    else:
        after = (
            f"a tether that reads schema {found} at most no longer opens it: to go back to "
            f"one, put back {path.name} from the copy of the data directory taken before "
            "this upgrade and keep audit/ as it is"
        )
    log.warning(
        "upgraded %s %s from schema %d to %d (%s); %s", what, path, found, new, changes, after
    )


def is_damage(exc: BaseException) -> bool:
    """Whether ``exc`` is SQLite finding a file damaged (not locked, full or missing)."""
    return (
        isinstance(exc, sqlite3.DatabaseError) and getattr(exc, "sqlite_errorname", "") in _DAMAGE
    )


def is_locked(exc: BaseException) -> bool:
    """Whether ``exc`` is SQLite waiting in vain for a lock another connection holds."""
    return isinstance(exc, sqlite3.OperationalError) and (
        getattr(exc, "sqlite_errorname", "") in {"SQLITE_BUSY", "SQLITE_LOCKED"}
        or "database is locked" in str(exc)
    )


def is_full(exc: BaseException) -> bool:
    """Whether ``exc`` is SQLite finding no room on the disk: it passes once space is freed."""
    return isinstance(exc, sqlite3.OperationalError) and (
        getattr(exc, "sqlite_errorname", "") == "SQLITE_FULL"
        or "database or disk is full" in str(exc)
    )


def full_message(what: str, path: Path) -> str:
    return f"{what} {path} cannot be written: its disk is full; free space on it"


def roll_back(db: sqlite3.Connection) -> None:
    """End the open transaction, if SQLite has not already: it rolls one back by itself
    when a disk fills or fails mid-transaction, and a ROLLBACK then raises ("no
    transaction is active") in place of the error that says why."""
    if db.in_transaction:
        db.execute("ROLLBACK")


def locked_message(what: str, path: Path) -> str:
    return (
        f"{what} {path} is locked by another process: a sqlite3 shell or a backup with a "
        "transaction open on it, or another tether server with the same data.home "
        f"(`fuser {path}` names it); end that transaction or process"
    )


def damage_message(exc: BaseException) -> str:
    return f"a database in tether's data directory is damaged ({exc}); {ADVICE}"


def cannot_open(what: str, path: Path, exc: sqlite3.Error | OSError) -> ConfigError:
    """The error for a database file (``what``, e.g. "the trace store") that SQLite
    cannot open: damaged, or in a place it cannot use (a directory, a read-only folder)."""
    if (few := _too_few_files(exc, path, writes=True)) is not None:
        return ConfigError(f"cannot open {what} {path}: {few}")
    if isinstance(exc, OSError):
        exc_text = exc.strerror or str(exc)
        return ConfigError(
            f"cannot open {what} {path} ({exc_text}); check that it is a file, that it and "
            f"{path.parent} are writable by this user, and the disk has room"
        )
    if is_damage(exc):
        return ConfigError(f"{path}, {what}, is damaged ({exc}); {MEND}")
    if is_locked(exc):
        return ConfigError(locked_message(what, path) + ", then try again")
    if is_full(exc):  # setting it up, or upgrading it, writes: nothing of that was kept
        return ConfigError(
            f"cannot open {what} {path}: its disk is full, and opening it writes (an "
            "upgrade can take as much again as the file); free space on it and try again"
        )
    return ConfigError(
        f"cannot open {what} {path} ({exc}); check that it is a file, that it and "
        f"{path.parent} are writable by this user, and the disk has room"
    )


def cannot_read(what: str, path: Path, exc: sqlite3.Error) -> ConfigError:
    """The error for a database file that SQLite cannot open to read."""
    if is_damage(exc):
        # Read to be inspected, often a copy: moving it aside would only hide what it held.
        return ConfigError(
            f"{path}, {what}, is damaged ({exc}); a command that inspects it only reads "
            "it: if it is a copy, copy it again (with its -wal file, or while no tether "
            "writes it), else restore it from a backup"
        )
    if is_locked(exc):
        return cannot_open(what, path, exc)
    if (few := _too_few_files(exc, path, writes=False)) is not None:
        return ConfigError(f"cannot open {what} {path} to read it: {few}")
    return ConfigError(
        f"cannot open {what} {path} to read it ({exc}); check that it is a file this user can read"
    )


def _too_few_files(exc: sqlite3.Error | OSError, path: Path, *, writes: bool) -> str | None:
    """Why ``path`` could not be opened, and what to do, where no descriptor was left for
    it (a low `ulimit -n`); else None. SQLite says only that it could not open the file:
    unless the file itself could not be (``writes``: made, or opened to write), the
    system is asked whether one more can be."""
    if isinstance(exc, sqlite3.Error):
        if getattr(exc, "sqlite_errorname", "") != "SQLITE_CANTOPEN":
            return None
        # Near the limit a missing folder or a permission is still its own cause.
        if _cannot_be_opened(path, writes):
            return None
        short = files_run_out(count=3)  # the file, its -wal and its -shm
        if short is None:
            return None
        exc = short
    fix = too_few_files(exc)
    return None if fix is None else f"too few files can be opened ({exc.strerror}); {fix}"


def _cannot_be_opened(path: Path, writes: bool) -> bool:
    """Whether ``path`` could not be opened however many descriptors were left: a folder
    above it missing or closed to this user, a folder in its place, no permission; with
    ``writes``, a missing file is made, else it is missing. Asks nothing that takes one."""
    access = os.R_OK | (os.W_OK if writes else 0)
    try:
        info = path.stat()
    except FileNotFoundError:
        folder = path.parent
        return not writes or not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK)
    except OSError:  # a folder above it closed to this user, a file where a folder should be
        return True
    return stat.S_ISDIR(info.st_mode) or not os.access(path, access)


def private_folder(path: Path) -> None:
    """Make ``path`` and each missing folder above it, each its owner's only (0700).
    ``mkdir(parents=True, mode=0o700)`` gives the mode to the last folder alone: a data
    directory made on the way to its ``audit/spool`` or ``cache`` was 0755, and every
    file in it could be listed, and read where its own mode allowed. Folders that exist
    keep their mode."""
    missing: list[Path] = []
    while not os.path.lexists(path) and path != path.parent:
        missing.append(path)
        path = path.parent
    for folder in reversed(missing):
        with suppress(FileExistsError):  # another process made it first
            folder.mkdir(mode=0o700)


def sync_folder(folder: Path) -> None:
    """Make the names made or renamed in ``folder`` survive a crash."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def owner_only(path: str, flags: int) -> int:
    """An ``opener`` for ``open()``: a file it makes is its owner's only (0600), whatever
    the umask; one that exists keeps its mode."""
    return os.open(path, flags, 0o600)


def make_private(path: Path) -> None:
    """Make ``path`` (and a missing data directory above it) readable by its owner only,
    where it does not exist yet: SQLite makes a file as the umask allows, 0644 as a rule,
    and traces, stores and ledgers hold prompts, answers and code that another local user
    must not read. SQLite gives the file's ``-wal`` and ``-shm`` its mode. A file that
    exists keeps the mode it has."""
    private_folder(path.parent)
    with suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def open_database(
    path: Path, what: str, setup: Callable[[sqlite3.Connection], None]
) -> sqlite3.Connection:
    """A connection to ``path`` (shared across threads, autocommit) once ``setup`` made its
    schema; a new file is its owner's only. When connecting or setup fails the connection
    is closed, not left open, and an SQLite error is named as :func:`cannot_open` names it."""
    try:
        make_private(path)
        db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    except (sqlite3.Error, OSError) as exc:
        raise cannot_open(what, path, exc) from exc
    try:
        setup(db)
    except sqlite3.Error as exc:
        db.close()
        raise cannot_open(what, path, exc) from exc
    except BaseException:
        db.close()
        raise
    return db


# What SQLite says when it cannot make the -wal or -shm a WAL-mode file is read through.
_NO_INDEX = frozenset({"SQLITE_CANTOPEN", "SQLITE_READONLY_DIRECTORY", "SQLITE_READONLY_CANTINIT"})


def open_read_only(path: Path, what: str) -> sqlite3.Connection:
    """A connection (shared across threads) that only reads ``path``, for the commands that
    inspect a data directory, which may be a read-only copy: a mount, or another user's.

    SQLite reads a WAL-mode file through a -shm index beside it, which it makes where it
    can. Where it cannot (a read-only folder) and no -wal holds changes, the file is read
    as immutable: it is all there is, and no writer is at work without a -wal. A -wal that
    does hold changes is not passed over: that is refused, and says what to do. Another
    user's file is read as though its folder were read-only where no -shm is there yet:
    the -wal and -shm SQLite would make would be this user's, left behind, and the
    owner's tether could no longer write the file."""
    uri = f"{path.absolute().as_uri()}?mode=ro"
    shm = path.with_name(path.name + "-shm")
    if _owner(path) in (None, os.geteuid()) or shm.exists():
        try:
            return _first_read(uri)
        except sqlite3.Error as exc:
            if getattr(exc, "sqlite_errorname", "") not in _NO_INDEX:
                raise cannot_read(what, path, exc) from exc
            _refuse_unread_changes(path, what, f"this user cannot make one in {path.parent}", exc)
    else:
        why = f"one this user made would keep its owner's tether from writing {path.name}"
        _refuse_unread_changes(path, what, why, None)
    try:
        return _first_read(f"{uri}&immutable=1")
    except sqlite3.Error as exc:
        raise cannot_read(what, path, exc) from exc


def read_only_holding(
    path: Path,
    what: str,
    table: str,
    check: Callable[[sqlite3.Connection], None] = lambda db: None,
) -> sqlite3.Connection | None:
    """``path`` opened only to read (``open_read_only``), once ``check`` has passed it, if
    it holds ``table``; None where there is no file yet, or one made and not yet set up:
    reading makes none, and what it stands for is empty."""
    if not path.exists():
        return None
    db = open_read_only(path, what)
    try:
        check(db)
        if db.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (table,)).fetchone():
            return db
    except BaseException:
        db.close()
        raise
    db.close()
    return None


def _owner(path: Path) -> int | None:
    try:
        return path.stat().st_uid
    except OSError:  # SQLite says why it cannot open it
        return None


def _refuse_unread_changes(path: Path, what: str, why: str, exc: sqlite3.Error | None) -> None:
    """Refuse to read ``path`` without the changes a -wal beside it holds, where no -shm
    can be made for them (``why``)."""
    log = path.with_name(path.name + "-wal")
    if log.exists() and log.stat().st_size > 0:
        raise ConfigError(
            f"cannot open {what} {path} to read it: {log.name} beside it holds changes "
            f"that SQLite reads only through a {path.name}-shm, and {why}; copy that "
            f"folder (with {log.name}) to one you can write and read the copy there "
            "(TETHER_HOME=<the copy>)"
        ) from exc


def _first_read(uri: str) -> sqlite3.Connection:
    """A connection to ``uri`` that has read: SQLite opens the -wal and -shm then."""
    db = sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None)
    try:
        db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
    except BaseException:
        db.close()
        raise
    return db


def connect_to_check(path: Path) -> sqlite3.Connection:
    """A connection that only reads ``path`` and leaves nothing beside it, for a check.

    SQLite reads a WAL-mode file through a -wal and a -shm, which it makes where there are
    none, and which a reader cannot remove again: `tether doctor` left an empty pair beside
    each database. Without a -shm no process has the file open (each keeps one while it
    does), and without a -wal holding changes the file is all there is: it is read as
    immutable, which makes nothing. Otherwise it is read through the ones there, as a
    running server keeps them, and what they hold is read too (a -wal holding changes
    alone, as a crash may leave it, gets the -shm it needs)."""
    path = path.resolve()  # a link's -wal and -shm are beside the file it links to
    uri = f"{path.as_uri()}?mode=ro"
    shm, wal = (path.with_name(path.name + suffix) for suffix in ("-shm", "-wal"))
    try:
        changes = wal.stat().st_size > 0
    except FileNotFoundError:
        changes = False
    if not shm.exists() and not changes:
        uri += "&immutable=1"
    return sqlite3.connect(uri, uri=True)


def damage_in(path: Path) -> str | None:
    """What SQLite's quick check finds wrong in the structure of ``path``, or None.

    Pages and indexes are checked; text inside an intact page has no checksum to check.
    Damage is looked for twice before it is reported: a file no process had open is read
    as immutable, and a writer that opens it meanwhile changes pages under the read."""
    return _damage_in(path) and _damage_in(path)


def _damage_in(path: Path) -> str | None:
    try:
        with closing(connect_to_check(path)) as db:
            rows = db.execute("PRAGMA quick_check(3)").fetchall()
    except sqlite3.DatabaseError as exc:
        if is_damage(exc):
            return str(exc)
        raise
    # Each row may hold several lines, and the first names the schema ("main"): not news.
    lines = (line.strip() for row in rows for line in str(row[0]).splitlines())
    problems = [line for line in lines if line and line != "ok" and not line.startswith("***")]
    return "; ".join(problems) or None
