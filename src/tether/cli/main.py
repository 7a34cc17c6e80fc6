"""The ``tether`` command: one module per command group, all thin over the library.

This is the one place where errors become exit statuses; every error a user can cause
ends as one line on stderr, never a traceback.
"""

from __future__ import annotations

import codecs
import contextlib
import errno
import importlib
import io
import os
import sys
import traceback
from typing import Any, NoReturn

import click

from tether import __version__, errors
from tether.cli.common import (
    EXIT_AUTH,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_NO,
    EXIT_PIPE,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    threads_to_leave,
)
from tether.openfiles import too_few_files

# The first class an error is an instance of decides its status.
_EXIT_STATUS: tuple[tuple[type[errors.TetherError], int], ...] = (
    (errors.AuthError, EXIT_AUTH),
    (errors.ForbiddenError, EXIT_AUTH),
    (errors.EngineUnavailableError, EXIT_UNAVAILABLE),
    (errors.OverloadedError, EXIT_UNAVAILABLE),
    (errors.RateLimitedError, EXIT_UNAVAILABLE),
    (errors.CancelledGeneration, EXIT_UNAVAILABLE),
    (errors.AuditLogHeldError, EXIT_UNAVAILABLE),  # busy: another process writes the log
    (errors.DatabaseLockedError, EXIT_UNAVAILABLE),  # busy: another process holds it
    (errors.FunctionCallError, EXIT_NO),
    (errors.TetherError, EXIT_USAGE),
)

EPILOG = f"""\b
Exit status: 0 success; {EXIT_NO} the answer is no (findings, a failed verification,
a doctor check); {EXIT_USAGE} bad arguments, input, settings or files (one that cannot be
read or written, on a full disk too); {EXIT_UNAVAILABLE} the server, engine or an upstream
is unavailable or busy; {EXIT_AUTH} the token was refused or none
was found; {EXIT_INTERRUPTED} interrupted; {EXIT_PIPE} the reader closed the output early
(`| head`). Set TETHER_DEBUG=1 to see a traceback with an error."""


def _output_closed() -> NoReturn:
    """Stop quietly when whoever reads our output has stopped reading (``| head``), with
    the status of a command ended by SIGPIPE, and nothing more written to the pipe."""
    from tether.plugin_output import own_stdout

    if isinstance(own_stdout(), _ClosedOutput):  # not a reader gone: there never was one
        click.echo(
            "error: standard output is closed; give the command somewhere to write (a file, "
            "or /dev/null)",
            err=True,
        )
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # what is still buffered goes nowhere
    except (OSError, ValueError):
        pass  # stdout is not a file (under a test runner): nothing to flush to the pipe
    sys.exit(EXIT_PIPE)


def _fail(message: str, status: int) -> NoReturn:
    if os.environ.get("TETHER_DEBUG"):
        traceback.print_exc()
    from tether.server import jsonlog  # the server's log may be JSON lines by now

    if jsonlog.active():
        click.echo(jsonlog.json_line("error", "tether", message, exit_status=status), err=True)
    else:
        click.echo(f"error: {message}", err=True)
    sys.exit(status)


def _check_utf8(args: list[str]) -> None:
    """Refuse an argument that is not UTF-8 (a file name in another encoding): Python
    keeps its bytes as lone surrogates, which no JSON, trace or audit record can hold."""
    for arg in args:
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            raw = os.fsencode(arg)
            with contextlib.suppress(UnicodeDecodeError):  # UTF-8 the locale read otherwise
                raise click.UsageError(
                    f"the argument '{raw.decode('utf-8')}' is UTF-8 text, which this "
                    f"locale reads as {sys.getfilesystemencoding()}; run tether under a "
                    "UTF-8 locale (LC_ALL=C.UTF-8), or set PYTHONUTF8=1"
                ) from None
            shown = raw.decode("utf-8", "backslashreplace")
            raise click.UsageError(
                f"the argument '{shown}' is not UTF-8 text; tether takes UTF-8 arguments: "
                "rename the file to a UTF-8 name (convmv does), or retype the text"
            ) from None


