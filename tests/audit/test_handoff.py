"""Records a command leaves while another keeps the log: signed in once each, in order,
by the keeper or by whoever opens the log next."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_settings
from tether.audit import handoff, segments
from tether.audit.checkpoint import parse_verifier_key
from tether.audit.log import AuditLog, audit_folder
from tether.audit.verify import verify
from tether.settings import Settings


def _records(folder: Path) -> list[dict[str, Any]]:
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
    handoff.hand_off(folder, {"request_id": "cli-left", "endpoint": "cli"}, "commitment")
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
    left = handoff.hand_off(folder, {"request_id": "cli-once", "endpoint": "cli"}, "commitment")
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
    handoff.hand_off(folder, {"endpoint": "event first"}, "commitment")
    AuditLog.open(settings).close()
    handoff.hand_off(folder, {"endpoint": "event second"}, "commitment")
    AuditLog.open(settings).close()
    assert [r["endpoint"] for r in _records(folder)] == ["event first", "event second"]


def test_a_file_that_is_not_a_record_is_set_aside_not_signed(settings: Settings) -> None:
    folder = audit_folder(settings)
    AuditLog.open(settings).close()
    handoff.hand_off(folder, {"request_id": "cli-good", "endpoint": "cli"}, "commitment")
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
            handoff.hand_off(folder, {"request_id": f"cli-{i}", "endpoint": "cli"}, "commitment")
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
    handoff.hand_off(folder, {"request_id": "cli-waiting", "endpoint": "cli"}, "commitment")
    check = _audit_check(settings)
    assert check["ok"] and "1 left in incoming/ by commands" in check["detail"], check


def test_a_record_appended_as_the_log_closes_leaves_no_gap_before_one_signed_in(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A record appended after the writer's last batch is lost as the log closes; the
    record left in incoming/ took the seq after its, and the log no longer verified."""
    folder = audit_folder(settings)
    log = AuditLog.open(settings)
    handoff.hand_off(folder, {"request_id": "cli-left", "endpoint": "cli"}, "commitment")
    looked = handoff.waiting

    def late(audit_folder: Path, skip: Collection[Path] = ()) -> list[handoff.Handed]:
        log.append({"request_id": "srv-late", "endpoint": "/x"})  # as a request ends
        return looked(audit_folder, skip)

    monkeypatch.setattr(handoff, "waiting", late)
    log.close()
    monkeypatch.setattr(handoff, "waiting", looked)
    _verified(folder)
    assert "cli-left" in [r["request_id"] for r in _records(folder)]
    AuditLog.open(settings).close()  # and it opens again


def test_a_record_signed_in_before_a_new_segment_began_is_not_signed_twice(
    tmp_path: Path,
) -> None:
    settings = make_settings(tmp_path, TETHER_AUDIT_SEGMENT_BYTES="4096")
    folder = audit_folder(settings)
    AuditLog.open(settings).close()
    fields = {"request_id": "cli-once", "endpoint": "cli", "params": {"pad": "x" * 4200}}
    left = handoff.hand_off(folder, fields, "commitment")
    kept = shutil.copy(left, tmp_path / left.name)
    AuditLog.open(settings).close()  # its line passes segment_bytes: a new segment begins
    shutil.copy(kept, left)  # as if the process died before removing it
    AuditLog.open(settings).close()
    assert len(segments.segment_paths(folder)) > 1
    assert [r["request_id"] for r in _records(folder)] == ["cli-once"]


