"""A real `tether serve` process driven by the official openai client and httpx."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import httpx
import openai
import pydantic
import pytest

from tests.helpers import RunningServer, tether_server, wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with tether_server(tmp_path_factory.mktemp("srv")) as running:
        yield running


@pytest.fixture
def client(server: RunningServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key=server.token, max_retries=0)


def test_runtime_file_is_private(server: RunningServer) -> None:
    path = Path(server.env["TETHER_SERVER_RUNTIME_DIR"])
    (record,) = path.glob("server-*.json")
    assert record.stat().st_mode & 0o777 == 0o600
    assert server.token.startswith("tth_")
    data_dir = Path(server.env["TETHER_HOME"])
    assert not any(
        server.token in p.read_text(errors="ignore") for p in data_dir.rglob("*") if p.is_file()
    )


def test_models(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list()] == ["SmolLM2-135M-Instruct.Q4_1"]


def test_chat(client: openai.OpenAI) -> None:
    answer = client.chat.completions.create(
        model="SmolLM2-135M-Instruct.Q4_1",
        messages=[{"role": "user", "content": "Write one word."}],
        max_tokens=10,
    )
    assert answer.choices[0].message.role == "assistant"
    assert answer.usage is not None and answer.usage.completion_tokens <= 10
    assert answer.system_fingerprint and answer.system_fingerprint.startswith("fp_")


def test_chat_stream_with_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="SmolLM2-135M-Instruct.Q4_1",
        messages=[{"role": "user", "content": "Count to five."}],
        max_tokens=12,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in ("stop", "length")


def test_responses_answer_as_chat_does(client: openai.OpenAI) -> None:
    ask = "What is 2+2? Answer with a number."
    chat = client.chat.completions.create(
        model="SmolLM2-135M-Instruct.Q4_1",
        messages=[{"role": "user", "content": ask}],
        max_tokens=24,
        temperature=0,
    )
    whole = client.responses.create(
        model="SmolLM2-135M-Instruct.Q4_1", input=ask, max_output_tokens=24, temperature=0
    )
    with client.responses.stream(
        model="SmolLM2-135M-Instruct.Q4_1", input=ask, max_output_tokens=24, temperature=0
    ) as stream:
        streamed = stream.get_final_response()
    assert chat.choices[0].message.content
    assert whole.output_text == streamed.output_text == chat.choices[0].message.content
    assert whole.usage is not None and chat.usage is not None
    assert whole.usage.output_tokens == chat.usage.completion_tokens


def test_completion_and_fim(client: openai.OpenAI) -> None:
    plain = client.completions.create(
        model="SmolLM2-135M-Instruct.Q4_1", prompt="def fib(n):", max_tokens=8, seed=7
    )
    assert plain.choices[0].text
    fim = client.completions.create(
        model="SmolLM2-135M-Instruct.Q4_1",
        prompt="def add(a, b):\n    ",
        suffix="\n",
        max_tokens=16,
        stream=True,
    )
    assert "".join(c.choices[0].text for c in fim) is not None


def test_bad_request_is_an_openai_error(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="SmolLM2-135M-Instruct.Q4_1", messages=[])
    assert "messages" in str(info.value) and "send at least one message" in str(info.value)
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="gpt-4o", prompt="x")
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=client.base_url, api_key="wrong", max_retries=0).models.list()


def _in_flight(server: RunningServer) -> float:
    metrics = httpx.get(server.url + "/metrics").text
    line = next(x for x in metrics.splitlines() if x.startswith("tether_generations_in_flight "))
    return float(line.split()[1])


def test_disconnect_stops_generation(server: RunningServer) -> None:
    body = {"prompt": "Once upon a time", "max_tokens": 1500, "stream": True, "temperature": 1.0}
    with httpx.Client(base_url=server.url, headers=server.headers, timeout=30) as http:
        with http.stream("POST", "/v1/completions", json=body) as response:
            lines = response.iter_lines()
            for _ in range(6):
                next(lines)
            assert _in_flight(server) == 1
        # The connection is closed: the engine must let go within a few tokens.
        wait_until(lambda: _in_flight(server) == 0, timeout=5)
        started = time.monotonic()
        quick = http.post("/v1/completions", json={"prompt": "x", "max_tokens": 2})
        assert quick.status_code == 200
        assert time.monotonic() - started < 5


def test_disconnect_non_streaming_stops_generation(server: RunningServer) -> None:
    body = {"prompt": "Once upon a time", "max_tokens": 1500, "temperature": 1.0}
    with (
        pytest.raises(httpx.ReadTimeout),
        httpx.Client(base_url=server.url, headers=server.headers) as http,
    ):
        http.post("/v1/completions", json=body, timeout=httpx.Timeout(1.0, connect=5))
    wait_until(lambda: _in_flight(server) == 0, timeout=5)


def test_queue_full_answers_429(tmp_path: Path) -> None:
    with tether_server(tmp_path, "--n-parallel", "1", TETHER_ENGINE_MAX_QUEUE="0") as srv:
        long_body = {
            "prompt": "Once upon a time",
            "max_tokens": 1000,
            "stream": True,
            "temperature": 1.0,
        }
        started = threading.Event()

        def occupy() -> None:
            with (
                httpx.Client(base_url=srv.url, headers=srv.headers, timeout=60) as http,
                http.stream("POST", "/v1/completions", json=long_body) as response,
            ):
                lines = response.iter_lines()
                next(lines)
                started.set()
                for _ in range(30):
                    next(lines)

        worker = threading.Thread(target=occupy)
        worker.start()
        try:
            assert started.wait(30)
            with srv.client() as http:
                refused = http.post("/v1/completions", json={"prompt": "x", "max_tokens": 2})
            assert refused.status_code == 429
            assert int(refused.headers["retry-after"]) >= 1
            assert refused.json()["error"]["type"] == "rate_limit_error"
        finally:
            worker.join(60)


def test_same_request_same_bytes_across_processes(tmp_path: Path, server: RunningServer) -> None:
    request = {
        "prompt": "Here is a list of fruits:",
        "max_tokens": 32,
        "temperature": 0.8,
        "top_p": 0.95,
    }
    with server.client() as http:
        first = http.post("/v1/completions", json=request).json()
    with tether_server(tmp_path) as other, other.client() as http:
        second = http.post("/v1/completions", json=request).json()
    assert first["choices"][0]["text"] == second["choices"][0]["text"]
    assert first["system_fingerprint"] == second["system_fingerprint"]


def test_the_largest_seed_samples_the_same_every_time(client: openai.OpenAI) -> None:
    """llama.cpp reads 0xFFFFFFFF as "random"; the largest seed tether takes is one below."""
    answers = {
        client.completions.create(
            model="SmolLM2-135M-Instruct.Q4_1",
            prompt="Once upon a time",
            max_tokens=8,
            temperature=1.0,
            seed=2**32 - 2,
        )
        .choices[0]
        .text
        for _ in range(3)
    }
    assert len(answers) == 1, answers
    with pytest.raises(openai.BadRequestError):
        client.completions.create(
            model="SmolLM2-135M-Instruct.Q4_1", prompt="x", max_tokens=2, seed=2**32 - 1
        )


class _Function(pydantic.BaseModel):
    # Bounded, so that the answer always fits its max_tokens: the schema's maxLength and
    # maxItems are kept to.
    name: str = pydantic.Field(max_length=24)
    arguments: list[Annotated[str, pydantic.Field(max_length=16)]] = pydantic.Field(max_length=3)


def test_the_sdks_structured_outputs_parse_the_answer(client: openai.OpenAI) -> None:
    """The SDK's parse() sends the model's JSON schema (strict, every field required, no
    others) and reads the answer into the model; JSON mode was refused before."""
    asked = "Describe a Python function as JSON."
    chat = client.chat.completions.parse(
        model="SmolLM2-135M-Instruct.Q4_1",
        messages=[{"role": "user", "content": asked}],
        response_format=_Function,
        max_tokens=200,
    )
    parsed = chat.choices[0].message.parsed
    assert isinstance(parsed, _Function), chat.choices[0].message.content
    answer = client.responses.parse(
        model="SmolLM2-135M-Instruct.Q4_1",
        input=asked,
        text_format=_Function,
        max_output_tokens=200,
    )
    assert isinstance(answer.output_parsed, _Function), answer.output_text
