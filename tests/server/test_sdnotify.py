"""Under systemd (`Type=notify`, `WatchdogSec=`) the server says when it serves, pings the
watchdog from its event loop, and says when it stops, over a real datagram socket as
systemd listens on one; and the unit shipped in deploy/systemd is one systemd reads."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.helpers import tether_env, tether_server
from tether.server.sdnotify import Notifier

UNIT = Path(__file__).parents[2] / "deploy" / "systemd" / "tether.service"


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[socket.socket]:
    """The service manager's end: a datagram socket, as systemd's NOTIFY_SOCKET is."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(tmp_path / "notify"))
        sock.settimeout(60)
        yield sock


def _fields(sock: socket.socket) -> dict[str, str]:
    message = sock.recv(4096).decode()
    return dict(line.split("=", 1) for line in message.splitlines())


def test_the_server_says_ready_once_it_serves_pings_the_watchdog_and_says_stopping(
    tmp_path: Path, manager: socket.socket
) -> None:
    watchdog_usec = "400000"  # pings every 0.2 s
    with tether_server(
        tmp_path, NOTIFY_SOCKET=str(tmp_path / "notify"), WATCHDOG_USEC=watchdog_usec
    ) as server:
        ready = _fields(manager)
        assert ready["READY"] == "1" and ready["STATUS"] == f"serving on {server.url}"
        assert ready["MAINPID"] == str(server.process.pid)
        # Ready means serving: the model answers, not only the process exists.
        assert httpx.get(f"{server.url}/readyz", timeout=10).status_code == 200
        pings = [_fields(manager) for _ in range(3)]
        assert pings == [{"WATCHDOG": "1"}] * 3
        server.process.send_signal(signal.SIGTERM)
        while (said := _fields(manager)) == {"WATCHDOG": "1"}:
            pass
        assert said["STOPPING"] == "1"
        assert server.process.wait(timeout=60) in (0, -signal.SIGTERM)


def test_a_watchdog_asked_of_another_process_is_not_pinged(
    tmp_path: Path, manager: socket.socket
) -> None:
    with tether_server(
        tmp_path,
        NOTIFY_SOCKET=str(tmp_path / "notify"),
        WATCHDOG_USEC="200000",
        WATCHDOG_PID=str(os.getpid()),  # this test's, not the server's
    ):
        assert _fields(manager)["READY"] == "1"
        manager.settimeout(1)
        with pytest.raises(TimeoutError):
            manager.recv(4096)


def test_the_variables_are_taken_out_of_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A sandboxed program started later must not be able to speak for the service."""
    monkeypatch.setenv("NOTIFY_SOCKET", "@tether-test")
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    notifier = Notifier.from_environment()
    assert notifier is not None and notifier.address == "\0tether-test"
    assert notifier.watchdog_s == 30.0
    assert "NOTIFY_SOCKET" not in os.environ and "WATCHDOG_USEC" not in os.environ
    assert Notifier.from_environment() is None  # nothing left to find


@pytest.mark.parametrize(
    ("address", "usec", "said"),
    [
        ("relative/socket", "", "is not a socket path or an abstract name"),
        ("/run/notify", "soon", "is not a positive number of microseconds"),
        ("/run/notify", "-5", "is not a positive number of microseconds"),
    ],
)
def test_bad_variables_are_said_and_leave_the_server_serving(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, address: str, usec: str,
    said: str,
) -> None:  # fmt: skip
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    monkeypatch.setenv("WATCHDOG_USEC", usec)
    notifier = Notifier.from_environment()
    assert notifier is None or notifier.watchdog_s is None
    assert said in caplog.text


def test_a_manager_that_has_gone_is_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    Notifier(str(tmp_path / "gone"), None).send("READY=1")
    assert "could not notify the service manager" in caplog.text


def test_the_shipped_unit_is_one_systemd_reads_without_a_word(tmp_path: Path) -> None:
    """`systemd-analyze verify` warns of unknown keys, sections and bad values; the
    command it starts is made to exist, as the unit's install steps make it."""
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is installed by `make test` (apt-get install systemd)"
    text = UNIT.read_text()
    assert "Type=notify" in text and "WatchdogSec=" in text
    starts = [line for line in text.splitlines() if line.startswith("ExecStart=")]
    command = starts[0].removeprefix("ExecStart=").split()[0]
    unit = tmp_path / "tether.service"
    unit.write_text(text.replace(command, shutil.which("true") or "/bin/true"))
    done = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and done.stderr == "", done.stderr


