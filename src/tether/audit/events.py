"""Recording an event done outside a request (an evaluation run) in the audit log.

The log has one writer. When no server holds it, the event is appended directly; when the
server that writes this data directory is running, it is asked to append the event
(``POST /v1/audit/events``) with its admin token from the runtime file. Another command
holding the log (each holds it for a moment) is waited for, up to ``HELD_WAIT_S``.

Work that must not be done unrecorded (a function call) holds an ``EventLog`` from before
it starts: the log is open, or the server found, before anything runs, and every piece of
work in the process shares the one open log while any of them holds it.
"""

from __future__ import annotations

import getpass
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from tether.audit.log import AuditLog
from tether.audit.relay import post_to_server
from tether.errors import AuditLogHeldError
from tether.server.runtime import RuntimeRecord, default_runtime_dir, find_server_of
from tether.settings import Settings

HELD_WAIT_S = 10.0  # another command's turn with the log lasts well under a second
_RETRY_S = 0.05

Record = Callable[[str, dict[str, Any]], str]


def local_principal() -> str:
    """Who a command run here acts as: the user, marked as the command line."""
    return f"{getpass.getuser()} (cli)"


def record_event(settings: Settings, event: str, details: dict[str, Any]) -> str:
    """Append the event; returns where it went: the log itself, or the server's URL."""
    with EventLog(settings).held() as record:
        return record(event, details)


class EventLog:
    """The audit log of one data directory as this process's commands record events in it:
    opened when the first holder comes, shared, closed when the last one leaves (so that a
    long-lived process such as ``tether mcp`` keeps it only while it works)."""

    def __init__(self, settings: Settings, wait_s: float = HELD_WAIT_S) -> None:
        self._settings = settings
        self._wait_s = wait_s
        self._lock = threading.Lock()
        self._holders = 0
        self._log: AuditLog | None = None
        self._server: RuntimeRecord | None = None

    @contextmanager
    def held(self) -> Iterator[Record]:
        """A way to record events, good until the block ends; AuditLogHeldError, before
        the block runs, when the log cannot be had."""
        self._hold()
        try:
            yield self._record
        finally:
            self._let_go()

    def _hold(self) -> None:
        with self._lock:  # holders that come meanwhile wait here for the same open log
            if self._holders == 0 and self._settings.audit.enabled:
                self._log, self._server = _open_or_find_server(self._settings, self._wait_s)
            self._holders += 1

    def _let_go(self) -> None:
        with self._lock:
            self._holders -= 1
            if self._holders == 0 and self._log is not None:
                self._log.close()  # a last checkpoint covers what was recorded
                self._log = None

    def _record(self, event: str, details: dict[str, Any]) -> str:
        if self._log is not None:
            # Each event its own id, and who did it, as a server records those it is sent.
            fields = {
                "request_id": f"evt-{uuid.uuid4().hex}",
                "principal": local_principal(),
                "endpoint": f"event {event}",
            }
            self._log.append({**fields, "params": details})
            return str(self._log.folder)
        if self._server is not None:
            post_to_server(self._server, "/v1/audit/events", {"event": event, "details": details})
            return self._server.url
        return "nowhere (audit.enabled = false)"


def _open_or_find_server(
    settings: Settings, wait_s: float
) -> tuple[AuditLog | None, RuntimeRecord | None]:
    """The log, opened; else the running server that keeps it; else, once another command
    has kept it for ``wait_s``, AuditLogHeldError."""
    runtime_dir = settings.server.runtime_dir or default_runtime_dir()
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return AuditLog.open(settings), None
        except AuditLogHeldError:
            server = find_server_of(runtime_dir, settings.data.home)
            if server is not None:
                return None, server
            if time.monotonic() >= deadline:
                raise AuditLogHeldError(
                    f"the audit log of {settings.data.home} is held by another process that "
                    f"is not a tether server here (still after {wait_s:g} s); retry when it "
                    "is done"
                ) from None
        time.sleep(_RETRY_S)
