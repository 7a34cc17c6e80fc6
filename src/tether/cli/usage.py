"""``tether usage``: the request ledger, summed, with what the cloud would have charged."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import click

from tether.cli.common import settings_from_flags
from tether.databases import MEND, is_damage
from tether.errors import ConfigError, RequestError
from tether.usage.ledger import ledger_path
from tether.usage.prices import price_table
from tether.usage.reader import GROUPINGS, LedgerReader
from tether.usage.report import (
    as_csv,
    as_json_text,
    as_table,
    build_report,
    future_start,
    parse_when,
)

_FORMATS = {"table": as_table, "csv": as_csv, "json": as_json_text}


@click.group()
def usage() -> None:
    """Usage and cost: who used which model how much, and what it would have cost."""


@usage.command("report")
@click.option(
    "--since",
    default="30d",
    show_default=True,
    help="Start: a span before now (30d, 12h, 2w), a date or a date-time.",
)
@click.option("--until", default=None, help="End (same forms); default now.")
@click.option(
    "--by",
    type=click.Choice(sorted(GROUPINGS)),
    default=None,
    help="One row per principal, model, day or endpoint; default only the total.",
)
@click.option(
    "--compare",
    "compare",
    multiple=True,
    help="A hosted model to price against (repeatable); default usage.compare_with.",
)
@click.option(
    "--format", "fmt", type=click.Choice(sorted(_FORMATS)), default="table", show_default=True
)
@click.option(
    "--ledger",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="A ledger file (a copy of <data.home>/usage.sqlite); default the server's.",
)
def report(
    since: str, until: str | None, by: str | None, compare: tuple[str, ...], fmt: str,
    ledger: Path | None,
) -> None:  # fmt: skip
    """Requests, tokens, time to first token, egress avoided, cloud and local cost."""
    settings = settings_from_flags()
    now = time.time()
    start = parse_when(since, now=now, option="--since")
    end = parse_when(until, now=now, option="--until") if until else now
    if start >= end and until and _default("since"):
        raise RequestError(
            f"the period is empty: without --since it starts {since} before now, which is "
            f"not before --until {until}; give --since as well",
            param="since",
        )
    if not until:
        future_start(since, start, now)
    if start >= end:
        raise RequestError("the period is empty: --since must be before --until", param="since")
    prices = price_table(settings)
    # The server's own ledger may not be there yet (no request served); a named one must.
    path = ledger or ledger_path(settings)
    try:
        with LedgerReader(path, missing_ok=ledger is None) as reader:
            result = build_report(
                reader, settings, prices, since=start, until=end, by=by,  # type: ignore[arg-type]
                compare_with=list(compare) or None,
            )  # fmt: skip
    except sqlite3.DatabaseError as exc:
        if not is_damage(exc):
            raise
        raise ConfigError(f"the usage ledger {path} is damaged ({exc}); {MEND}") from exc
    click.echo(_FORMATS[fmt](result), nl=False)
    if ledger is None and not settings.usage.enabled:
        click.echo(
            "warning: usage.enabled is false: the server records no usage, so this report "
            "counts only what was recorded before it was switched off",
            err=True,
        )


def _default(name: str) -> bool:
    source = click.get_current_context().get_parameter_source(name)
    return source is not click.core.ParameterSource.COMMANDLINE


@usage.command("prices")
def prices_command() -> None:
    """The price table the report uses: bundled (with its date) plus usage.prices."""
    table = price_table(settings_from_flags())
    click.echo(f"price table {table.version}: {table.source}")
    click.echo("USD per million tokens: input, cached input, output")
    width = max(map(len, table.prices), default=0)
    for name in sorted(table.prices):
        p = table.prices[name]
        origin = " (usage.prices)" if p.configured else ""
        prices = f"{p.input:>8.3f} {p.cached_input:>8.3f} {p.output:>8.3f}"
        click.echo(f"  {name:<{width}} {prices}{origin}")


COMMANDS = [usage]
