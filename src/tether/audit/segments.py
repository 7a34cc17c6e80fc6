"""Reading the files of an audit folder: JSONL segments and the checkpoints file."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tether.errors import AuditError

SEGMENT_GLOB = "segment-*.jsonl"
_SEGMENT_NAME = re.compile(r"segment-([0-9]+)\.jsonl")
CHECKPOINTS = "checkpoints.jsonl"


def segment_name(index: int) -> str:
    return f"segment-{index:06d}.jsonl"


def segment_paths(folder: Path) -> list[Path]:
    """The log's segments, in order; another file named like one (``segment-old.jsonl``,
    a copy someone left there) is not part of the log."""
    numbered = []
    for path in folder.glob(SEGMENT_GLOB):
        matched = _SEGMENT_NAME.fullmatch(path.name)
        # As the log names them only: segment-1.jsonl is a copy of segment-000001.jsonl.
        if matched and path.name == segment_name(int(matched.group(1))):
            numbered.append((int(matched.group(1)), path))
    return [path for _, path in sorted(numbered)]


@dataclass(frozen=True)
class Line:
    path: Path
    number: int  # 1-based line number within its file
    data: bytes  # without the newline


@dataclass(frozen=True)
class Torn:
    path: Path
    offset: int  # where the unfinished line starts
    data: bytes


def read_lines(path: Path) -> tuple[list[Line], Torn | None]:
    """Complete lines of a file, and the unfinished last line a crash may leave."""
    raw, torn = read_raw(path)
    return [Line(path, i + 1, d) for i, d in enumerate(raw)], torn


def read_raw(path: Path) -> tuple[list[bytes], Torn | None]:
    """As ``read_lines`` but bare bytes, for loops where a Line per record costs too much."""
    raw = path.read_bytes()
    end = raw.rfind(b"\n") + 1
    torn = Torn(path, end, raw[end:]) if end < len(raw) else None
    return raw[:end].split(b"\n")[:-1], torn


def iter_records(folder: Path) -> Iterator[Line | Torn]:
    """Every complete record line in segment order; a torn tail comes last."""
    for path in segment_paths(folder):
        lines, torn = read_lines(path)
        yield from lines
        if torn is not None:
            yield torn


def checkpoint_entry(data: bytes | str) -> dict[str, Any]:
    """One line of a checkpoints file as ``{"time", "size", "note"}``; ValueError, saying
    what is wrong, for anything else."""
    try:
        entry = json.loads(data)
    except ValueError as exc:  # not JSON, or not UTF-8
        raise ValueError("not JSON") from exc
    if not isinstance(entry, dict):
        raise ValueError(f"a JSON {type(entry).__name__}, not an object")
    for name in ("note", "size", "time"):
        if name not in entry:
            raise ValueError(f"no {name!r}")
    time, size = entry["time"], entry["size"]
    if isinstance(time, bool) or not isinstance(time, int | float) or not 0 <= time < 1e11:
        raise ValueError(f"'time' is {time!r}, not a Unix time")
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise ValueError(f"'size' is {size!r}, not a record count")
    if not isinstance(entry["note"], str):
        raise ValueError("'note' is not a string")
    return entry


def last_checkpoints(path: Path, count: int, block: int = 1 << 16) -> list[dict[str, Any]]:
    """The last ``count`` complete checkpoint entries, read from the end of the file: an
    idle server adds one each heartbeat, so the whole file grows without bound."""
    return checkpoints_tail(path, count, block)[0]


def checkpoints_tail(
    path: Path, count: int, block: int = 1 << 16
) -> tuple[list[dict[str, Any]], Torn | None]:
    """As ``last_checkpoints``, and the unfinished last line a crash may leave."""
    if count <= 0 or not path.exists():
        return [], None
    with path.open("rb") as file:
        start = file.seek(0, os.SEEK_END)
        size = start
        data = b""
        while start > 0 and data.count(b"\n") <= count:
            step = min(block, start)
            start -= step
            file.seek(start)
            data = file.read(step) + data
    end = data.rfind(b"\n") + 1
    torn = Torn(path, start + end, data[end:]) if start + end < size else None
    lines = data[:end].split(b"\n")[:-1]
    if start > 0:
        lines = lines[1:]  # the first may have been cut by the read
    entries = []
    for line in lines[-count:]:
        try:
            entries.append(checkpoint_entry(line))
        except ValueError as exc:
            raise AuditError(
                f"{path}: a recent line is not a checkpoint entry ({exc}): the checkpoints "
                "file was changed or damaged; `tether audit verify` names the line"
            ) from None
    return entries, torn


def iter_checkpoints(path: Path) -> Iterator[dict[str, Any] | Torn]:
    """Checkpoint entries ``{"time", "size", "note", "_line"}``, a line at a time (an idle
    server adds one each heartbeat), then the torn last entry a crash may leave.

    A complete line that is not an entry was changed or damaged: AuditError, naming it.
    """
    if not path.exists():
        return
    with path.open("rb") as file:
        offset = 0
        for number, data in enumerate(file, 1):
            if not data.endswith(b"\n"):
                yield Torn(path, offset, data)
                return
            offset += len(data)
            yield _numbered_entry(path, number, data)


def checkpoints_on(path: Path, numbers: Iterable[int]) -> Iterator[dict[str, Any]]:
    """The entries on lines ``numbers`` (ascending), read again a line at a time."""
    wanted = iter(numbers)
    target = next(wanted, None)
    with path.open("rb") as file:
        for number, data in enumerate(file, 1):
            if target is None:
                return
            if number == target:
                yield _numbered_entry(path, number, data)
                target = next(wanted, None)
    if target is not None:
        raise AuditError(f"{path} lost line {target} while being read: was it replaced?")


def _numbered_entry(path: Path, number: int, data: bytes) -> dict[str, Any]:
    try:
        entry = checkpoint_entry(data)
    except ValueError as exc:
        raise AuditError(
            f"{path}:{number} is not a checkpoint entry ({exc}): the checkpoints "
            "file was changed or damaged; compare it with a copy saved earlier"
        ) from None
    entry["_line"] = number
    return entry
