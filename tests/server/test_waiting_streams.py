"""A stream whose first token is slow to come (a queue for a sequence, a long prompt, a
slow upstream) is kept alive by comment lines, which SSE clients skip, so that a proxy's
or client's read timeout does not cut it before it starts; an error that comes after that
wait is reported inside the stream, and one that comes at once keeps its HTTP status."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from fastapi.testclient import TestClient

from tests.conftest import TOKEN, make_settings
from tests.helpers import ScriptedEngine, audit_records, ledger_totals
from tether.engines.base import GenerationChunk, GenerationRequest
from tether.errors import EngineUnavailableError, TetherError
from tether.server.app import build_app

KEEPALIVE = ": keepalive"
ASK: list[Any] = [{"role": "user", "content": "Say hello."}]


class StartsLate(ScriptedEngine):
    """Its first chunk comes after ``wait_s``, or ``failure`` is raised then."""

    def __init__(self, wait_s: float) -> None:
        super().__init__("Hello there, how are you?")
        self.wait_s = wait_s
        self.failure: TetherError | None = None

    async def generate(self, request: GenerationRequest) -> AsyncGenerator[GenerationChunk, None]:
        await asyncio.sleep(self.wait_s)
        if self.failure is not None:
            raise self.failure
        async for chunk in super().generate(request):
            yield chunk


@pytest.fixture
def late(tmp_path: Path) -> Iterator[tuple[TestClient, StartsLate]]:
    engine = StartsLate(wait_s=0.2)
    settings = make_settings(tmp_path, TETHER_SERVER_STREAM_KEEPALIVE_S="0.03")
    with TestClient(build_app(settings, TOKEN, lambda: engine)) as client:
        client.headers["Authorization"] = f"Bearer {TOKEN}"
        yield client, engine


def _frames(body: str) -> list[str]:
    return [frame for frame in body.split("\n\n") if frame]


STREAMS = [
    ("/v1/chat/completions", {"messages": ASK, "stream": True}),
    ("/v1/completions", {"prompt": "Say hello.", "stream": True}),
    ("/v1/responses", {"input": "Say hello.", "stream": True}),
    ("/completion", {"prompt": "Say hello.", "stream": True}),
]


@pytest.mark.parametrize(("path", "body"), STREAMS, ids=[path for path, _ in STREAMS])
def test_a_stream_slow_to_start_sends_comments_until_its_first_event(
    late: tuple[TestClient, StartsLate], path: str, body: dict[str, object]
) -> None:
    client, _ = late
    raw = client.post(path, json=body)
    assert raw.status_code == 200 and raw.headers["content-type"].startswith("text/event-stream")
    frames = _frames(raw.text)
    first = next(i for i, frame in enumerate(frames) if frame != KEEPALIVE)
    assert first >= 2, frames[:4]  # 0.2 s of waiting, a comment each 0.03 s
    assert KEEPALIVE not in frames[first:]
    assert "Hello" in raw.text


def test_the_sdks_read_a_stream_that_began_with_comments(
    late: tuple[TestClient, StartsLate],
) -> None:
    client, _ = late
    sdk = openai.OpenAI(
        base_url="http://testserver/v1", api_key=TOKEN, http_client=client, max_retries=0
    )
    chunks = list(sdk.chat.completions.create(model="scripted", messages=ASK, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == (
        "Hello there, how are you?"
    )
    with sdk.responses.stream(model="scripted", input="Say hello.") as stream:
        final = stream.get_final_response()
    assert final.output_text == "Hello there, how are you?"


def test_an_error_after_the_wait_is_an_event_in_the_stream(
    late: tuple[TestClient, StartsLate],
) -> None:
    client, engine = late
    engine.failure = EngineUnavailableError("the model's process stopped; start it again")
    raw = client.post("/v1/chat/completions", json={"messages": ASK, "stream": True})
    assert raw.status_code == 200
    frames = _frames(raw.text)
    assert frames[0] == KEEPALIVE and frames[-1] == "data: [DONE]"
    error = json.loads(frames[-2].removeprefix("data: "))["error"]
    assert "start it again" in error["message"]

    raw = client.post("/v1/responses", json={"input": "Say hello.", "stream": True})
    frames = _frames(raw.text)
    assert frames[0] == KEEPALIVE and frames[-1].startswith("event: error")
    assert "start it again" in frames[-1]


def test_an_error_after_the_wait_is_on_record_with_its_status(
    late: tuple[TestClient, StartsLate], caplog: pytest.LogCaptureFixture
) -> None:
    """The audit record, the usage ledger and the access log say what the error would have
    answered had it come at once, not the 200 that began the stream: nothing was answered."""
    client, engine = late
    engine.failure = EngineUnavailableError("the model's process stopped; start it again")
    with caplog.at_level("INFO", logger="tether.access"):
        raw = client.post("/v1/chat/completions", json={"messages": ASK, "stream": True})
    assert raw.status_code == 200 and "start it again" in raw.text
    assert '"POST /v1/chat/completions" 503 ' in caplog.text
    (record,) = [r for r in audit_records(client.app) if r["endpoint"].endswith("/completions")]
    assert record["params"] == {"status": 503}
    (row,) = ledger_totals(client.app, "model")
    assert (row.requests, row.errors) == (1, 1)


def test_an_error_before_the_first_comment_keeps_its_status(
    late: tuple[TestClient, StartsLate],
) -> None:
    client, engine = late
    engine.wait_s = 0
    engine.failure = EngineUnavailableError("the model's process stopped; start it again")
    raw = client.post("/v1/chat/completions", json={"messages": ASK, "stream": True})
    assert raw.status_code == 503, raw.text
    assert "start it again" in raw.json()["error"]["message"]


def test_a_stream_held_whole_for_its_checks_is_kept_alive_until_it_is_sent(
    tmp_path: Path,
) -> None:
    """Where answers are blocked or redacted by rule, a stream is held until its checks have
    read it whole, silent for the whole generation: comments keep it alive meanwhile."""
    engine = ScriptedEngine("Hello there, how are you today?", delay_s=0.03)
    settings = make_settings(
        tmp_path,
        TETHER_SERVER_STREAM_KEEPALIVE_S="0.05",
        TETHER_COMPLIANCE_ACTIONS=json.dumps({"secrets": "block"}),
    )
    with TestClient(build_app(settings, TOKEN, lambda: engine)) as client:
        client.headers["Authorization"] = f"Bearer {TOKEN}"
        raw = client.post("/v1/chat/completions", json={"messages": ASK, "stream": True})
    frames = _frames(raw.text)
    first = next(i for i, frame in enumerate(frames) if frame != KEEPALIVE)
    assert first >= 2 and KEEPALIVE not in frames[first:], frames
    texts = [json.loads(f.removeprefix("data: ")) for f in frames[first:-1]]
    assert "".join(
        c["choices"][0]["delta"].get("content") or "" for c in texts if c["choices"]
    ) == ("Hello there, how are you today?")
