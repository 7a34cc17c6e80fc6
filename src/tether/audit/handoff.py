"""Records made while another command keeps the audit log, left for the log to sign in.

The log has one writer, and opening it reads it whole, so a command cannot take turns
with another that keeps it for a long run (an evaluation of an hour). It writes each
record to a file of its own in the log's ``incoming`` folder instead: written aside,
synced, then renamed in, so a file there is always whole. Its prompt and answer are
already what the record keeps of them (salted commitments, and text only where
``audit.content`` keeps it), and it carries the time it was made. The process that keeps
the log signs the files in at its next checkpoint and removes them; one that closes
meanwhile leaves them to whoever opens the log next, which signs them in first.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import time
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tether.audit import records
from tether.databases import owner_only, private_folder, sync_folder

log = logging.getLogger(__name__)

INCOMING = "incoming"
_SUFFIX = ".json"
UNFINISHED_S = 3600.0  # a file being written is renamed in within milliseconds
_MOST_BYTES = 64 << 20  # far more than a record: a prompt is at most server.max_body_mb


@dataclass(frozen=True)
class Handed:
    """One record waiting in ``incoming``: its file, the fields it holds, and when the
    command made it."""

    path: Path
    fields: dict[str, Any]
    made: float


def incoming_folder(audit_folder: Path) -> Path:
    return audit_folder / INCOMING


def hand_off(audit_folder: Path, record_fields: dict[str, Any], content: str) -> Path:
    """Leave one record for the log's writer, its prompt and answer kept as ``content``
    (``audit.content``) says; the file it is in. OSError if the disk refuses; TypeError
    or ValueError for fields that are not JSON."""
    fields = dict(record_fields)
    for name in ("prompt", "completion"):
        shown = fields.pop(f"{name}_redacted", None)
        if name in fields:
            fields[name] = records.content(fields[name], content, shown)
    encoded = json.dumps({"fields": fields, "made": time.time()}, ensure_ascii=False).encode()
    folder = incoming_folder(audit_folder)
    private_folder(folder)
    # Named by time first: the writer signs them in the order they were made.
    name = f"{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:12]}{_SUFFIX}"
    aside = folder / f".{name}.tmp"
    with open(aside, "wb", opener=owner_only) as handle:
        handle.write(encoded)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(aside, folder / name)
    sync_folder(folder)  # the rename itself survives a crash
    return folder / name


def waiting(audit_folder: Path, skip: Collection[Path] = ()) -> list[Handed]:
    """The records left in ``incoming``, oldest first, but for those in files ``skip``
    names (taken already). A file that does not hold one (written by hand) is renamed
    ``<name>.bad`` and said in the log, not signed in."""
    handed = []
    for path in _left(audit_folder):
        if path in skip:
            continue
        try:
            handed.append(_read(path))
        except FileNotFoundError:
            continue  # taken by another reader
        except (OSError, ValueError) as exc:
            log.error("audit: %s is not a record a command left (%s); renamed .bad", path, exc)
            try:
                path.replace(path.with_name(path.name + ".bad"))
            except OSError as rename:
                log.error("audit: %s could not be set aside: %s", path, rename)
    return handed


def sweep_unfinished(audit_folder: Path, older_than_s: float = UNFINISHED_S) -> int:
    """Remove the files a command was killed while writing (``.<name>.tmp``, never
    renamed in), once no command could still be writing them; how many."""
    folder = incoming_folder(audit_folder)
    try:
        entries = [e for e in os.scandir(folder) if e.name.endswith(".tmp")]
    except FileNotFoundError:
        return 0
    swept = 0
    for entry in entries:
        try:
            if time.time() - entry.stat(follow_symlinks=False).st_mtime > older_than_s:
                os.unlink(entry.path)
                swept += 1
        except OSError as exc:  # gone meanwhile, or a folder no command writes
            log.warning("audit: %s was not swept: %s", entry.path, exc)
    return swept


def count_waiting(audit_folder: Path) -> tuple[int, int]:
    """How many records wait in ``incoming``, and how many files there hold none (to be
    set aside, never signed in); read only."""
    kept = others = 0
    for path in _left(audit_folder):
        try:
            _read(path)
            kept += 1
        except FileNotFoundError:
            continue
        except (OSError, ValueError):
            others += 1
    return kept, others


def _left(audit_folder: Path) -> list[Path]:
    folder = incoming_folder(audit_folder)
    try:
        names = sorted(
            entry.name
            for entry in os.scandir(folder)
            if entry.name.endswith(_SUFFIX) and not entry.name.startswith(".")
        )
    except FileNotFoundError:
        return []
    return [folder / name for name in names]


def _read(path: Path) -> Handed:
    """The record in a file of ``incoming``; ValueError if it holds none, OSError if it is
    not a regular file (a folder, a pipe, a link: not followed, nor waited on)."""
    descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(descriptor, "rb") as handle:
        status = os.fstat(handle.fileno())
        if not stat.S_ISREG(status.st_mode):
            raise ValueError("not a regular file")
        if status.st_size > _MOST_BYTES:
            raise ValueError(f"{status.st_size} bytes, more than a record holds")
        data = handle.read()
    try:
        left = json.loads(data)
        fields = left["fields"]
        # An older tether's file holds no "made" (and its text as the engine wrote it,
        # which the log keeps as audit.content says on signing it in, as it did then):
        # its name begins with the time it was made, as every file's does.
        made = float(left["made"]) if "made" in left else _named_time(path)
    except (KeyError, TypeError) as exc:
        raise ValueError(f"not a record's fields: {exc!r}") from exc
    if not isinstance(fields, dict):
        raise ValueError("its fields are not an object")
    return Handed(path, fields, made)


def _named_time(path: Path) -> float:
    """The time in a file's name (nanoseconds, as :func:`hand_off` names it)."""
    stamp = path.name.split("-", 1)[0]
    if len(stamp) != 20 or not stamp.isdigit():
        raise ValueError("no time it was made, in the file or its name")
    return int(stamp) / 1e9


def remove(handed: list[Handed]) -> None:
    """Remove records the log has signed in; their checkpoint is on disk already."""
    for one in handed:
        one.path.unlink(missing_ok=True)


class HandOff:
    """Stands in for the audit log in a command while another command keeps it.

    A record that cannot be written (the disk refuses) is reported to ``on_failure``
    rather than raised: the answer it belongs to has been made, and the command still
    gives it.
    """

    def __init__(self, audit_folder: Path, content: str, on_failure: Callable[[str], None]) -> None:
        self.folder = audit_folder
        self.handed = 0  # records left
        self._content = content
        self._on_failure = on_failure

    def append(self, record_fields: dict[str, Any]) -> int:
        """Leave one record; -1, as its seq is for the log's writer to give."""
        try:
            hand_off(self.folder, record_fields, self._content)
        except (OSError, TypeError, ValueError) as exc:
            self._on_failure(f"it could not be left for the audit log in {self.folder}: {exc}")
        else:
            self.handed += 1
        return -1

    def close(self) -> None:
        """Nothing to write: each record was on disk before ``append`` returned."""
