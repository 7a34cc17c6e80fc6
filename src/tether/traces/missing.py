"""Why there is no trace of an id the audit log knows: its request generated nothing, or
its trace was deleted. Read from the log, which may be gigabytes, in one pass."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tether.audit.log import audit_folder
from tether.audit.witness import find_record
from tether.settings import Settings
from tether.traces.store import ANSWER_ID_PREFIXES, RESPONSE_ID_PREFIX


def why_no_local_trace(settings: Settings, trace_id: str) -> str:
    """``why_no_trace`` of this machine's audit log, with its traces' settings."""
    kept_days = settings.traces.max_age_days if settings.traces.enabled else None
    return why_no_trace(audit_folder(settings), trace_id, kept_days)


def why_no_trace(
    folder: Path, trace_id: str, kept_days: float | None, *, read_days: float | None = None
) -> str:
    """Why the audit log in ``folder`` has a record of ``trace_id`` but there is no trace:
    the request generated nothing (refused, failed, not a generation), or, made within the
    ``kept_days`` traces are kept (None: traces are off), the trace was deleted. "" where
    the log has no such record, or an old one. ``read_days``: only the log's segments
    written to in that many days are read (a server's answer to any id a client names
    costs no more than the days it keeps traces)."""
    since = time.time() - read_days * 86400 if read_days is not None else None
    record = _record_of(folder, trace_id, since) if folder.is_dir() else None
    if record is None or not isinstance(record.get("time"), int | float):
        return ""
    made = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(record["time"]))
    held = f"the audit log holds its record (seq {record['seq']}, {made})"
    params = record.get("params")
    if isinstance(params, dict) and "finish_reason" not in params:
        return _nothing_generated(trace_id, record, params, held)
    if kept_days is None or not isinstance(params, dict):
        return ""  # no trace was kept: traces were off
    if time.time() - record["time"] > kept_days * 86400:
        return ""
    return (
        f"no trace {trace_id!r}, yet {held}, younger than the "
        f"{kept_days:g} days traces are kept: the trace was deleted; "
        f"the record is what was sent and returned (`tether audit prove {record['seq']}`)"
    )


def _record_of(folder: Path, trace_id: str, since: float | None) -> dict[str, Any] | None:
    """The record of ``trace_id``, or, for a request's bare id (its X-Request-Id), the
    record of its answer (``cmpl-``, ``chatcmpl-``) or of a request that generated nothing
    (``req-``), as the trace store finds a trace by either: all in one reading of the log,
    which may be gigabytes."""
    kinds = (*ANSWER_ID_PREFIXES, "req-")
    if trace_id.startswith(kinds):
        return find_record(folder, trace_id, since=since)
    request_id = trace_id.removeprefix(RESPONSE_ID_PREFIX)
    return find_record(folder, trace_id, *(kind + request_id for kind in kinds), since=since)


def _nothing_generated(
    trace_id: str, record: dict[str, Any], params: dict[str, Any], held: str
) -> str:
    """A request with a record and no trace by design: nothing was generated for it."""
    said = f"{record.get('endpoint') or 'a request'}"
    if "status" in params:
        said += f", answered {params['status']}"
    policy = record.get("policy")
    rules = (
        sorted({str(f.get("rule_id")) for f in policy if isinstance(f, dict)})
        if isinstance(policy, list)
        else []
    )
    blocked = f"; the policy's findings: {', '.join(rules)}" if rules else ""
    return (
        f"{trace_id!r} generated nothing, so it has no trace ({said}{blocked}); {held}, "
        f"which keeps who asked, where and the policy's decisions: `tether audit tail` "
        f"shows records, `tether audit prove {record['seq']}` that it is in the signed log"
    )
