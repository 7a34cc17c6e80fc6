"""The ``tether`` command: one module per command group, all thin over the library."""

from __future__ import annotations

import sys
from typing import Any

import click

from tether import __version__
from tether.errors import TetherError


class TetherGroup(click.Group):
    """Turns tether's own errors into one clear line on stderr and exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except TetherError as exc:
            click.echo(f"error: {exc.message}", err=True)
            sys.exit(1)


@click.group(cls=TetherGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tether")
def cli() -> None:
    """tether: a self-hosted AI coding assistant over a local model."""


def _register() -> None:
    from tether.cli import audit, check, explain, generate, info, serve, suggest, templates, token

    for module in (serve, generate, suggest, info, token, templates, check, explain, audit):
        for command in module.COMMANDS:
            cli.add_command(command)
    _register_plugin_commands()


def _register_plugin_commands() -> None:
    from tether.plugins import build_manager
    from tether.settings import load_settings

    try:
        manager = build_manager(load_settings(), configured=False)
    except TetherError:
        return  # the command that runs will report the bad setting or plugin itself
    manager.hook.register_commands(cli=cli)


_register()


def main() -> None:
    cli(prog_name="tether")
