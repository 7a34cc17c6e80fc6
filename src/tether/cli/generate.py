"""``tether complete`` (FIM at a cursor) and ``tether chat`` (one-shot or interactive)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sys
import threading
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
from tether.textfile import file_lines, read_text

_LINE_END = re.compile(rb"\r\n?|\n")  # as an editor ends lines: Windows', Unix's, old Macs'


class _StdinLines:
    """Lines of standard input read from its file descriptor, each with its end (CR LF,
    LF or a lone CR), bytes that are not UTF-8 kept as lone surrogates whatever the
    locale's error handler (strict in en_US.UTF-8), for the caller to refuse that line
    alone. Read with os.read, not through sys.stdin: a thread blocked in the buffered
    reader holds its lock, and the interpreter's exit (Ctrl-C at the prompt) then aborts
    on it."""

    def __init__(self) -> None:
        self._pending = b""
        self._lf_owed = False  # the last line ended in a "\r" that was last of a read
        self._skipping = False  # the rest of a line refused as too long is still to come

    def readline(self, most: int | None = None) -> str:
        """The next line; with ``most``, a RequestError once a line is longer than
        ``most`` bytes, its end not counted, read no further than that: an endless line
        (``< /dev/zero``) is refused in the memory of one such line, not read forever.
        Asked for the next line after that, the rest of it is passed over unkept."""
        try:
            fd = sys.stdin.fileno()
        except (AttributeError, OSError, ValueError):  # a stream put in its place (tests)
            return self._readline_stream(most)
        if self._skipping and not self._skip_rest(fd):
            return ""  # the input ended within the line refused
        # The pieces of a long line are each searched once, and joined once: its end is in
        # the last piece read, as the others held none (a "\r" last of one ends the line).
        pieces, size = [self._pending], len(self._pending)
        while (end := _LINE_END.search(pieces[-1])) is None:
            if most is not None and size > most:
                # Not read now, and passed over in the memory of one piece should a next
                # line be asked for (at a terminal the conversation goes on).
                self._pending, self._skipping = b"", True
                raise _too_long(most)
            chunk = os.read(fd, 1 << 16)
            if not chunk:  # the end: what is left, if anything, is the last line
                line, self._pending = b"".join(pieces), b""
                if most is not None and len(line) > most:
                    raise _too_long(most)
                return line.decode("utf-8", "surrogateescape")
            if self._lf_owed:  # the "\n" of a "\r\n" that two reads split
                chunk, self._lf_owed = chunk.removeprefix(b"\n"), False
            pieces.append(chunk)
            size += len(chunk)
        last = pieces.pop()
        line, self._pending = b"".join([*pieces, last[: end.end()]]), last[end.end() :]
        if most is not None and end.start() + size - len(last) > most:
            raise _too_long(most)
        # A "\r" last of a read ends its line now, not once more is read: a writer may
        # wait for the answer before it sends the next line.
        self._lf_owed = line.endswith(b"\r") and not self._pending
        return line.decode("utf-8", "surrogateescape")

    def _skip_rest(self, fd: int) -> bool:
        """Read past the end of the line refused; False where the input ends first."""
        self._skipping = False
        while True:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return False
            if (end := _LINE_END.search(chunk)) is not None:
                self._pending = chunk[end.end() :]
                self._lf_owed = chunk[end.start() :] == b"\r"
                return True

    @staticmethod
    def _readline_stream(most: int | None) -> str:
        if most is None:
            return sys.stdin.readline()
        text = sys.stdin.readline(most + 2)  # characters: a line of most bytes, and its end
        if len(text.rstrip("\r\n").encode("utf-8", "surrogatepass")) > most:
            raise _too_long(most)
        return text


def _too_long(most: int) -> RequestError:
    # In bytes below a megabyte: a limit of 0.001 MB is 1,048 bytes, not "0.000999 MB".
    size = f"{most:,} bytes" if most < 2**20 else f"{most / 2**20:.3g} MB"
    return RequestError(
        f"a line of the input is longer than {size}, the most a request may carry "
        "(server.max_body_mb); send less, or raise the limit"
    )


_STDIN = _StdinLines()


async def read_line(most: int | None = None) -> str:
    """A line of standard input, at most ``most`` bytes long (see ``_StdinLines``), read
    without holding the event loop: Ctrl-C at the prompt cancels the wait at once (a
    blocking read held it until Enter). The reader is a daemon thread, so a line never
    typed does not keep the process alive."""
    loop = asyncio.get_running_loop()
    line: asyncio.Future[str] = loop.create_future()

    def settle(text: str | None, error: BaseException | None) -> None:
        if line.done():  # cancelled meanwhile: no one waits for it
            return
        if error is not None:
            line.set_exception(error)
        else:
            line.set_result(text or "")

    def read() -> None:
        text, error = None, None
        try:
            text = _STDIN.readline(most)
        except Exception as exc:  # handed to the waiting coroutine, which raises it
            error = exc
        with contextlib.suppress(RuntimeError):  # the loop is closed: the command ended
            loop.call_soon_threadsafe(settle, text, error)

    threading.Thread(target=read, name="tether-chat-input", daemon=True).start()
    return await line


def split_at_cursor(source: str, line: int, col: int) -> tuple[str, str]:
    """Split ``source`` at 1-based ``line`` and ``col`` (col 1 is before the first character).

    Lines end where an editor ends them, at a line feed or carriage return: not at the
    form feeds or Unicode separators that ``str.splitlines`` also splits on."""
    lines = file_lines(source, keepends=True) or [""]
    last = len(lines) + (1 if source.endswith(("\n", "\r")) else 0)  # where a cursor can be
    if line > last:
        raise RequestError(f"--line {line} is past the end of the file: its last line is {last}")
    if line == len(lines) + 1:
        lines.append("")
    text = lines[line - 1].rstrip("\r\n")
    if col > len(text) + 1:
        size = f"{len(text)} character{'' if len(text) == 1 else 's'}"
        raise RequestError(f"--col {col} is past the end of line {line} ({size})")
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
    help="Cursor column (1-based), in characters: not bytes, nor UTF-16 units.",
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
        # A line no request could carry is refused as it grows past that, not read whole.
        most = int(settings.server.max_body_mb * 2**20)
        if tty:
            click.echo("Chat with the model; an empty line or Ctrl-D ends.", err=True)
        first = True
        while True:
            if tty:
                click.echo("> ", nl=False, err=True)
            try:
                line = await read_line(most)
            except RequestError as exc:  # a line longer than any request may be
                if not tty:
                    raise
                click.echo(f"error: {exc.message}; that line was not sent", err=True)
                continue
            if first:  # a file saved by a Windows editor begins with a byte-order mark
                line, first = line.removeprefix("\ufeff"), False
            # Ctrl-D ends a line without a newline: the last one, after which the input
            # ends; at a terminal the cursor is still on it, and the shell's prompt or
            # the answer would go on the same line.
            last = not line.endswith(("\n", "\r"))
            if tty and last:
                click.echo(err=True)
            if not line.strip():
                return
            # Its end ("\r\n" in a file written on Windows) is no part of the question.
            question = line.rstrip("\r\n")
            try:
                question.encode("utf-8")
            except UnicodeEncodeError:  # stdin's bytes in another encoding (Latin-1)
                problem = "that line is not UTF-8 text; convert the input (iconv -t utf-8)"
                if not tty:
                    raise RequestError(problem) from None
                click.echo(f"error: {problem}", err=True)
                if last:
                    return
                continue
            answer = await answered(backend, question, tty)
            if answer is not None:
                if as_json:  # one object a line, each read as it comes
                    click.echo(completion_json(answer, indent=None))
                else:
                    click.echo()
                    report_findings(answer, exit_if_blocked=False)
                history.append({"role": "assistant", "content": answer.text})
            if last:
                return

    async def answered(backend: Backend, question: str, tty: bool) -> Completion | None:
        """The answer to ``question`` after the history, the oldest exchanges left out
        as the conversation outgrows the context window (the system message and the
        question always stay). A question too long on its own is not sent: at a terminal
        the conversation goes on as it was, and read from a file it is an error."""
        before = list(history)
        history.append({"role": "user", "content": question})
        first, dropped = (1 if system else 0), 0
        while True:
            try:
                answer = await backend.run(
                    ChatTask(params, list(history)), None if as_json else show
                )
                break
            except ContextLengthError as exc:
                if len(history) - first < 3:
                    history[:] = before
                    if not tty:
                        raise
                    click.echo(f"error: {exc.message}; the question was not sent", err=True)
                    return None
                del history[first : first + 2]
                dropped += 1
        if dropped:
            turns = "turn no longer fits and is" if dropped == 1 else "turns no longer fit and are"
            click.echo(f"(the oldest {turns} left out)", err=True)
        return answer

    run_async(
        lambda: with_backend(
            settings, server, token, one_shot if message is not None else interactive
        )
    )


COMMANDS = [complete, chat]
