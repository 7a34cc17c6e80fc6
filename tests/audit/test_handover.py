"""A command that keeps the audit log hands it to a server that starts meanwhile."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.conftest import TOKEN
from tests.helpers import DiskThatFills, ScriptedEngine
from tether.audit import handover, segments
from tether.audit.checkpoint import parse_verifier_key
from tether.audit.events import EventLog
from tether.audit.handoff import HandOff
from tether.audit.handover import REQUEST, YieldingLog, take_over
from tether.audit.log import AuditLog, audit_folder
from tether.audit.verify import verify
from tether.cli.backend import open_audit_log
from tether.errors import AuditError, AuditLogHeldError, ConfigError
from tether.server.app import build_app
from tether.server.runner import serve
from tether.settings import Settings, load_settings

# A command answering in process, as `tether eval run` does: the log it opens, a record
# per line read, its count of records left for another writer at the end.
_COMMAND = """
import sys
from tether.cli.backend import open_audit_log
from tether.settings import load_settings
audit = open_audit_log(
    load_settings({"data.home": sys.argv[1], "audit.origin": sys.argv[2]}, environ={})
)
print(type(audit).__name__, flush=True)
for line in sys.stdin:
    audit.append({"request_id": line.strip(), "endpoint": "cli"})
    print("recorded", flush=True)
audit.close()
print(audit.handed, flush=True)
"""


class Command:
    def __init__(self, settings: Settings) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", _COMMAND, str(settings.data.home), str(settings.audit.origin)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._line() == "YieldingLog"

    def _line(self) -> str:
        assert self.process.stdout is not None
        return self.process.stdout.readline().strip()

    def record(self, *request_ids: str) -> None:
        assert self.process.stdin is not None
        for request_id in request_ids:
            self.process.stdin.write(request_id + "\n")
            self.process.stdin.flush()
            assert self._line() == "recorded"

    def end(self) -> int:
        """Records it left for the log's next writer."""
        out, _ = self.process.communicate("")
        return int(out.strip())


@pytest.fixture
def command(settings: Settings) -> Iterator[Command]:
    AuditLog.open(settings).close()  # the log made, with its key
    started = Command(settings)
    yield started
    if started.process.poll() is None:
        started.process.kill()
        started.process.wait()


def _request_ids(folder: Path) -> list[str]:
    return [
        json.loads(item.data).get("request_id", "")
        for item in segments.iter_records(folder)
        if isinstance(item, segments.Line)
    ]


def test_a_command_hands_the_log_to_a_server_that_asks_and_no_record_is_lost(
    settings: Settings, command: Command
) -> None:
    command.record("before-1", "before-2")
    claim = take_over(settings)  # as `tether serve` does before it loads the model
    server_log = AuditLog.open(settings, lock=claim)
    try:
        command.record("after-1", "after-2")
        assert command.end() == 2  # left in incoming for the server
        server_log.flush()  # its checkpoint signs in what was left meanwhile
        server_log.flush()
    finally:
        server_log.close()
    folder = audit_folder(settings)
    ids = [one for one in _request_ids(folder) if not one.startswith("evt-")]
    assert ids == ["before-1", "before-2", "after-1", "after-2"]
    assert not (folder / REQUEST).exists()
    assert verify(folder, parse_verifier_key((folder / "verifier.key").read_text())).ok


