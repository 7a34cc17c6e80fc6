"""``tether explain``: why a suggestion came out as it did, from its local trace."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import click

from tether.audit.log import audit_folder
from tether.audit.witness import Witness, witness
from tether.cli.backend import server_trace, server_traces
from tether.cli.common import EXIT_NO, backend_options, settings_from_flags
from tether.errors import NotFoundError
from tether.settings import Settings
from tether.traces import Trace, TraceStore, render_explanation

RECENT = 20


def _remote(
    settings: Settings, server: str, token: str | None, trace_id: str | None
) -> tuple[Trace, Witness | None] | list[dict[str, Any]] | None:
    if trace_id is None:
        return server_traces(settings, server, token, RECENT)
    try:
        return server_trace(settings, server, token, trace_id)
    except NotFoundError:
        return None


def _local(settings: Settings, trace_id: str | None) -> Trace | list[dict[str, Any]] | None:
    path = settings.data.home / "traces.sqlite"
    if not path.exists():
        raise NotFoundError(
            f"no traces yet at {path}; they are written by `tether serve` and the "
            "completion commands while traces.enabled is true"
        )
    with TraceStore.from_settings(settings) as store:
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
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e["created"]))
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
        where = f" --server {server}" if server else ""
        raise NotFoundError(
            f"no trace {trace_id!r}; it may be older than "
            f"{settings.traces.max_age_days:g} days or from another server. "
            f"List recent ids with `tether explain --recent{where}`"
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
    found = witness(trace, folder)
    if found is None:
        return (
            "no audit record has this id: it was made while audit.enabled was off or "
            "while another process kept the log (the command said so then), or this is not "
            "the log it went to"
        )
    return found


def _describe(seen: Witness | str) -> str:
    if isinstance(seen, str):
        return seen
    checked = (("prompt", seen.prompt), ("answer", seen.answer), ("sampling", seen.sampling))
    changed = [what for what, ok in checked if ok is False]
    if changed:
        return (
            f"seq {seen.seq}: the trace's {' and '.join(changed)} "
            f"{'do' if len(changed) > 1 else 'does'} NOT match what the record committed to: "
            "the trace was changed after it was written; the record is what was sent and "
            "returned"
        )
    return (
        f"seq {seen.seq}: the trace's prompt and answer match what the record committed to; "
        f"`tether audit prove {seen.seq}` shows the record is in the signed log"
    )


COMMANDS = [explain]
