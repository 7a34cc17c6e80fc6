"""Whether a trace still holds what the audit log committed to when it was written.

Traces live in SQLite, which keeps no checksums: text changed inside an intact page goes
unnoticed there. Each generation's audit record commits to its prompt and answer
(salted sha256), and the log is chained and signed, so the record shows whether the
trace was changed since.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tether.audit import records, segments
from tether.traces import Trace


@dataclass(frozen=True)
class Witness:
    seq: int
    # Whether the trace's text matches the record's commitment; None when it holds none.
    prompt: bool | None
    answer: bool | None

    @property
    def ok(self) -> bool:
        return self.prompt is not False and self.answer is not False

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, **asdict(self)}


def find_record(folder: Path, request_id: str) -> dict[str, Any] | None:
    """The newest record of ``request_id``, searched from the end of the log."""
    needle = b'"request_id":' + json.dumps(request_id, ensure_ascii=False).encode()
    for path in reversed(segments.segment_paths(folder)):
        lines, _ = segments.read_raw(path)
        for data in reversed(lines):
            if needle not in data:
                continue
            try:
                record = json.loads(data)
            except ValueError:  # a damaged line: `tether audit verify` names it
                continue
            if (
                isinstance(record, dict)
                and record.get("request_id") == request_id
                and isinstance(record.get("seq"), int)
            ):
                return record
    return None


def witness(trace: Trace, folder: Path) -> Witness | None:
    """What the audit record of ``trace`` says of it; None when the log has no record."""
    record = find_record(folder, trace.id)
    if record is None:
        return None
    return Witness(
        record["seq"],
        _matches(trace.prompt, record.get("prompt")),
        _matches(trace.output, record.get("completion")),
    )


def _matches(text: str, committed: object) -> bool | None:
    if not isinstance(committed, dict):
        return None
    try:
        salt = bytes.fromhex(str(committed["salt"]))
    except (KeyError, ValueError):
        return False
    return records.commit(text, salt) == committed.get("sha256")
