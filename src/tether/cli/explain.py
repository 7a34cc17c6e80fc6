"""``tether explain``: why a suggestion came out as it did, from its local trace."""

from __future__ import annotations

import contextlib
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import click

from tether.audit import segments
from tether.audit.log import audit_folder
from tether.audit.witness import Witness, witness
from tether.cli.backend import server_trace, server_traces
from tether.cli.common import EXIT_NO, backend_options, settings_from_flags
from tether.errors import NotFoundError
from tether.settings import Settings
from tether.traces import Trace, TraceStore, render_explanation
from tether.traces.missing import why_no_local_trace

# The longest explain waits for a fresh answer's audit record before saying when to ask again.
_MOST_WAIT_S = 5.0

RECENT = 20


def _remote(
    settings: Settings, server: str, token: str | None, trace_id: str | None
) -> tuple[Trace, Witness | None] | list[dict[str, Any]] | None:
    if trace_id is None:
        return server_traces(settings, server, token, RECENT)
    try:
        return server_trace(settings, server, token, trace_id)
    except NotFoundError as exc:  # the server says why (traces off there, or too old)
        if "tether audit prove" in exc.message:  # its log holds the record, and says so
            raise
        raise NotFoundError(
            f"{exc.message}. List recent ids with `tether explain --recent --server {server}`"
        ) from None


def _local(settings: Settings, trace_id: str | None) -> Trace | list[dict[str, Any]] | None:
    path = settings.data.home / "traces.sqlite"
    if not path.exists():
        raise NotFoundError(
            f"no traces yet at {path}; they are written by `tether serve` and the "
            "completion commands while traces.enabled is true"
        )
    with TraceStore.from_settings(settings, read_only=True) as store:
        if trace_id is None:
            return [t.summary() for t in store.recent(RECENT)]
        return store.get(trace_id)


def _print_recent(entries: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(entries, indent=2))
        return
    if not entries:
        click.echo("no traces yet")
    for e in entries:
        when = time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(e["created"]))
        click.echo(f"{e['id']:44} {when}  {e['kind']:10} {e['endpoint']}")


@click.command()
@click.argument("trace_id", metavar="ID", required=False)
@click.option("--recent", is_flag=True, help=f"List the last {RECENT} trace ids.")
@click.option("--json", "as_json", is_flag=True, help="Print the trace as JSON.")
@backend_options
def explain(
    trace_id: str | None, recent: bool, as_json: bool, server: str | None, token: str | None
) -> None:
    """Explain a suggestion by its id (cmpl-...): prompt, policies, checks, timings.

    The trace is also held against its audit record, which committed to its prompt and
    answer (with --server, by that server): exit status 1 when the trace was changed since.
    """
    if trace_id is None and not recent:
        raise click.UsageError("give a completion id, or --recent to list the latest ones")
    if trace_id is not None and recent:
        raise click.UsageError("give a completion id or --recent, not both")
    settings = settings_from_flags()
    wanted = None if recent else trace_id
    found = _remote(settings, server, token, wanted) if server else _local(settings, wanted)
    if isinstance(found, list):
        _print_recent(found, as_json)
        return
    if found is None:
        assert trace_id is not None
        raise NotFoundError(
            why_no_local_trace(settings, trace_id)
            or f"no trace {trace_id!r}; it may be older than "
            f"{settings.traces.max_age_days:g} days or from another server. "
            "List recent ids with `tether explain --recent`"
        )
    seen: Witness | str | None
    if isinstance(found, tuple):  # a server's trace, with its audit log's word on it
        found, seen = found
    else:
        seen = _audit_witness(settings, found)
    if as_json:
        record = seen.as_dict() if isinstance(seen, Witness) else None
        click.echo(json.dumps({**found.to_dict(), "audit": record}, indent=2))
    else:
        click.echo(render_explanation(found), nl=False)
        if seen is not None:
            click.echo(f"\nAudit record\n  {_describe(seen)}")
    if isinstance(seen, Witness) and not seen.ok:
        sys.exit(EXIT_NO)


def _audit_witness(settings: Settings, trace: Trace) -> Witness | str | None:
    """The audit record's word on ``trace``; a sentence when there is none to ask."""
    folder = audit_folder(settings)
    if not folder.is_dir():
        return None
    # A server writes its records to disk with a checkpoint, within checkpoint_interval_s
    # of the answer: a trace asked about at once may be ahead of its record. Read again
    # only as the log grows (a reading covers every segment), and for a while at most.
    interval = settings.audit.checkpoint_interval_s
    due = trace.created + trace.timings.get("total", 0.0) + interval + 1.0
    deadline = min(due, time.time() + _MOST_WAIT_S)
    size = _log_size(folder)  # before reading: a record may land while it is read
    found = witness(trace, folder)
    while found is None and time.time() < deadline:
        time.sleep(0.1)
        if (grown := _log_size(folder)) != size:
            size, found = grown, witness(trace, folder)
    if found is None and time.time() < due:
        return (
            f"no audit record yet: the server writes records with its checkpoints, every "
            f"{interval:g} s (audit.checkpoint_interval_s); ask again in "
            f"{math.ceil(due - time.time())} s"
        )
    if found is None:
        return (
            "no audit record has this id: it was made while audit.enabled was off or "
            "while another process kept the log (the command said so then), or this is not "
            "the log it went to"
        )
    return found


def _log_size(folder: Path) -> int:
    """The bytes of the log's segments, to tell whether it grew."""
    total = 0
    for path in segments.segment_paths(folder):
        with contextlib.suppress(OSError):  # a segment moved away meanwhile
            total += path.stat().st_size
    return total


def _describe(seen: Witness | str) -> str:
    if isinstance(seen, str):
        return seen
    changed = [what for what, ok in seen.verdicts().items() if ok is False]
    if changed:
        return (
            f"seq {seen.seq}: the trace's {' and '.join(changed)} "
            f"{'do' if len(changed) > 1 else 'does'} NOT match what the record committed to: "
            "the trace was changed after it was written; the record is what was sent and "
            "returned"
        )
    return (
        f"seq {seen.seq}: the trace's prompt and answer match what the record committed to, "
        "and what else it keeps (sampling, model, who asked, findings, snippets) agrees; "
        f"`tether audit prove {seen.seq}` shows the record is in the signed log"
    )


COMMANDS = [explain]
