"""Whether a trace still holds what the audit log committed to when it was written.

Traces live in SQLite, which keeps no checksums: text changed inside an intact page goes
unnoticed there. Each generation's audit record commits to its prompt and answer
(salted sha256), and the log is chained and signed, so the record shows whether the
trace was changed since.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tether.audit import records, segments
from tether.audit.log import AuditLog
from tether.traces import Trace

# How long after its answer a record may still wait in the log's queue: many checkpoint
# intervals, on a busy machine.
QUEUED_AT_MOST_S = 60.0
# How far apart a trace's time and its record's may be (the longest answer takes far less).
_SAME_TIME_S = 86_400.0
# What a generation's record keeps of how it was sampled (``SamplingParams.as_record``),
# each absent from both when unset; the record's other params (finish_reason, ...) are not
# in a trace's sampling.
SAMPLING = (
    "max_tokens",
    "temperature",
    "top_p",
    "seed",
    "stop",
    "line_deadline_s",
    "min_indent",
    "response_format",
    "chosen_call_format",
)


@dataclass(frozen=True)
class Witness:
    seq: int
    # Whether the trace's text matches the record's commitment; None when it holds none.
    prompt: bool | None
    answer: bool | None
    # Whether the trace's sampling parameters are the ones the record names; None when the
    # record names none (not a generation's).
    sampling: bool | None = None
    # Whether the trace's model is the one the record names; None where either has no
    # sha256 to compare (a gateway's).
    model: bool | None = None
    # Whether who asked (principal, token id), where (endpoint) and how the answer ended
    # (finish reason; its tokens and whether tether ended it, where the record keeps them)
    # are the record's; None for a record that is not a generation's.
    request: bool | None = None
    # Whether the policy decisions and compliance findings are the record's, and the trace
    # was made when the record was (within a day); None where the record cannot say.
    findings: bool | None = None
    time: bool | None = None
    # Whether the snippets the trace says were in the prompt are those the record names;
    # None for a record that names none (not a generation's).
    snippets: bool | None = None
    # Whether what the trace says the client got is what the record kept of it; None where
    # the record keeps no such text (audit.content "commitment", or "full", which keeps what
    # the engine wrote), or the trace says the client got what the engine wrote.
    delivered: bool | None = None

    @property
    def ok(self) -> bool:
        return False not in self.verdicts().values()

    def verdicts(self) -> dict[str, bool | None]:
        """Each part of the trace held against the record, by the name a reader knows."""
        return {
            "prompt": self.prompt,
            "answer": self.answer,
            "sampling": self.sampling,
            "model": self.model,
            "principal, token, endpoint or how it ended": self.request,
            "policy decisions or findings": self.findings,
            "time": self.time,
            "snippets from the store": self.snippets,
            "what the client got": self.delivered,
        }

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, **asdict(self)}

    @classmethod
    def from_dict(cls, data: object) -> Witness | None:
        """The verdict a server sent with a trace (``as_dict``); None for none, or one
        that is not a verdict."""
        if not isinstance(data, dict) or type(data.get("seq")) is not int:
            return None
        # An older server sends only the first three, five or seven.
        names = (
            "prompt",
            "answer",
            "sampling",
            "model",
            "request",
            "findings",
            "time",
            "snippets",
            "delivered",
        )
        verdicts = [data.get(name) for name in names]
        if not all(v is None or isinstance(v, bool) for v in verdicts):
            return None
        return cls(data["seq"], *verdicts)


def find_record(
    folder: Path, *request_ids: str, endpoint: str | None = None, since: float | None = None
) -> dict[str, Any] | None:
    """The newest record of any of ``request_ids``, searched from the end of the log; with
    ``endpoint``, the newest made there if there is one; with ``since``, only in segments
    written to since that time."""
    newest = None
    for record in records_of(folder, *request_ids, since=since):
        if endpoint in (None, record.get("endpoint")):
            return record
        newest = newest or record
    return newest


def records_of(
    folder: Path, *request_ids: str, since: float | None = None
) -> Iterator[dict[str, Any]]:
    """The records of any of ``request_ids``, newest first, in one reading of the log (with
    ``since``, of its segments written to since then: each holds records older than the
    next one's)."""
    wanted = set(request_ids)
    encoded = [json.dumps(i, ensure_ascii=False).encode() for i in request_ids]
    if len(encoded) == 1:
        needle = b'"request_id":' + encoded[0]
    else:  # what every id's field ends with (a request's id, after its kind's prefix)
        needle = min(encoded, key=len)
        while not all(e.endswith(needle) for e in encoded):
            needle = needle[1:]
    for path in reversed(segments.segment_paths(folder)):
        if since is not None and _last_written(path) < since:
            return
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
                and record.get("request_id") in wanted
                and isinstance(record.get("seq"), int)
            ):
                yield record


