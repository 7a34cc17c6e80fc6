"""A trace is held against the commitments of its audit record."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from tests.conftest import make_settings
from tether.audit import segments
from tether.audit.log import AuditLog
from tether.audit.witness import Witness, find_record, witness, witness_served
from tether.settings import Settings
from tether.traces import Trace


def _log(settings: Settings, records: list[dict[str, object]]) -> Path:
    log = AuditLog.open(settings)
    for fields in records:
        log.append(fields)
    log.close()
    return settings.data.home / "audit"


def test_the_newest_record_of_an_id_answers_for_its_trace(settings: Settings) -> None:
    odd = 'cmpl-"quoted" é'
    folder = _log(
        settings,
        [
            {"request_id": odd, "prompt": "old", "completion": "old"},
            {"request_id": "cmpl-other", "prompt": "p", "completion": "c"},
            {"request_id": odd, "prompt": "p", "completion": "c"},
            {"request_id": "evt-1"},  # an event: no commitments
        ],
    )
    found = find_record(folder, odd)
    assert found is not None and found["seq"] == 2
    kept = witness(
        Trace(id=odd, created=0, kind="chat", endpoint="x", prompt="p", output="c"), folder
    )
    assert kept is not None and kept.ok and (kept.seq, kept.prompt, kept.answer) == (2, True, True)
    changed = witness(
        Trace(id=odd, created=0, kind="chat", endpoint="x", prompt="p", output="C"), folder
    )
    assert changed is not None and not changed.ok and changed.answer is False
    event = witness(Trace(id="evt-1", created=0, kind="chat", endpoint="x"), folder)
    assert event is not None and event.ok and event.prompt is None
    assert witness(Trace(id="cmpl-none", created=0, kind="chat", endpoint="x"), folder) is None


def test_a_record_relayed_later_under_a_trace_s_id_does_not_stand_for_it(
    settings: Settings,
) -> None:
    served: dict[str, object] = {"request_id": "cmpl-s", "endpoint": "/v1/completions",
                                 "prompt": "p", "completion": "c"}  # fmt: skip
    relayed: dict[str, object] = {
        **served,
        "endpoint": "cli",
        "prompt": "forged",
        "completion": "forged",
    }
    folder = _log(settings, [served, relayed])
    trace = Trace(id="cmpl-s", created=0, kind="completion", endpoint="/v1/completions",
                  prompt="p", output="c")  # fmt: skip
    seen = witness(trace, folder)
    assert seen is not None and seen.ok and seen.seq == 0
    # A trace whose endpoint was edited is still held against the newest record.
    edited = witness(replace(trace, endpoint="/v1/chat/completions"), folder)
    assert edited is not None and edited.seq == 1 and not edited.ok


def test_a_damaged_line_is_passed_over_not_a_crash(settings: Settings) -> None:
    folder = _log(settings, [{"request_id": "cmpl-ok", "prompt": "p", "completion": "c"}])
    segment = sorted(folder.glob("segment-*.jsonl"))[-1]
    with segment.open("ab") as out:
        out.write(b'{"request_id":"cmpl-ok","seq":\n')  # cut short: not JSON
    found = find_record(folder, "cmpl-ok")
    assert found is not None and found["seq"] == 0


def test_a_trace_whose_sampling_model_or_request_was_changed_is_caught(
    settings: Settings,
) -> None:
    sampling = {"max_tokens": 16, "temperature": 0.0, "top_p": 1.0, "seed": 0, "stop": []}
    record: dict[str, object] = {
        "request_id": "cmpl-s",
        "principal": "alice",
        "token_id": "tid_1",
        "endpoint": "POST /v1/completions",
        "model_sha256": "a" * 64,
        "params": {
            **sampling,
            "finish_reason": "length",
            "snippets": [],
            "completion_tokens": 16,
            "ended_early": False,
        },
        "prompt": "p",
        "completion": "c",
    }
    folder = _log(settings, [record, {"request_id": "evt-run", "params": {"run": "run-1"}}])

    def held(**changes: object) -> Witness | None:
        fields: dict[str, Any] = {
            "sampling": sampling,
            "model_sha256": "a" * 64,
            "principal": "alice",
            "token_id": "tid_1",
            "endpoint": "POST /v1/completions",
            "finish_reason": "length",
            "completion_tokens": 16,
            **changes,
        }
        made = time.time()
        trace = Trace(id="cmpl-s", created=made, kind="fim", endpoint="x", prompt="p", output="c")
        return witness(replace(trace, **fields), folder)

    kept = held()
    assert kept is not None and kept.ok, kept
    # The clock stepped back an hour while the answer ran: its record is written "before"
    # the request came, which is no sign of a trace changed.
    stepped = held(created=time.time() + 3600)
    assert stepped is not None and stepped.ok, stepped
    left_out = [{"id": "s1", "version": 1, "hash": "h", "fitted": False}]  # over the budget
    assert (seen := held(snippets=left_out)) is not None and seen.snippets is True
    assert (kept.sampling, kept.model, kept.request) == (True, True, True)
    # A manifest made from an edited seed would pin a generation that never happened; an
    # edited principal would put the request on another's account.
    for changes, part in (
        ({"sampling": {**sampling, "seed": 7}}, "sampling"),
        ({"sampling": {**sampling, "temperature": 0.8}}, "sampling"),
        ({"sampling": {**sampling, "min_indent": 4}}, "sampling"),
        ({"model_sha256": "b" * 64}, "model"),
        ({"principal": "mallory"}, "principal, token, endpoint or how it ended"),
        ({"token_id": "tid_0"}, "principal, token, endpoint or how it ended"),
        ({"endpoint": "cli"}, "principal, token, endpoint or how it ended"),
        ({"finish_reason": "stop"}, "principal, token, endpoint or how it ended"),
        ({"completion_tokens": 3}, "principal, token, endpoint or how it ended"),
        ({"ended_early": True}, "principal, token, endpoint or how it ended"),
        # An emptied or added finding, and a trace dated a month back.
        ({"policy": [{"rule_id": "aws", "action": "redact"}]}, "policy decisions or findings"),
        (
            {"findings": [{"rule_id": "syntax", "action": "annotate"}]},
            "policy decisions or findings",
        ),
        ({"created": time.time() - 30 * 86400}, "time"),
        ({"created": time.time() + 2 * 86400}, "time"),
        # A snippet added to those in the prompt would credit the answer to code it never
        # saw; one without "fitted" is read as in the prompt.
        (
            {"snippets": [{"id": "s1", "version": 1, "hash": "h", "fitted": True}]},
            "snippets from the store",
        ),
        ({"snippets": [{"id": "s1", "version": 1, "hash": "h"}]}, "snippets from the store"),
    ):
        changed = held(**changes)
        assert changed is not None and not changed.ok, changes
        assert [k for k, ok in changed.verdicts().items() if ok is False] == [part], changes
        assert changed.prompt is True and changed.answer is True
        assert Witness.from_dict(changed.as_dict()) == changed  # as a server sends it
    event = witness(Trace(id="evt-run", created=0, kind="chat", endpoint="x"), folder)
    assert event is not None and event.ok and event.sampling is None and event.request is None
    # A server from before the model and request verdicts sent three.
    older = Witness.from_dict({"seq": 3, "prompt": True, "answer": True, "sampling": True})
    assert older is not None and older.ok and older.request is None


def test_a_served_log_writes_a_queued_record_for_a_fresh_trace_only(settings: Settings) -> None:
    log = AuditLog.open(settings)
    try:
        checkpoints = log.folder / segments.CHECKPOINTS
        fresh = Trace(id="cmpl-q", created=time.time(), kind="chat", endpoint="x", output="c")
        log.append({"request_id": "cmpl-q", "prompt": "", "completion": "c"})
        seen = witness_served(fresh, log)  # its record was queued still, or just written
        assert seen is not None and seen.ok
        before = checkpoints.read_bytes()
        old = Trace(id="cmpl-none", created=time.time() - 3600, kind="chat", endpoint="x")
        assert witness_served(old, log) is None
        assert checkpoints.read_bytes() == before  # no checkpoint written for it
    finally:
        log.close()


def test_a_record_that_kept_some_policy_findings_holds_the_trace_to_their_count(
    settings: Settings,
) -> None:
    found = [{"rule_id": "email", "action": "pseudonymize", "start": i, "end": i + 5}
             for i in range(5)]  # fmt: skip
    params = {"max_tokens": 4, "finish_reason": "stop", "policy_omitted": 3}
    record: dict[str, object] = {"request_id": "cmpl-m", "endpoint": "x", "params": params,
                                 "policy": found[:2]}  # fmt: skip
    folder = _log(settings, [record])
    trace = Trace(id="cmpl-m", created=time.time(), kind="chat", endpoint="x",
                  finish_reason="stop", policy=found)  # fmt: skip
    kept = witness(trace, folder)
    assert kept is not None and kept.findings is True
    emptied = witness(replace(trace, policy=found[:2]), folder)  # the omitted three dropped
    assert emptied is not None and emptied.findings is False


def test_a_gateways_trace_is_held_to_the_model_id_its_record_names(settings: Settings) -> None:
    """A gateway has no model file to hash: its trace's model, rewritten, passed."""
    sampling = {"max_tokens": 16, "temperature": 0.0, "top_p": 1.0, "seed": 0, "stop": []}
    record: dict[str, object] = {
        "request_id": "cmpl-g",
        "endpoint": "x",
        "model_sha256": "qwen2.5-coder-7b",
        "params": {**sampling, "finish_reason": "stop", "snippets": []},
        "prompt": "p",
        "completion": "c",
    }
    folder = _log(settings, [record])
    trace = Trace(id="cmpl-g", created=time.time(), kind="chat", endpoint="x", prompt="p",
                  output="c", sampling=sampling, finish_reason="stop",
                  model="qwen2.5-coder-7b")  # fmt: skip
    assert (seen := witness(trace, folder)) is not None and seen.model is True
    forged = witness(replace(trace, model="gpt-4o (hosted)"), folder)
    assert forged is not None and not forged.ok and forged.model is False


