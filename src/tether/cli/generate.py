"""``tether complete`` (FIM at a cursor) and ``tether chat`` (one-shot or interactive)."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import click

from tether.cli.backend import Backend
from tether.cli.common import (
    EXIT_NO,
    IntRange,
    Progress,
    backend_options,
    completion_json,
    make_params,
    report_findings,
    run_async,
    sampling_options,
    settings_from_flags,
    terminated_as_interrupted,
    with_backend,
)
from tether.errors import ContextLengthError, RequestError
from tether.languages import canonical
from tether.pipeline import ChatTask, Completion, ContextSnippet, FimInput, FimTask
from tether.textfile import read_text

_EDITOR_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z")


def split_at_cursor(source: str, line: int, col: int) -> tuple[str, str]:
    """Split ``source`` at 1-based ``line`` and ``col`` (col 1 is before the first character).

    Lines end where an editor ends them, at a line feed or carriage return: not at the
    form feeds or Unicode separators that ``str.splitlines`` also splits on."""
    lines = _EDITOR_LINE.findall(source) or [""]
    last = len(lines) + (1 if source.endswith(("\n", "\r")) else 0)  # where a cursor can be
    if line > last:
        raise RequestError(f"--line {line} is past the end of the file: its last line is {last}")
    if line == len(lines) + 1:
        lines.append("")
    text = lines[line - 1].rstrip("\r\n")
    if col > len(text) + 1:
        raise RequestError(f"--col {col} is past the end of line {line} ({len(text)} characters)")
    offset = sum(len(x) for x in lines[: line - 1]) + col - 1
    return source[:offset], source[offset:]


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--line", type=IntRange(min=1), required=True, help="Cursor line (1-based).")
@click.option(
    "--col",
    type=IntRange(min=1),
    default=1,
    show_default=True,
    help="Cursor column (1-based).",
)
@click.option(
    "--context",
    "context_files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Another file the model may read, most relevant first; repeat for more.",
)
@sampling_options(None)
@backend_options
@terminated_as_interrupted()  # SIGTERM cleans up as Ctrl-C does
def complete(
    file: Path,
    line: int,
    col: int,
    context_files: tuple[Path, ...],
    max_tokens: int | None,
    temperature: float | None,
    seed: int | None,
    as_json: bool,
    server: str | None,
    token: str | None,
) -> None:
    """Complete FILE at a cursor (fill in the middle) and print the inserted text."""
    settings = settings_from_flags()
    source = read_text(file).removeprefix("\ufeff")  # a byte-order mark is no column
    prefix, suffix = split_at_cursor(source, line, col)
    context = tuple(ContextSnippet(read_text(p), os.path.relpath(p)) for p in context_files)
    task = FimTask(
        make_params(settings, max_tokens, temperature, seed, default_temperature=0.2),
        FimInput(prefix=prefix, suffix=suffix, language=canonical("", file), context=context),
    )
    progress = Progress("completing")

    async def body(backend: Backend) -> Completion:
        return await backend.run(task, progress)

    try:
        completion = run_async(lambda: with_backend(settings, server, token, body))
    finally:  # an interrupted command leaves no counter where its last line goes
        progress.done()
    if as_json:
        click.echo(completion_json(completion))
        if completion.blocked:
            sys.exit(EXIT_NO)
        return
    click.echo(completion.text)
    report_findings(completion)


@click.command()
@click.option("-m", "--message", help="Ask once and exit; without it, chat interactively.")
@click.option("--system", help="System message.")
@sampling_options(None)
@backend_options
@terminated_as_interrupted()  # SIGTERM cleans up as Ctrl-C does
def chat(
    message: str | None,
    system: str | None,
    max_tokens: int | None,
    temperature: float | None,
    seed: int | None,
    as_json: bool,
    server: str | None,
    token: str | None,
) -> None:
    """Chat with the model: one question with -m, or a conversation, one turn a line,
    typed or read from standard input until an empty line or its end.

    With --json, a conversation prints one JSON object a line, one per answer."""
    if message is not None and not message.strip():
        raise click.UsageError("-m is empty: give the question, or leave out -m to chat")
    settings = settings_from_flags()
    params = make_params(settings, max_tokens, temperature, seed, default_temperature=0.7)
    history: list[dict[str, str]] = [{"role": "system", "content": system}] if system else []

    async def one_shot(backend: Backend) -> None:
        assert message is not None
        task = ChatTask(params, [*history, {"role": "user", "content": message}])
        if as_json:
            answer = await backend.run(task)
            click.echo(completion_json(answer))
            if answer.blocked:
                sys.exit(EXIT_NO)
            return
        answer = await backend.run(task, lambda text: click.echo(text, nl=False))
        click.echo()
        report_findings(answer)

    def show(text: str) -> None:
        click.echo(text, nl=False)

    async def interactive(backend: Backend) -> None:
        tty = sys.stdin.isatty()
        if tty:
            click.echo("Chat with the model; an empty line or Ctrl-D ends.", err=True)
        while True:
            if tty:
                click.echo("> ", nl=False, err=True)
            line = sys.stdin.readline()
            if not line.strip():
                return
            # A file written on Windows ends its lines with "\r\n": the "\r" is no part of
            # the question.
            history.append({"role": "user", "content": line.rstrip("\r\n")})
            while True:
                try:
                    task = ChatTask(params, list(history))
                    answer = await backend.run(task, None if as_json else show)
                    break
                except ContextLengthError:
                    # The oldest exchange goes, as a conversation outgrows the context
                    # window; the system message and the new question always stay.
                    first = 1 if system else 0
                    if len(history) - first < 3:
                        raise
                    del history[first : first + 2]
                    click.echo("(the oldest turn no longer fits and is left out)", err=True)
            if as_json:  # one object a line, each read as it comes
                click.echo(completion_json(answer, indent=None))
            else:
                click.echo()
                report_findings(answer, exit_if_blocked=False)
            history.append({"role": "assistant", "content": answer.text})

    run_async(
        lambda: with_backend(
            settings, server, token, one_shot if message is not None else interactive
        )
    )


COMMANDS = [complete, chat]