def _last_written(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:  # moved away meanwhile: read as the reading finds it
        return float("inf")


def witness(trace: Trace, folder: Path) -> Witness | None:
    """What the audit record of ``trace`` says of it; None when the log has no record.
    A record made where the trace was comes first: a command's record relayed later under
    the same id (anyone with ``audit:write`` may send one) does not stand for a server's."""
    record = find_record(folder, trace.id, endpoint=trace.endpoint)
    if record is None:
        return None
    return Witness(
        record["seq"],
        commitment_matches(trace.prompt, record.get("prompt")),
        commitment_matches(trace.output, record.get("completion")),
        _same_sampling(trace, record),
        _same_model(trace, record),
        _same_request(trace, record),
        _same_findings(trace, record),
        _same_time(trace, record),
        _same_snippets(trace, record),
        _same_delivered(trace, record),
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


def generation_params(record: dict[str, Any]) -> dict[str, Any] | None:
    """The params of a generation's record, or None for a record of anything else."""
    params = record.get("params")
    if not isinstance(params, dict) or "max_tokens" not in params:
        return None  # not a generation's record
    return params


def _same_sampling(trace: Trace, record: dict[str, Any]) -> bool | None:
    """Whether the trace was sampled (seed, temperature, ...) as the record says: an
    edited seed would make a manifest from the trace fail to reproduce."""
    params = generation_params(record)
    if params is None:
        return None
    return all(trace.sampling.get(name) == params.get(name) for name in SAMPLING)


def _same_model(trace: Trace, record: dict[str, Any]) -> bool | None:
    """Whether the trace names the model file the record does; a gateway's, which has no
    file to hash, by the model's id, as its record names it."""
    model = record.get("model_sha256")
    if generation_params(record) is None or not isinstance(model, str):
        return None
    if trace.model_sha256:
        return model == trace.model_sha256
    return model == trace.model if trace.model else None


def _same_request(trace: Trace, record: dict[str, Any]) -> bool | None:
    """Whether the trace credits the request to whom the record does, at the same
    endpoint, ended the same way: an edited principal would put it on another's account."""
    params = generation_params(record)
    if params is None:
        return None
    who = (trace.principal, trace.token_id)
    same_who = who == (record.get("principal"), record.get("token_id"))
    # A command's answer has no principal in its trace; beside a server, its record is
    # relayed there and names whose token sent it.
    relayed = trace.endpoint == "cli" and who == (None, None)
    # How far it went, where the record keeps it (newer records do).
    went = (params.get("completion_tokens"), params.get("ended_early"))
    traced = (trace.completion_tokens, trace.ended_early)
    return (
        (same_who or relayed)
        and trace.endpoint == record.get("endpoint")
        and trace.finish_reason == params.get("finish_reason")
        and all(kept is None or kept == mine for kept, mine in zip(went, traced, strict=True))
    )


def _found(findings: object) -> Counter[tuple[Any, ...]] | None:
    """What identifies each finding (rule, action, place), counted; None if not a list."""
    if not isinstance(findings, list):
        return None
    keys = ("rule_id", "action", "start", "end")
    return Counter(
        tuple(f.get(k) for k in keys) if isinstance(f, dict) else (repr(f),) for f in findings
    )


def _same_findings(trace: Trace, record: dict[str, Any]) -> bool | None:
    """Whether the trace's policy decisions and compliance findings are the record's: an
    emptied list would hide that a secret was redacted, or that code was flagged. A record
    that kept only some policy findings (``policy_omitted``) holds those the trace has."""
    params = generation_params(record)
    policy, checks = _found(record.get("policy")), _found(record.get("findings"))
    if params is None or policy is None or checks is None:
        return None
    traced_policy, traced_checks = _found(trace.policy), _found(trace.findings)
    if traced_policy is None or traced_checks is None:
        return False
    omitted = params.get("policy_omitted")
    if isinstance(omitted, int) and omitted > 0:  # those kept, and as many in all
        total = sum(policy.values()) + omitted
        same_policy = not policy - traced_policy and sum(traced_policy.values()) == total
    else:
        same_policy = policy == traced_policy
    return same_policy and checks == traced_checks


def _same_time(trace: Trace, record: dict[str, Any]) -> bool | None:
    """Whether the trace was made when its record was written: within a day of it (the
    longest answer takes far less). Either way: the record is written after the request
    came, but a wall clock stepped back meanwhile (NTP, a VM resumed) dates it earlier,
    and that is no sign of a trace changed."""
    written = record.get("time")
    if generation_params(record) is None or not isinstance(written, int | float):
        return None
    return abs(written - trace.created) <= _SAME_TIME_S


def _same_snippets(trace: Trace, record: dict[str, Any]) -> bool | None:
    """Whether the snippets the trace shows in the prompt are the ones the record names
    (id, version, hash): an added one would credit the answer to code it never saw."""
    params = generation_params(record)
    named = params.get("snippets") if params is not None else None
    if not isinstance(named, list):
        return None
    keys = ("id", "version", "hash")

    def counted(items: list[Any]) -> Counter[tuple[Any, ...]]:
        return Counter(
            tuple(i.get(k) for k in keys) if isinstance(i, dict) else (repr(i),) for i in items
        )

    # One left out for the token budget is not in the record; only it may say so.
    shown = [s for s in trace.snippets if not isinstance(s, dict) or s.get("fitted") is not False]
    return counted(shown) == counted(named)


def _same_delivered(trace: Trace, record: dict[str, Any]) -> bool | None:
    """Whether what the trace says the client got is the record's text of it. Under
    audit.content "redacted" the record keeps what the client got (with any value put back
    for it hidden again); under "full" it keeps what the engine wrote, which the answer's
    commitment already covers."""
    completion = record.get("completion")
    kept = completion.get("text") if isinstance(completion, dict) else None
    if trace.delivered is None or not isinstance(kept, str):
        return None
    mode = completion.get("content") if isinstance(completion, dict) else None
    if mode == "redacted":
        return kept == trace.delivered
    if mode == "full" or kept == trace.output:
        return None  # the engine's text: it cannot say (an older record names no mode)
    return kept == trace.delivered


def commitment_matches(text: str, committed: object) -> bool | None:
    if not isinstance(committed, dict):
        return None
    try:
        salt = bytes.fromhex(str(committed["salt"]))
    except (KeyError, ValueError):
        return False
    return records.commit(text, salt) == committed.get("sha256")
