"""Each kind of tampering is detected and located; a crash loses no durable record."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from nacl.signing import SigningKey

from tests.audit.logs import all_records, filled, verifier
from tests.helpers import segmented_log
from tether.audit import records
from tether.audit.checkpoint import Signer, parse_verifier_key
from tether.audit.log import AuditLog
from tether.audit.verify import load_since, verify, verify_extension
from tether.cli.info import _audit_check
from tether.errors import AuditError
from tether.settings import Settings


def _rewrite(folder: Path, edit: Callable[[list[bytes]], list[bytes]]) -> None:
    path = folder / "segment-000001.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(edit(lines)))


def test_clean_log_verifies(settings: Settings) -> None:
    folder = filled(settings)
    report = verify(folder, verifier(folder))
    assert report.ok and report.records == 20 and report.checkpoints >= 4


def test_modified_field(settings: Settings) -> None:
    folder = filled(settings)
    key = verifier(folder)

    def edit(lines: list[bytes]) -> list[bytes]:
        lines[7] = lines[7].replace(b'"r7"', b'"rX"')
        return lines

    _rewrite(folder, edit)
    report = verify(folder, key)
    assert report.seq == 7 and "seq 7 was changed" in str(report.error)


def test_inserted_record(settings: Settings) -> None:
    folder = filled(settings)
    key = verifier(folder)
    _rewrite(folder, lambda lines: [*lines[:5], lines[4], *lines[5:]])
    report = verify(folder, key)
    assert report.seq == 5 and "expected seq 5, found seq 4" in str(report.error)


def test_deleted_record(settings: Settings) -> None:
    folder = filled(settings)
    key = verifier(folder)
    _rewrite(folder, lambda lines: [*lines[:9], *lines[10:]])
    report = verify(folder, key)
    assert report.seq == 9 and "found seq 10" in str(report.error)


def test_reordered_records(settings: Settings) -> None:
    folder = filled(settings)
    key = verifier(folder)
    _rewrite(folder, lambda lines: [*lines[:3], lines[4], lines[3], *lines[5:]])
    report = verify(folder, key)
    assert report.seq == 3 and "expected seq 3, found seq 4" in str(report.error)


def test_truncated_tail_against_saved_checkpoint(settings: Settings, tmp_path: Path) -> None:
    folder = filled(settings)
    key = verifier(folder)
    saved = tmp_path / "saved.jsonl"
    shutil.copy(folder / "checkpoints.jsonl", saved)
    _rewrite(folder, lambda lines: lines[:12])
    entries = (folder / "checkpoints.jsonl").read_text().splitlines()
    kept = [e for e in entries if json.loads(e)["size"] <= 12]
    (folder / "checkpoints.jsonl").write_text("".join(e + "\n" for e in kept))
    assert verify(folder, key).ok  # on its own the cut log looks whole...
    report = verify(folder, key, since=load_since(saved))
    assert report.seq == 12 and "tail cut" in str(report.error)  # ...but not against a copy


@pytest.mark.parametrize("how", ["deleted", "emptied"])
def test_records_without_any_checkpoint_fail(settings: Settings, how: str) -> None:
    # Without checkpoints the chain binds nothing: a rewritten log would chain as well.
    folder = filled(settings)
    key = verifier(folder)
    checkpoints = folder / "checkpoints.jsonl"
    if how == "deleted":
        checkpoints.unlink()
    else:
        checkpoints.write_bytes(b"")
    report = verify(folder, key)
    assert not report.ok and report.seq == 0
    assert "20 records but no signed checkpoint" in str(report.error)


def test_a_folder_without_records_or_checkpoints_is_no_log(tmp_path: Path) -> None:
    """A log signs a checkpoint when it first opens: a wrong or emptied folder fails."""
    signer = Signer("tether/test", SigningKey.generate())
    (tmp_path / "audit").mkdir()
    report = verify(tmp_path / "audit", parse_verifier_key(signer.verifier_key))
    assert not report.ok and "no audit records and no checkpoint" in str(report.error)


def test_a_new_log_with_its_first_checkpoint_verifies(settings: Settings) -> None:
    folder = filled(settings, count=0)
    report = verify(folder, verifier(folder))
    assert report.ok and report.records == 0 and report.checkpoints >= 1


def test_a_break_mid_log_counts_the_records_read_before_it(settings: Settings) -> None:
    folder = filled(settings)
    key = verifier(folder)
    _rewrite(folder, lambda lines: [*lines[:7], *lines[8:]])  # seq 7 deleted
    report = verify(folder, key)
    assert not report.ok and report.seq == 7 and report.records == 7


def test_uncovered_tail_is_a_warning_with_its_size(settings: Settings) -> None:
    folder = filled(settings)
    key = verifier(folder)
    entries = (folder / "checkpoints.jsonl").read_text().splitlines()
    kept = [e for e in entries if json.loads(e)["size"] <= 15]
    (folder / "checkpoints.jsonl").write_text("".join(e + "\n" for e in kept))
    report = verify(folder, key)
    assert report.ok
    assert any("from seq 15 on (5) are not yet covered" in w for w in report.warnings)


def test_a_saved_checkpoint_the_log_no_longer_holds_is_named(
    settings: Settings, tmp_path: Path
) -> None:
    # The checkpoints file's last lines were removed, but the auditor saved them: the
    # records still match the saved notes, which the summary left out without a word.
    folder = filled(settings)
    key = verifier(folder)
    saved = tmp_path / "saved.jsonl"
    shutil.copy(folder / "checkpoints.jsonl", saved)
    entries = (folder / "checkpoints.jsonl").read_text().splitlines()
    kept = [e for e in entries if json.loads(e)["size"] <= 15]
    (folder / "checkpoints.jsonl").write_text("".join(e + "\n" for e in kept))
    report = verify(folder, key, since=load_since(saved))
    assert report.ok, report.error
    assert max(report.extends) == 15
    (warning,) = [w for w in report.warnings if "saved checkpoint" in w]
    assert "the saved checkpoint of size 20 is newer than the log's latest (15)" in warning
    assert "checkpoints.jsonl does not hold it" in warning


def test_whole_log_rewritten_with_another_key(settings: Settings) -> None:
    folder = filled(settings)
    key = verifier(folder)
    shutil.rmtree(folder)
    forged = Signer("tether/test", SigningKey.generate())
    log = AuditLog(folder, forged)
    log.append({"request_id": "forged"})
    log.close()
    report = verify(folder, key)
    assert not report.ok and "no signature by key tether/test" in str(report.error)


def test_fork_from_earlier_checkpoint(settings: Settings, tmp_path: Path) -> None:
    folder = filled(settings)
    key = verifier(folder)
    saved = tmp_path / "saved.jsonl"
    shutil.copy(folder / "checkpoints.jsonl", saved)
    # Roll back to the checkpoint at size 10 and write a different history after it.
    _rewrite(folder, lambda lines: lines[:10])
    entries = (folder / "checkpoints.jsonl").read_text().splitlines()
    kept = [e for e in entries if json.loads(e)["size"] <= 10]
    (folder / "checkpoints.jsonl").write_text("".join(e + "\n" for e in kept))
    log = AuditLog.open(settings)
    for i in range(10):
        log.append({"request_id": f"fork{i}"})
    log.close()
    assert verify(folder, key).ok
    report = verify(folder, key, since=load_since(saved))
    assert report.seq == 10 and "diverges from it between seq 10" in str(report.error)


def test_honest_log_provably_extends_every_saved_checkpoint(
    settings: Settings, tmp_path: Path
) -> None:
    folder = filled(settings, count=10)
    saved = tmp_path / "saved.jsonl"
    shutil.copy(folder / "checkpoints.jsonl", saved)
    log = AuditLog.open(settings)
    for i in range(7):
        log.append({"request_id": f"later{i}"})
    log.close()
    report = verify(folder, verifier(folder), since=load_since(saved))
    assert report.ok, report.error
    assert set(report.extends) == {json.loads(e)["size"] for e in saved.read_text().splitlines()}


def test_consistency_proof_from_the_log_catches_a_rewritten_history(
    settings: Settings, tmp_path: Path
) -> None:
    folder = filled(settings, count=10)
    key = verifier(folder)
    saved_note = json.loads((folder / "checkpoints.jsonl").read_text().splitlines()[-1])["note"]
    log = AuditLog.open(settings)
    log.append({"request_id": "later"})
    log.flush()
    honest = log.consistency_proof(10)
    log.close()
    old, new = verify_extension(saved_note, honest, key)
    assert (old.size, new.size) == (10, 11)
    # The same key, a different history of the same length, then one more record.
    for path in folder.glob("segment-*.jsonl"):
        path.unlink()
    (folder / "checkpoints.jsonl").unlink()
    forged = AuditLog.open(settings)
    for i in range(11):
        forged.append({"request_id": f"other{i}"})
    forged.flush()
    lie = forged.consistency_proof(10)
    forged.close()
    with pytest.raises(AuditError, match="does not extend the saved one"):
        verify_extension(saved_note, lie, key)
    with pytest.raises(AuditError, match="malformed"):
        verify_extension(saved_note, {"checkpoint": lie["checkpoint"]}, key)


WRITER = """
import sys
from tether.settings import load_settings
from tether.audit.log import AuditLog
overrides = {"data.home": sys.argv[1], "audit.checkpoint_interval_s": 0.01}
log = AuditLog.open(load_settings(overrides, environ={}))
print("ready", flush=True)
i = 0
while True:
    log.append({"request_id": str(i), "prompt": "x" * 200})
    i += 1
