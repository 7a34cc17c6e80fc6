"""What an upstream reports of a request's tokens, as the gateway takes it."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import TOKEN
from tests.stub_upstream import StubUpstream


@pytest.mark.parametrize("count", [-5, 10**30])
@pytest.mark.parametrize("stream", [False, True])
def test_a_token_count_from_the_upstream_that_cannot_be_one_is_not_taken(
    gateway: tuple[TestClient, StubUpstream], stream: bool, count: int
) -> None:
    """A broken upstream's negative count made every answer a 500 (no counter of ours
    takes a negative amount); a huge one spent the token's budget and never reached the
    usage ledger, whose integers it overflowed."""
    client, stub = gateway
    usage: dict[str, object] = {
        "prompt_tokens": count,
        "completion_tokens": count,
        "prompt_tokens_details": {"cached_tokens": count},
    }
    choice = {"index": 0, "text": "hello", "finish_reason": "stop"}
    if stream:
        sent = ({"choices": [choice]}, {"choices": [], "usage": usage})
        body = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in sent)
        stub.raw = ("text/event-stream", body + b"data: [DONE]\n\n")
    else:
        stub.raw = ("application/json", json.dumps({"choices": [choice], "usage": usage}).encode())
    request: dict[str, object] = {"prompt": "x", "max_tokens": 8, "stream": stream}
    if stream:
        request["stream_options"] = {"include_usage": True}
    response = client.post(
        "/v1/completions", json=request, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert response.status_code == 200, response.text
    if stream:
        events = [json.loads(line[6:]) for line in response.text.splitlines() if "{" in line]
        assert "error" not in events[-1], events[-1]
        answered = events[-1]["usage"]
    else:
        answered = response.json()["usage"]
    assert 0 <= answered["prompt_tokens"] < 2**31 and 0 <= answered["completion_tokens"] < 2**31


def test_a_plain_answer_through_the_gateway_has_llama_cpp_timings_that_add_up(
    gateway: tuple[TestClient, StubUpstream],
) -> None:
    """Asked for whole, the answer is still streamed from the upstream: the time to its
    first piece is the prompt's, the rest the predicting (an answer read whole had its
    whole time as the prompt's, and a predicting rate in the hundreds of thousands)."""
    client, stub = gateway
    stub.answer, stub.piece_delay_s = "x" * 35, 0.05  # five pieces, 50 ms apart
    response = client.post(
        "/completion",
        json={"prompt": "def f():", "n_predict": 16},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert response.status_code == 200, response.text
    timings = response.json()["timings"]
    assert timings["prompt_ms"] >= 40 and timings["predicted_ms"] >= 150, timings
    assert timings["predicted_per_second"] < 1000 * timings["predicted_n"] / 150


def test_chats_sent_at_once_through_a_gateway_pass_a_budget_by_one_answer_at_most(
    gateway: tuple[TestClient, StubUpstream],
) -> None:
    """The gateway only estimates a prompt's tokens, and its upstream adds a chat
    template's framing to what it counts: held at the estimate, twelve chats sent at once
    passed a budget of 200 by two answers and more."""
    from concurrent.futures import ThreadPoolExecutor

    client, stub = gateway
    # A short question in a chat template with a long default system prompt.
    stub.prompt_tokens, stub.answer_delay_s = 100, 0.3
    admin = {"Authorization": f"Bearer {TOKEN}"}
    body = {"principal": "burst", "scopes": ["chat"], "daily_tokens": 200}
    issued = client.post("/v1/tokens", headers=admin, json=body).json()
    headers = {"Authorization": f"Bearer {issued['token']}"}
    client.post(  # what the upstream counts is learnt from its first answer
        "/v1/chat/completions",
        headers=admin,
        json={"messages": [{"role": "user", "content": "warm up"}], "max_tokens": 16},
    )

    def chat(n: int) -> int:
        question = {"messages": [{"role": "user", "content": f"hello number {n}"}]}
        return client.post(
            "/v1/chat/completions", headers=headers, json={**question, "max_tokens": 16}
        ).status_code

    with ThreadPoolExecutor(12) as pool:
        statuses = list(pool.map(chat, range(12)))
    assert 200 in statuses and 429 in statuses
    listed = {t["id"]: t for t in client.get("/v1/tokens", headers=admin).json()["data"]}
    spent = listed[issued["id"]]["usage"]["tokens_today"]
    one_answer = stub.prompt_tokens + 16
    assert spent <= 200 + one_answer, (spent, statuses)


def test_an_answer_the_gateway_cut_is_charged_what_its_upstream_most_likely_counted(
    gateway: tuple[TestClient, StubUpstream],
) -> None:
    """A gateway fits windows with a count that errs high (2.5 characters a token, or
    less); a cut answer charged by it paid for 202 tokens where its upstream made 121. It
    is charged by the ratio of the answers its upstreams counted lately (the stub's: 4)."""
    client, stub = gateway
    headers = {"Authorization": f"Bearer {TOKEN}"}
    inside, outside = "    value = compute(value)\n" * 12, "print(value)\n" * 12
    body = {"prompt": "def f(value):\n", "n_indent": 4}

    def cut() -> tuple[str, int]:
        stub.answer = inside + outside  # the second block leaves the function: cut there
        answer = client.post("/completion", json=body, headers=headers).json()
        assert answer["stop_type"] == "limit", answer
        return answer["content"], answer["tokens_predicted"]

    content, charged = cut()  # before any answer was counted: code's middle ratio
    assert content == inside and charged == math.ceil(len(inside) / 3.4)
    stub.answer = "x = 1\n" * 60  # counted whole by the stub at 4 characters a token
    whole = client.post("/v1/completions", json={"prompt": "x", "stream": True}, headers=headers)
    assert whole.status_code == 200
    content, charged = cut()
    assert content == inside and charged == math.ceil(len(inside) / 4)


def _events(*events: Mapping[str, object]) -> bytes:
    sent = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events)
    return sent + b"data: [DONE]\n\n"


