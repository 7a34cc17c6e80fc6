"""Records a command leaves while another keeps the log: signed in once each, in order,
by the keeper or by whoever opens the log next."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

from tether.audit import handoff, segments
from tether.audit.checkpoint import parse_verifier_key
from tether.audit.log import AuditLog, audit_folder
from tether.audit.verify import verify
from tether.settings import Settings


def _records(folder: Path) -> list[dict[str, object]]:
    return [
        json.loads(item.data)
        for item in segments.iter_records(folder)
        if isinstance(item, segments.Line)
    ]


def _verified(folder: Path) -> None:
    key = parse_verifier_key((folder / "verifier.key").read_text().strip())
    report = verify(folder, key)
    assert report.ok, report


def test_a_record_left_while_the_log_was_closed_is_signed_in_when_it_opens(
    settings: Settings,
) -> None:
    folder = audit_folder(settings)
    AuditLog.open(settings).close()
    handoff.hand_off(folder, {"request_id": "cli-left", "endpoint": "cli"})
    key = parse_verifier_key((folder / "verifier.key").read_text().strip())
    (waiting,) = verify(folder, key).warnings
    assert waiting.startswith("1 record(s) a command left in incoming/"), waiting
    AuditLog.open(settings).close()
    assert [r["request_id"] for r in _records(folder)] == ["cli-left"]
    assert handoff.count_waiting(folder) == (0, 0)
    _verified(folder)


def test_a_record_a_crash_left_behind_after_signing_it_in_is_not_signed_twice(
    settings: Settings, tmp_path: Path
) -> None:
    folder = audit_folder(settings)
    AuditLog.open(settings).close()
    left = handoff.hand_off(folder, {"request_id": "cli-once", "endpoint": "cli"})
    kept = shutil.copy(left, tmp_path / left.name)
    AuditLog.open(settings).close()
    shutil.copy(kept, left)  # as if the process died before removing it
    AuditLog.open(settings).close()
    assert [r["request_id"] for r in _records(folder)] == ["cli-once"]
    assert handoff.count_waiting(folder) == (0, 0)


def test_a_record_without_a_request_id_is_signed_in_beside_others_without_one(
    settings: Settings,
) -> None:
    folder = audit_folder(settings)
    AuditLog.open(settings).close()
    handoff.hand_off(folder, {"endpoint": "event first"})
    AuditLog.open(settings).close()
    handoff.hand_off(folder, {"endpoint": "event second"})
    AuditLog.open(settings).close()
    assert [r["endpoint"] for r in _records(folder)] == ["event first", "event second"]


def test_a_file_that_is_not_a_record_is_set_aside_not_signed(settings: Settings) -> None:
    folder = audit_folder(settings)
    AuditLog.open(settings).close()
    handoff.hand_off(folder, {"request_id": "cli-good", "endpoint": "cli"})
    (folder / handoff.INCOMING / "00000000000000000001-1-x.json").write_text("not json")
    key = parse_verifier_key((folder / "verifier.key").read_text().strip())
    counted, junk = verify(folder, key).warnings
    assert counted.startswith("1 record(s)") and junk.startswith("1 file(s)"), (counted, junk)
    AuditLog.open(settings).close()
    assert [r["request_id"] for r in _records(folder)] == ["cli-good"]
    assert [p.name for p in (folder / handoff.INCOMING).iterdir()] == [
        "00000000000000000001-1-x.json.bad"
    ]


def test_records_left_beside_a_busy_writer_are_each_signed_in_once_in_a_chain_that_verifies(
    settings: Settings,
) -> None:
    folder = audit_folder(settings)
    log = AuditLog.open(settings)
    stop = threading.Event()

    def busy() -> None:  # the server's own records, all the while
        n = 0
        while not stop.wait(0.001):
            log.append({"request_id": f"srv-{n}", "endpoint": "/v1/completions"})
            n += 1

    writer = threading.Thread(target=busy)
    writer.start()
    try:
        for i in range(40):
            handoff.hand_off(folder, {"request_id": f"cli-{i}", "endpoint": "cli"})
            if i % 10 == 9:
                log.flush()
    finally:
        stop.set()
        writer.join()
        log.close()
    ids = [str(r["request_id"]) for r in _records(folder)]
    handed = [i for i in ids if i.startswith("cli-")]
    assert handed == [f"cli-{i}" for i in range(40)]
    assert handoff.count_waiting(folder) == (0, 0)
    _verified(folder)


def test_doctor_counts_the_records_that_wait_to_be_signed_in(settings: Settings) -> None:
    from tether.cli.info import _audit_check

    folder = audit_folder(settings)
    AuditLog.open(settings).close()
    handoff.hand_off(folder, {"request_id": "cli-waiting", "endpoint": "cli"})
    check = _audit_check(settings)
    assert check["ok"] and "1 left in incoming/ by commands" in check["detail"], check