"""


def test_crash_mid_write(tmp_path: Path) -> None:
    home = tmp_path / "home"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(home)], stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    folder = home / "audit"
    key = verifier(folder)
    report = verify(folder, key)
    assert report.ok, report.error
    assert report.records > 0
    from tether.settings import load_settings

    log = AuditLog.open(load_settings({"data.home": str(home)}, environ={}))
    assert log.recovery_report.records == report.records
    # The records no checkpoint covered are signed now, and a record of the log says so
    # (none where the kill came just after a checkpoint).
    uncovered = log.recovery_report.uncovered
    said = 1 if uncovered else 0
    assert uncovered is None or uncovered[1] == report.records - 1
    assert log.append({"request_id": "after"}) == report.records + said
    log.close()
    after = verify(folder, key)
    assert after.ok and after.records == report.records + said + 1
    events = [r for r in all_records(folder) if r["endpoint"] == "event audit.recovered"]
    assert [(r["params"]["first_seq"], r["params"]["last_seq"]) for r in events] == (
        [uncovered] if uncovered else []
    )


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.name != ".lock"}


def _last_record_edited(folder: Path) -> None:
    _rewrite(folder, lambda lines: [*lines[:-1], lines[-1].replace(b'"r19"', b'"rX"')])


def _checkpoints_removed(folder: Path) -> None:
    (folder / "checkpoints.jsonl").unlink()


def _tail_cut(folder: Path) -> None:
    path = folder / "segment-000001.jsonl"
    path.write_bytes(path.read_bytes()[:-40])  # a partial line a checkpoint covered


@pytest.mark.parametrize(
    ("damage", "says"),
    [
        (_last_record_edited, "a record was changed"),
        (_checkpoints_removed, "checkpoints were removed"),
        (_tail_cut, "records were cut from its end"),
    ],
    ids=["last-record-edited", "checkpoints-removed", "tail-cut"],
)
def test_a_writer_refuses_to_sign_over_damage(
    settings: Settings, damage: Callable[[Path], None], says: str
) -> None:
    """A new checkpoint would vouch for the damage: the log is refused and left as it is,
    so `audit verify` still finds what happened."""
    folder = filled(settings)
    damage(folder)
    before = _files(folder)
    with pytest.raises(AuditError, match=says):
        AuditLog.open(settings)
    assert _files(folder) == before
    assert not verify(folder, verifier(folder)).ok


def test_a_crash_after_the_last_checkpoint_still_recovers(settings: Settings) -> None:
    """Records after the last checkpoint and a torn line are what a crash leaves."""
    folder = filled(settings)
    path = folder / "segment-000001.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    entries = (folder / "checkpoints.jsonl").read_text().splitlines()
    covered = json.loads(entries[-1])["size"]
    # Keep the checkpoints that the first 15 records satisfy; the rest were never signed.
    kept = [e for e in entries if json.loads(e)["size"] <= 15]
    (folder / "checkpoints.jsonl").write_text("\n".join(kept) + "\n")
    path.write_bytes(b"".join(lines[:18]) + lines[18][:30])
    assert covered == 20
    log = AuditLog.open(settings)
    try:
        assert log.recovery_report.records == 18 and log.recovery_report.torn
    finally:
        log.close()
    assert verify(folder, verifier(folder)).ok


def _a_record_appended(folder: Path, when: float) -> None:
    """A record as the log writes it, chained on, with no checkpoint over it."""
    path = folder / "segment-000001.jsonl"
    last = path.read_bytes().splitlines()[-1]
    seq = json.loads(last)["seq"] + 1
    fields = {"request_id": "forged", "principal": "ceo", "params": {}}
    prev = hashlib.sha256(last).hexdigest()
    record = records.build(fields, seq=seq, time=when, prev=prev, mode="commitment")
    with path.open("ab") as segment:
        segment.write(records.canonical(record) + b"\n")


def _checkpoints(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (folder / "checkpoints.jsonl").read_text().splitlines()]


def test_a_record_added_after_the_log_was_closed_is_refused(settings: Settings) -> None:
    """The log writes its last checkpoint as it closes: records after it are no crash's."""
    folder = filled(settings)
    assert _checkpoints(folder)[-1]["closed"] is True
    _a_record_appended(folder, time.time())
    with pytest.raises(AuditError, match="added while the log was closed"):
        AuditLog.open(settings)
    check = _audit_check(settings)  # doctor says it before a start does
    assert not check["ok"] and "added while the log was closed" in check["detail"]
    # The command both send a reader to: it said "ok", as for what a crash leaves.
    report = verify(folder, verifier(folder))
    assert not report.ok and report.seq == 20, report
    assert "added while the log was closed: they follow the checkpoint" in str(report.error)


