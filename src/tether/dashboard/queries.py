"""What the dashboard's pages show, read from the stores tether already keeps.

Every aggregate is computed in SQL (the usage rollups, the traces' indexed columns) so a
page costs the same with a year of usage and 100,000 traces as with a day's.
"""

from __future__ import annotations

import base64
import difflib
import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

from tether.audit import segments
from tether.audit.log import AuditLog
from tether.audit.witness import witness_served
from tether.compliance import Checker
from tether.errors import NotFoundError, RequestError
from tether.evals.manifest import made_differently
from tether.evals.metrics import CONFIDENCE, compare, estimate, recorded_value
from tether.evals.store import EvalStore, decided, per_task
from tether.store import FunctionStore, Snippet, State
from tether.store.gates import Gate, run_gates
from tether.traces import Trace, TraceStore
from tether.traces.missing import why_no_trace

# What a viewer without audit:read does not see of a trace: the text that was sent or said.
CONTENT_FIELDS = ("prompt", "output", "delivered", "context")
MAX_SEARCHED = 1000  # vetted snippets a search of the store pages through
# Nor the fingerprints of matched values: an unsalted sha256 of an email address, a phone
# or a card number is turned back into the value by hashing a list of guesses.
FINDING_FIELDS = ("policy", "findings")


def _without_fingerprints(findings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**finding, "fingerprint": None} for finding in findings]


def holds_fingerprints(record: bytes) -> bool:
    """Whether audit record ``record`` holds the fingerprint of a matched value."""
    try:
        fields = json.loads(record)
    except ValueError:
        return True  # unreadable here: not shown to those who may not read values
    listed = [f for name in FINDING_FIELDS for f in fields.get(name) or []]
    return any(isinstance(f, dict) and f.get("fingerprint") for f in listed)


def _no_trace(store: TraceStore, trace_id: str) -> str:
    if not store.enabled:
        return (
            f"no trace {trace_id!r}: traces are off on this server (traces.enabled = false), "
            "so it records none; only traces kept from before are shown"
        )
    return (
        f"no trace {trace_id!r}: it may be older than traces.max_age_days "
        f"({store.max_age_days:g} days) or the id is mistyped"
    )


def trace_detail(
    store: TraceStore, trace_id: str, with_content: bool, audit: AuditLog | None
) -> dict[str, Any]:
    """The trace, and what its record in the audit log ``audit`` says of it: whether
    its prompt and answer are still what the log committed to (the verdicts hold no text)."""
    trace: Trace | None = store.get(trace_id)
    if trace is None:
        kept_days = store.max_age_days if store.enabled else None
        read = store.max_age_days  # any viewer may ask: no more of the log than that
        why = why_no_trace(audit.folder, trace_id, kept_days, read_days=read) if audit else ""
        raise NotFoundError(why or _no_trace(store, trace_id))
    body = trace.to_dict()
    seen = witness_served(trace, audit) if audit is not None else None
    body["audit"] = seen.as_dict() if seen is not None else None
    body["content_hidden"] = not with_content
    if not with_content:
        for name in CONTENT_FIELDS:
            body[name] = None
        for name in FINDING_FIELDS:
            body[name] = _without_fingerprints(body[name])
    return body


def audit_overview(folder: Path, limit: int = 500, read: int = 5000) -> dict[str, Any]:
    """The last ``limit`` points of the log's growth, from its last ``read`` checkpoints:
    a run of heartbeats that repeat one size is shown by its first and last, so an idle
    log's chart spans its last ``read`` heartbeats (14 hours), not ``limit`` (83 minutes)."""
    entries = segments.last_checkpoints(folder / segments.CHECKPOINTS, read)
    key_file = folder / "verifier.key"
    shown: list[dict[str, Any]] = []
    for index, entry in enumerate(entries):
        same_before = index and entries[index - 1]["size"] == entry["size"]
        same_after = index + 1 < len(entries) and entries[index + 1]["size"] == entry["size"]
        if same_before and same_after:
            continue  # inside a run of heartbeats
        lines = entry["note"].split("\n")
        shown.append({"time": entry["time"], "size": entry["size"], "root": lines[2]})
    shown = shown[-limit:]
    return {
        "verifier_key": key_file.read_text().strip() if key_file.exists() else "",
        "checkpoints": shown,
        "latest": shown[-1] if shown else None,
    }


