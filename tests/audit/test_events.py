"""Events a command records: one open log shared within a process, another command's
turn with the log waited for, and nothing done when the log cannot be had."""

from __future__ import annotations

import getpass
import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from tether.audit import segments
from tether.audit.events import EventLog, record_event
from tether.audit.log import AuditLog, audit_folder
from tether.errors import AuditLogHeldError
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


def test_a_log_another_command_holds_for_a_moment_is_waited_for(settings: Settings) -> None:
    other = AuditLog.open(settings)
    threading.Timer(0.3, other.close).start()
    assert record_event(settings, "test.vet", {}) == str(audit_folder(settings))
    assert len(_events(settings)) == 1


def test_work_that_cannot_be_recorded_does_not_start(settings: Settings) -> None:
    other = AuditLog.open(settings)
    ran = []
    try:
        with (
            pytest.raises(AuditLogHeldError, match="not a tether server here"),
            EventLog(settings, wait_s=0.2).held(),
        ):
            ran.append(True)
    finally:
        other.close()
    assert ran == []