# Each command's module (under tether.cli) is imported when that command runs or help
# lists it, so `tether serve` keeps none of the client commands' imports resident.
COMMAND_MODULES = {
    "audit": "audit",
    "chat": "generate",
    "check": "check",
    "complete": "generate",
    "config": "info",
    "corpus": "check",
    "doctor": "info",
    "eval": "evals",
    "explain": "explain",
    "licences": "licences",
    "mcp": "mcp",
    "models": "info",
    "repro": "repro",
    "serve": "serve",
    "store": "store",
    "suggest": "suggest",
    "templates": "templates",
    "token": "token",
    "usage": "usage",
}


class TetherGroup(click.Group):
    """Loads built-in commands on demand, and turns every error into one clear line on
    stderr and its exit status."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *COMMAND_MODULES})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        command = super().get_command(ctx, name)  # a plugin's command wins, as it always did
        if command is None and name in COMMAND_MODULES:
            module = importlib.import_module(f"tether.cli.{COMMAND_MODULES[name]}")
            command = next(c for c in module.COMMANDS if c.name == name)
        return command

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        if parent is None:
            _check_utf8(args)
        try:  # --help and --version print while the arguments are read
            return super().make_context(info_name, args, parent, **extra)
        except BrokenPipeError:
            _output_closed()
        except OSError as exc:  # the output cannot be written (a full disk)
            _fail(_unwritable(exc), EXIT_USAGE)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except errors.TetherError as exc:
            status = next(code for cls, code in _EXIT_STATUS if isinstance(exc, cls))
            _fail(exc.message, status)
        except BrokenPipeError:  # `tether … | head` read what it wanted and left
            _output_closed()
        except OSError as exc:  # a file we were asked to read or write
            if exc.filename is None and exc.errno == errno.ENOSPC:  # standard output's
                _fail(_unwritable(exc), EXIT_USAGE)
            where = f" ({exc.filename})" if exc.filename else ""
            # No descriptor was left for it (`ulimit -n`): its permissions are not the cause.
            fix = too_few_files(exc) or "check the path and its permissions"
            _fail(f"{exc.strerror or exc}{where}; {fix}", EXIT_USAGE)
        except UnicodeDecodeError as exc:
            _fail(f"a file is not UTF-8 text ({exc.reason}); pass a text file", EXIT_USAGE)
        except KeyboardInterrupt:  # Ctrl-C: how a server or a long command is stopped
            click.echo("interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.Abort):
            raise  # click reports its own, with its own statuses
        except Exception as exc:  # a fault in tether: say so, in one line
            from tether.databases import damage_message, is_damage

            if is_damage(exc):  # a fault in a file, which the user can mend
                _fail(damage_message(exc), EXIT_USAGE)
            _fail(
                f"internal error {type(exc).__name__}: {exc}; please report it "
                "(TETHER_DEBUG=1 shows the traceback)",
                EXIT_INTERNAL,
            )


@click.group(
    cls=TetherGroup,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog=EPILOG,
)
@click.version_option(__version__, prog_name="tether")
def cli() -> None:
    """tether: a self-hosted AI coding assistant over a local model."""


def _add_plugin_commands() -> None:
    """Commands of the enabled third-party plugins; a plugin that fails to load ends the
    run here with one line naming it, whatever command was asked for."""
    from tether.hookcalls import call_each
    from tether.plugins import bare_manager, enabled_plugins, register_plugins
    from tether.settings import load_settings

    try:
        settings = load_settings()
    except errors.TetherError:
        return  # the command that runs reports the bad setting itself
    try:
        manager = bare_manager(settings.plugins.hook_timeout_s)
        register_plugins(manager, enabled_plugins(settings))
        call_each(manager.hook.register_commands, "add its commands", cli=cli)
    except errors.ConfigError as exc:
        _fail(exc.message, EXIT_USAGE)
    for name in sorted(set(cli.commands) & set(COMMAND_MODULES)):  # a plugin may, announced
        click.echo(f"warning: a plugin replaces the built-in command `tether {name}`", err=True)


class _ClosedOutput(io.TextIOBase):
    """Standard output for a process started without one (``>&-``): Python's is None,
    which every write and flush failed on with a traceback. Writing to it fails as a
    closed pipe does, which ends a command saying so (``_output_closed``); a server,
    whose output is only its banner, serves on."""

    encoding, errors = "utf-8", "strict"

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if text:
            raise BrokenPipeError("standard output is closed")
        return 0

    @property
    def buffer(self) -> NoReturn:  # what writes bytes (the MCP transport) finds it closed too
        raise BrokenPipeError("standard output is closed")


def _unwritable(exc: OSError) -> str:
    return f"cannot write the output ({exc.strerror or exc}); free space, or write elsewhere"


def _escape_unencodable(exc: UnicodeError) -> tuple[bytes, int]:
    """Each character an output's encoding cannot hold, as the byte it stands for (a lone
    surrogate: a byte of a name that did not decode) or as a backslash escape."""
    if not isinstance(exc, UnicodeEncodeError):
        raise exc
    out = bytearray()
    for char in exc.object[exc.start : exc.end]:
        code = ord(char)
        if 0xDC80 <= code <= 0xDCFF:
            out.append(code - 0xDC00)
        else:
            out += char.encode("ascii", "backslashreplace")
    return bytes(out), exc.end


_ESCAPE = "tether.escape"


def _outputs_take_any_text() -> None:
    """Standard output and error under a locale that is not UTF-8: an answer, a snippet or
    a name beyond its characters ended the command as an internal error, its output cut.
    An ASCII one (the C locale with PYTHONUTF8=0) is written as UTF-8, as click writes
    it and Python's own UTF-8 mode would; another (Latin-1, EUC-JP) keeps its encoding,
    and what it cannot hold is escaped."""
    codecs.register_error(_ESCAPE, _escape_unencodable)
    for stream in (sys.stdout, sys.stderr):
        if not isinstance(stream, io.TextIOWrapper):
            continue  # closed (None, or ours), or a test's
        encoding = codecs.lookup(stream.encoding).name
        if encoding == "ascii":
            stream.reconfigure(encoding="utf-8", errors=_ESCAPE)
        elif encoding != "utf-8":
            stream.reconfigure(errors=_ESCAPE)


def _hold_with_devnull(fd: int, flags: int) -> None:
    """Put /dev/null on descriptor ``fd``, which the process started without: the next
    file or socket opened (a database, a server's listening socket) would take its number,
    and be read or written as standard input, output or error by llama.cpp's C code or
    any child process."""
    with contextlib.suppress(OSError):
        if (devnull := os.open(os.devnull, flags)) != fd:
            os.dup2(devnull, fd)
            os.close(devnull)


def main() -> None:
    # In this order, so that each /dev/null opened takes the lowest number, its own.
    if sys.stdin is None:  # started with it closed (<&-): an input with nothing in it
        _hold_with_devnull(0, os.O_RDONLY)
        sys.stdin = open(0, closefd=False)  # noqa: SIM115 - the process's, never closed
    if sys.stdout is None:
        sys.stdout = _ClosedOutput()
        _hold_with_devnull(1, os.O_WRONLY)
    if sys.stderr is None:  # (2>&-): errors go nowhere, never into standard output
        _hold_with_devnull(2, os.O_WRONLY)
        sys.stderr = open(  # noqa: SIM115 - the process's, never closed
            2, "w", buffering=1, errors="backslashreplace", closefd=False
        )
    _outputs_take_any_text()
    try:
        os.getcwd()
    except FileNotFoundError:  # every command reads settings from the current folder up
        click.echo(
            "error: the current folder no longer exists (it was removed); change to one that does",
            err=True,
        )
        sys.exit(EXIT_USAGE)
    try:
        _run_command()
    except SystemExit as ended:
        if not threads_to_leave():
            raise
        sys.stderr.flush()
        os._exit(ended.code if isinstance(ended.code, int) else 0 if ended.code is None else 1)


def _run_command() -> None:
    try:
        _add_plugin_commands()
        cli(prog_name="tether")
    except KeyboardInterrupt:  # while plugins load, before a command runs
        click.echo("interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    finally:
        try:  # output still buffered is written now, while a closed pipe can be told apart
            sys.stdout.flush()
        except BrokenPipeError:
            _output_closed()
        except OSError as exc:
            _fail(_unwritable(exc), EXIT_USAGE)