def _fill(address: str) -> int:
    """Fill the manager's socket, as one that has stopped reading: how many it took."""
    taken = 0
    while True:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            try:
                sock.sendto(b"FILLER=1", address)
            except BlockingIOError:
                return taken
        taken += 1


def test_a_manager_that_is_not_reading_stalls_nothing_and_hears_ready_later(
    tmp_path: Path, manager: socket.socket, caplog: pytest.LogCaptureFixture
) -> None:
    """A full socket held the event loop in sendto: the server never served, and neither
    did it after the manager read again, until the send went through."""
    address = str(tmp_path / "notify")
    taken = _fill(address)
    notifier = Notifier(address, None)
    heard: list[bytes] = []

    async def serving() -> None:
        notifier.ready("serving on here")  # returns at once: the loop goes on serving
        notifier.stopping()
        assert "its socket is full" in caplog.text
        for _ in range(taken):  # the manager reads again
            assert manager.recv(4096) == b"FILLER=1"
        manager.setblocking(False)
        loop = asyncio.get_running_loop()
        for _ in range(2):
            heard.append(await loop.sock_recv(manager, 4096))

    # In a thread, so that a send that waits fails the test rather than holding it for ever.
    pool = ThreadPoolExecutor(1)
    try:
        pool.submit(asyncio.run, serving()).result(timeout=120)
    except TimeoutError:
        pytest.fail("a notification waited for the manager to read")
    finally:
        pool.shutdown(wait=False)
    assert heard[0].startswith(b"READY=1\n") and heard[1].startswith(b"STOPPING=1\n")


def test_a_manager_that_has_gone_is_said_once_not_at_every_ping(
    tmp_path: Path, manager: socket.socket, caplog: pytest.LogCaptureFixture
) -> None:
    """A warning every half watchdog interval, for as long as the server ran, buried the
    log; said again once the manager has heard a message in between."""
    gone = Notifier(str(tmp_path / "gone"), None)
    assert [gone.send("WATCHDOG=1") for _ in range(3)] == [False] * 3
    assert caplog.text.count("could not notify the service manager") == 1
    gone.address = str(tmp_path / "notify")
    assert gone.send("WATCHDOG=1")
    gone.address = str(tmp_path / "gone")
    assert not gone.send("WATCHDOG=1")
    assert caplog.text.count("could not notify the service manager") == 2


def _settings(unit: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in unit.splitlines():
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def test_the_unit_leaves_the_engine_every_device() -> None:
    """An engine built for a GPU opens /dev/nvidia*, /dev/dri or /dev/kfd. A device
    allow-list shuts it out of them: DeviceAllow=, DevicePolicy=, PrivateDevices=, and
    ProtectClock=, which before systemd 252 implied DeviceAllow=char-rtc r."""
    settings = _settings(UNIT.read_text())
    for key in ("DeviceAllow", "DevicePolicy", "PrivateDevices", "ProtectClock"):
        assert key not in settings, f"{key}= in the unit"


def test_the_units_working_directory_is_there_without_settings_in_it() -> None:
    """A WorkingDirectory= that is missing fails the start (status 200/CHDIR), and the
    install steps make no /etc/tether: settings are optional. systemd makes the folder
    where the unit names it as one of its own, or the unit allows it to be missing."""
    settings = _settings(UNIT.read_text())
    (folder,) = settings["WorkingDirectory"]
    roots = {
        "ConfigurationDirectory": "/etc",
        "StateDirectory": "/var/lib",
        "RuntimeDirectory": "/run",
    }
    made = {
        f"{root}/{name}"
        for key, root in roots.items()
        for value in settings.get(key, [])
        for name in value.split()
    }
    assert folder.startswith("-") or folder in made, f"nothing makes {folder}"


def test_a_start_that_needs_a_fix_is_not_retried_by_the_unit(tmp_path: Path) -> None:
    """A setting to fix ends the start with status 2, which the unit does not retry: a
    restart every 5 s would only say it again, for ever."""
    done = subprocess.run(
        [sys.executable, "-m", "tether", "serve"],
        env=tether_env(tmp_path, TETHER_SERVER_PORT="eighty"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "server.port" in done.stderr or "TETHER_SERVER_PORT" in done.stderr, done.stderr
    assert "RestartPreventExitStatus=2" in UNIT.read_text().splitlines()
