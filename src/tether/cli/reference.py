"""The CLI reference (docs/cli.md), generated from the commands' own --help."""

from __future__ import annotations

import click

from tether.cli.main import cli


def cli_reference() -> str:
    lines = [
        "# Command line",
        "",
        "Generated from `tether --help` by `python -m tether.cli.reference`; a test keeps it",
        "in step with the code.",
        "",
    ]
    # A fixed width, so the file does not depend on the terminal that made it.
    root = click.Context(
        cli, info_name="tether", terminal_width=88, max_content_width=88, **cli.context_settings
    )
    lines += ["## tether", "", "```", cli.get_help(root), "```", ""]
    lines += _commands(cli, root, "tether")
    return "\n".join(lines)


def _commands(group: click.Group, parent: click.Context, path: str) -> list[str]:
    """Each command's help under ``group``, and that of a group's own commands after it
    (``tether usage report``, ``tether token create``): their options are what a reader
    looks the reference up for."""
    lines: list[str] = []
    for name in sorted(group.list_commands(parent)):
        command = group.get_command(parent, name)
        assert command is not None
        context = click.Context(
            command, info_name=name, parent=parent, terminal_width=88, max_content_width=88
        )
        lines += [f"## {path} {name}", "", "```", command.get_help(context), "```", ""]
        if isinstance(command, click.Group):
            lines += _commands(command, context, f"{path} {name}")
    return lines


if __name__ == "__main__":
    print(cli_reference(), end="")
