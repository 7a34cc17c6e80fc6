"""``tether templates``: which prompt templates are in force, and what they say."""

from __future__ import annotations

import json

import click

from tether.cli.common import EXIT_NO, settings_from_flags
from tether.templates import NAMES, PromptTemplates


@click.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def templates(ctx: click.Context, as_json: bool) -> None:
    """List the prompt templates: name, where it comes from, sha256.

    Exit status 1 when one is broken (it does not compile, or names a variable no request
    gives it), as every request that needs it would fail."""
    if ctx.invoked_subcommand is not None:
        ctx.obj = as_json  # `templates --json show NAME` is JSON too
        return
    found = PromptTemplates(settings_from_flags().templates.dir)
    infos = found.info()
    problems = {info.name: found.problem(info.name) for info in infos}
    if as_json:
        click.echo(
            json.dumps([{**vars(i), "problem": problems[i.name] or None} for i in infos], indent=2)
        )
    else:
        for info in infos:
            said = f"  BROKEN: {problems[info.name]}" if problems[info.name] else ""
            click.echo(f"{info.name:8} {info.sha256[:12]}  {info.origin}{said}")
    for stray in found.strays():
        click.echo(f"warning: {stray}", err=True)
    if any(problems.values()):
        raise SystemExit(EXIT_NO)  # every request that needs one fails


@templates.command("show")
@click.argument("name", type=click.Choice(NAMES))
@click.option("--json", "as_json", is_flag=True, help="Print JSON: name, origin, sha256, source.")
@click.pass_context
def show(ctx: click.Context, name: str, as_json: bool) -> None:
    """Print a template's source (copy it into templates.dir to edit it)."""
    found = PromptTemplates(settings_from_flags().templates.dir)
    source = found.source(name)
    if as_json or ctx.obj is True:
        info = next(i for i in found.info() if i.name == name)
        click.echo(json.dumps({**vars(info), "source": source}, indent=2))
        return
    click.echo(source, nl=False)


COMMANDS = [templates]
