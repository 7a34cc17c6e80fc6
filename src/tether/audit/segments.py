"""Reading the files of an audit folder: JSONL segments and the checkpoints file."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SEGMENT_GLOB = "segment-*.jsonl"
CHECKPOINTS = "checkpoints.jsonl"


def segment_name(index: int) -> str:
    return f"segment-{index:06d}.jsonl"


def segment_paths(folder: Path) -> list[Path]:
    return sorted(folder.glob(SEGMENT_GLOB))


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


def read_checkpoints(path: Path) -> tuple[list[dict[str, Any]], Torn | None]:
    """Checkpoint entries ``{"time", "size", "note"}``; a torn last entry apart."""
    if not path.exists():
        return [], None
    lines, torn = read_lines(path)
    entries = []
    for line in lines:
        entry = json.loads(line.data)
        entry["_line"] = line.number
        entries.append(entry)
    return entries, torn