def record_bytes(folder: Path, seq: int) -> bytes:
    """Record ``seq`` exactly as stored: the bytes its leaf hash is taken over. Segments
    before its own are only counted, a line per newline, not split into records."""
    index = 0
    for path in segments.segment_paths(folder):
        data = path.read_bytes()
        held = data.count(b"\n")  # a partial last line is no record
        if seq < index + held:
            return data.split(b"\n")[seq - index]
        index += held
    raise NotFoundError(f"no audit record {seq}; the log holds {index}")


def audit_proof(proof: dict[str, Any], record: bytes) -> dict[str, Any]:
    return {**proof, "record": base64.b64encode(record).decode()}


def _gates(snippet: Snippet, checker: Checker, licences: list[str]) -> dict[str, Any]:
    """The quick gates; an attached test runs in the sandbox only when someone approves
    (a vetted version's passed then)."""
    untested = replace(snippet, current=replace(snippet.current, test=""))
    found: list[Gate] = run_gates(untested, checker, licences, sandbox=None)
    gates = {g.name: {"passed": g.passed, "detail": g.detail} for g in found}
    if snippet.current.test and snippet.state == "vetted":
        # Approval ran it, and approves only past every gate.
        gates["test"] = {"passed": True, "detail": "passed in the sandbox when approved"}
    elif snippet.current.test:
        gates["test"] = {"passed": None, "detail": "runs in the sandbox on approval"}
    return gates


def store_list(
    store: FunctionStore,
    checker: Checker,
    licences: list[str],
    state: str,
    query: str,
    limit: int,
    offset: int = 0,
) -> tuple[list[dict[str, Any]], int]:
    """A page of snippets (``limit`` from ``offset``) with their quick gates, and how many
    there are in all: a queue longer than a page is paged, never cut."""
    wanted: State | None = None if state == "all" else state  # type: ignore[assignment]
    if query and state == "vetted":  # the store's own search covers vetted snippets
        hits = [hit.snippet for hit in store.searcher.search(query, MAX_SEARCHED)]
        found, total = hits[offset : offset + limit], len(hits)
    elif query:  # over every snippet: the queue after an import of a project holds thousands
        matching = store.db.ids_holding(query.split(), wanted)
        found = [store.db.get(snippet_id) for snippet_id in matching[offset : offset + limit]]
        total = len(matching)
    else:
        found = store.db.snippets(wanted, limit, offset, False)
        counts = store.db.counts()
        total = sum(counts.values()) if wanted is None else counts[wanted]
    return [_row(snippet, _gates(snippet, checker, licences)) for snippet in found], total


def _row(snippet: Snippet, gates: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": snippet.id,
        "name": snippet.name,
        "version": snippet.current.version,
        "status": snippet.state,
        "language": snippet.language,
        "licence": snippet.current.licence or None,
        "created": snippet.created,
        "gates": gates,
    }


