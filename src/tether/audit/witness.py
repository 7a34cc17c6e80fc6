"""Whether a trace still holds what the audit log committed to when it was written.

Traces live in SQLite, which keeps no checksums: text changed inside an intact page goes
unnoticed there. Each generation's audit record commits to its prompt and answer
(salted sha256), and the log is chained and signed, so the record shows whether the
trace was changed since.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tether.audit import records, segments
from tether.audit.log import AuditLog
from tether.traces import Trace

# How long after its answer a record may still wait in the log's queue: many checkpoint
# intervals, on a busy machine.
QUEUED_AT_MOST_S = 60.0
# What a generation's record keeps of how it was sampled (``SamplingParams.as_record``),
# each absent from both when unset; the record's other params (finish_reason, ...) are not
# in a trace's sampling.
_SAMPLING = ("max_tokens", "temperature", "top_p", "seed", "stop", "line_deadline_s", "min_indent")


@dataclass(frozen=True)
class Witness:
    seq: int
    # Whether the trace's text matches the record's commitment; None when it holds none.
    prompt: bool | None
    answer: bool | None
    # Whether the trace's sampling parameters and model are the ones the record names;
    # None when the record names none (not a generation's).
    sampling: bool | None = None

    @property
    def ok(self) -> bool:
        return self.prompt is not False and self.answer is not False and self.sampling is not False

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, **asdict(self)}

    @classmethod
    def from_dict(cls, data: object) -> Witness | None:
        """The verdict a server sent with a trace (``as_dict``); None for none, or one
        that is not a verdict."""
        if not isinstance(data, dict) or type(data.get("seq")) is not int:
            return None
        verdicts = [data.get(name) for name in ("prompt", "answer", "sampling")]
        if not all(v is None or isinstance(v, bool) for v in verdicts):
            return None
        return cls(data["seq"], *verdicts)


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
        _same_sampling(trace, record),
    )


def witness_served(trace: Trace, log: AuditLog) -> Witness | None:
    """:func:`witness` on the log a server writes, whose record of an answer asked about
    at once may still be queued: then it is written (with a checkpoint) and read. An
    older trace without a record (audit.enabled was off) costs no checkpoint."""
    seen = witness(trace, log.folder)
    if seen is None and time.time() - trace.created < QUEUED_AT_MOST_S:
        log.flush()
        seen = witness(trace, log.folder)
    return seen


def _same_sampling(trace: Trace, record: dict[str, Any]) -> bool | None:
    """Whether the trace was sampled (seed, temperature, ...) from the model the record
    says: an edited seed would make a manifest from the trace fail to reproduce."""
    params = record.get("params")
    if not isinstance(params, dict) or "max_tokens" not in params:
        return None  # not a generation's record
    same = all(trace.sampling.get(name) == params.get(name) for name in _SAMPLING)
    model = record.get("model_sha256")
    # A gateway's record names its model by id where the trace has no sha256 to compare.
    if trace.model_sha256 and isinstance(model, str) and model != trace.model_sha256:
        return False
    return same


def _matches(text: str, committed: object) -> bool | None:
    if not isinstance(committed, dict):
        return None
    try:
        salt = bytes.fromhex(str(committed["salt"]))
    except (KeyError, ValueError):
        return False
    return records.commit(text, salt) == committed.get("sha256")