def test_a_holder_that_does_not_hand_the_log_over_is_named_after_the_wait(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(handover, "WAIT_S", 0.3)
    kept = AuditLog.open(settings)  # a server's, which keeps its log
    try:
        with pytest.raises(AuditLogHeldError, match=r"did not hand it over in 0\.3 s"):
            take_over(settings)
    finally:
        kept.close()
    assert not (audit_folder(settings) / REQUEST).exists()
    claim = take_over(settings)  # free: nothing to wait for
    assert claim is not None
    claim.close()


def _kept_through_looks(settings: Settings, request_id: str) -> None:
    """A command's log, which keeps a record appended after three looks for a request:
    it was not handed over."""
    kept = YieldingLog(AuditLog.open(settings), "commitment", on_failure=pytest.fail)
    try:
        time.sleep(handover.LOOK_EVERY_S * 3)
        assert kept.append({"request_id": request_id, "endpoint": "cli"}) >= 0
    finally:
        kept.close()
    assert kept.handed == 0


def test_a_request_left_by_a_server_killed_while_it_waited_is_not_heeded(
    settings: Settings,
) -> None:
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    folder = audit_folder(settings)
    AuditLog.open(settings).close()
    (folder / REQUEST).write_text(gone.stdout.strip())
    _kept_through_looks(settings, "still-mine")
    assert "still-mine" in _request_ids(folder)


def test_a_request_of_its_own_process_is_not_heeded(settings: Settings) -> None:
    folder = audit_folder(settings)
    AuditLog.open(settings).close()
    (folder / REQUEST).write_text(str(os.getpid()))
    _kept_through_looks(settings, "mine")


def test_the_log_is_the_servers_from_the_hand_over_on(settings: Settings, command: Command) -> None:
    """Between the hand-over and the app opening the log (the model loads meanwhile) the
    server keeps it: the command, ending then, leaves its records for the server rather
    than taking the log back (signing them in, recording its eval.run), which made the
    server's start fail once its model had loaded."""
    command.record("before")
    claim = take_over(settings)
    assert claim is not None
    command.record("after")
    assert command.end() == 1
    with pytest.raises(AuditLogHeldError):
        AuditLog.open(settings).close()  # the command's sign-in, an eval.run event
    server_log = AuditLog.open(settings, lock=claim)  # as the app opens it
    server_log.close()
    folder = audit_folder(settings)
    assert [one for one in _request_ids(folder) if not one.startswith("evt-")] == [
        "before",
        "after",
    ]
    assert verify(folder, parse_verifier_key((folder / "verifier.key").read_text())).ok


def test_a_second_server_is_refused_while_the_first_has_taken_the_log(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two servers asking at once: the second is refused before it loads its model, not
    after, where opening the log could only crash its start."""
    monkeypatch.setattr(handover, "WAIT_S", 0.3)
    AuditLog.open(settings).close()
    first = take_over(settings)
    try:
        with pytest.raises(AuditLogHeldError, match="did not hand it over"):
            take_over(settings)
    finally:
        if first is not None:
            first.close()


def test_the_app_opens_the_log_with_the_lock_the_server_took(settings: Settings) -> None:
    AuditLog.open(settings).close()
    claim = take_over(settings)
    app = build_app(settings, TOKEN, lambda: ScriptedEngine("ok"), audit_lock=claim)
    with TestClient(app):
        assert app.state.audit is not None
    assert claim is not None and claim.closed  # the log's, closed with it
    AuditLog.open(settings).close()  # and free again


def _asking(settings: Settings, pid: int, age_s: float = 0.0) -> None:
    """A server's request for the log, made ``age_s`` ago."""
    request = audit_folder(settings) / REQUEST
    request.write_text(str(pid))
    made = time.time() - age_s
    os.utime(request, (made, made))


def test_while_a_server_waits_for_the_log_a_command_leaves_it_to_that_server(
    settings: Settings,
) -> None:
    """From the hand-over to the server's next look, a command that ends (signing in what
    it left, recording its eval.run) or starts would take the log again: with a log that
    takes seconds to open, the server was refused after its wait, the log handed over."""
    AuditLog.open(settings).close()
    _asking(settings, os.getppid())  # a live process, not this one
    with pytest.raises(AuditLogHeldError, match="handed to a server"):
        AuditLog.open(settings)
    audit = open_audit_log(settings)
    assert isinstance(audit, HandOff)  # its records wait in incoming for the server
    audit.close()


def test_a_request_older_than_any_server_waits_is_not_heeded(settings: Settings) -> None:
    """A server killed while it waited leaves its request; its pid, reused by another
    process, made every command hand the log over to no one."""
    AuditLog.open(settings).close()
    _asking(settings, os.getppid(), age_s=handover.WAIT_S * 10)
    _kept_through_looks(settings, "still-mine")


def test_records_waiting_for_a_full_disk_are_not_handed_over_and_lost(
    settings: Settings,
) -> None:
    """A log closes with the records its disk refused unwritten: handed over then, they
    were lost although the command went on and the disk could take them later."""
    AuditLog.open(settings).close()
    audit_log = AuditLog.open(settings)
    disk = DiskThatFills(audit_log._segment)
    audit_log._segment = disk  # type: ignore[assignment]
    kept = YieldingLog(audit_log, "commitment", on_failure=pytest.fail)
    try:
        kept.append({"request_id": "waiting", "endpoint": "cli"})
        audit_log.flush()
        assert audit_log.problem is not None
        _asking(settings, os.getppid())
        time.sleep(handover.LOOK_EVERY_S * 3)
        disk.full = False  # space freed
        kept.append({"request_id": "after", "endpoint": "cli"})
    finally:
        kept.close()
    assert kept.handed == 0
    assert [one for one in _request_ids(audit_folder(settings)) if not one.startswith("evt-")] == [
        "waiting",
        "after",
    ]


def test_a_server_that_cannot_listen_takes_nothing_from_the_command(
    settings: Settings, command: Command
) -> None:
    """A server whose port was taken asked for the log first, then failed: the command
    had handed it over to no one, and its records waited unsigned until it ended."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = load_settings(
            {
                "data.home": str(settings.data.home),
                "server.port": port,
                "server.runtime_dir": str(settings.data.home.parent / "run"),
            },
            environ={},
        )
        with pytest.raises(ConfigError, match="cannot listen"):
            serve(server)
    command.record("after")
    assert command.end() == 0  # still its own log's


# A server as `tether serve` starts: it takes the log over, then, told so, either opens
# it with the lock it took (as its app does) or ends without (its model failed to load).
_SERVER = """
import sys
from tether.audit.handover import take_over
from tether.audit.log import AuditLog
from tether.settings import load_settings
settings = load_settings({"data.home": sys.argv[1], "audit.origin": sys.argv[2]}, environ={})
claim = take_over(settings)
print("taken", flush=True)
if sys.stdin.readline().strip() == "open":
    AuditLog.open(settings, lock=claim).close()
    print("opened", flush=True)
"""


class Server:
    def __init__(self, settings: Settings) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", _SERVER, str(settings.data.home), str(settings.audit.origin)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._line() == "taken"  # not refused after its wait

    def _line(self) -> str:
        assert self.process.stdout is not None
        return self.process.stdout.readline().strip()

    def open_log(self) -> None:
        out, _ = self.process.communicate("open\n")
        assert out.strip() == "opened"

    def fail(self) -> None:
        self.process.communicate("fail\n")  # and reaped: its pid is gone


def _verified(folder: Path) -> bool:
    return verify(folder, parse_verifier_key((folder / "verifier.key").read_text())).ok


def test_events_recorded_in_process_hand_the_log_to_a_server_that_asks(
    settings: Settings,
) -> None:
    """`tether mcp` and `tether store call` keep the log while a call runs, and a server
    that started meanwhile was refused after its wait."""
    events = EventLog(settings)
    with events.held() as record:
        record("test.before", {})
        server = Server(settings)
        assert "once the server it was handed to signs it in" in record("test.after", {})
    server.open_log()
    folder = audit_folder(settings)
    endpoints = [
        json.loads(item.data)["endpoint"]
        for item in segments.iter_records(folder)
        if isinstance(item, segments.Line) and "test." in item.data.decode()
    ]
    assert endpoints == ["event test.before", "event test.after"]
    assert not list((folder / "incoming").glob("*.json"))
    assert _verified(folder)


def test_an_event_that_cannot_be_left_for_the_server_it_was_handed_to_is_an_error(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As where another command keeps the log: the work it records is not done unrecorded."""

    def full(*_: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("tether.audit.handoff.hand_off", full)
    with EventLog(settings).held() as record:
        server = Server(settings)
        with pytest.raises(AuditError, match=r"not recorded.*No space left"):
            record("test.after", {})
    server.open_log()


def test_a_server_on_a_new_data_directory_takes_the_log_a_command_would_make(
    settings: Settings,
) -> None:
    """With no log yet there was no lock to take: a command that made the log while the
    server's model loaded kept it, and the server's start failed once the model had
    loaded."""
    folder = audit_folder(settings)
    assert not folder.exists()
    claim = take_over(settings)
    assert claim is not None
    audit = open_audit_log(settings)  # a command starting while the model loads
    assert isinstance(audit, HandOff)
    audit.append({"request_id": "meanwhile", "endpoint": "cli"})
    audit.close()
    AuditLog.open(settings, lock=claim).close()  # as the app opens it
    assert [one for one in _request_ids(folder) if not one.startswith("evt-")] == ["meanwhile"]
    assert _verified(folder)


def test_a_command_takes_the_log_back_from_a_server_that_failed_after_taking_it(
    settings: Settings, command: Command
) -> None:
    """A server whose model did not load after the hand-over left the command writing to
    ``incoming`` until it ended, its records unsigned meanwhile."""
    command.record("before")
    server = Server(settings)
    command.record("during")  # left for the server
    server.fail()
    incoming = audit_folder(settings) / "incoming"
    deadline = time.monotonic() + 30
    while list(incoming.glob("*.json")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not list(incoming.glob("*.json"))  # signed in by the command, the log its own
    command.record("back")
    assert command.end() == 1  # "during" alone was left
    folder = audit_folder(settings)
    ids = [one for one in _request_ids(folder) if not one.startswith("evt-")]
    assert ids == ["before", "during", "back"]
    assert _verified(folder)
