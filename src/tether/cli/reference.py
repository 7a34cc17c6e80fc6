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
    for name in sorted(cli.list_commands(root)):
        command = cli.get_command(root, name)
        assert command is not None
        context = click.Context(
            command,
            info_name=name,
            parent=root,
            terminal_width=88,
            max_content_width=88,
        )
        lines += [f"## tether {name}", "", "```", command.get_help(context), "```", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    print(cli_reference(), end="")
