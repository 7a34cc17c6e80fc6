"""``tether explain``: why a suggestion came out as it did, from its local trace."""

from __future__ import annotations

import json
import time
from typing import Any

import click

from tether.cli.backend import call_server
from tether.cli.common import backend_options, settings_from_flags
from tether.errors import NotFoundError
from tether.settings import Settings
from tether.traces import Trace, TraceStore, render_explanation

RECENT = 20


def _remote(
    settings: Settings, server: str, token: str | None, trace_id: str | None
) -> Trace | list[dict[str, Any]] | None:
    if trace_id is None:
        answer = call_server(settings, server, token, "GET", f"/v1/traces?limit={RECENT}")
        return list(answer["data"])
    try:
        return Trace.from_dict(
            call_server(settings, server, token, "GET", f"/v1/traces/{trace_id}")
        )
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
    """Explain a suggestion by its id (cmpl-...): prompt, policies, checks, timings."""
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
    click.echo(json.dumps(found.to_dict(), indent=2) if as_json else render_explanation(found))


COMMANDS = [explain]