def test_a_record_left_holds_what_the_log_keeps_of_its_text_and_when_it_was_made(
    settings: Settings,
) -> None:
    """The file held the prompt and the engine's answer in plain text, whatever
    audit.content said, until signed in, which took the time of its signing."""
    folder = audit_folder(settings)
    AuditLog.open(settings).close()
    fields = {
        "request_id": "cli-text",
        "endpoint": "cli",
        "prompt": "the prompt, with a secret",
        "completion": "the answer, with a secret",
        "completion_redacted": "the answer, [REDACTED]",
    }
    left = handoff.hand_off(folder, fields, "commitment")
    assert b"secret" not in left.read_bytes()
    written = json.loads(left.read_bytes())
    written["made"] = 1_700_000_000.0  # made long before the log next opened
    left.write_text(json.dumps(written))
    shown = handoff.hand_off(folder, {**fields, "request_id": "cli-shown"}, "redacted")
    assert b"with a secret" not in shown.read_bytes().replace(b"prompt, with a secret", b"")
    AuditLog.open(settings).close()
    kept, redacted = _records(folder)
    assert kept["time"] == 1_700_000_000.0
    assert set(kept["completion"]) == {"salt", "sha256"}
    assert redacted["completion"]["text"] == "the answer, [REDACTED]"
    _verified(folder)


def test_a_record_an_older_tether_left_is_signed_in_at_the_time_in_its_name(
    settings: Settings,
) -> None:
    """A command of an older tether left the fields alone, the text as the engine wrote
    it and no time; an upgrade set such files aside as not records, and lost them."""
    folder = audit_folder(settings)
    AuditLog.open(settings).close()
    fields = {"request_id": "cli-older", "endpoint": "cli", "prompt": "p", "completion": "c"}
    incoming = folder / handoff.INCOMING
    incoming.mkdir(mode=0o700, exist_ok=True)
    name = f"{1_700_000_000_123_456_789:020d}-42-0123456789ab.json"
    (incoming / name).write_text(json.dumps({"fields": fields}))
    (incoming / "older-42-x.json").write_text(json.dumps({"fields": fields}))
    assert handoff.count_waiting(folder) == (1, 1)
    AuditLog.open(settings).close()
    (older,) = _records(folder)
    assert older["request_id"] == "cli-older" and older["time"] == 1_700_000_000.123457
    assert set(older["completion"]) == {"salt", "sha256"}
    assert sorted(p.name for p in incoming.iterdir()) == ["older-42-x.json.bad"]
    _verified(folder)


def test_what_is_not_a_regular_file_in_incoming_is_set_aside_not_a_log_that_will_not_open(
    settings: Settings, tmp_path: Path
) -> None:
    folder = audit_folder(settings)
    AuditLog.open(settings).close()
    handoff.hand_off(folder, {"request_id": "cli-good", "endpoint": "cli"}, "commitment")
    incoming = folder / handoff.INCOMING
    (incoming / "00000000000000000001-1-dir.json").mkdir()
    (tmp_path / "elsewhere.json").write_text('{"fields": {"request_id": "forged"}, "made": 1}')
    (incoming / "00000000000000000002-1-link.json").symlink_to(tmp_path / "elsewhere.json")
    assert handoff.count_waiting(folder) == (1, 2)
    AuditLog.open(settings).close()
    assert [r["request_id"] for r in _records(folder)] == ["cli-good"]
    assert sorted(p.name for p in incoming.iterdir()) == [
        "00000000000000000001-1-dir.json.bad",
        "00000000000000000002-1-link.json.bad",
    ]


def test_a_file_a_command_was_killed_while_writing_is_swept_once_stale(
    settings: Settings,
) -> None:
    folder = audit_folder(settings)
    AuditLog.open(settings).close()
    handoff.hand_off(folder, {"request_id": "cli-good", "endpoint": "cli"}, "commitment")
    stale = folder / handoff.INCOMING / ".00000000000000000001-1-x.json.tmp"
    fresh = folder / handoff.INCOMING / ".00000000000000000002-1-y.json.tmp"
    odd = folder / handoff.INCOMING / ".00000000000000000003-1-z.json.tmp"
    stale.write_text('{"fields": {"request_id": "cli-half')
    fresh.write_text('{"fields": ')
    odd.mkdir()  # no command makes one: left, not a log that will not open
    old = time.time() - 2 * handoff.UNFINISHED_S
    for made in (stale, odd):
        os.utime(made, (old, old))
    AuditLog.open(settings).close()
    assert not stale.exists() and fresh.exists()  # one may still be written
    assert [r["request_id"] for r in _records(folder)] == ["cli-good"]
