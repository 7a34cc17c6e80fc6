"""The webhook sink against a real HTTP receiver that goes down and comes back."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tether.audit.log import AuditLog
from tether.audit.sinks import sinks_from_settings
from tether.audit.webhook import WebhookSink
from tether.errors import ConfigError
from tether.settings import Settings, load_settings


class Receiver:
    """A loopback endpoint that records every batch body it accepts."""

    def __init__(self, port: int = 0) -> None:
        self.bodies: list[dict[str, Any]] = []
        bodies = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                bodies.append(json.loads(body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/audit"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)

    def seqs(self) -> list[int]:
        return [record["seq"] for body in self.bodies for record in body["records"]]


def _wait(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def _deduped(seqs: list[int]) -> list[int]:
    seen: set[int] = set()
    return [s for s in seqs if not (s in seen or seen.add(s))]  # type: ignore[func-returns-value]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.stop()


def _sink(url: str, spool: Path) -> WebhookSink:
    return WebhookSink(url, spool, batch=7, backoff_s=0.01, backoff_cap_s=0.05, timeout_s=2.0)


def test_every_record_arrives_in_order_across_an_outage(
    settings: Settings, receiver: Receiver, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    sink = _sink(receiver.url, spool)
    log = AuditLog.open(settings, sinks=[sink])
    for i in range(30):
        log.append({"request_id": f"a{i}", "prompt": "secret"})
    log.flush()
    _wait(lambda: len(receiver.seqs()) >= 30)
    assert all(len(body["records"]) <= 7 for body in receiver.bodies)
    assert receiver.bodies[-1]["checkpoint"].startswith("tether/test\n")

    port = receiver.port
    receiver.stop()
    for i in range(30, 60):
        log.append({"request_id": f"a{i}"})
    log.flush()
    _wait(lambda: sink.pending() > 0)  # the spool holds them while the endpoint is down
    time.sleep(0.2)  # a few failed retries
    assert sink.pending() > 0

    back = Receiver(port)  # the same URL comes back
    try:
        _wait(lambda: sink.pending() == 0)
        for i in range(60, 75):
            log.append({"request_id": f"a{i}"})
        log.close()
        sink.close()
        seqs = receiver.seqs() + back.seqs()
        assert _deduped(seqs) == list(range(75))
        assert sink.pending() == 0
    finally:
        back.stop()


def test_a_new_process_delivers_the_spool_left_behind(
    settings: Settings, receiver: Receiver, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    port = receiver.port
    receiver.stop()
    first = WebhookSink(
        f"http://127.0.0.1:{port}/audit", spool, batch=5, backoff_s=0.01, close_timeout_s=0.2
    )
    log = AuditLog.open(settings, sinks=[first])
    for i in range(12):
        log.append({"request_id": f"b{i}"})
    log.close()
    first.close()  # gives up after close_timeout_s: the batches stay spooled
    assert first.pending() == 1

    back = Receiver(port)
    try:
        second = _sink(back.url, spool)
        _wait(lambda: second.pending() == 0)
        second.close()
        assert _deduped(back.seqs()) == list(range(12))
        assert [len(body["records"]) for body in back.bodies] == [5, 5, 2]
    finally:
        back.stop()


def test_sinks_from_settings(tmp_path: Path) -> None:
    assert sinks_from_settings(load_settings({"data.home": str(tmp_path)}, environ={})) == []
    settings = load_settings(
        {"data.home": str(tmp_path), "audit.webhook_url": "http://127.0.0.1:9/x"}, environ={}
    )
    (sink,) = sinks_from_settings(settings)
    assert isinstance(sink, WebhookSink) and sink.spool == tmp_path / "audit" / "spool"
    sink.close()


def test_sentry_needs_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "sentry_sdk", None)  # as if not installed
    settings = load_settings(
        {"data.home": str(tmp_path), "audit.sentry_dsn": "https://k@sentry.invalid/1"}, environ={}
    )
    with pytest.raises(ConfigError, match=r"pip install 'tether\[sentry\]'"):
        sinks_from_settings(settings)


def test_sentry_gets_blocks_and_checkpoints_without_content(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys
    import types

    sent: list[tuple[str, dict[str, Any]]] = []
    fake = types.ModuleType("sentry_sdk")
    fake.init = lambda dsn: None  # type: ignore[attr-defined]
    fake.flush = lambda timeout: None  # type: ignore[attr-defined]
    fake.capture_message = lambda message, level, extras: sent.append((message, extras))  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "sentry_sdk", fake)
    from tether.audit.sentry import SentrySink

    sink = SentrySink("https://k@sentry.invalid/1")
    log = AuditLog.open(settings, sinks=[sink])
    log.append({"request_id": "ok", "prompt": "fine", "policy": []})
    block = {"rule_id": "secrets.aws", "action": "block", "message": "AKIA..."}
    log.append({"request_id": "bad", "prompt": "AKIASECRET", "policy": [block]})
    log.close()
    sink.close()
    blocked = [extras for message, extras in sent if "blocked" in message]
    assert blocked == [
        {
            "seq": 1,
            "request_id": "bad",
            "principal": None,
            "endpoint": None,
            "rules": ["secrets.aws"],
        }
    ]
    assert any("checkpoint" in message for message, _ in sent)
    assert "AKIA" not in json.dumps(sent)


def test_records_a_crash_kept_from_the_spool_are_shipped_on_restart(
    tmp_path: Path, receiver: Receiver
) -> None:
    from tether.audit import AuditLog
    from tether.settings import load_settings

    settings = load_settings(environ={"TETHER_HOME": str(tmp_path / "data")})
    spool = tmp_path / "spool"
    first = _sink(receiver.url, spool)
    log = AuditLog.open(settings, [first])
    for i in range(3):
        log.append({"request_id": f"a{i}", "endpoint": "/v1/completions"})
    log.close()
    first.close()
    shipped = first.shipped_through()
    assert shipped >= 2
    # Records that became durable while no sink was attached: as if the process died
    # between the log's fsync and the spool write.
    log = AuditLog.open(settings)
    for i in range(4):
        log.append({"request_id": f"b{i}", "endpoint": "/v1/completions"})
    log.close()
    second = _sink(receiver.url, spool)
    log = AuditLog.open(settings, [second])
    log.close()
    second.close()
    assert _deduped(receiver.seqs()) == list(range(7))  # three, then the four kept back
    requests = {r["request_id"] for body in receiver.bodies for r in body["records"]}
    assert {"b0", "b1", "b2", "b3"} <= requests


class _FullDiskOnce:
    """A webhook sink whose spool write fails the first time, as on a full disk."""

    def __init__(self, sink: WebhookSink) -> None:
        self.sink = sink
        self.failed = False

    def ship(self, lines: list[bytes], checkpoint: str) -> None:
        if not self.failed:
            self.failed = True
            raise OSError(28, "No space left on device")
        self.sink.ship(lines, checkpoint)

    def shipped_through(self) -> int:
        return self.sink.shipped_through()

    def close(self) -> None:
        self.sink.close()


def test_records_a_failed_spool_write_refused_are_offered_again(
    settings: Settings, receiver: Receiver, tmp_path: Path
) -> None:
    """Dropped, they would be lost for good: the next shipment moves the spool's mark
    past them, so not even a restart would send them."""
    flaky = _FullDiskOnce(_sink(receiver.url, tmp_path / "spool"))
    log = AuditLog.open(settings, sinks=[flaky])
    for i in range(3):
        log.append({"request_id": f"a{i}"})
    log.flush()  # a checkpoint: its shipment fails
    assert flaky.failed and flaky.sink.shipped_through() == -1
    for i in range(3, 5):
        log.append({"request_id": f"a{i}"})
    log.close()
    flaky.close()
    assert _deduped(receiver.seqs()) == list(range(5))


def test_the_sender_lives_on_after_an_error_it_did_not_expect(tmp_path: Path) -> None:
    """A URL httpx cannot build raised ValueError, which ended the sender's thread: the
    server served on and nothing more was ever shipped."""
    import httpx

    received: list[bytes] = []

    def answer(request: httpx.Request) -> httpx.Response:
        if not received:
            received.append(b"")  # the first try fails in a way no one planned for
            raise ValueError("invalid literal for int() with base 10")
        received.append(request.content)
        return httpx.Response(204)

    sink = WebhookSink(
        "http://audit.example/x",
        tmp_path / "spool",
        backoff_s=0.01,
        backoff_cap_s=0.05,
        transport=httpx.MockTransport(answer),
    )
    sink.ship([b'{"seq":0}', b'{"seq":1}'], "note")
    _wait(lambda: sink.pending() == 0)
    assert sink.backlog() == (0, 0.0)
    sink.close()
    assert json.loads(received[-1])["records"] == [{"seq": 0}, {"seq": 1}]


def test_a_receiver_s_secret_url_stays_out_of_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import httpx

    answers = iter([httpx.Response(503), httpx.Response(204)])
    sink = WebhookSink(
        "https://ann:pw9@hooks.example/services/T0/XXSECRET?token=QSECRET",
        tmp_path / "spool",
        backoff_s=0.01,
        backoff_cap_s=0.05,
        transport=httpx.MockTransport(lambda request: next(answers)),
    )
    with caplog.at_level("WARNING"):
        sink.ship([b'{"seq":0}'], "note")
        _wait(lambda: sink.pending() == 0)
        sink.close()
    assert "answered 503; will retry" in caplog.text
    assert not [s for s in ("pw9", "XXSECRET", "QSECRET") if s in caplog.text], caplog.text


def test_records_waiting_for_a_receiver_show_in_the_metrics(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from tests.conftest import TOKEN, make_settings
    from tests.helpers import ScriptedEngine
    from tether.server.app import build_app

    receiver = Receiver()
    receiver.stop()  # its port, with no one listening
    settings = make_settings(tmp_path, TETHER_AUDIT_WEBHOOK_URL=receiver.url)
    app = build_app(settings, TOKEN, lambda: ScriptedEngine("x"))
    with TestClient(app) as client:
        client.headers["Authorization"] = f"Bearer {TOKEN}"
        assert client.post("/v1/completions", json={"prompt": "a", "max_tokens": 2}).is_success
        app.state.audit.flush()  # a checkpoint: its records go to the spool
        time.sleep(0.05)
        metrics = client.get("/metrics").text
    waiting = {
        line.split()[0]: float(line.split()[1])
        for line in metrics.splitlines()
        if line.startswith("tether_audit_webhook_")
    }
    assert waiting["tether_audit_webhook_pending_batches"] >= 1
    assert waiting["tether_audit_webhook_oldest_pending_seconds"] > 0


def test_a_spool_write_that_fails_leaves_no_partial_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sink = WebhookSink("http://127.0.0.1:9/audit", tmp_path / "spool", backoff_s=0.01)

    def full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match="No space left"):
        sink.ship([b'{"seq":0}'], "note")
    monkeypatch.undo()
    assert list((tmp_path / "spool").iterdir()) == []
    sink.close()
