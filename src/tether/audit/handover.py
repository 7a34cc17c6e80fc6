"""Handing the audit log from a command to a server that starts meanwhile.

The log has one writer. A command answering in process (an ``eval run`` of an hour, a
chat) keeps it while it runs, and a ``tether serve`` on the same data directory would
have to wait that long to start. So the server asks for the log instead: it leaves a file
named ``handover`` in the log's folder, holding its pid. A command that keeps the log
looks for that file twice a second; finding it, it closes the log (the last checkpoint
covers every record it wrote) and leaves its later records in ``incoming`` (``handoff``),
which the server signs in. A server keeps the log once it has it, from then until it
stops: a second server asking for it is refused as before. A server that stops or fails
(its model does not load) leaves the log to the command again: seeing its pid gone, the
command opens the log, which signs in what it left meanwhile, and keeps it as before.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import IO, Any

from tether.audit.handoff import HandOff
from tether.audit.log import HANDOVER, AuditLog, alive, asked_for, audit_folder, take_lock
from tether.databases import owner_only, private_folder
from tether.errors import AuditLogHeldError, TetherError
from tether.settings import Settings

log = logging.getLogger(__name__)

REQUEST = HANDOVER
LOOK_EVERY_S = 0.5
# How long a server waits for the log: a command hands it over within a look and a last
# checkpoint; one that does not (a server, an older tether) does not at all.
WAIT_S = 5.0
_RETRY_S = 0.1


def take_over(settings: Settings) -> IO[bytes]:
    """The log's lock, taken once no process keeps the log, a command that keeps it having
    been asked to hand it over; where there is no log yet, its folder is made and its lock
    taken all the same, for a command may make the log meanwhile. The server holds it while
    its model loads and opens the log with it (``AuditLog.open(lock=...)``): nothing else
    takes the log meanwhile, neither the command that handed it over (signing in what it
    left as it ends, recording its ``eval.run``) nor a second server, which is refused
    here. AuditLogHeldError when the process that keeps it did not within ``WAIT_S``."""
    folder = audit_folder(settings)
    private_folder(folder)
    try:
        return take_lock(folder)
    except AuditLogHeldError as held:
        refusal = held
    request = folder / REQUEST
    with open(request, "w", opener=owner_only) as handle:
        handle.write(str(os.getpid()))
    deadline = time.monotonic() + WAIT_S
    try:
        while time.monotonic() < deadline:
            time.sleep(_RETRY_S)
            try:
                return take_lock(folder)
            except AuditLogHeldError as held:
                refusal = held
    finally:
        request.unlink(missing_ok=True)
    raise AuditLogHeldError(f"{refusal}; it did not hand it over in {WAIT_S:g} s")


class YieldingLog:
    """The audit log as a command keeps it, handed over when a server asks for it; its
    records then go to ``incoming`` as those of a command that does not keep the log,
    until that server is gone and ``reopen`` gives the log back."""

    def __init__(
        self,
        audit_log: AuditLog,
        content: str,
        on_failure: Callable[[str], None],
        reopen: Callable[[], AuditLog] | None = None,
    ) -> None:
        self.folder = audit_log.folder
        self._log: AuditLog | None = audit_log
        self._handoff = HandOff(audit_log.folder, content, on_failure)
        self._reopen = reopen
        self._server: int | None = None  # the pid of the server it was handed to
        self._lock = threading.Lock()  # an append goes to the log or after it, not between
        self._closing = threading.Event()
        self._watcher = threading.Thread(
            target=self._watch, name="tether-audit-handover", daemon=True
        )
        self._watcher.start()

    @classmethod
    def open(cls, settings: Settings, on_failure: Callable[[str], None]) -> YieldingLog:
        """The log of ``settings``, opened (AuditLogHeldError while another keeps it)."""
        return cls(
            AuditLog.open(settings),
            settings.audit.content,
            on_failure,
            reopen=lambda: AuditLog.open(settings),
        )

    @property
    def handed(self) -> int:
        """Records left in ``incoming`` since the log was handed over."""
        return self._handoff.handed

    def append(self, record_fields: dict[str, Any]) -> int:
        """The record's seq; -1 where it was left in ``incoming``."""
        with self._lock:
            if self._log is not None:
                return self._log.append(record_fields)
        return self._handoff.append(record_fields)

    def close(self) -> None:
        self._closing.set()
        self._watcher.join()
        self._let_go()

    def _watch(self) -> None:
        warned = False
        while not self._closing.wait(LOOK_EVERY_S):
            if self._log is None:
                self._take_back()
                continue
            server = asked_for(self.folder)
            if server is None:
                continue
            # Records its disk refused wait in the log's memory, and closing it drops them:
            # kept, they are written once the disk has room (the server could not either).
            problem = self._log.problem
            if problem is None:
                self._let_go()
                self._server, warned = server, False
                log.info("the audit log was handed over to the server that asked for it")
                continue
            if not warned:
                log.warning(
                    "the audit log is not handed over to the server that asks for it while "
                    "records wait in memory for its disk (%s)",
                    problem,
                )
                warned = True

    def _take_back(self) -> None:
        """Open the log again once the server it was handed to is gone (stopped, or failed
        as it started): opening signs in what this command left meanwhile, and the log
        signs in at its next checkpoint what it leaves until it has it. Tried once: a
        process that took the log meanwhile signs them in instead."""
        server = self._server
        if server is None or self._reopen is None or alive(server):
            return
        self._server = None
        try:
            audit_log = self._reopen()
        except AuditLogHeldError:
            return
        except TetherError as exc:  # a log it cannot open: what it left waits there
            log.warning("the audit log was not taken back from a server that is gone: %s", exc)
            return
        with self._lock:
            self._log = audit_log
        log.warning(
            "the server that took the audit log over (pid %d) is gone; this command keeps "
            "it again, the records it left for that server signed in",
            server,
        )

    def _let_go(self) -> None:
        with self._lock:
            audit_log, self._log = self._log, None
        if audit_log is not None:
            audit_log.close()  # every record appended before is written and covered