def test_what_the_client_got_is_held_against_the_text_a_redacted_record_keeps(
    tmp_path: Path,
) -> None:
    """An edited "what the client got" (a secret the checks redacted, put back) passed."""
    redacted = make_settings(tmp_path, TETHER_AUDIT_CONTENT="redacted")
    full = make_settings(tmp_path / "full", TETHER_AUDIT_CONTENT="full")
    sampling = {"max_tokens": 16, "temperature": 0.0, "top_p": 1.0, "seed": 0, "stop": []}
    record: dict[str, object] = {
        "request_id": "cmpl-d",
        "endpoint": "x",
        "params": {**sampling, "finish_reason": "stop", "snippets": []},
        "prompt": "p",
        "completion": "key ghp_real",
        "completion_redacted": "key [REDACTED]",
    }
    trace = Trace(id="cmpl-d", created=time.time(), kind="chat", endpoint="x", prompt="p",
                  output="key ghp_real", delivered="key [REDACTED]", sampling=sampling,
                  finish_reason="stop")  # fmt: skip
    folder = _log(redacted, [record])
    assert (seen := witness(trace, folder)) is not None and seen.ok and seen.delivered is True
    forged = witness(replace(trace, delivered="key ghp_leaked"), folder)
    assert forged is not None and not forged.ok
    assert [k for k, ok in forged.verdicts().items() if ok is False] == ["what the client got"]
    # "full" keeps what the engine wrote, which the answer's commitment covers: no verdict.
    other = witness(replace(trace, delivered="key ghp_leaked"), _log(full, [record]))
    assert other is not None and other.ok and other.delivered is None


def test_what_the_client_got_is_held_against_a_redacted_record_that_keeps_the_engines_text(
    tmp_path: Path,
) -> None:
    """Where the client got what the engine wrote (most answers), a redacted record keeps
    the engine's text, and an edited "what the client got" was taken for "full": passed."""
    settings = make_settings(tmp_path, TETHER_AUDIT_CONTENT="redacted")
    sampling = {"max_tokens": 16, "temperature": 0.0, "top_p": 1.0, "seed": 0, "stop": []}
    record: dict[str, object] = {
        "request_id": "cmpl-e",
        "endpoint": "x",
        "params": {**sampling, "finish_reason": "stop", "snippets": []},
        "prompt": "p",
        "completion": "return a + b",
        "completion_redacted": "return a + b",
    }
    trace = Trace(id="cmpl-e", created=time.time(), kind="chat", endpoint="x", prompt="p",
                  output="return a + b", delivered="return a + b", sampling=sampling,
                  finish_reason="stop")  # fmt: skip
    folder = _log(settings, [record])
    assert (seen := witness(trace, folder)) is not None and seen.delivered is True
    forged = witness(replace(trace, delivered="rm -rf / # the client was told this"), folder)
    assert forged is not None and not forged.ok and forged.delivered is False