FINISHED = {"index": 0, "text": "hello there, world", "finish_reason": "stop"}
COUNTED = {"prompt_tokens": 41, "completion_tokens": 5}


@pytest.mark.parametrize(
    "answer",
    [
        ("application/json", json.dumps({"choices": [FINISHED]}).encode()),
        ("text/event-stream", _events({"choices": [FINISHED]})),
    ],
    ids=["whole", "streamed"],
)
def test_an_upstream_that_reports_no_usage_is_charged_what_it_most_likely_counted(
    gateway: tuple[TestClient, StubUpstream], answer: tuple[str, bytes]
) -> None:
    """Without usage, an answer was charged 0 tokens: thirty requests passed a budget of
    200 tokens a day, and the usage ledger showed none."""
    client, stub = gateway
    stub.raw = answer
    admin = {"Authorization": f"Bearer {TOKEN}"}
    body = {"principal": "uncounted", "scopes": ["completions"], "daily_tokens": 200}
    issued = client.post("/v1/tokens", headers=admin, json=body).json()
    headers = {"Authorization": f"Bearer {issued['token']}"}
    prompt = "def add(a, b):\n    return a + b\n" * 10  # 320 characters
    statuses = []
    for _ in range(12):
        response = client.post(
            "/v1/completions",
            headers=headers,
            json={"prompt": prompt, "max_tokens": 8, "stream": answer[0] != "application/json"},
        )
        statuses.append(response.status_code)
        if response.status_code == 200 and answer[0] == "application/json":
            usage = response.json()["usage"]
            assert usage["prompt_tokens"] >= len(prompt) / 4, usage
            assert usage["completion_tokens"] >= 1, usage
    assert statuses[0] == 200 and 429 in statuses, statuses
    listed = {t["id"]: t for t in client.get("/v1/tokens", headers=admin).json()["data"]}
    assert listed[issued["id"]]["usage"]["tokens_today"] > 0


@pytest.mark.parametrize(
    "events",
    [
        ({"choices": [FINISHED], "usage": COUNTED},),
        ({"choices": [{"index": 0, "text": "hello "}], "usage": COUNTED}, {"choices": [FINISHED]}),
    ],
    ids=["in-the-finishing-event", "before-it"],
)
def test_usage_a_stream_reports_in_any_event_is_what_is_charged(
    gateway: tuple[TestClient, StubUpstream], events: tuple[dict[str, object], ...]
) -> None:
    """Usage sent in the event that finishes the answer (or before it), not in one of its
    own after it, was dropped: the answer was charged no prompt tokens."""
    client, stub = gateway
    stub.raw = ("text/event-stream", _events(*events))
    response = client.post(
        "/v1/completions",
        headers={"Authorization": f"Bearer {TOKEN}"},
        json={"prompt": "x", "stream": True, "stream_options": {"include_usage": True}},
    )
    assert response.status_code == 200, response.text
    sent = [json.loads(line[6:]) for line in response.text.splitlines() if "{" in line]
    usage = sent[-1]["usage"]
    assert (usage["prompt_tokens"], usage["completion_tokens"]) == (41, 5), usage