def test_a_log_opened_while_verify_reads_it_is_not_said_to_be_tampered_with(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """verify read the closed checkpoint, then a command opened the log and wrote a record
    before verify read the segments: that record follows the closed checkpoint, and the
    log's own opening checkpoint, which verify did not see, says why."""
    import tether.audit.verify as checking

    folder = filled(settings)
    surveyed = checking._survey

    def then_a_command_writes(path: Path, max_gap_s: float | None) -> Any:
        survey = surveyed(path, max_gap_s)
        log = AuditLog.open(settings)
        log.append({"request_id": "cmpl-meanwhile", "prompt": "p", "completion": "c"})
        log.flush()
        log.close()
        return survey

    monkeypatch.setattr(checking, "_survey", then_a_command_writes)
    report = verify(folder, verifier(folder))
    assert report.ok, report.error
    monkeypatch.undo()
    assert verify(folder, verifier(folder)).ok


def test_records_after_the_last_checkpoint_are_signed_and_said_to_have_been_found(
    settings: Settings,
) -> None:
    """What a crash leaves (records written before their checkpoint) opens, even long
    after the last checkpoint (an idle log's heartbeat may be an hour apart; a clock may
    step); a record of the log's own says which, and how long after it they were written."""
    folder = filled(settings)
    kept = [e for e in _checkpoints(folder) if not e.get("closed")]
    (folder / "checkpoints.jsonl").write_text("".join(json.dumps(e) + "\n" for e in kept))
    _a_record_appended(folder, kept[-1]["time"] + 3600)
    check = _audit_check(settings)
    assert check["ok"] and "the next checkpoint signs them" in check["detail"], check
    AuditLog.open(settings).close()
    said = [r for r in all_records(folder) if r["endpoint"] == "event audit.recovered"]
    assert [r["params"]["first_seq"] for r in said] == [kept[-1]["size"]]
    assert said[0]["params"]["written_after_checkpoint_s"] == pytest.approx(3600, abs=1)
    assert verify(folder, verifier(folder)).ok


@pytest.mark.parametrize(
    ("forged", "says"),
    [
        (lambda prev: b'NOT JSON AT ALL,"prev":"%s","seq":20,' % prev, "is not JSON"),
        (
            lambda prev: b'{"principal":"ceo","prev":"%s","seq":20}' % prev,
            "without the field(s) completion, endpoint, findings,",
        ),
        (
            lambda prev: (
                b'{"completion":null,"endpoint":null,"findings":[],"model_sha256":null,'
                b'"params":null,"policy":[],"prev":"%s","principal":"ceo","prompt":null,'
                b'"request_id":"r","seq":20,"time":1.0,"token_id":null,"v":1,"x":1}' % prev
            ),
            "a line with field(s) no record has (x)",
        ),
        (
            lambda prev: (
                b'{"completion":null,"endpoint":null,"findings":[],"model_sha256":null,'
                b'"params":null,"policy":"x","prev":"%s","principal":"ceo","prompt":null,'
                b'"request_id":"r","seq":20,"time":"noon","token_id":null,"v":1}' % prev
            ),
            "time, policy of the wrong type",
        ),
    ],
    ids=["garbage", "half-a-record", "a-field-more", "wrong-types"],
)
def test_a_line_added_after_the_last_checkpoint_is_refused_not_signed_over(
    settings: Settings, forged: Callable[[bytes], bytes], says: str
) -> None:
    """No checkpoint vouches for it yet, and the next one would: a line the log does not
    write is named by `verify` and refused by the writer, though its seq and prev chain."""
    folder = filled(settings)
    path = folder / "segment-000001.jsonl"
    last = path.read_bytes().splitlines()[-1]
    prev = hashlib.sha256(last).hexdigest().encode()
    with path.open("ab") as segment:
        segment.write(forged(prev) + b"\n")
    report = verify(folder, verifier(folder))
    assert not report.ok and report.seq == 20 and says in (report.error or ""), report.error
    assert "added or changed by hand" in (report.error or "")
    with pytest.raises(AuditError, match=f"seq 20, after its last checkpoint.*{re.escape(says)}"):
        AuditLog.open(settings)


def test_the_fields_a_forged_line_adds_are_named_as_written_and_in_few_words() -> None:
    # Whoever forged the line chose its field names: one holding a terminal's escape
    # codes (erase the line, write "ok") or a megabyte was printed by verify as it was.
    record = {name: None for name in records._KEYS}
    escape = "\x1b[2K\r0 records: ok"
    problem = records.record_problem(json.dumps({**record, escape: 1, "y" * 10**6: 1}).encode())
    assert problem is not None and "\x1b" not in problem and len(problem) < 200, problem
    assert repr(escape) in problem
    many = records.record_problem(json.dumps({**record, **dict.fromkeys("abcdefgh", 1)}).encode())
    assert many == "a line with field(s) no record has (a, b, c, d, e and 3 more)"


def test_a_partial_line_in_an_older_segment_is_damage_not_a_crash(tmp_path: Path) -> None:
    folder = segmented_log(tmp_path, records=60, prompt_chars=200)
    older = sorted(folder.glob("segment-*.jsonl"))[1]
    older.write_bytes(older.read_bytes()[:-40])
    report = verify(folder, verifier(folder))
    assert not report.ok and "is not the newest segment" in (report.error or "")
    assert not any("crash" in w for w in report.warnings)


def test_heartbeats_that_repeat_a_note_each_count_and_a_forged_one_among_them_fails(
    settings: Settings,
) -> None:
    folder = filled(settings)
    checkpoints = folder / "checkpoints.jsonl"
    lines = checkpoints.read_text().splitlines(keepends=True)
    last = json.loads(lines[-1])
    assert last["size"] == 20
    # An idle log signs the same note at each heartbeat: only the time differs.
    beats = [json.dumps({**last, "time": last["time"] + i}) + "\n" for i in range(1, 500)]
    checkpoints.write_text("".join(lines + beats))
    report = verify(folder, verifier(folder))
    assert report.ok and report.checkpoints == len(lines) + 499
    # The same note with another signature: a forgery, found wherever it sits.
    body, _, signature = last["note"].rpartition(" ")
    flipped = signature[:10] + ("A" if signature[10] != "A" else "B") + signature[11:]
    forged = json.dumps({**last, "note": f"{body} {flipped}"}) + "\n"
    checkpoints.write_text("".join(lines + beats[:200] + [forged] + beats[200:]))
    report = verify(folder, verifier(folder))
    assert not report.ok and f"checkpoints.jsonl:{len(lines) + 201}" in str(report.error)


@pytest.mark.parametrize("how", ["reversed", "an old one appended"])
def test_checkpoints_out_of_order_fail(settings: Settings, how: str) -> None:
    """Each one signed and true of its size, yet a log only grows: a smaller checkpoint
    after a larger one was put there."""
    folder = filled(settings)
    key = verifier(folder)
    path = folder / "checkpoints.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[::-1] if how == "reversed" else [*lines, lines[0]]))
    report = verify(folder, key)
    assert not report.ok and "checkpoints were reordered or an old one copied in" in str(
        report.error
    )
