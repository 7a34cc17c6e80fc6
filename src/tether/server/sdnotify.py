"""systemd's service notifications (``sd_notify``): readiness, stopping and the watchdog.

Under a unit of ``Type=notify`` systemd names a datagram socket in ``NOTIFY_SOCKET``. The
server says ``READY=1`` once it serves (the model loaded, the port taking requests), so
that units ordered after it, and ``systemctl start``, wait for that and not for the
process to exist; ``STOPPING=1`` as a shutdown begins. Under ``WatchdogSec=`` systemd
also sets ``WATCHDOG_USEC``, and the server pings from its event loop at half that
interval: an event loop stuck for longer gets the service restarted, where a process
that only exists would pass. Nothing is sent without ``NOTIFY_SOCKET``.

The variables are taken out of the environment when read, as ``sd_notify`` does when
asked: a sandboxed program, or any other child, must not speak for the service.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket

log = logging.getLogger("tether.server")

_VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


class Notifier:
    """The service manager's socket, and the watchdog interval it asks for (or None)."""

    def __init__(self, address: str, watchdog_s: float | None) -> None:
        # An address beginning "@" is in the abstract namespace: a NUL byte in its place.
        self.address = "\0" + address[1:] if address.startswith("@") else address
        self.watchdog_s = watchdog_s
        self._pinging: asyncio.Task[None] | None = None

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

    def send(self, *fields: str) -> None:
        """Send ``fields`` (``KEY=value``), one message; a manager that has gone is logged,
        never a reason to stop serving."""
        message = "\n".join(fields).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto(message, self.address)
        except OSError as exc:
            log.warning("could not notify the service manager at %s: %s", self.address, exc)

    def ready(self, status: str) -> None:
        """Serving: said once, with ``status`` for `systemctl status`; the watchdog starts."""
        self.send("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")
        if self.watchdog_s is not None:
            self._pinging = asyncio.get_running_loop().create_task(self._ping(self.watchdog_s))

    def stopping(self) -> None:
        """A shutdown has begun; the watchdog goes on until the process ends, as the grace
        may take a while and the loop still has to answer for itself."""
        self.send("STOPPING=1", "STATUS=stopping: finishing the requests in flight")

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
