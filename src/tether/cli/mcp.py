"""``tether mcp``: the function store for a local MCP client, over stdio."""

from __future__ import annotations

import sys

import click

from tether.cli.common import (
    EXIT_INTERRUPTED,
    leave_threads_at_exit,
    settings_from_flags,
    terminated_as_interrupted,
)


@click.command("mcp")
def mcp() -> None:
    """Serve the function store to an MCP client on stdin and stdout.

    Tools: search_snippets, get_snippet, call_function; each vetted snippet is a resource
    snippet://ID. A client configures it as the command `tether mcp`. Over HTTP the running
    server offers the same at /mcp (a token with store:read). Each call is audited
    (event store.call), as with `tether store call`."""
    from tether.audit.events import EventLog
    from tether.store import FunctionStore
    from tether.store.mcp import build_mcp_server

    settings = settings_from_flags()
    store = FunctionStore.open(settings)
    # However it ends (Ctrl-C, an output it cannot write), not once the client closes its
    # input: a thread of the MCP transport waits on it.
    leave_threads_at_exit()
    try:
        # SIGTERM (how an MCP client ends its server, after closing stdin) stops the calls
        # running as Ctrl-C does, each recorded as stopped, where it killed the command
        # before their records were written and left their sandboxed programs running.
        # Ctrl-C too, raised at once: asyncio's own handler cancels the session, which then
        # waits for the transport's thread reading stdin, that is for the client.
        with terminated_as_interrupted(ctrl_c=True):
            # One log for every call of the session, open only while calls run: a server
            # or a command started meanwhile can still take it between calls.
            build_mcp_server(lambda: store, EventLog(settings).held).run("stdio")
    except BaseExceptionGroup as group:  # the transport's tasks: what writing answers met
        if (unwritten := _unwritten(group)) is None:
            raise
        raise unwritten from None
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)
    finally:
        # However the session ended (the client closed stdin, Ctrl-C, SIGTERM, an output
        # that cannot be written), the calls it stopped are recorded as they end, and their
        # programs stopped: the command ends without waiting for its threads.
        store.calls.wait_for_calls()
        store.close()


def _unwritten(group: BaseExceptionGroup[BaseException]) -> OSError | None:
    """The error writing to standard output met (the reader gone, a full disk), which the
    command reports as it always does, in place of the task group that holds it."""
    found: BaseException | None = group.subgroup(OSError)
    while isinstance(found, BaseExceptionGroup):
        found = found.exceptions[0]
    return found if isinstance(found, OSError) else None


COMMANDS = [mcp]
