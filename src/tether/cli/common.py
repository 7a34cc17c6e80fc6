"""Options and helpers that several commands share."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import math
import os
import signal
import sys
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from tether.engines.base import SamplingParams
from tether.errors import RequestError
from tether.findings import Finding
from tether.pipeline import Completion
from tether.settings import MAX_SEED, Settings, load_settings
from tether.textfile import write_atomically

if TYPE_CHECKING:
    from tether.cli.backend import Backend

T = TypeVar("T")

# Exit statuses of every command; ``tether.cli.main`` maps errors to them.
EXIT_NO = 1  # the command ran and its answer is no: findings, a failed verification
EXIT_USAGE = 2  # bad arguments, input, settings or files (click's usage errors, too)
EXIT_UNAVAILABLE = 3  # no server, no upstream, a full queue, a generation cut short
EXIT_AUTH = 4  # the token is missing, wrong, expired or lacks the scope
EXIT_INTERNAL = 70  # a fault in tether itself (EX_SOFTWARE)
EXIT_INTERRUPTED = 130
EXIT_PIPE = 141  # the reader of the output closed it (`| head`): 128 + SIGPIPE, as shells say

F = TypeVar("F", bound=Callable[..., Any])


class _AsciiNumber(click.ParamType[Any, Any]):
    """A number as typed: click reads it with int() or float(), which take any script's
    digits ("٣" is 3); tether takes only 0-9, as every other tool and its own files do."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str) and not value.isascii():
            self.fail(f"{value!r} is not a number: write it with the digits 0-9", param, ctx)
        return super().convert(value, param, ctx)


class IntRange(_AsciiNumber, click.IntRange):
    """click.IntRange, of digits 0-9 only."""