def store_detail(
    store: FunctionStore,
    checker: Checker,
    licences: list[str],
    snippet_id: int,
    with_code: bool,
) -> dict[str, Any]:
    """A snippet for review; its code and diff only ``with_code``: reading code needs
    store:read, as on /v1/snippets, and a candidate's may hold a secret its gate caught."""
    snippet = store.db.get(snippet_id)
    versions = store.db.versions(snippet_id)
    body = _row(snippet, _gates(snippet, checker, licences))
    body["code"] = snippet.current.code
    # Whether it is, or asks to be, callable: approving keeps that unless the reviewer
    # says otherwise, so the reviewer must see it.
    body["callable"] = snippet.callable
    body["origin"] = snippet.current.origin.path or snippet.current.origin.repository or None
    body["decisions"] = [d.__dict__ for d in store.db.decisions(snippet_id)]
    # What a reviewer approves is the change from the version in service, not from the
    # one before (which may have been rejected, or be a small edit on a large one).
    pending = snippet.served is not None and snippet.served != snippet.current.version
    previous = [
        v
        for v in versions
        if (v.version == snippet.served if pending else v.version < snippet.current.version)
    ]
    body["previous"] = previous[-1].version if previous else None
    body["diff"] = (
        "\n".join(
            difflib.unified_diff(
                previous[-1].code.splitlines(),
                snippet.current.code.splitlines(),
                f"v{previous[-1].version}",
                f"v{snippet.current.version}",
                lineterm="",
            )
        )
        if previous
        else None
    )
    body["code_hidden"] = not with_code
    if not with_code:
        body["code"] = body["diff"] = None
    return body


def _pass_at_1(run_summary: dict[str, Any] | None) -> float | None:
    return recorded_value((run_summary or {}).get("pass_at_k", {}).get("pass@1", {}))


def eval_runs(store: EvalStore, limit: int = 200) -> list[dict[str, Any]]:
    return [
        {
            "id": run.id,
            "created": run.created,
            "suite": run.suite,
            "status": run.status,
            "pass_at_1": _pass_at_1(run.summary),
            "tasks": (run.summary or {}).get("tasks"),
            "model": run.manifest.get("engine", {}).get("model"),
        }
        for run in store.runs(limit)
    ]


def eval_run(store: EvalStore, run_id: str) -> dict[str, Any]:
    run = store.run(run_id)
    results = store.samples(run.id)
    counts = per_task(results)
    tasks = [{"task_id": t, "samples": n, "passed": c} for t, (n, c) in sorted(counts.items())]
    pass1 = _pass_at_1(run.summary)
    if pass1 is None and (found := estimate(decided(run, results), 1)) is not None:
        pass1 = found.value
    return {
        "run": {
            "id": run.id,
            "created": run.created,
            "suite": run.suite,
            "status": run.status,
            "pass_at_1": pass1,
        },
        "tasks": tasks,
    }


def eval_compare(store: EvalStore, run_a: str, run_b: str) -> dict[str, Any]:
    a, b = store.run(run_a), store.run(run_b)
    counts_a, counts_b = decided(a, store.samples(a.id)), decided(b, store.samples(b.id))
    result = compare(counts_a, counts_b)
    common = sorted(counts_a.keys() & counts_b.keys())
    changed = [
        {"task_id": t, "a": counts_a[t][1] > 0, "b": counts_b[t][1] > 0}
        for t in common
        if (counts_a[t][1] > 0) != (counts_b[t][1] > 0)
    ]

    def share(counts: dict[str, tuple[int, int]]) -> float:
        return sum(counts[t][1] / counts[t][0] for t in common) / len(common) if common else 0.0

    return {
        "a": a.id,
        "b": b.id,
        "tasks": result.tasks,
        "pass_a": share(counts_a),
        "pass_b": share(counts_b),
        **{k: v for k, v in result.as_record().items() if k != "tasks"},
        "confidence": CONFIDENCE,  # of the interval, low to high
        "changed": changed,
        "differences": made_differently(a, b),
    }


def cursor_of(summary: dict[str, Any]) -> str:
    """Where the next page starts: after this trace (its time, then its id)."""
    return f"{summary['created']!r}:{summary['id']}"


def parse_cursor(before: str | None) -> tuple[float, str] | None:
    if not before:
        return None
    created, _, trace_id = before.partition(":")
    try:
        # A cursor given out is ASCII; float() would also read other scripts' digits.
        when = float(created) if created.isascii() else math.nan
    except ValueError:
        when = math.nan
    # nan would match no trace and inf every one: neither is a page that was ever given out
    if not math.isfinite(when):
        raise RequestError(
            f"before={before!r} is not a cursor; use the 'next' value of the previous page",
            param="before",
        )
    return when, trace_id
