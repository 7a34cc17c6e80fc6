"""The `openai` engine in front of a real upstream: llama-cpp-python's own server."""

from __future__ import annotations

import base64
import json
import random
import re
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.helpers import free_port, llama_upstream, tether_server, wait_until

pytestmark = pytest.mark.e2e
STATIC = Path(__file__).resolve().parents[2] / "src" / "tether" / "dashboard" / "static"


def test_gateway_chat_fim_and_streaming(tmp_path: Path) -> None:
    with (
        llama_upstream() as (base, _),
        tether_server(tmp_path, "--engine", "openai", "--upstream", base) as srv,
    ):
        client = openai.OpenAI(base_url=srv.url + "/v1", api_key=srv.token, max_retries=0)
        (model,) = client.models.list()
        chat = client.chat.completions.create(
            model=model.id, messages=[{"role": "user", "content": "Say hi"}], max_tokens=8
        )
        assert chat.choices[0].message.content
        assert chat.usage is not None and chat.usage.completion_tokens > 0

        direct = httpx.post(
            f"{base}/completions",
            json={
                "prompt": "def add(a, b):",
                "max_tokens": 12,
                "temperature": 0,
                "seed": 0,
            },
            timeout=60,
        ).json()["choices"][0]["text"]
        stream = client.completions.create(
            model=model.id,
            prompt="def add(a, b):",
            max_tokens=12,
            temperature=0,
            seed=0,
            stream=True,
        )
        assert "".join(c.choices[0].text for c in stream) == direct

        with srv.client() as http:
            infill = http.post(
                "/infill", json={"input_prefix": "x = ", "input_suffix": "\n", "n_predict": 4}
            )
            assert infill.status_code == 200 and isinstance(infill.json()["content"], str)
            refused = http.post("/v1/chat/completions", json={"messages": []})
            assert refused.status_code == 400  # checked by tether before any upstream call


def test_upstream_down_then_back(tmp_path: Path) -> None:
    port = free_port()
    with llama_upstream(port) as (base, upstream):
        srv_cm = tether_server(
            tmp_path,
            "--engine",
            "openai",
            "--upstream",
            base,
            TETHER_UPSTREAM_HEALTH_INTERVAL_S="0.2",
        )
        srv = srv_cm.__enter__()
    try:
        # The upstream is gone now.
        assert upstream.poll() is not None
        with srv.client() as http:
            down = http.post("/v1/completions", json={"prompt": "x", "max_tokens": 2})
            assert down.status_code == 503
            assert "no upstream is answering" in down.json()["error"]["message"]
            assert httpx.get(srv.url + "/readyz").status_code == 503
            with llama_upstream(port):
                wait_until(lambda: httpx.get(srv.url + "/readyz").status_code == 200, timeout=30)
                back = http.post("/v1/completions", json={"prompt": "x", "max_tokens": 2})
                assert back.status_code == 200, back.text
    finally:
        srv_cm.__exit__(None, None, None)


def test_failover_to_the_next_upstream(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}/v1"
    with (
        llama_upstream() as (base, _),
        tether_server(
            tmp_path, "--engine", "openai", "--upstream", dead, "--upstream", base
        ) as srv,
        srv.client() as http,
    ):
        for _ in range(3):
            response = http.post("/v1/completions", json={"prompt": "x", "max_tokens": 2})
            assert response.status_code == 200, response.text
        ready = httpx.get(srv.url + "/readyz")
        assert ready.status_code == 200


def test_stream_error_after_start_is_reported_in_stream(tmp_path: Path) -> None:
    with (
        llama_upstream() as (base, upstream),
        tether_server(tmp_path, "--engine", "openai", "--upstream", base) as srv,
        httpx.Client(base_url=srv.url, headers=srv.headers, timeout=30) as http,
    ):
        body = {"prompt": "Once upon a time", "max_tokens": 1500, "stream": True}
        with http.stream("POST", "/v1/completions", json=body) as response:
            lines = response.iter_lines()
            next(lines)
            upstream.kill()
            rest = [line for line in lines if line.startswith("data: ")]
        errors = [json.loads(x[6:]) for x in rest if x != "data: [DONE]" and "error" in x]
        assert errors and errors[-1]["error"]["type"] == "server_error"


