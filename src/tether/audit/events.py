"""Recording an event done outside a request (an evaluation run) in the audit log.

The log has one writer. When no server holds it, the event is appended directly; when the
server that writes this data directory is running, it is asked to append the event
(``POST /v1/audit/events``) with its admin token from the runtime file. While another
command keeps the log, the event is left on disk for it to sign in (``handoff``). A
``tether serve`` that starts while the log is open here is handed it (``handover``), as
by a command answering in process.

Work that must not be done unrecorded (a function call) holds an ``EventLog`` from before
it starts: the log is open, or the server found, before anything runs, and every piece of
work in the process shares the one open log while any of them holds it.
"""

from __future__ import annotations

import getpass
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from tether.audit.handoff import hand_off
from tether.audit.handover import YieldingLog
from tether.audit.log import AuditLog, audit_folder
from tether.audit.relay import post_to_server
from tether.errors import AuditError, AuditLogHeldError, TetherError
from tether.server.runtime import RuntimeRecord, default_runtime_dir, find_server_of
from tether.settings import Settings

log = logging.getLogger(__name__)

# A process closing the log takes a few milliseconds from its last look for records left
# to letting go of it; one that keeps it for longer looks again at its next checkpoint.
CLOSING_WAIT_S = 1.0
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

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._holders = 0
        self._log: YieldingLog | None = None
        self._server: RuntimeRecord | None = None
        self._handed_off = False  # events left for the command that keeps the log

    @contextmanager
    def held(self) -> Iterator[Record]:
        """A way to record events, good until the block ends."""
        self._hold()
        try:
            yield self._record
        finally:
            self._let_go()

    def _hold(self) -> None:
        with self._lock:  # holders that come meanwhile wait here for the same open log
            if self._holders == 0 and self._settings.audit.enabled:
                self._log, self._server = _open_or_find_server(self._settings)
            self._holders += 1

    def _let_go(self) -> None:
        with self._lock:
            self._holders -= 1
            if self._holders == 0 and self._log is not None:
                self._log.close()  # a last checkpoint covers what was recorded
                self._handed_off = self._handed_off or self._log.handed > 0
                self._log = None
            handed_off = self._holders == 0 and self._handed_off
            if handed_off:
                self._handed_off = False
        if handed_off:  # not holding up the next holder, which may find the log free
            sign_in_now(self._settings)

    def _record(self, event: str, details: dict[str, Any]) -> str:
        if not self._settings.audit.enabled:
            return "nowhere (audit.enabled = false)"
        if self._server is not None:
            post_to_server(self._server, "/v1/audit/events", {"event": event, "details": details})
            return self._server.url
        # Each event its own id, and who did it, as a server records those it is sent.
        fields = {
            "request_id": f"evt-{uuid.uuid4().hex}",
            "principal": local_principal(),
            "endpoint": f"event {event}",
            "params": details,
        }
        if self._log is not None:
            if self._log.append(fields) >= 0:
                return str(self._log.folder)
            return f"{self._log.folder}, once the server it was handed to signs it in"
        folder = audit_folder(self._settings)
        try:
            hand_off(folder, fields, self._settings.audit.content)
        except (OSError, TypeError, ValueError) as exc:
            raise AuditError(
                f"the event could not be left for the audit log in {folder}: {exc}"
            ) from exc
        self._handed_off = True
        return f"{folder}, once the command that keeps it signs it in"


def _open_or_find_server(settings: Settings) -> tuple[YieldingLog | None, RuntimeRecord | None]:
    """The log, opened (and handed to a server that starts meanwhile); else the running
    server that keeps it; else (another command keeps it) neither: events are then left
    for that command to sign in."""
    try:
        return YieldingLog.open(settings, _unrecorded), None
    except AuditLogHeldError:
        runtime_dir = settings.server.runtime_dir or default_runtime_dir()
        return None, find_server_of(runtime_dir, settings.data.home)


def _unrecorded(why: str) -> None:
    """An event the log was handed over before, and that could not be left for it."""
    raise AuditError(f"the event was not recorded: {why}")


def sign_in_now(settings: Settings) -> None:
    """Sign in the records left for the log, if no other process keeps it (opening the
    log signs them in); else they wait for the one that does, at its next checkpoint.
    One that is closing has looked for them for the last time: it is waited for."""
    deadline = time.monotonic() + CLOSING_WAIT_S
    while True:
        try:
            AuditLog.open(settings).close()
            return
        except AuditLogHeldError:
            if time.monotonic() >= deadline:
                return  # kept on: its next checkpoint signs them in
        except TetherError as exc:  # the work is done, and what it left is on disk
            log.warning("records left for the audit log wait there: %s", exc)
            return
        time.sleep(_RETRY_S)
