from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.traces.conftest import make_trace
from tether.cli.main import cli
from tether.traces import Trace, TraceStore


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "data"
    for name in ("TETHER_SERVER", "TETHER_TOKEN", "TETHER_TRACES_ENABLED"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TETHER_HOME", str(home))
    monkeypatch.chdir(tmp_path)  # no tether.toml from the checkout
    with TraceStore(home / "traces.sqlite") as store:
        store.record(make_trace("cmpl-one", created=4_000_000_000.0))
        store.record(make_trace("cmpl-two", created=4_000_000_001.0, kind="chat"))
    return home


def test_explain_prints_the_account(home: Path) -> None:
    result = CliRunner().invoke(cli, ["explain", "cmpl-one"])
    assert result.exit_code == 0, result.output
    assert "What the policies did" in result.output
    assert "secrets.aws-access-key" in result.output


def test_explain_json(home: Path) -> None:
    result = CliRunner().invoke(cli, ["explain", "cmpl-two", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["kind"] == "chat"


def test_missing_id_says_how_to_list(home: Path) -> None:
    result = CliRunner().invoke(cli, ["explain", "cmpl-nope"])
    assert result.exit_code == 2
    assert "no trace 'cmpl-nope'" in result.output
    assert "tether explain --recent" in result.output


def test_recent_lists_newest_first(home: Path) -> None:
    result = CliRunner().invoke(cli, ["explain", "--recent"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("cmpl-two") and "chat" in lines[0]
    assert lines[1].startswith("cmpl-one") and "/v1/completions" in lines[1]


def test_no_store_yet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TETHER_HOME", str(tmp_path / "empty"))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["explain", "cmpl-one"])
    assert result.exit_code == 2
    assert "no traces yet" in result.output


def test_needs_an_id_or_recent(home: Path) -> None:
    result = CliRunner().invoke(cli, ["explain"])
    assert result.exit_code == 2
    assert "--recent" in result.output


def test_a_trace_deleted_while_its_record_is_kept_is_named_deleted(home: Path) -> None:
    """Traces expire after traces.max_age_days; one gone sooner, whose audit record is
    still in the log, was removed, and explain says so rather than 'may be older'."""
    from tether.audit.log import AuditLog
    from tether.cli.common import settings_from_flags

    log = AuditLog.open(settings_from_flags())
    log.append({"request_id": "cmpl-gone", "params": {"max_tokens": 4, "finish_reason": "stop"}})
    log.append({"request_id": "req-refused", "params": {"status": 401}})  # never traced
    blocked = {"rule_id": "github-pat", "action": "block", "message": "prompt: token"}
    log.append({"request_id": "req-blocked", "params": {"status": 400}, "policy": [blocked]})
    log.close()
    result = CliRunner().invoke(cli, ["explain", "cmpl-gone"])
    assert result.exit_code == 2, result.output
    assert "yet the audit log holds its record (seq 0" in result.output
    assert "the trace was deleted" in result.output and "tether audit prove 0" in result.output
    never = CliRunner().invoke(cli, ["explain", "cmpl-never"])  # no record: no such claim
    assert "may be older than" in never.output and "deleted" not in never.output
    refused = CliRunner().invoke(cli, ["explain", "req-refused"])  # nothing was generated
    assert "deleted" not in refused.output and "may be older" not in refused.output
    assert "'req-refused' generated nothing, so it has no trace" in refused.output
    assert "answered 401" in refused.output and "tether audit prove 1" in refused.output
    policy = CliRunner().invoke(cli, ["explain", "req-blocked"])
    assert "answered 400; the policy's findings: github-pat" in policy.output


def test_a_bare_request_id_finds_its_record_as_the_answer_id_does(home: Path) -> None:
    """Every answer carries its X-Request-Id, which names its trace and record without
    their cmpl- or req- before it: given so, explain found the trace of an answer but not
    the record of a request that generated nothing, and said it "may be older than 14
    days or from another server", of a request made a moment before on this one."""
    from tether.audit.log import AuditLog
    from tether.cli.common import settings_from_flags

    log = AuditLog.open(settings_from_flags())
    log.append({"request_id": "req-0a1b", "endpoint": "GET /v1/models", "params": {"status": 200}})
    log.append({"request_id": "cmpl-9f8e", "params": {"max_tokens": 4, "finish_reason": "stop"}})
    log.close()
    listed = CliRunner().invoke(cli, ["explain", "0a1b"])
    assert listed.exit_code == 2, listed.output
    assert "may be older" not in listed.output
    assert "'0a1b' generated nothing, so it has no trace (GET /v1/models, answered 200)" in (
        listed.output
    )
    gone = CliRunner().invoke(cli, ["explain", "9f8e"])
    assert "the trace was deleted" in gone.output and "tether audit prove 1" in gone.output


def test_a_bare_request_id_is_looked_for_in_one_reading_of_the_log(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bare id's record is looked for under four ids (its own, and as cmpl-, chatcmpl-
    and req-): looked for one after the other, a log of gigabytes was read four times
    over before explain said it had no record of an id."""
    from tether.audit import segments
    from tether.audit.log import AuditLog
    from tether.cli.common import settings_from_flags

    log = AuditLog.open(settings_from_flags())
    log.append({"request_id": "req-0a1b", "endpoint": "GET /v1/models", "params": {"status": 200}})
    log.close()
    reads: list[Path] = []
    read_raw = segments.read_raw

    def counted(path: Path) -> tuple[list[bytes], segments.Torn | None]:
        reads.append(path)
        return read_raw(path)

    monkeypatch.setattr(segments, "read_raw", counted)
    missing = CliRunner().invoke(cli, ["explain", "7c7c"])
    assert missing.exit_code == 2 and "may be older" in missing.output, missing.output
    assert len(reads) == len(set(reads)) == 1, reads
    reads.clear()
    found = CliRunner().invoke(cli, ["explain", "0a1b"])
    assert "'0a1b' generated nothing" in found.output, found.output
    assert len(reads) == 1, reads


def test_repro_record_of_a_deleted_trace_names_it_deleted_as_explain_does(home: Path) -> None:
    """`repro record` said only "no trace here; pass --server", though this machine's
    audit log held the record of an answer whose trace was deleted."""
    from tether.audit.log import AuditLog
    from tether.cli.common import settings_from_flags

    log = AuditLog.open(settings_from_flags())
    log.append({"request_id": "cmpl-gone", "params": {"max_tokens": 4, "finish_reason": "stop"}})
    log.append({"request_id": "req-refused", "params": {"status": 401}})
    log.close()
    gone = CliRunner().invoke(cli, ["repro", "record", "cmpl-gone"])
    assert gone.exit_code == 2, gone.output
    assert "yet the audit log holds its record (seq 0" in gone.output
    assert "the trace was deleted" in gone.output and "pass --server" not in gone.output
    refused = CliRunner().invoke(cli, ["repro", "record", "req-refused"])
    assert "'req-refused' generated nothing, so it has no trace" in refused.output
    never = CliRunner().invoke(cli, ["repro", "record", "cmpl-never"])
    assert never.exit_code == 2 and "no trace 'cmpl-never' here; pass --server" in never.output


def test_a_trace_asked_about_before_its_record_reaches_the_disk_waits_for_it(
    home: Path,
) -> None:
    """A server writes records with its next checkpoint, within a second: `explain` run at
    once after an answer said the answer had no audit record."""
    from tether.audit.log import AuditLog
    from tether.cli.common import settings_from_flags

    AuditLog.open(settings_from_flags()).close()  # the server's log, before the answer
    with TraceStore(home / "traces.sqlite") as store:
        store.record(make_trace("cmpl-fresh", created=time.time()))

    def record_later() -> None:
        time.sleep(0.5)
        log = AuditLog.open(settings_from_flags())
        log.append({"request_id": "cmpl-fresh", "params": {"finish_reason": "stop"}})
        log.close()

    writer = threading.Thread(target=record_later)
    writer.start()
    try:
        result = CliRunner().invoke(cli, ["explain", "cmpl-fresh"])
    finally:
        writer.join()
    assert "Audit record" in result.output
    assert "no audit record has this id" not in result.output, result.output


def test_a_record_that_lands_while_the_log_is_read_is_found(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The log's size is taken before the first reading: one taken after it missed a
    record written meanwhile, and the log never grew again."""
    from tether.audit.log import AuditLog
    from tether.audit.witness import witness as witness_of
    from tether.cli import explain
    from tether.cli.common import settings_from_flags

    AuditLog.open(settings_from_flags()).close()
    with TraceStore(home / "traces.sqlite") as store:
        store.record(make_trace("cmpl-fresh", created=time.time()))
    reading = witness_of
    readings: list[object] = []

    def witness(trace: Trace, folder: Path) -> object:
        found = reading(trace, folder)
        if not readings:  # the server's checkpoint writes the record meanwhile
            log = AuditLog.open(settings_from_flags())
            log.append({"request_id": "cmpl-fresh", "params": {"finish_reason": "stop"}})
            log.close()
        readings.append(found)
        return found

    monkeypatch.setattr(explain, "witness", witness)
    result = CliRunner().invoke(cli, ["explain", "cmpl-fresh"])
    assert "no audit record" not in result.output, result.output
    assert len(readings) == 2


def test_a_record_not_due_yet_is_said_to_be_on_its_way(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With checkpoints far apart, explain does not wait for ever, nor say the answer
    went unrecorded: it says when to ask again."""
    from tether.audit.log import AuditLog
    from tether.cli import explain
    from tether.cli.common import settings_from_flags

    monkeypatch.setenv("TETHER_AUDIT_CHECKPOINT_INTERVAL_S", "30")
    monkeypatch.setattr(explain, "_MOST_WAIT_S", 0.3)
    AuditLog.open(settings_from_flags()).close()
    with TraceStore(home / "traces.sqlite") as store:
        store.record(make_trace("cmpl-fresh", created=time.time()))
    result = CliRunner().invoke(cli, ["explain", "cmpl-fresh"])
    assert result.exit_code == 0, result.output
    assert "no audit record yet" in result.output and "every 30 s" in result.output
    assert "audit.enabled was off" not in result.output