def test_a_tether_upstream_tells_its_window_and_its_stop_words(tmp_path: Path) -> None:
    """Through the gateway, llama.cpp's /completion behaves as on the upstream itself: a
    large n_predict is cut to the window it learned, and a stop word is named."""
    (tmp_path / "upstream").mkdir()
    (tmp_path / "gateway").mkdir()
    with (
        # A small window: the files below fill it three times, read on this CPU.
        tether_server(tmp_path / "upstream", TETHER_ENGINE_N_CTX="512") as upstream,
        tether_server(
            tmp_path / "gateway",
            "--engine",
            "openai",
            "--upstream",
            upstream.url + "/v1",
            TETHER_UPSTREAM_API_KEY=upstream.token,
        ) as gateway,
        upstream.client() as direct,
        gateway.client() as through,
    ):
        answers = []
        for http in (direct, through):
            n_ctx = http.get("/props").json()["default_generation_settings"]["n_ctx"]
            body = {"prompt": "def add(a, b):", "n_predict": 4096, "stop": ["return"]}
            answer = http.post("/completion", json={**body, "temperature": 0})
            assert answer.status_code == 200, answer.text
            answers.append((n_ctx, answer.json()["content"], answer.json()["stop_type"]))
        # An editor's file far past the window, of short tokens (JavaScript takes about 2.9
        # characters a token here): the gateway cuts it to fit without the upstream's
        # tokenizer, before and after it has learnt the ratio from the upstream's counts.
        script = (STATIC / "app.js").read_text()
        prefix = script * (answers[0][0] * 12 // len(script) + 1)
        # Then text far denser in tokens than anything seen yet (base64 takes about 1.3
        # characters a token): the upstream refuses the first cut, and the gateway cuts
        # again with the count the refusal gave, in the same request.
        dense = base64.b64encode(random.Random(7).randbytes(answers[0][0] * 6)).decode()
        for code in (prefix, prefix, dense):
            infill = through.post(
                "/infill",
                json={"input_prefix": code, "input_suffix": "\n", "n_predict": 8},
                timeout=120,
            )
            assert infill.status_code == 200, infill.text
            assert infill.json()["truncated"] is True
        metrics = through.get("/metrics").text
        assert re.search(
            r'tether_upstream_requests_total\{[^}]*outcome="rejected"[^}]*\} 1\.0', metrics
        )
    assert answers[0] == answers[1]
    assert answers[0][0] > 0 and answers[0][2] == "word"  # the small model writes `return`


def test_the_gateway_passes_the_answers_format_to_its_upstream(tmp_path: Path) -> None:
    """JSON mode was refused by a gateway whose upstream keeps answers to it (llama.cpp's
    server, vLLM): the gateway now passes response_format on, and the upstream keeps to it."""
    with (
        llama_upstream() as (base, _),
        tether_server(tmp_path, "--engine", "openai", "--upstream", base) as srv,
    ):
        client = openai.OpenAI(base_url=srv.url + "/v1", api_key=srv.token, max_retries=0)
        (model,) = client.models.list()
        asked: list[Any] = [{"role": "user", "content": "Give a short name and age of a person."}]
        prose = client.chat.completions.create(
            model=model.id, messages=asked, max_tokens=160, temperature=0
        )
        kept = client.chat.completions.create(
            model=model.id,
            messages=asked,
            max_tokens=160,
            temperature=0,
            response_format={"type": "json_object"},
        )
        answers = [answer.choices[0].message.content or "" for answer in (prose, kept)]
    # Unasked, the model writes prose; asked, JSON (llama-cpp-python's server keeps
    # json_object to JSON's grammar, which lets this model nest it past max_tokens).
    assert not answers[0].lstrip().startswith("{"), answers[0]
    assert answers[1].startswith('{\n  "name": '), answers[1]
