"""systemd's service notifications (``sd_notify``): readiness, stopping and the watchdog.

Under a unit of ``Type=notify`` systemd names a datagram socket in ``NOTIFY_SOCKET``. The
server says ``READY=1`` once it serves (the model loaded, the port taking requests), so
that units ordered after it, and ``systemctl start``, wait for that and not for the
process to exist; ``STOPPING=1`` as a shutdown begins. Under ``WatchdogSec=`` systemd
also sets ``WATCHDOG_USEC``, and the server pings from its event loop at half that
interval: an event loop stuck for longer gets the service restarted, where a process
that only exists would pass. Nothing is sent without ``NOTIFY_SOCKET``.

Sending never waits: a manager that is not reading (its socket full) would otherwise hold
the event loop, and the server would stop serving for it. A ping it misses is followed by
the next; ``READY=1`` and ``STOPPING=1`` are sent again, in order, until it takes them.

The variables are taken out of the environment when read, as ``sd_notify`` does when
asked, so that no child (a sandboxed program) inherits them and pings in the server's
place; systemd takes notifications from the service's main process only
(``NotifyAccess=main``, its default) whatever a child does.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket

log = logging.getLogger("tether.server")
_RETRY_S = 0.5  # how soon a message a full socket refused is sent again

_VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


class Notifier:
    """The service manager's socket, and the watchdog interval it asks for (or None)."""

    def __init__(self, address: str, watchdog_s: float | None) -> None:
        # An address beginning "@" is in the abstract namespace: a NUL byte in its place.
        self.address = "\0" + address[1:] if address.startswith("@") else address
        self.shown = address
        self.watchdog_s = watchdog_s
        self._pinging: asyncio.Task[None] | None = None
        self._unsent: list[bytes] = []  # READY, STOPPING, to send again
        self._retry: asyncio.TimerHandle | None = None
        self._failing = False  # a failure was logged: the next is not, until one succeeds

    @classmethod
    def from_environment(cls) -> Notifier | None:
        """The notifier systemd's variables describe, taken out of the environment; None
        where the server was not started by a service manager that listens."""
        found = {name: os.environ.pop(name, "") for name in _VARIABLES}
        address = found["NOTIFY_SOCKET"]
        if not address:
            return None
        if not address.startswith(("/", "@")):
            log.warning(
                "NOTIFY_SOCKET=%s is not a socket path or an abstract name (@...): the service "
                "manager is not told when tether is ready",
                address,
            )
            return None
        return cls(address, _watchdog_s(found["WATCHDOG_USEC"], found["WATCHDOG_PID"]))

    def send(self, *fields: str) -> bool:
        """Send ``fields`` (``KEY=value``), one message, without waiting; whether the
        manager's socket took it. A manager that has gone, or is not reading, is logged
        (once, until a message gets through again), never a reason to stop or stall
        serving."""
        return self._send("\n".join(fields).encode()) is None

    def _send(self, message: bytes) -> OSError | None:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.setblocking(False)
                sock.sendto(message, self.address)
        except OSError as exc:
            if not self._failing:
                why = "its socket is full" if isinstance(exc, BlockingIOError) else exc
                log.warning("could not notify the service manager at %s: %s", self.shown, why)
            self._failing = True
            return exc
        self._failing = False
        return None

    def ready(self, status: str) -> None:
        """Serving: said once, with ``status`` for `systemctl status`; the watchdog starts."""
        self._say("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")
        if self.watchdog_s is not None:
            self._pinging = asyncio.get_running_loop().create_task(self._ping(self.watchdog_s))

    def stopping(self) -> None:
        """A shutdown has begun; the watchdog goes on until the process ends, as the grace
        may take a while and the loop still has to answer for itself."""
        self._say("STOPPING=1", "STATUS=stopping: finishing the requests in flight")

    def _say(self, *fields: str) -> None:
        """Send a message that must not be lost, after those still waiting (from the event
        loop): one a full socket refused is sent again shortly; one a manager that has gone
        refused is not."""
        self._unsent.append("\n".join(fields).encode())
        if self._retry is None:
            self._send_unsent()

    def _send_unsent(self) -> None:
        self._retry = None
        while self._unsent:
            if isinstance(self._send(self._unsent[0]), BlockingIOError):
                self._retry = asyncio.get_running_loop().call_later(_RETRY_S, self._send_unsent)
                return
            del self._unsent[0]

    async def _ping(self, interval_s: float) -> None:
        while True:
            self.send("WATCHDOG=1")
            await asyncio.sleep(interval_s / 2)


def _watchdog_s(usec: str, pid: str) -> float | None:
    """The watchdog interval in seconds; None where none is asked of this process."""
    if not usec:
        return None
    if pid and pid != str(os.getpid()):
        return None  # asked of another process: the one that started this one
    try:
        interval = int(usec) / 1e6
    except ValueError:
        interval = 0.0
    if interval <= 0:
        log.warning("WATCHDOG_USEC=%s is not a positive number of microseconds: no watchdog", usec)
        return None
    return interval
