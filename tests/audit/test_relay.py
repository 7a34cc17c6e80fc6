"""A command's audit record sent to the server that keeps the log: one it does not take
is reported, and the command goes on."""

from __future__ import annotations

import os

import httpx
import pytest

from tests.helpers import free_port
from tests.stub_upstream import stub_upstream
from tether import direct
from tether.audit.relay import ServerRelay
from tether.server.runtime import RuntimeRecord

RECORD = {"request_id": "cmpl-1", "model_sha256": "m", "params": {}, "prompt": "p"}


def _relay(url: str) -> tuple[ServerRelay, list[str]]:
    failures: list[str] = []
    return ServerRelay(RuntimeRecord(url, "tth_x", os.getpid()), failures.append), failures


def test_a_server_that_is_gone_is_reported_not_raised() -> None:
    relay, failures = _relay(f"http://127.0.0.1:{free_port()}")
    assert relay.append(RECORD) == -1
    (failure,) = failures
    assert "did not answer" in failure


def test_a_refusal_is_reported_with_what_the_server_said() -> None:
    with stub_upstream("") as stub:
        stub.refuse, stub.refusal = (403, {}), "this token lacks the audit:write scope"
        relay, failures = _relay(stub.base_url.removesuffix("/v1"))
        assert relay.append({**RECORD, "extra": "not sent"}) == -1
        (sent,) = stub.requests
    assert sent == RECORD
    (failure,) = failures
    assert "refused it" in failure and "audit:write" in failure


def test_a_record_the_server_holds_in_memory_is_reported_with_its_seq(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A server whose disk refused the record took it (202) but has not written it: the
    command says so, rather than trusting it is in the log."""
    answer = {"object": "audit.record", "seq": 7, "written": False, "problem": "disk full"}
    monkeypatch.setattr(direct, "request", lambda *a, **k: httpx.Response(202, json=answer))
    relay, failures = _relay("http://127.0.0.1:1")
    assert relay.append(RECORD) == 7
    (failure,) = failures
    assert "holds it in memory" in failure and "disk full" in failure