def test_a_stream_without_usage_is_charged_by_its_text_not_its_pieces(
    gateway: tuple[TestClient, StubUpstream],
) -> None:
    """Counted a token a piece, an answer sent whole in its finishing event was charged
    1 token for 4,000 characters."""
    client, stub = gateway
    whole = {"index": 0, "text": "x = 1\n" * 700, "finish_reason": "stop"}
    stub.raw = ("text/event-stream", _events({"choices": [whole]}))
    response = client.post(
        "/v1/completions",
        headers={"Authorization": f"Bearer {TOKEN}"},
        json={"prompt": "x", "stream": True, "stream_options": {"include_usage": True}},
    )
    sent = [json.loads(line[6:]) for line in response.text.splitlines() if "{" in line]
    assert sent[-1]["usage"]["completion_tokens"] >= 4200 / 4, sent[-1]["usage"]


def test_a_stream_without_usage_is_charged_a_token_a_piece(
    gateway: tuple[TestClient, StubUpstream],
) -> None:
    """Estimated from its characters instead, 100 one-token pieces were charged 177
    tokens, more than the max_tokens that bound them."""
    client, stub = gateway
    pieces: list[dict[str, object]] = [{"choices": [{"index": 0, "text": " hello"}]}] * 100
    finish = {"choices": [{"index": 0, "text": "", "finish_reason": "length"}]}
    stub.raw = ("text/event-stream", _events(*pieces, finish))
    response = client.post(
        "/v1/completions",
        headers={"Authorization": f"Bearer {TOKEN}"},
        json={"prompt": "x", "max_tokens": 100, "stream": True,
              "stream_options": {"include_usage": True}},
    )  # fmt: skip
    sent = [json.loads(line[6:]) for line in response.text.splitlines() if "{" in line]
    assert sent[-1]["usage"]["completion_tokens"] == 100, sent[-1]["usage"]


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions"])
def test_an_answers_usage_names_the_prompt_tokens_read_from_a_cache(
    gateway: tuple[TestClient, StubUpstream], path: str, stream: bool
) -> None:
    """The AI SDK reads prompt_tokens_details.cached_tokens as its cacheReadTokens; without
    it a chat said none of its prompt was cached where the same prompt sent as a response
    counted 3 (the stub upstream's cached tokens)."""
    client, _ = gateway
    answered = _usage_answered(client, path, stream)
    assert answered["prompt_tokens_details"] == {"cached_tokens": 3}, answered


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions"])
def test_an_upstream_that_counts_no_cached_tokens_is_not_said_to_have_cached_none(
    gateway: tuple[TestClient, StubUpstream], path: str, stream: bool
) -> None:
    """An upstream that reports no prompt_tokens_details (vLLM by default) may well have
    read the prompt from its cache: the answer said 0 cached tokens all the same (LiteLLM
    keeps an absent count as None, unknown). Unknown, the details are left out, as that
    upstream leaves them."""
    client, stub = gateway
    usage = {"prompt_tokens": 5, "completion_tokens": 2}
    chat = path.endswith("chat/completions")
    choice: dict[str, object] = {"index": 0, "finish_reason": "stop"}
    if stream:
        choice["delta" if chat else "text"] = {"content": "hello"} if chat else "hello"
        sent = ({"choices": [choice]}, {"choices": [], "usage": usage})
        body = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in sent)
        stub.raw = ("text/event-stream", body + b"data: [DONE]\n\n")
    else:
        choice["message" if chat else "text"] = (
            {"role": "assistant", "content": "hello"} if chat else "hello"
        )
        stub.raw = ("application/json", json.dumps({"choices": [choice], "usage": usage}).encode())
    answered = _usage_answered(client, path, stream)
    assert answered["prompt_tokens"] == 5, answered
    assert "prompt_tokens_details" not in answered, answered


def _usage_answered(client: TestClient, path: str, stream: bool) -> dict[str, Any]:
    """The usage of a "hi" sent to ``path`` (chat or text completions), whole or streamed
    with its usage event."""
    request: dict[str, object] = {"max_tokens": 8, "stream": stream}
    if path.endswith("chat/completions"):
        request["messages"] = [{"role": "user", "content": "hi"}]
    else:
        request["prompt"] = "hi"
    if stream:
        request["stream_options"] = {"include_usage": True}
    response = client.post(path, json=request, headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200, response.text
    if stream:
        events = [json.loads(line[6:]) for line in response.text.splitlines() if "{" in line]
        usage: dict[str, Any] = events[-1]["usage"]
        return usage
    usage = response.json()["usage"]
    return usage
