"""Ship audit records to an HTTP endpoint through a disk spool, in order, at least once.

``ship`` runs on the audit writer thread: it only writes batches into the spool (fsynced)
and wakes the sender. The sender thread POSTs the oldest spooled batch until it gets a
2xx, backing off exponentially with jitter, and deletes a spool file only once every batch
in it was accepted. A crash or restart may therefore send a batch twice; receivers dedupe
by each record's ``seq``, which is unique and gap-free within one audit log.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from tether.credentials import url_shown
from tether.databases import owner_only, private_folder, sync_folder

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)

_SUFFIX = ".batch"
_MARK = "shipped-through"


class WebhookSink:
    """POSTs ``{"records": [...], "checkpoint": "<note>"}`` of at most ``batch`` records."""

    def __init__(
        self,
        url: str,
        spool: Path,
        *,
        batch: int = 100,
        timeout_s: float = 10.0,
        backoff_s: float = 0.5,
        backoff_cap_s: float = 30.0,
        close_timeout_s: float = 5.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url
        self._shown = url_shown(url, path=False)  # its path and query may hold its secret
        self.spool = spool
        self._batch = batch
        self._backoff = backoff_s
        self._cap = backoff_cap_s
        self._close_timeout = close_timeout_s
        private_folder(spool)
        for stale in spool.glob("*.tmp"):  # a crash mid-write: the batch never was spooled
            stale.unlink()
        import httpx  # here: a server without a webhook never loads an HTTP client

        self._client = httpx.Client(timeout=timeout_s, transport=transport)
        self._wake = threading.Event()
        self._stop = threading.Event()  # abandon delivery now (close's deadline)
        self._closing = False  # deliver what is spooled, then stop
        self._counter = 0
        self._thread = threading.Thread(target=self._run, name="tether-audit-webhook", daemon=True)
        self._thread.start()

    # -- the audit writer thread ---------------------------------------------------------

    def ship(self, lines: list[bytes], checkpoint: str) -> None:
        note = json.dumps(checkpoint).encode()
        bodies = [
            b'{"records":['
            + b",".join(lines[i : i + self._batch])
            + b'],"checkpoint":'
            + note
            + b"}"
            for i in range(0, len(lines), self._batch)
        ]
        first = int(json.loads(lines[0])["seq"])
        self._counter += 1
        # Named by first seq so that files sort in log order, across restarts too.
        name = f"{first:015d}-{self._counter:06d}"
        tmp = self.spool / f"{name}.tmp"
        try:
            with open(tmp, "xb", opener=owner_only) as handle:  # records: the owner's only
                handle.write(b"".join(body + b"\n" for body in bodies))
                handle.flush()
                os.fsync(handle.fileno())
            tmp.rename(self.spool / f"{name}{_SUFFIX}")  # a spool file appears whole or not
        except OSError:  # a full disk: the log offers these records again at its next turn
            with contextlib.suppress(OSError):
                tmp.unlink()  # not left to fill the disk further until a restart
            raise
        last = int(json.loads(lines[-1])["seq"])
        mark = self.spool / f"{_MARK}.tmp"
        mark.write_text(str(last))
        mark.rename(self.spool / _MARK)
        sync_folder(self.spool)
        self._wake.set()

    def shipped_through(self) -> int:
        """The last seq this sink has taken into its spool; -1 when none yet.

        The log re-ships what lies beyond it when it opens, so records that became durable
        just before a crash, but never reached the spool, are not lost to the receiver.
        """
        try:
            return int((self.spool / _MARK).read_text())
        except (OSError, ValueError):
            return -1

    def close(self) -> None:
        """Deliver what the spool holds for up to ``close_timeout_s``; keep the rest there."""
        if not self._thread.is_alive():
            return
        self._closing = True
        self._wake.set()
        self._thread.join(self._close_timeout)
        self._stop.set()
        self._thread.join()
        self._client.close()

    def pending(self) -> int:
        """Spool files not yet fully delivered."""
        return len(list(self.spool.glob(f"*{_SUFFIX}")))

    def backlog(self) -> tuple[int, float]:
        """Spool files not yet delivered, and how many seconds the oldest has waited (0
        when none): what an operator alerts on, as the server serves on while a receiver
        refuses or is gone."""
        files = sorted(self.spool.glob(f"*{_SUFFIX}"))
        if not files:
            return 0, 0.0
        try:
            waited = time.time() - files[0].stat().st_mtime
        except OSError:  # delivered and deleted meanwhile
            waited = 0.0
        return len(files), max(0.0, waited)

    # -- the sender thread --------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                if not self._send_spooled():
                    return
            except Exception:  # a spool it cannot read now (a disk error): try again later
                log.exception("audit webhook %s: the spool cannot be sent; will retry", self._shown)
                self._stop.wait(self._cap)

    def _send_spooled(self) -> bool:
        """Deliver every spool file in order; False once told to stop, or closing with
        nothing left."""
        files = sorted(self.spool.glob(f"*{_SUFFIX}"))
        if not files:
            if self._closing:
                return False
            self._wake.wait(1.0)
            return True
        for path in files:
            if not self._deliver(path):
                return False
            path.unlink()
        sync_folder(self.spool)
        return True

    def _deliver(self, path: Path) -> bool:
        """POST each batch of one spool file in order; False if told to stop first."""
        for body in path.read_bytes().splitlines():
            attempt = 0
            while not self._stop.is_set() and not self._post(body):
                delay = min(self._cap, self._backoff * 2**attempt)
                attempt += 1
                if self._stop.wait(delay / 2 + random.uniform(0, delay / 2)):
                    return False
            if self._stop.is_set():  # before a post could have answered
                return False
        return True

    def _post(self, body: bytes) -> bool:
        try:
            response = self._client.post(
                self.url, content=body, headers={"content-type": "application/json"}
            )
        except Exception as exc:  # the sender must live on: a dead one ships nothing more
            log.warning("audit webhook %s: %s; will retry", self._shown, exc)
            return False
        if response.is_success:
            return True
        log.warning("audit webhook %s answered %s; will retry", self._shown, response.status_code)
        return False