class FloatRange(_AsciiNumber, click.FloatRange):
    """click.FloatRange, of digits 0-9 only, and never NaN: float() reads "nan", which
    every comparison with a bound lets through, so a range alone would take it."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if math.isnan(number):
            wanted = self._describe_range()
            self.fail(f"{value!r} is not a number; give one in the range {wanted}", param, ctx)
        return number


class _Int(_AsciiNumber, click.types.IntParamType):
    pass


INT = _Int()  # click.INT, of digits 0-9 only


STDOUT = Path("-")

# The names of standard output itself: written to as ``-`` is, never replaced as a file
# (whose temporary copy and manifest would go beside it, in /dev).
_STDOUT_NAMES = frozenset({"/dev/stdout", "/dev/fd/1", "/proc/self/fd/1"})


class _OutputPath(click.Path):
    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        path = super().convert(value, param, ctx)
        return STDOUT if str(path) in _STDOUT_NAMES else path


# ``-o FILE`` of commands that write a document; ``-o -`` is standard output, as in most tools.
OUTPUT_FILE = _OutputPath(dir_okay=False, allow_dash=True, path_type=Path)


@contextlib.contextmanager
def terminated_as_interrupted(ctrl_c: bool = False) -> Iterator[None]:
    """SIGTERM (a service manager stopping the command, `kill`) ends the command as Ctrl-C
    does, so what it keeps on Ctrl-C it keeps then too; with ``ctrl_c``, Ctrl-C is taken
    the same way, where something else (asyncio) would handle it otherwise.

    The KeyboardInterrupt is raised wherever the main thread is, and Python drops one
    raised inside a weakref callback or a ``__del__``: the command then still ends as
    interrupted when the block does."""
    terminated = threading.Event()

    def interrupt(signum: int, frame: object) -> None:
        terminated.set()
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may handle signals
        return
    before = signal.signal(signal.SIGTERM, interrupt)
    before_ctrl_c = signal.signal(signal.SIGINT, interrupt) if ctrl_c else None
    try:
        yield
    finally:
        _restore(signal.SIGTERM, before)
        if ctrl_c:
            _restore(signal.SIGINT, before_ctrl_c)
    if terminated.is_set():  # its KeyboardInterrupt was dropped on the way
        raise KeyboardInterrupt


_threads_left_at_exit = False


def leave_threads_at_exit() -> None:
    """Let the command end without waiting for its threads. A thread blocked reading
    standard input (the MCP transport's, which cannot be cancelled) would otherwise hold the
    process until whoever feeds that input closes it, though the command is done."""
    global _threads_left_at_exit
    _threads_left_at_exit = True


def threads_to_leave() -> bool:
    """Whether the command said to leave its threads and one still runs."""
    return _threads_left_at_exit and any(
        thread.is_alive() and not thread.daemon
        for thread in threading.enumerate()
        if thread is not threading.main_thread()
    )


def run_until_terminated(work: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """``asyncio.run(work())``, where SIGTERM cancels the work as Ctrl-C does and then raises
    KeyboardInterrupt, even where Ctrl-C is ignored (a background job).

    The first Ctrl-C cancels the work at its next await; a second raises KeyboardInterrupt
    at once, even inside blocking code (loading a model), as asyncio's own handler does.
    Raised inside a task, it would be printed at exit as a task exception never retrieved
    (a hundred lines): the process is stopping on purpose, so that report is silenced."""
    terminated = False
    interrupts = 0
    loop: asyncio.AbstractEventLoop | None = None
    task: asyncio.Task[T] | None = None

    def stop() -> None:
        nonlocal terminated
        terminated = True
        if task is not None:
            task.cancel()

    def on_term() -> None:
        if terminated:  # asked again: the cancelled work's cleanup is cut short, and a
            # third time Python's default handler ends the process
            assert loop is not None
            loop.remove_signal_handler(signal.SIGTERM)
            raise KeyboardInterrupt
        stop()

    def on_ctrl_c(signum: int, frame: object) -> None:
        nonlocal interrupts
        interrupts += 1
        if interrupts == 1 and loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stop)  # at the loop's next step
            return
        raise KeyboardInterrupt

    async def main() -> T:
        nonlocal loop, task
        loop, task = asyncio.get_running_loop(), asyncio.current_task()
        loop.add_signal_handler(signal.SIGTERM, on_term)
        return await work()

    if threading.current_thread() is not threading.main_thread():
        return asyncio.run(work())  # only the main thread may handle signals
    before = signal.getsignal(signal.SIGTERM)
    handles_ctrl_c = signal.getsignal(signal.SIGINT) is signal.default_int_handler
    if handles_ctrl_c:  # asyncio then leaves Ctrl-C to this handler
        signal.signal(signal.SIGINT, on_ctrl_c)
    try:
        return asyncio.run(main())
    except asyncio.CancelledError:
        if terminated:
            raise KeyboardInterrupt from None
        raise
    except KeyboardInterrupt:
        if interrupts > 1:
            logging.getLogger("asyncio").disabled = True
        raise
    finally:
        _restore(signal.SIGTERM, before)
        if handles_ctrl_c:
            signal.signal(signal.SIGINT, signal.default_int_handler)


def _restore(signum: int, handler: Any) -> None:
    # None: a handler set outside Python, which Python cannot set again; the default then.
    signal.signal(signum, signal.SIG_DFL if handler is None else handler)


def to_stdout(output: Path | None) -> bool:
    return output is None or output == STDOUT


_PIECE = 1 << 16  # bytes written to standard output at a time


def write_output(output: Path | None, text: str, *, utf8: bool = False) -> None:
    """``text`` on standard output, or in ``output`` replaced in one step (never half written).
    With ``utf8``, standard output takes the UTF-8 bytes a file would hold, whatever the
    locale's encoding: a patch piped to `git apply` must hold the lines of the file."""
    if output is None or output == STDOUT:
        _write_stdout(text, "utf-8" if utf8 else None)
        return
    check_output_folder(output)
    try:
        write_atomically(output, text)
    except OSError as exc:
        # Written through a new file beside it: that file's name would say nothing.
        if exc.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise OSError(exc.errno, exc.strerror, str(output)) from exc  # a full disk, ...
        raise RequestError(
            f"--output {output} cannot be written ({os.strerror(exc.errno)}); give a path in a "
            "folder you can write, or - for standard output"
        ) from exc


def check_output_folder(output: Path | None) -> None:
    """A RequestError naming ``output`` unless its folder exists: checked before the work
    that makes the output, so a mistyped path costs no generation."""
    if output is None or output == STDOUT:
        return
    if not output.parent.is_dir():
        raise RequestError(
            f"--output {output}: the folder {output.parent} does not exist; create it first"
        )


def _write_stdout(text: str, encoding: str | None = None) -> None:
    """Write ``text`` whole, in ``encoding`` or else the output's own, or raise
    BrokenPipeError when the reader left (``| head``). Unbuffered output
    (``PYTHONUNBUFFERED``) writes straight to the pipe, where a write the reader leaves
    halfway returns the part written without an error and the text layer drops the rest:
    the bytes are written here until each is taken or the pipe says so."""
    stream = sys.stdout
    binary = getattr(stream, "buffer", None)
    if binary is None:  # a stream of text only (a test's): it takes all or raises
        click.echo(text, nl=False)
        return
    stream.flush()
    encoding = encoding or stream.encoding or "utf-8"
    data = memoryview(text.encode(encoding, stream.errors or "strict"))
    while data:
        written = binary.write(data[:_PIECE])
        data = data[written or 0 :]  # None: a full non-blocking pipe took nothing yet
    binary.flush()


def backend_options(func: F) -> F:
    func = click.option(
        "--server",
        envvar="TETHER_SERVER",
        metavar="URL",
        help=(
            "Use a running server (e.g. http://127.0.0.1:8421; a trailing /v1 is fine) "
            "instead of the embedded engine."
        ),
    )(func)
    func = click.option(
        "--token",
        envvar="TETHER_TOKEN",
        help="Bearer token for --server; default: from the server's runtime file.",
    )(func)
    return func


def sampling_options(default_max_tokens: int | None) -> Callable[[F], F]:
    def decorate(func: F) -> F:
        func = click.option(
            "--max-tokens",
            type=IntRange(min=1),
            default=default_max_tokens,
            help="Most tokens to generate.",
        )(func)
        func = click.option(
            "--temperature",
            type=FloatRange(0.0, 2.0),
            default=None,
            help="Sampling temperature (0 = greedy).",
        )(func)
        func = click.option(
            "--seed",
            type=IntRange(0, MAX_SEED),
            default=None,
            help="Sampling seed; default generation.seed.",
        )(func)
        func = click.option(
            "--json", "as_json", is_flag=True, help="Print one JSON object for scripts."
        )(func)
        return func

    return decorate


def make_params(
    settings: Settings,
    max_tokens: int | None,
    temperature: float | None,
    seed: int | None,
    default_temperature: float,
) -> SamplingParams:
    return SamplingParams(
        max_tokens=max_tokens or settings.generation.max_tokens,
        max_tokens_explicit=max_tokens is not None,
        temperature=default_temperature if temperature is None else temperature,
        seed=settings.generation.seed if seed is None else seed,
    )


def settings_from_flags(**overrides: Any) -> Settings:
    return load_settings(overrides)


def run_async(work: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(work())


async def with_backend(
    settings: Settings,
    server: str | None,
    token: str | None,
    body: Callable[[Backend], Awaitable[T]],
) -> T:
    from tether.cli.backend import open_backend  # httpx: not loaded by `tether serve`

    backend = open_backend(settings, server, token)
    try:
        return await body(backend)
    finally:
        await backend.close()


class Progress:
    """A token counter on stderr while generating, shown only to a person at a terminal."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.count = 0
        self.enabled = sys.stderr.isatty()

    def __call__(self, _text: str) -> None:
        self.count += 1
        if self.enabled:
            click.echo(f"\r{self.label}… {self.count} chunks", err=True, nl=False)

    def done(self) -> None:
        if self.enabled:
            click.echo("\r" + " " * (len(self.label) + 24) + "\r", err=True, nl=False)


def report_findings(completion: Completion, *, exit_if_blocked: bool = True) -> None:
    """Say on stderr what the policy changed in the prompt and what the checks found in an
    answer printed as text, and end with EXIT_NO when they blocked it (its text is
    withheld)."""
    for finding in completion.findings.policy:  # the user's own text: say it was changed
        where = f" at line {finding.line}" if finding.line else ""
        done = _POLICY_DONE.get(finding.action, finding.action)
        click.echo(f"note: {finding.rule_id}{where}: {finding.message}: {done}", err=True)
    for finding in completion.findings.checks:
        where = f" at line {finding.line}" if finding.line else ""
        click.echo(
            f"{_finding_label(finding)}: {finding.rule_id}{where}: {finding.message} "
            f"({finding.action})",
            err=True,
        )
    if completion.blocked:
        why = f"; `tether explain {completion.id}` shows why" if completion.traced else ""
        click.echo(
            "error: the compliance checks blocked this answer "
            f"({', '.join(completion.findings.blocking)}){why}",
            err=True,
        )
        if exit_if_blocked:
            sys.exit(EXIT_NO)


_POLICY_DONE = {  # what the model was given in its place
    "redact": "redacted before the model saw it",
    "pseudonymize": "replaced by a placeholder the answer gets back",
    "annotate": "noted, and left as it was",
}


def _finding_label(finding: Finding) -> str:
    """``error`` only for a finding that withheld the answer: one that lets it through is a
    warning (or a note) whatever its rule's severity, as the command did not fail."""
    if finding.action == "block":
        return "error"
    return "note" if finding.severity == "note" else "warning"


def completion_json(completion: Completion, *, indent: int | None = 2, **extra: Any) -> str:
    """The answer as the JSON document --json prints; ``indent=None``: on one line."""
    return json.dumps(
        {
            "id": completion.id,
            "model": completion.model,
            "system_fingerprint": completion.system_fingerprint,
            "seed": completion.seed,
            "text": completion.text,
            "finish_reason": completion.finish_reason,
            "usage": {
                "prompt_tokens": completion.prompt_tokens,
                "completion_tokens": completion.completion_tokens,
            },
            "findings": completion.findings.records(),
            **extra,
        },
        indent=indent,
    )
