"""A client that goes away: before its first token (waiting for a sequence, or while its
prompt is read) the engine stops there; after some text, what it got is still charged to
its token, traced and audited, as an answer that ended early."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import AsyncGenerator, Callable, Iterator, MutableMapping
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.types import ASGIApp

from tests.conftest import TOKEN, make_settings
from tests.helpers import ScriptedEngine, audit_records
from tests.stub_upstream import StubUpstream
from tether.engines.base import GenerationChunk, GenerationRequest
from tether.server.app import build_app


class SlowToStart(ScriptedEngine):
    """Its first chunk comes only once ``start`` is set (a queue, a long prompt)."""

    def __init__(self, answer: str, delay_s: float = 0.0) -> None:
        super().__init__(answer, delay_s=delay_s)
        self.start = asyncio.Event()
        self.waiting = 0  # requests that reached the engine
        self.closed_before_start = 0

    async def generate(self, request: GenerationRequest) -> AsyncGenerator[GenerationChunk, None]:
        self.waiting += 1
        try:
            await self.start.wait()
        except asyncio.CancelledError:
            self.closed_before_start += 1
            raise
        async for chunk in super().generate(request):
            yield chunk


class ReadsALongPrompt(SlowToStart):
    """Says it has read ``read`` tokens of the prompt, then waits for ``start``."""

    def __init__(self, answer: str, read: int) -> None:
        super().__init__(answer)
        self.read = read

    async def generate(self, request: GenerationRequest) -> AsyncGenerator[GenerationChunk, None]:
        yield GenerationChunk(text="", read_tokens=self.read, cached_tokens=40)
        async for chunk in super().generate(request):
            yield chunk


class Connection:
    """One HTTP exchange with the app, at the ASGI level: the body, then a disconnect
    whenever ``leave`` is set."""

    def __init__(self, body: dict[str, Any], token: str) -> None:
        self.body = json.dumps(body).encode()
        self.token = token
        self.leave = asyncio.Event()
        self.sent: list[dict[str, Any]] = []
        self._read = False

    def scope(self, path: str) -> dict[str, Any]:
        return {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [
                (b"host", b"test"),
                (b"authorization", f"Bearer {self.token}".encode()),
                (b"content-type", b"application/json"),
                (b"content-length", str(len(self.body)).encode()),
            ],
            "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 2),
            "state": {},
        }

    async def receive(self) -> dict[str, Any]:
        if not self._read:
            self._read = True
            return {"type": "http.request", "body": self.body, "more_body": False}
        await self.leave.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: MutableMapping[str, Any]) -> None:
        self.sent.append(dict(message))

    async def to(self, app: ASGIApp, path: str) -> None:
        await app(self.scope(path), self.receive, self.send)

    def texts(self) -> list[str]:
        bodies = [m.get("body", b"") for m in self.sent if m["type"] == "http.response.body"]
        return [b.decode() for b in bodies if b]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[TestClient, SlowToStart]]:
    engine = SlowToStart("word " * 40, delay_s=0.01)
    with TestClient(build_app(make_settings(tmp_path), TOKEN, lambda: engine)) as client:
        client.headers["Authorization"] = f"Bearer {TOKEN}"
        yield client, engine


def _complete_until(
    client: TestClient,
    connection: Connection,
    leave: Callable[[], bool],
    path: str = "/v1/completions",
) -> None:
    """``connection`` asks ``path``, and goes away once ``leave()`` is true."""

    async def run() -> None:
        request = asyncio.create_task(connection.to(client.app, path))
        while not leave() and not request.done():  # a request that failed waits no more
            await asyncio.sleep(0.005)
        connection.leave.set()
        await asyncio.wait_for(request, 5)

    assert client.portal is not None
    client.portal.call(run)


def _budget_token(client: TestClient) -> tuple[str, str]:
    made = client.post(
        "/v1/tokens",
        json={"principal": "budget", "scopes": ["completions"], "daily_tokens": 10_000},
    ).json()
    return made["token"], made["id"]


@pytest.mark.parametrize("stream", [True, False])
def test_a_client_gone_before_the_first_token_stops_the_engine(
    served: tuple[TestClient, SlowToStart], stream: bool
) -> None:
    client, engine = served
    connection = Connection({"prompt": "x", "max_tokens": 50, "stream": stream}, TOKEN)

    _complete_until(client, connection, lambda: engine.waiting > 0)
    assert engine.closed_before_start == 1
    assert connection.sent[0]["status"] == 499, connection.sent
    (record,) = [r for r in audit_records(client.app) if r["endpoint"].endswith("completions")]
    # The request is on record: it asked, and nothing was generated.
    assert record["params"]["finish_reason"] == "cancelled", record


def test_text_sent_before_a_client_left_is_charged_traced_and_audited(
    served: tuple[TestClient, SlowToStart],
) -> None:
    client, engine = served
    engine.start.set()
    token, token_id = _budget_token(client)
    connection = Connection({"prompt": "x", "max_tokens": 50, "stream": True}, token)

    _complete_until(client, connection, lambda: len(connection.texts()) >= 3)
    assert engine.stopped_early == 1
    events = [
        json.loads(text[6:])
        for part in connection.texts()
        for text in part.split("\n\n")
        if text.startswith("data: {")
    ]
    received = "".join(event["choices"][0]["text"] for event in events)
    assert received and ("word " * 40).startswith(received)
    usage = next(t for t in client.get("/v1/tokens").json()["data"] if t["id"] == token_id)
    charged = usage["usage"]["tokens_today"]
    assert charged > 0  # what was generated is charged
    metrics = client.get("/metrics").text  # and counted, as the ledger counts it
    counted = sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("tether_tokens_total{")
    )
    assert counted == charged, metrics
    (record,) = [r for r in audit_records(client.app) if r["endpoint"] == "/v1/completions"]
    assert record["params"]["finish_reason"] == "cancelled" and record["completion"]
    client.app.state.trace_recorder.flush()  # type: ignore[attr-defined]
    trace = client.get(f"/v1/traces/{events[0]['id']}")
    assert trace.status_code == 200, trace.text
    assert trace.json()["finish_reason"] == "cancelled"
    assert trace.json()["output"].startswith(received)


@pytest.mark.parametrize("stream", [True, False])
def test_a_client_gone_while_its_prompt_is_read_is_charged_the_prompt_read(
    tmp_path: Path, stream: bool
) -> None:
    engine = ReadsALongPrompt("word " * 40, read=700)
    with TestClient(build_app(make_settings(tmp_path), TOKEN, lambda: engine)) as client:
        client.headers["Authorization"] = f"Bearer {TOKEN}"
        token, token_id = _budget_token(client)
        connection = Connection({"prompt": "x", "max_tokens": 50, "stream": stream}, token)

        _complete_until(client, connection, lambda: engine.waiting > 0)
        assert engine.closed_before_start == 1
        assert connection.sent[0]["status"] == 499, connection.sent
        usage = next(t for t in client.get("/v1/tokens").json()["data"] if t["id"] == token_id)
        # The engine's time went on the prompt: a client that always leaves before the
        # first token is held to its budget all the same.
        assert usage["usage"]["tokens_today"] == 700
        (record,) = [r for r in audit_records(client.app) if r["endpoint"] == "/v1/completions"]
        assert record["params"]["finish_reason"] == "cancelled", record
        ledger = client.app.state.usage_ledger  # type: ignore[attr-defined]
        ledger.flush()
        with sqlite3.connect(ledger.ledger.path) as db:
            (ttft,) = db.execute("SELECT ttft_ms FROM usage WHERE prompt_tokens = 700").fetchone()
        assert ttft is None  # no first token came: none to count in the averages


def test_a_client_gone_while_it_waited_for_a_sequence_is_charged_nothing(
    served: tuple[TestClient, SlowToStart],
) -> None:
    client, engine = served
    token, token_id = _budget_token(client)
    connection = Connection({"prompt": "x", "max_tokens": 50, "stream": True}, token)

    _complete_until(client, connection, lambda: engine.waiting > 0)
    usage = next(t for t in client.get("/v1/tokens").json()["data"] if t["id"] == token_id)
    assert usage["usage"]["tokens_today"] == 0


@pytest.mark.parametrize("stream", [True, False])
def test_a_client_gone_before_a_gateways_upstream_answered_is_charged_the_prompt(
    gateway: tuple[TestClient, StubUpstream], stream: bool
) -> None:
    """An upstream reads the prompt it was sent whether or not the client waits for the
    answer; the gateway charged such a client nothing."""
    client, stub = gateway
    client.headers["Authorization"] = f"Bearer {TOKEN}"
    stub.answer_delay_s = 1.0  # reading a long prompt
    token, token_id = _budget_token(client)
    prompt = "def add(a, b):\n    return a + b\n" * 20
    connection = Connection({"prompt": prompt, "max_tokens": 50, "stream": stream}, token)

    _complete_until(client, connection, lambda: bool(stub.requests))
    assert connection.sent[0]["status"] == 499, connection.sent
    usage = next(t for t in client.get("/v1/tokens").json()["data"] if t["id"] == token_id)
    engine = client.app.state.tether.pipeline.engine  # type: ignore[attr-defined]
    likely = engine.likely_tokens(prompt)
    assert likely > 100 and usage["usage"]["tokens_today"] >= likely


class LeavesMidBody(Connection):
    """Sends the first half of its body, then goes away."""

    async def receive(self) -> dict[str, Any]:
        if not self._read:
            self._read = True
            return {"type": "http.request", "body": self.body[:10], "more_body": True}
        return {"type": "http.disconnect"}


def test_a_client_gone_before_its_body_arrived_is_recorded_as_gone_not_as_a_bad_request(
    served: tuple[TestClient, SlowToStart],
) -> None:
    """The body it sent was not wrong, only cut off: the access log, the metrics and its
    audit record said 400 ("bad request") for a client that left."""
    client, engine = served
    connection = LeavesMidBody({"prompt": "x", "max_tokens": 50}, TOKEN)

    _complete_until(client, connection, lambda: True)
    assert engine.waiting == 0
    assert connection.sent[0]["status"] == 499, connection.sent
    error = json.loads("".join(connection.texts()))["error"]
    assert error["code"] == "client_closed_request", error
    (record,) = [r for r in audit_records(client.app) if "completions" in r["endpoint"]]
    assert record["params"]["status"] == 499, record


class StopsReading(Connection):
    """Takes the first pieces of its answer, then reads no more (its window is full: the
    server's writes wait), and goes away whenever ``leave`` is set."""

    async def send(self, message: MutableMapping[str, Any]) -> None:
        await super().send(message)
        if len(self.texts()) >= 3:
            await asyncio.Event().wait()  # until the connection is lost


def test_a_client_gone_while_its_answer_waited_to_be_written_has_one_record(
    served: tuple[TestClient, SlowToStart],
) -> None:
    """The stream was cancelled in its write, not in its wait for the engine's next
    piece: the answer's generator was left suspended, so the request ended as one that
    generated nothing (a second, empty record, and nothing charged), and the generation's
    own record came later, whenever the generator was collected."""
    client, engine = served
    engine.start.set()
    token, token_id = _budget_token(client)
    connection = StopsReading({"prompt": "x", "max_tokens": 50, "stream": True}, token)

    _complete_until(client, connection, lambda: len(connection.texts()) >= 3)
    records = [r for r in audit_records(client.app) if "completions" in r["endpoint"]]
    assert len(records) == 1, records
    assert records[0]["params"]["finish_reason"] == "cancelled", records
    usage = next(t for t in client.get("/v1/tokens").json()["data"] if t["id"] == token_id)
    assert usage["usage"]["tokens_today"] > 0


def test_a_client_gone_while_its_stream_is_held_stops_the_engine(tmp_path: Path) -> None:
    """A stream held while it may be a tool call, kept alive by comments meanwhile: the
    client that leaves it stops the engine at its step, and the answer is on record as
    cancelled, as an answer streamed as it comes is."""
    call = json.dumps({"name": "get_weather", "arguments": {"city": "Paris " * 20}})
    engine = ScriptedEngine(call, delay_s=0.02)
    settings = make_settings(tmp_path, TETHER_SERVER_STREAM_KEEPALIVE_S="0.005")
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]
    body = {"messages": [{"role": "user", "content": "Weather?"}], "tools": tools, "stream": True}
    with TestClient(build_app(settings, TOKEN, lambda: engine)) as client:
        connection = Connection(body, TOKEN)

        def kept_alive() -> bool:
            return connection.texts().count(": keepalive\n\n") >= 2

        _complete_until(client, connection, kept_alive, "/v1/chat/completions")
        assert engine.stopped_early == 1
        assert set(connection.texts()) == {": keepalive\n\n"}
        (record,) = [r for r in audit_records(client.app) if r["endpoint"].endswith("completions")]
    assert record["params"]["finish_reason"] == "cancelled", record


def test_a_client_gone_while_kept_alive_before_its_first_token_stops_the_engine(
    tmp_path: Path,
) -> None:
    """A stream that waits for its first token longer than the keepalive's interval has
    begun (its comments are on the wire): the client that leaves it then still stops the
    engine where it waits, and the request is on record as cancelled."""
    engine = SlowToStart("word " * 40)
    settings = make_settings(tmp_path, TETHER_SERVER_STREAM_KEEPALIVE_S="0.005")
    with TestClient(build_app(settings, TOKEN, lambda: engine)) as client:
        connection = Connection({"prompt": "x", "max_tokens": 50, "stream": True}, TOKEN)
        deadline = time.monotonic() + 5  # a stream silent until its first token: left then

        def kept_alive() -> bool:
            return connection.texts().count(": keepalive\n\n") >= 2 or time.monotonic() > deadline

        _complete_until(client, connection, kept_alive)
        assert engine.closed_before_start == 1
        assert set(connection.texts()) == {": keepalive\n\n"}
        (record,) = [r for r in audit_records(client.app) if r["endpoint"].endswith("completions")]
    assert record["params"]["finish_reason"] == "cancelled", record
