"""Events a command records: one open log shared within a process, and events left for
another command that keeps the log to sign in."""

from __future__ import annotations

import getpass
import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from tether.audit import segments
from tether.audit.events import EventLog, record_event
from tether.audit.log import AuditLog, audit_folder
from tether.errors import AuditError
from tether.settings import Settings


def _events(settings: Settings) -> list[str]:
    lines = "".join(p.read_text() for p in audit_folder(settings).glob(segments.SEGMENT_GLOB))
    return [line for line in lines.splitlines() if '"event test.' in line]


def test_holders_in_one_process_share_the_open_log(settings: Settings) -> None:
    events = EventLog(settings)
    inside = threading.Barrier(8, timeout=30)

    def work(i: int) -> None:
        with events.held() as record:
            inside.wait()  # all eight hold the log at once
            record("test.call", {"i": i})

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(work, range(8)))
    recorded = [json.loads(line) for line in _events(settings)]
    assert len(recorded) == 8
    # Each its own id, and who did it, as a server records the events it is sent.
    assert len({r["request_id"] for r in recorded}) == 8
    assert {r["principal"] for r in recorded} == {f"{getpass.getuser()} (cli)"}
    AuditLog.open(settings).close()  # let go once the last holder left


def test_an_event_while_another_command_keeps_the_log_is_signed_in_by_it(
    settings: Settings,
) -> None:
    """It waited 10 s for the other command, then was an error: an evaluation of an hour
    kept the log, and every `store vet` meanwhile failed."""
    other = AuditLog.open(settings)
    try:
        where = record_event(settings, "test.vet", {"n": 1})
        assert "once the command that keeps it signs it in" in where
        assert _events(settings) == []
        other.flush()  # its checkpoints look for what was left
        other.flush()
        assert len(_events(settings)) == 1
    finally:
        other.close()
    assert list((audit_folder(settings) / "incoming").glob("*.json")) == []


def test_an_event_left_when_its_keeper_closes_is_signed_in_by_the_next_to_open(
    settings: Settings,
) -> None:
    other = AuditLog.open(settings)
    events = EventLog(settings)
    with events.held() as record:
        record("test.call", {"n": 1})
        other.close()  # gone before the event's command is done
        record("test.call", {"n": 2})
    # The last holder leaving signed both in.
    recorded = [json.loads(line)["params"]["n"] for line in _events(settings)]
    assert recorded == [1, 2]


def test_an_event_that_cannot_be_left_for_the_log_is_an_error(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(*_: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("tether.audit.events.hand_off", full)
    other = AuditLog.open(settings)
    try:
        with pytest.raises(AuditError, match=r"could not be left.*No space left"):
            record_event(settings, "test.call", {})
    finally:
        other.close()
