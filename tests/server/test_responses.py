"""The OpenAI Responses API: the same pipeline as chat completions behind another shape,
driven with the official openai SDK (``responses.create``, ``responses.stream``)."""

from __future__ import annotations

import asyncio
import json
import typing
from collections.abc import AsyncGenerator, Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from fastapi.testclient import TestClient
from openai.types.responses import (
    Response,
    ResponseError,
    ResponseFailedEvent,
    ResponseOutputMessage,
    ResponseStreamEvent,
    ToolChoiceAllowed,
    ToolChoiceAllowedParam,
)

from tests.conftest import SMALL_WINDOW, TOKEN, make_settings
from tests.helpers import ScriptedEngine, audit_records, record_of_request
from tests.server.test_disconnects import Connection, SlowToStart
from tests.stub_upstream import MODEL, StubUpstream
from tether.engines.base import GenerationChunk, GenerationRequest
from tether.errors import ContextLengthError, EngineUnavailableError
from tether.server.app import build_app
from tether.server.routes.formats import failed_code
from tether.usage.reader import LedgerReader

REAL_MODEL = "SmolLM2-135M-Instruct.Q4_1"
ANSWER = "Hello there, friend."


def _sdk(client: TestClient, token: str = TOKEN) -> openai.OpenAI:
    return openai.OpenAI(
        base_url="http://testserver/v1", api_key=token, http_client=client, max_retries=0
    )


def _events(text: str) -> list[tuple[str, dict[str, Any]]]:
    """Each server-sent event of a body: its name and its data."""
    events = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((lines["event"], json.loads(lines["data"])))
    return events


@pytest.fixture(scope="module")
def scripted(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[TestClient, ScriptedEngine]]:
    engine = ScriptedEngine(ANSWER)
    settings = make_settings(tmp_path_factory.mktemp("responses"))
    with TestClient(build_app(settings, TOKEN, lambda: engine)) as client:
        client.headers["Authorization"] = f"Bearer {TOKEN}"
        yield client, engine


@pytest.mark.parametrize(
    "conversation",
    [
        {"input": "What is 2+2? Answer with a number."},
        {
            "instructions": "Answer briefly.",
            "input": [
                {"role": "user", "content": "What is 2+2?"},
                {
                    "type": "message",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": "4"}],
                },
                {"role": "user", "content": [{"type": "input_text", "text": "And 3+3?"}]},
            ],
        },
    ],
    ids=["text", "conversation"],
)
def test_the_same_answer_as_chat_byte_for_byte(
    app_client: TestClient, conversation: dict[str, Any]
) -> None:
    sdk = _sdk(app_client)
    messages: list[Any] = (
        [{"role": "user", "content": conversation["input"]}]
        if isinstance(conversation["input"], str)
        else [
            {"role": m["role"], "content": m["content"] if isinstance(m["content"], str)
             else "".join(p["text"] for p in m["content"])}
            for m in conversation["input"]
        ]
    )  # fmt: skip
    if "instructions" in conversation:
        messages.insert(0, {"role": "system", "content": conversation["instructions"]})
    chat = sdk.chat.completions.create(
        model=REAL_MODEL,
        messages=messages,
        max_tokens=40,
        temperature=0,
    )
    whole = sdk.responses.create(
        model=REAL_MODEL, max_output_tokens=40, temperature=0, **conversation
    )
    with sdk.responses.stream(
        model=REAL_MODEL, max_output_tokens=40, temperature=0, **conversation
    ) as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        streamed = stream.get_final_response()

    text = chat.choices[0].message.content
    assert chat.choices[0].finish_reason == "stop" and text
    assert whole.output_text == text and streamed.output_text == text
    assert "".join(deltas) == text
    for response in (whole, streamed):
        assert response.status == "completed" and response.incomplete_details is None
        (message,) = response.output
        assert isinstance(message, ResponseOutputMessage) and message.id.startswith("msg_")
        assert response.id.startswith("resp_")
        assert response.model == REAL_MODEL and response.object == "response"
        assert chat.usage is not None and response.usage is not None
        assert response.usage.input_tokens == chat.usage.prompt_tokens
        assert response.usage.output_tokens == chat.usage.completion_tokens
        assert response.usage.total_tokens == chat.usage.total_tokens
        assert response.instructions == conversation.get("instructions")
        # tether's own fields, where chat puts them: a trace to read, the seed, findings.
        extra = response.model_extra or {}
        assert extra["tether"]["seed"] == chat.model_extra["tether"]["seed"]  # type: ignore[index]
        assert extra["tether"]["trace_id"].startswith("chatcmpl-")
        assert extra["system_fingerprint"] == chat.system_fingerprint


def _engine_read(client: TestClient) -> int:
    """The prompt tokens the engine has read since it started."""
    return int(client.app.state.tether.pipeline.engine.stats().prompt_tokens)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "conversation",
    [
        {"input": "What is 2+2?"},
        {
            "instructions": "Answer briefly.",
            "input": [
                {"role": "developer", "content": "Use digits."},
                {"role": "user", "content": "Weather in Paris?"},
                {"type": "reasoning", "id": "rs_1", "summary": []},
                {"type": "function_call", "call_id": "c1", "name": "weather", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
                {"role": "user", "content": [{"type": "input_text", "text": "And Rome?"}]},
            ],
            "tools": [{"type": "function", "name": "weather", "parameters": {}}],
            "tool_choice": "auto",
        },
    ],
    ids=["text", "conversation"],
)
def test_the_sdk_counts_the_tokens_a_response_reads(
    app_client: TestClient, conversation: dict[str, Any]
) -> None:
    """``responses.input_tokens.count`` gives the ``usage.input_tokens`` of the same
    request, and the engine reads nothing for it."""
    sdk = _sdk(app_client)
    before = _engine_read(app_client)
    counted = sdk.responses.input_tokens.count(model=REAL_MODEL, **conversation)
    assert _engine_read(app_client) == before  # counted, not generated
    answered = sdk.responses.create(model=REAL_MODEL, max_output_tokens=1, **conversation)
    assert counted.object == "response.input_tokens"
    assert answered.usage is not None and counted.input_tokens == answered.usage.input_tokens
    assert counted.input_tokens > 10


def test_the_count_is_of_the_prompt_the_policy_leaves(app_client: TestClient) -> None:
    """A redacted secret is counted as the model reads it, and the count's audit record
    says what was found; a blocked one is refused, as the request would be."""
    sdk = _sdk(app_client)
    secret = "ghp_" + "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5"
    asked = f"Is TOKEN = '{secret}' safe to commit?"
    counted = app_client.post("/v1/responses/input_tokens", json={"input": asked})
    answered = sdk.responses.create(model=REAL_MODEL, input=asked, max_output_tokens=1)
    assert counted.status_code == 200, counted.text
    assert answered.usage is not None
    assert counted.json()["input_tokens"] == answered.usage.input_tokens
    record = record_of_request(app_client.app, counted)
    assert record["endpoint"] == "POST /v1/responses/input_tokens"
    assert [f["rule_id"] for f in record["policy"]] == ["github-pat"]
    assert secret not in json.dumps(record)
    leaked = "tth_" + "Zx9" * 14 + "q"
    blocked = [{"role": "user", "content": "hi"}, {"role": "user", "content": f"key {leaked}"}]
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.responses.input_tokens.count(model=REAL_MODEL, input=blocked)  # type: ignore[arg-type]
    assert refused.value.code == "policy_blocked"
    assert "in input[1]" in refused.value.message and leaked not in refused.value.message


def test_a_count_is_refused_where_the_request_would_be(app_client: TestClient) -> None:
    sdk = _sdk(app_client)
    with pytest.raises(openai.NotFoundError) as unknown:
        sdk.responses.input_tokens.count(model="gpt-4o", input="hi")
    assert unknown.value.code == "model_not_found"
    huge = "x = 1\n" * 200_000  # more than any context window holds: not tokenized
    said = []
    for path in ("/v1/responses/input_tokens", "/v1/responses"):
        refused = app_client.post(path, json={"input": huge})
        assert refused.status_code == 400, refused.text
        error = refused.json()["error"]
        assert error["code"] == "context_length_exceeded" and "characters" in error["message"]
        said.append(error["message"])
    # In the same words, OpenAI's for the window among them, which LiteLLM looks for: the
    # count said "a context window of 2048 tokens" where the request named the model's.
    assert said[0] == said[1], said
    assert "this model's maximum context length is 2048 tokens" in said[0]


@pytest.mark.parametrize(
    ("field", "value", "param", "says"),
    [
        ("input", None, "input", "send a string, or a list of messages"),
        ("input", [{"role": "user", "content": [{"type": "input_image", "image_url": "u"}]}],
         "input", "the model reads text only"),
        ("previous_response_id", "resp_1", "previous_response_id", "send the whole conversation"),
        ("tool_choice", "required", "tool_choice", "no function is offered to call"),
        ("truncation", "auto", "truncation", "does not drop earlier messages"),
    ],
)  # fmt: skip
def test_a_count_of_what_cannot_be_served_is_a_400_naming_its_field(
    scripted: tuple[TestClient, ScriptedEngine], field: str, value: Any, param: str, says: str
) -> None:
    client, _ = scripted
    response = client.post("/v1/responses/input_tokens", json={"input": "hi", field: value})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param, error
    assert says in error["message"], error["message"]


def test_a_prompt_over_the_window_is_counted_as_the_request_refuses_it(
    small_window_client: TestClient,
) -> None:
    """A client counts to learn whether its prompt fits: one over the window is counted,
    the count the request's refusal names, rather than refused without it."""
    client = small_window_client
    body = {"input": "word " * 600}
    counted = client.post("/v1/responses/input_tokens", json=body)
    assert counted.status_code == 200, counted.text
    tokens = counted.json()["input_tokens"]
    assert tokens > SMALL_WINDOW
    refused = client.post("/v1/responses", json=body)
    assert refused.status_code == 400, refused.text
    error = refused.json()["error"]
    assert error["code"] == "context_length_exceeded"
    assert f"the prompt is {tokens} tokens" in error["message"]


def test_a_count_spends_a_request_and_no_tokens(app_client: TestClient) -> None:
    """As /tokenize: against the token's rpm, as any request that reads a prompt; not its
    tpm or daily budget, which are of tokens generated from, and none are."""
    made = app_client.post(
        "/v1/tokens",
        json={"principal": "counter", "scopes": ["chat"], "rpm": 2, "daily_tokens": 1},
    ).json()
    sdk = _sdk(app_client, made["token"])
    for _ in range(2):  # each more tokens than the day's budget
        assert sdk.responses.input_tokens.count(model=REAL_MODEL, input="hi").input_tokens > 1
    with pytest.raises(openai.RateLimitError) as refused:
        sdk.responses.input_tokens.count(model=REAL_MODEL, input="hi")
    assert "2 requests a minute (rpm)" in refused.value.message
    listed = {t["id"]: t for t in app_client.get("/v1/tokens").json()["data"]}
    usage = listed[made["id"]]["usage"]
    assert usage["requests_last_minute"] == 2 and usage["tokens_today"] == 0, usage


def test_a_count_needs_the_chat_scope(scripted: tuple[TestClient, ScriptedEngine]) -> None:
    client, _ = scripted
    made = client.post("/v1/tokens", json={"principal": "ed", "scopes": ["completions"]}).json()
    with pytest.raises(openai.PermissionDeniedError) as refused:
        _sdk(client, made["token"]).responses.input_tokens.count(model="scripted", input="hi")
    assert refused.value.code == "insufficient_scope" and "'chat'" in refused.value.message
    with pytest.raises(openai.AuthenticationError):
        _sdk(client, "tth_wrong").responses.input_tokens.count(model="scripted", input="hi")


@pytest.mark.parametrize("method", ["GET", "DELETE", "OPTIONS"])
def test_the_count_s_path_names_no_stored_response(
    scripted: tuple[TestClient, ScriptedEngine], method: str
) -> None:
    """``input_tokens`` is not a response's id: another method than POST there is told
    to use POST, as the API's document lists it, not that no such response is kept."""
    client, _ = scripted
    response = client.request(method, "/v1/responses/input_tokens")
    assert response.status_code == 405, response.text
    assert response.headers["allow"] == "POST"
    assert "use POST" in response.json()["error"]["message"]


@pytest.mark.parametrize(("method", "tail"), [("GET", "/input_items"), ("POST", "/cancel")])
def test_below_the_count_s_path_the_routes_of_a_stored_response_answer(
    scripted: tuple[TestClient, ScriptedEngine], method: str, tail: str
) -> None:
    """The document has these routes for any id: ``input_tokens`` is one that no response
    has, as any other, not a path that no route serves."""
    client, _ = scripted
    response = client.request(method, f"/v1/responses/input_tokens{tail}")
    assert response.status_code == 404, response.text
    error = response.json()["error"]
    assert error["code"] == "not_found" and error["param"] == "response_id", error
    assert "no response 'input_tokens'" in error["message"]


def test_a_gateway_says_it_cannot_count(gateway: tuple[TestClient, StubUpstream]) -> None:
    """As its /tokenize does: the upstream's tokenizer is not at hand, and an estimate
    would be taken for the count."""
    client, stub = gateway
    sent = len(stub.requests)
    with pytest.raises(openai.BadRequestError) as refused:
        _sdk(client).responses.input_tokens.count(model=MODEL, input="hi")
    message = refused.value.message
    assert "the openai engine has no tokenizer of its own" in message
    assert "Ask the upstream's /v1/responses/input_tokens" in message
    assert len(stub.requests) == sent


def test_the_document_says_a_count_is_one_json_answer(app_client: TestClient) -> None:
    """What the SDKs read (their InputTokenCountResponse), and no event stream: a count
    never streams, so ``stream`` is none of its fields (sent, it is ignored)."""
    client = app_client
    document = client.get("/openapi.json").json()
    count = document["paths"]["/v1/responses/input_tokens"]["post"]
    answer = count["responses"]["200"]["content"]
    assert list(answer) == ["application/json"]
    schema = answer["application/json"]["schema"]
    if "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    assert schema["required"] == ["object", "input_tokens"]
    assert schema["properties"]["object"]["const"] == "response.input_tokens"
    assert schema["properties"]["input_tokens"]["type"] == "integer"
    body = count["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    fields = document["components"]["schemas"][body.rsplit("/", 1)[-1]]["properties"]
    assert "stream" not in fields
    # Checked as on /v1/responses, but the count has no answer to echo them in.
    for name in ("metadata", "user", "prompt_cache_key", "safety_identifier"):
        assert "Echoed" not in fields[name]["description"], name
    # A body sent to POST /v1/responses is counted as it is, stream or not.
    response = client.post("/v1/responses/input_tokens", json={"input": "hi", "stream": True})
    assert response.status_code == 200 and response.json()["object"] == "response.input_tokens"
    assert response.headers["content-type"] == "application/json"


def test_the_answer_echoes_the_request(scripted: tuple[TestClient, ScriptedEngine]) -> None:
    client, engine = scripted
    body = {
        "input": "hi",
        "instructions": "Be brief.",
        "metadata": {"ticket": "T-1"},
        "user": "dana",
        "temperature": 0.5,
        "top_p": 0.9,
        "max_output_tokens": 30,
        "seed": 7,
        "store": True,
        "text": {"format": {"type": "text"}},
        "tools": [],
        "tool_choice": "none",
        "an_extension_of_another_client": 1,  # ignored, as chat ignores one
    }
    response = client.post("/v1/responses", json=body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["output"] == [
        {
            "type": "message",
            "id": answer["output"][0]["id"],
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": ANSWER, "annotations": [], "logprobs": []}],
        }
    ]
    echoed = {k: answer[k] for k in ("instructions", "metadata", "user", "temperature", "top_p")}
    assert echoed == {k: body[k] for k in echoed}
    assert answer["max_output_tokens"] == 30 and answer["tool_choice"] == "none"
    assert answer["tools"] == [] and answer["error"] is None
    assert answer["usage"]["output_tokens_details"] == {"reasoning_tokens": 0}
    assert response.headers["x-request-id"] in answer["id"]
    asked = engine.requests[-1]
    assert (asked.params.seed, asked.params.temperature, asked.params.top_p) == (7, 0.5, 0.9)
    assert asked.params.max_tokens == 30


def test_the_sdk_reads_the_keys_it_sent_and_the_tier_that_served(
    scripted: tuple[TestClient, ScriptedEngine],
) -> None:
    """``prompt_cache_key`` and ``safety_identifier`` come back as sent, as OpenAI's do;
    ``service_tier`` is the tier that served the answer, whatever was asked."""
    client, _ = scripted
    sdk = _sdk(client)
    asked: dict[str, Any] = {
        "prompt_cache_key": "repo-42",
        "safety_identifier": "sha256:dana",
        "service_tier": "priority",
    }
    whole = sdk.responses.create(model="scripted", input="hi", **asked)
    with sdk.responses.stream(model="scripted", input="hi", **asked) as stream:
        started = [e.response for e in stream if e.type == "response.created"]
        streamed = stream.get_final_response()
    for response in (whole, streamed, *started):
        assert response.prompt_cache_key == "repo-42"
        assert response.safety_identifier == "sha256:dana"
        assert response.service_tier == "default"
    plain = sdk.responses.create(model="scripted", input="hi")
    assert (plain.prompt_cache_key, plain.safety_identifier) == (None, None)
    assert plain.service_tier == "default"


def test_a_developer_message_is_read_as_a_system_one(
    scripted: tuple[TestClient, ScriptedEngine],
) -> None:
    client, engine = scripted
    as_developer = [
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": "hi"},
    ]
    as_instructions = {"instructions": "Be brief.", "input": "hi"}
    assert client.post("/v1/responses", json={"input": as_developer}).status_code == 200
    assert client.post("/v1/responses", json=as_instructions).status_code == 200
    first, second = engine.requests[-2:]
    assert first.prompt == second.prompt and "Be brief." in str(first.prompt)


TOOLS: list[dict[str, Any]] = [
    {"type": "function", "name": "now", "description": "The time.", "strict": False,
     "parameters": {"type": "object", "properties": {}}},
    {"type": "web_search", "external_web_access": False},
    {"type": "file_search", "vector_store_ids": ["vs_1"]},
    {"type": "mcp", "server_label": "docs", "server_url": "https://mcp.example/sse"},
    {"type": "custom", "name": "apply_patch", "description": "Edit files.",
     "format": {"type": "grammar", "syntax": "lark", "definition": "start: /.+/"}},
    {"type": "namespace", "name": "agents", "description": "Sub-agents.",
     "tools": [{"type": "function", "name": "spawn", "parameters": {"type": "object"}}]},
]  # fmt: skip


ALLOWED_AUTO = {
    "type": "allowed_tools",
    "mode": "auto",
    "tools": [{"type": "function", "name": "now"}],
}


@pytest.mark.parametrize("tool_choice", [None, "auto", "none", ALLOWED_AUTO])
def test_tools_offered_for_the_model_to_choose_are_answered_in_the_text_it_wrote(
    scripted: tuple[TestClient, ScriptedEngine], tool_choice: str | dict[str, Any] | None
) -> None:
    """As on chat completions: tools are offered, and an answer in text is a message;
    built-in tools too, which no client needs called while the model may choose."""
    client, engine = scripted
    body: dict[str, Any] = {"input": "What time is it?", "tools": TOOLS}
    if tool_choice is not None:
        body["tool_choice"] = tool_choice
    response = client.post("/v1/responses", json=body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert [item["type"] for item in answer["output"]] == ["message"]
    assert answer["output"][0]["content"][0]["text"] == ANSWER
    assert answer["tools"] == TOOLS and answer["tool_choice"] == (tool_choice or "auto")
    # The functions are shown, with any choice but none; the other tools never are.
    prompt = str(engine.requests[-1].prompt)
    assert ("Function now:\nThe time." in prompt) is (tool_choice != "none")
    assert "Edit files." not in prompt


def test_the_sdk_offers_tools_and_reads_the_answer(
    scripted: tuple[TestClient, ScriptedEngine],
) -> None:
    client, _ = scripted
    response = _sdk(client).responses.create(
        model="scripted",
        input="What time is it?",
        tools=[
            {"type": "function", "name": "now", "parameters": {}, "strict": True},
            {"type": "web_search"},
        ],
        tool_choice="auto",
    )
    assert response.output_text == ANSWER
    assert [tool.type for tool in response.tools] == ["function", "web_search"]


def test_the_sdk_narrows_the_tools_and_lets_the_model_answer_in_text(
    scripted: tuple[TestClient, ScriptedEngine],
) -> None:
    """``allowed_tools`` in mode auto lets the model answer in text, as auto does; in mode
    required it must call one of them, which tools must offer."""
    client, _ = scripted
    sdk = _sdk(client)
    tools: list[Any] = [{"type": "function", "name": "now", "parameters": {}, "strict": True}]
    allowed: ToolChoiceAllowedParam = {
        "type": "allowed_tools",
        "mode": "auto",
        "tools": [{"type": "function", "name": "now"}],
    }
    response = sdk.responses.create(
        model="scripted", input="What time is it?", tools=tools, tool_choice=allowed
    )
    assert response.output_text == ANSWER
    assert isinstance(response.tool_choice, ToolChoiceAllowed)
    assert response.tool_choice.model_dump() == allowed
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.responses.create(
            model="scripted",
            input="What time is it?",
            tools=tools,
            tool_choice={**allowed, "mode": "required", "tools": [{"type": "web_search"}]},
        )
    assert refused.value.param == "tool_choice"
    message = refused.value.message
    assert "allowed_tools in mode required lists {" in message
    assert "list functions by name" in message


def test_a_history_of_tool_calls_is_read_as_chat_reads_it(
    scripted: tuple[TestClient, ScriptedEngine],
) -> None:
    """An earlier answer's calls are the assistant's turn (with the text it said first),
    written as the model writes calls, their outputs tool messages, and its
    reasoning, which no model of tether's wrote, is skipped."""
    client, engine = scripted
    call = {"type": "function", "function": {"name": "weather", "arguments": "{}"}}
    town = {"type": "function", "function": {"name": "town", "arguments": '{"near": "Paris"}'}}
    messages = [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": "Let me look.",
            "tool_calls": [{"id": "c1", **call}, {"id": "c2", **town}],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "c2", "content": [{"type": "text", "text": "21 C"}]},
        {"role": "assistant", "content": "Sunny, 21 C."},
        {"role": "user", "content": "And Rome?"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c3", **call}]},
        {"role": "tool", "tool_call_id": "c3", "content": "rain"},
    ]
    items = [
        {"role": "user", "content": "Weather in Paris?"},
        {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "gAAAA"},
        {"type": "message", "role": "assistant",
         "content": [{"type": "output_text", "text": "Let me look."}]},
        {"type": "function_call", "call_id": "c1", "name": "weather", "arguments": "{}"},
        {"type": "function_call", "call_id": "c2", "name": "town",
         "arguments": '{"near": "Paris"}'},
        {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
        {"type": "custom_tool_call_output", "call_id": "c2",
         "output": [{"type": "input_text", "text": "21 C"}]},
        {"type": "message", "role": "assistant", "content": "Sunny, 21 C."},
        {"role": "user", "content": "And Rome?"},
        {"type": "function_call", "call_id": "c3", "name": "weather", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c3", "output": "rain"},
    ]  # fmt: skip
    chat = client.post("/v1/chat/completions", json={"messages": messages})
    response = client.post("/v1/responses", json={"input": items})
    assert chat.status_code == 200 and response.status_code == 200, response.text
    as_chat, as_responses = engine.requests[-2:]
    assert as_responses.prompt == as_chat.prompt
    prompt = str(as_responses.prompt)
    calls = (
        '[{"name": "weather", "arguments": {}}, {"name": "town", "arguments": {"near": "Paris"}}]'
    )
    # Each result names the call it answers: its function's, found by the call's id.
    sunny = "tool\nResult of weather (call c1):\nsunny<|im_end|>"
    assert f"assistant\nLet me look.\n{calls}<|im_end|>\n<|im_start|>{sunny}" in prompt
    assert "tool\nResult of town (call c2):\n21 C<|im_end|>\n<|im_start|>assistant\nSunny" in prompt
    rome = (
        'And Rome?<|im_end|>\n<|im_start|>assistant\n{"name": "weather", "arguments": {}}<|im_end|>'
    )
    assert rome in prompt
    assert "tool\nResult of weather (call c3):\nrain<|im_end|>" in prompt
    assert "gAAAA" not in prompt


def test_a_custom_tools_earlier_call_is_written_with_its_input(
    scripted: tuple[TestClient, ScriptedEngine],
) -> None:
    client, engine = scripted
    items = [
        {"role": "user", "content": "Patch it."},
        {"type": "custom_tool_call", "call_id": "c1", "name": "apply_patch", "input": "*** x"},
        {"type": "custom_tool_call_output", "call_id": "c1", "output": "done"},
    ]
    assert client.post("/v1/responses", json={"input": items}).status_code == 200
    prompt = str(engine.requests[-1].prompt)
    assert 'assistant\n{"name": "apply_patch", "input": "*** x"}<|im_end|>' in prompt


def _codex_turn(*earlier: dict[str, Any], **settings: Any) -> dict[str, Any]:
    """A turn as Codex CLI 0.171 sends it to a provider of ``wire_api = "responses"``
    (recorded, its long texts and most of its tools cut short)."""
    text = [{"type": "input_text", "text": "<environment_context>\n  <cwd>/w</cwd>\n"}]
    return {
        "model": "scripted",
        "stream": True,
        "input": [
            {"type": "message", "id": "msg_ddb3", "role": "developer",
             "content": [{"type": "input_text", "text": "You are a coding agent running in "
                          "the Codex CLI, a terminal-based coding assistant."}]},
            {"type": "message", "id": "msg_01a2", "role": "developer",
             "content": [{"type": "input_text", "text": "<skills_instructions>\n"},
                         {"type": "input_text", "text": "<permissions instructions>\n"}]},
            {"type": "message", "id": "msg_01a3", "role": "user", "content": text},
            {"type": "message", "id": "msg_01a4", "role": "user",
             "content": [{"type": "input_text", "text": "Say hello in one word."}]},
            *earlier,
        ],
        "tools": [
            {"type": "function", "name": "exec_command", "strict": False,
             "description": "Runs a command in a PTY, returning output or a session ID.",
             "parameters": {"type": "object", "required": ["cmd"],
                            "properties": {"cmd": {"type": "string"}},
                            "additionalProperties": False}},
            {"type": "namespace", "name": "multi_agent_v1",
             "description": "Tools for spawning and managing sub-agents.",
             "tools": [{"type": "function", "name": "close_agent", "strict": False,
                        "parameters": {"type": "object", "properties": {}}}]},
            {"type": "web_search", "external_web_access": False},
        ],
        "tool_choice": "auto",
        "parallel_tool_calls": True,
        "reasoning": {"summary": "auto"},
        "store": False,
        "include": ["reasoning.encrypted_content"],
        "prompt_cache_key": "01a24f02-7201-7aa2-8abe-be0b26eac833",
        "client_metadata": {"session_id": "01a24f02-7201-7aa2-8abe-be0b26eac833"},
        **settings,
    }  # fmt: skip


ANSWERED = {
    "type": "message", "status": "completed", "id": "msg_fe82", "role": "assistant",
    "content": [{"type": "output_text", "text": "Hello!", "annotations": [], "logprobs": []}],
}  # fmt: skip


@pytest.mark.parametrize(
    "turn",
    [
        _codex_turn(),
        # model_reasoning_effort = "none"; a model of verbosity; a second turn
        _codex_turn(reasoning={"effort": "none"}),
        _codex_turn(text={"verbosity": "low"}),
        _codex_turn(ANSWERED, {"type": "message", "id": "msg_01a5", "role": "user",
                               "content": [{"type": "input_text", "text": "Now bye."}]}),
    ],
    ids=["first", "no-effort", "verbosity", "second"],
)  # fmt: skip
def test_codex_is_answered_in_text(
    scripted: tuple[TestClient, ScriptedEngine], turn: dict[str, Any]
) -> None:
    client, engine = scripted
    response = client.post("/v1/responses", json=turn)
    assert response.status_code == 200, response.text
    events = _events(response.text)
    name, last = events[-1]
    assert name == "response.completed", last
    (message,) = last["response"]["output"]
    assert message["content"][0]["text"] == ANSWER
    assert last["response"]["usage"]["output_tokens_details"] == {"reasoning_tokens": 0}
    prompt = str(engine.requests[-1].prompt)
    # Its functions are shown in front of its instructions; its other tools are not.
    system = prompt.split("<|im_end|>")[0]
    assert system.startswith("<|im_start|>system\nYou can call the function when")
    assert "Function exec_command:\nRuns a command in a PTY" in system
    assert "\n\nYou are a coding agent" in system and "web_search" not in system
    assert prompt.count("<|im_start|>user\n") == (3 if len(turn["input"]) > 4 else 2)


def test_an_answer_cut_at_its_limit_is_incomplete(tmp_path: Path) -> None:
    engine = ScriptedEngine(ANSWER, finish_reason="length")
    with TestClient(build_app(make_settings(tmp_path), TOKEN, lambda: engine)) as client:
        client.headers["Authorization"] = f"Bearer {TOKEN}"
        whole = client.post("/v1/responses", json={"input": "hi", "max_output_tokens": 4}).json()
        streamed = client.post(
            "/v1/responses", json={"input": "hi", "max_output_tokens": 4, "stream": True}
        )
    assert whole["status"] == "incomplete" and whole["output"][0]["status"] == "incomplete"
    assert whole["incomplete_details"] == {"reason": "max_output_tokens"}
    name, last = _events(streamed.text)[-1]
    assert name == "response.incomplete" and last["response"]["incomplete_details"] == {
        "reason": "max_output_tokens"
    }


def test_the_stream_names_and_numbers_its_events(
    scripted: tuple[TestClient, ScriptedEngine],
) -> None:
    client, _ = scripted
    streamed = client.post("/v1/responses", json={"input": "hi", "stream": True})
    assert streamed.status_code == 200
    assert streamed.headers["content-type"].startswith("text/event-stream")
    events = _events(streamed.text)
    names = [name for name, _ in events]
    deltas = names.count("response.output_text.delta")
    assert deltas > 1 and names == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * deltas,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert all(data["type"] == name for name, data in events)
    assert [data["sequence_number"] for _, data in events] == list(range(len(events)))
    assert "[DONE]" not in streamed.text  # the Responses API ends with its last event
    completed = events[-1][1]["response"]
    assert completed["status"] == "completed" and completed["usage"]["output_tokens"] > 0
    assert {data["response"]["id"] for name, data in events if "response" in data} == {
        completed["id"]
    }


@pytest.mark.parametrize(
    "asked",
    [
        {},
        {"tools": TOOLS[:1], "tool_choice": ALLOWED_AUTO, "prompt_cache_key": "k",
         "safety_identifier": "u", "service_tier": "flex"},
    ],
    ids=["plain", "echoed"],
)  # fmt: skip
def test_the_answer_and_its_events_are_the_sdk_s_types(
    scripted: tuple[TestClient, ScriptedEngine], asked: dict[str, Any]
) -> None:
    # Validated, not only constructed as the SDK does: a field its types require must be
    # there for a client that checks them, and what is echoed of the kind they say.
    client, _ = scripted
    answer = client.post("/v1/responses", json={"input": "hi", **asked}).json()
    Response.model_validate(answer)
    streamed = client.post("/v1/responses", json={"input": "hi", "stream": True, **asked})
    kinds = typing.get_args(typing.get_args(ResponseStreamEvent)[0])
    by_name = {typing.get_args(k.model_fields["type"].annotation)[0]: k for k in kinds}
    for name, data in _events(streamed.text):
        by_name[name].model_validate(data)


class FailsMidway(ScriptedEngine):
    """Sends some text, then fails, as a gateway's upstream that broke off."""

    async def generate(self, request: GenerationRequest) -> AsyncGenerator[GenerationChunk, None]:
        yield GenerationChunk(text="Hello ")
        yield GenerationChunk(text="there")
        raise EngineUnavailableError("the upstream broke off")


def test_an_engine_that_fails_midway_fails_the_response(tmp_path: Path) -> None:
    engine = FailsMidway(ANSWER)
    with TestClient(build_app(make_settings(tmp_path), TOKEN, lambda: engine)) as client:
        client.headers["Authorization"] = f"Bearer {TOKEN}"
        chat = client.post(
            "/v1/chat/completions",
            json={"messages": [{"role": "user", "content": "hi"}], "stream": True},
        )
        streamed = client.post("/v1/responses", json={"input": "hi", "stream": True})
        with (
            pytest.raises(RuntimeError, match=r"response\.completed"),
            _sdk(client).responses.stream(model="scripted", input="hi") as stream,
        ):
            failed = [e for e in stream if e.type == "response.failed"]
            stream.get_final_response()
    (chat_error,) = [json.loads(x[6:]) for x in chat.text.splitlines() if '"error"' in x]
    name, last = _events(streamed.text)[-1]
    assert name == "response.failed"
    response = last["response"]
    assert response["status"] == "failed" and response["usage"] is None
    # The error the chat stream sends, in this API's place for it: its code one this API
    # has (the SDKs' ResponseError.code), tether's own beside it.
    assert response["error"]["message"] == chat_error["error"]["message"]
    assert response["error"]["type"] == chat_error["error"]["type"] == "server_error"
    assert chat_error["error"]["code"] == "engine_unavailable"
    assert response["error"]["code"] == "server_error"
    assert response["error"]["tether"] == {"code": "engine_unavailable"}
    ResponseFailedEvent.model_validate(last)
    # What the client got before the failure, as the failed response's partial output.
    sent = "".join(d["delta"] for n, d in _events(streamed.text) if n.endswith("text.delta"))
    assert sent and "Hello there".startswith(sent)
    assert response["output"][0]["content"][0]["text"] == sent
    assert len(failed) == 1 and failed[0].response.error is not None
    assert failed[0].response.error.code == "server_error"
    assert (failed[0].response.error.model_extra or {})["tether"]["code"] == "engine_unavailable"


class TooLong(ScriptedEngine):
    """Refuses an answer longer than its context holds, as the embedded engine does."""

    async def generate(self, request: GenerationRequest) -> AsyncGenerator[GenerationChunk, None]:
        if request.params.max_tokens >= 2048:
            raise ContextLengthError(
                f"max_tokens is {request.params.max_tokens} and the context window 2048",
                param="max_tokens",
            )
        async for chunk in super().generate(request):
            yield chunk


@pytest.mark.parametrize("stream", [False, True])
def test_too_many_output_tokens_name_max_output_tokens(tmp_path: Path, stream: bool) -> None:
    # The client sent max_output_tokens; the engine's error names chat's max_tokens.
    engine = TooLong(ANSWER)
    with TestClient(build_app(make_settings(tmp_path), TOKEN, lambda: engine)) as client:
        client.headers["Authorization"] = f"Bearer {TOKEN}"
        refused = client.post(
            "/v1/responses",
            json={"input": "hi", "max_output_tokens": 100_000, "stream": stream},
        )
    error = refused.json()["error"]
    assert refused.status_code == 400 and error["code"] == "context_length_exceeded"
    assert error["param"] == "max_output_tokens"
    assert error["message"].startswith("max_output_tokens is 100000")


def test_a_blocked_prompt_is_refused_as_chat_refuses_it(
    scripted: tuple[TestClient, ScriptedEngine],
) -> None:
    client, engine = scripted
    leaked = "tth_" + "Zx9" * 14 + "q"
    before = len(engine.requests)
    chat = client.post(
        "/v1/chat/completions",
        json={"messages": [{"role": "user", "content": f"token = '{leaked}'"}]},
    )
    refused = client.post("/v1/responses", json={"input": f"token = '{leaked}'"})
    assert refused.status_code == chat.status_code == 400
    error, chat_error = refused.json()["error"], chat.json()["error"]
    assert error["code"] == chat_error["code"] == "policy_blocked"
    # The same refusal, naming the field this request sent rather than chat's.
    assert "in messages[0]" in chat_error["message"]
    assert error["message"] == chat_error["message"].replace("in messages[0]", "in input")
    assert leaked not in refused.text
    assert len(engine.requests) == before  # refused before the engine saw it
    record = next(
        r for r in reversed(audit_records(client.app))
        if r["request_id"].endswith(refused.headers["x-request-id"])
    )  # fmt: skip
    assert record["endpoint"] == "POST /v1/responses" and record["params"]["status"] == 400
    assert any(f["rule_id"] == "tether-token" for f in record["policy"])


def test_a_blocked_prompt_names_the_item_of_input_it_is_in(
    scripted: tuple[TestClient, ScriptedEngine],
) -> None:
    """The chat messages a policy finding names are counted otherwise than ``input``: the
    instructions come first, reasoning items are left out, an answer's calls are one turn."""
    client, _ = scripted
    leaked = "tth_" + "Zx9" * 14 + "q"
    items = [
        {"role": "user", "content": "list the files"},
        {"type": "reasoning", "id": "rs_1", "summary": []},
        {"type": "function_call", "call_id": "c1", "name": "ls", "arguments": "{}"},
        {"type": "function_call", "call_id": "c2", "name": "pwd", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "a.py"},
        {"role": "user", "content": f"token = '{leaked}'"},
    ]
    refused = client.post("/v1/responses", json={"instructions": "be brief", "input": items})
    message = refused.json()["error"]["message"]
    assert refused.status_code == 400 and "in input[5]" in message, message
    assert "messages[" not in message and leaked not in message
    in_instructions = client.post(
        "/v1/responses", json={"instructions": f"key {leaked}", "input": "hi"}
    )
    assert "in instructions" in in_instructions.json()["error"]["message"]


def test_a_blocked_answer_is_withheld_and_incomplete(tmp_path: Path) -> None:
    secret = "ghp_" + "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5"
    answer = f"Use TOKEN = '{secret}' in the header.\n"
    settings = make_settings(tmp_path, TETHER_COMPLIANCE_ACTIONS=json.dumps({"secrets": "block"}))
    with TestClient(build_app(settings, TOKEN, lambda: ScriptedEngine(answer))) as client:
        client.headers["Authorization"] = f"Bearer {TOKEN}"
        whole = client.post("/v1/responses", json={"input": "call the API"})
        streamed = client.post("/v1/responses", json={"input": "x", "stream": True})
    assert secret not in whole.text and secret[:12] not in streamed.text
    answered = whole.json()
    assert answered["status"] == "incomplete"
    assert answered["output"][0]["content"][0]["text"] == ""
    assert answered["incomplete_details"] == {"reason": "content_filter"}
    assert [f["rule_id"] for f in answered["tether"]["findings"]] == ["secrets/github-pat"]
    name, last = _events(streamed.text)[-1]
    assert name == "response.incomplete"
    assert last["response"]["incomplete_details"] == {"reason": "content_filter"}


def test_a_stream_ends_with_the_text_its_deltas_sent(tmp_path: Path) -> None:
    # A secret found after its line began to stream: the line's start is out already, and
    # the redaction follows it; the text the stream ends with must be what it sent.
    secret = "ghp_" + "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5"
    answer = f"First line.\nUse TOKEN = '{secret}' in the header.\nmore\n"
    with TestClient(
        build_app(make_settings(tmp_path), TOKEN, lambda: ScriptedEngine(answer))
    ) as client:
        client.headers["Authorization"] = f"Bearer {TOKEN}"
        streamed = client.post("/v1/responses", json={"input": "x", "stream": True})
        with _sdk(client).responses.stream(model="scripted", input="x") as stream:
            shown = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
            final = stream.get_final_response()
    events = dict(_events(streamed.text))
    sent = "".join(d["delta"] for n, d in _events(streamed.text) if n.endswith("text.delta"))
    assert secret not in streamed.text and "[REDACTED:secrets/github-pat]" in sent
    assert events["response.output_text.done"]["text"] == sent
    assert events["response.content_part.done"]["part"]["text"] == sent
    assert events["response.output_item.done"]["item"]["content"][0]["text"] == sent
    assert events["response.completed"]["response"]["output"][0]["content"][0]["text"] == sent
    assert final.output_text == shown


def test_the_response_id_finds_its_trace(scripted: tuple[TestClient, ScriptedEngine]) -> None:
    # The id a client has is the response's: ``tether explain resp_…`` must find it.
    client, _ = scripted
    answer = client.post("/v1/responses", json={"input": "hi"}).json()
    trace = client.get(f"/v1/traces/{answer['id']}")
    assert trace.status_code == 200 and trace.json()["id"] == answer["tether"]["trace_id"]


def test_a_response_is_audited_and_counted_as_usage(
    scripted: tuple[TestClient, ScriptedEngine],
) -> None:
    client, _ = scripted
    made = client.post("/v1/tokens", json={"principal": "erin", "scopes": ["chat"]}).json()
    erin = {"Authorization": f"Bearer {made['token']}"}
    answers = [
        client.post("/v1/responses", json={"input": "hi", "stream": stream}, headers=erin)
        for stream in (False, True)
    ]
    records = audit_records(client.app)
    for answer in answers:
        assert answer.status_code == 200
        (record,) = [r for r in records if r["request_id"].endswith(answer.headers["x-request-id"])]
        assert record["endpoint"] == "/v1/responses" and record["principal"] == "erin"
        assert record["params"]["finish_reason"] == "stop" and record["completion"]
    ledger = client.app.state.usage_ledger  # type: ignore[attr-defined]
    ledger.flush()
    with LedgerReader(ledger.ledger.path) as reader:
        (erins,) = [t for t in reader.totals(0, 4e9, "principal") if t.key == "erin"]
        by_endpoint = {t.key: t for t in reader.totals(0, 4e9, "endpoint")}
    usage = answers[0].json()["usage"]
    assert (erins.requests, erins.errors) == (2, 0)
    assert erins.prompt_tokens == 2 * usage["input_tokens"]
    assert erins.completion_tokens == 2 * usage["output_tokens"]
    assert by_endpoint["/v1/responses"].requests >= 2
    metrics = client.get("/metrics").text
    assert 'endpoint="/v1/responses"' in metrics


def test_the_chat_scope_is_needed(scripted: tuple[TestClient, ScriptedEngine]) -> None:
    client, _ = scripted
    made = client.post("/v1/tokens", json={"principal": "ed", "scopes": ["completions"]}).json()
    with pytest.raises(openai.PermissionDeniedError) as refused:
        _sdk(client, made["token"]).responses.create(model="scripted", input="hi")
    assert refused.value.code == "insufficient_scope" and "'chat'" in refused.value.message
    with pytest.raises(openai.AuthenticationError):
        _sdk(client, "tth_wrong").responses.create(model="scripted", input="hi")


@pytest.mark.parametrize(
    ("field", "value", "param", "says"),
    [
        ("input", None, "input", "send a string, or a list of messages"),
        ("input", [], "input", "at least 1 item"),
        ("input", 42, "input", "send a string, or a list of messages"),
        ("input", [{"role": "robot", "content": "x"}], "input.0.message.role", "'user'"),
        ("input", [{"role": "user"}], "input.0.message.content", "Field required"),
        ("input", [{"role": "user", "content": [{"type": "input_image", "image_url": "u"}]}],
         "input", "the model reads text only"),
        ("input", [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}],
         "input", "the model reads text only"),
        ("input", [{"type": "web_search_call", "id": "ws_1", "status": "completed"}],
         "input", "is a 'web_search_call' item: tether reads messages, function"),
        ("input", [{"type": "function_call_output", "call_id": "c",
                    "output": [{"type": "input_image", "image_url": "u"}]}],
         "input", "input[0].output[0] is input_image: the model reads text only"),
        ("input", [{"type": "function_call", "name": "f", "arguments": "{}"}],
         "input.0.function_call.call_id", "Field required"),
        ("input", [{"type": "item_reference", "id": "msg_1"}], "input",
         'send the whole conversation (earlier user and assistant messages too) in input; '
         'the AI SDK sends its earlier items whole, not as references, with "store": false'),
        ("instructions", ["a"], "instructions", "send the instructions as one string"),
        ("max_output_tokens", 0, "max_output_tokens", "at least 1"),
        ("max_output_tokens", "9", "max_output_tokens", "send a count of tokens"),
        ("temperature", 3, "temperature", "less than or equal to 2"),
        ("top_p", 0, "top_p", "greater than 0"),
        ("seed", -1, "seed", "send a whole number"),
        ("stream", "yes", "stream", "valid boolean"),
        ("metadata", {"k": 1}, "metadata.k", "valid string"),
        ("metadata", {str(i): "v" for i in range(17)}, "metadata", "at most 16"),
        ("safety_identifier", "u" * 129, "safety_identifier", "at most 128 characters"),
        ("tools", ["web_search"], "tools.0", "send a list of tools, each an object"),
        ("tool_choice", "required", "tool_choice", "no function is offered to call"),
        ("tool_choice", {"type": "function", "name": "f"}, "tool_choice",
         "names the function 'f', which tools does not offer"),
        ("tool_choice", {"type": "function"}, "tool_choice",
         "a tool_choice of type function needs the function's \"name\""),
        ("tool_choice", {"type": "web_search"}, "tool_choice", "tether calls functions only"),
        ("tool_choice", {**ALLOWED_AUTO, "mode": "required"}, "tool_choice",
         "tool_choice allows 'now', which tools does not offer as functions"),
        ("tool_choice", {"type": "allowed_tools", "mode": "auto"}, "tool_choice",
         "allowed_tools needs tools: a list of objects"),
        ("tool_choice", {"type": "allowed_tools", "tools": []}, "tool_choice",
         "allowed_tools needs a mode, auto or required"),
        ("tool_choice", {**ALLOWED_AUTO, "mode": 1}, "tool_choice",
         "allowed_tools needs a mode, auto or required, not 1"),
        ("tool_choice", {"mode": "auto", "tools": []}, "tool_choice",
         "a tool_choice object needs a type"),
        # The string's choice sent as an object names no tool to call.
        ("tool_choice", {"type": "auto"}, "tool_choice",
         "tool_choice auto is the string 'auto', not an object"),
        ("previous_response_id", "resp_1", "previous_response_id", "send the whole conversation"),
        ("conversation", "conv_1", "conversation", "send the whole conversation"),
        ("prompt", {"id": "pmpt_1"}, "prompt", "tether keeps no prompt templates"),
        ("reasoning", {"effort": "high"}, "reasoning.effort", "does not reason"),
        ("reasoning", {"effort": "low", "summary": "auto"}, "reasoning.effort",
         'in Codex, set model_reasoning_effort = "none"'),
        ("text", {"format": {"type": "json_schema", "schema": {}}}, "text.format.json_schema.name",
         '{"type": "json_object"}'),
        ("text", {"format": {"type": "xml"}}, "text.format", '"name": ..., "schema": {...}}'),
        ("include", ["reasoning.encrypted_content", "message.output_text.logprobs"], "include",
         "log probabilities are not returned: leave message.output_text.logprobs out"),
        ("background", True, "background", "send background false"),
        ("truncation", "auto", "truncation", "does not drop earlier messages"),
        ("top_logprobs", 5, "top_logprobs", "log probabilities are not returned"),
    ],
)  # fmt: skip
def test_what_cannot_be_served_is_a_400_naming_its_field(
    scripted: tuple[TestClient, ScriptedEngine], field: str, value: Any, param: str, says: str
) -> None:
    client, engine = scripted
    before = len(engine.requests)
    body = {"model": "scripted", "input": "hi", field: value}
    response = client.post("/v1/responses", json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param, error
    assert says in error["message"], error["message"]
    assert len(engine.requests) == before


def test_the_sdk_raises_a_bad_request_with_the_reason(
    scripted: tuple[TestClient, ScriptedEngine],
) -> None:
    client, _ = scripted
    with pytest.raises(openai.BadRequestError) as refused:
        _sdk(client).responses.create(
            model="scripted", input="hi", previous_response_id="resp_earlier"
        )
    assert refused.value.param == "previous_response_id"
    with pytest.raises(openai.NotFoundError) as unknown:
        _sdk(client).responses.create(model="gpt-4o", input="hi")
    assert unknown.value.code == "model_not_found"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/responses/resp_1"),
        ("DELETE", "/v1/responses/resp_1"),
        ("GET", "/v1/responses/resp_1/input_items"),
        ("POST", "/v1/responses/resp_1/cancel"),
    ],
)
def test_no_response_is_kept_to_fetch(
    scripted: tuple[TestClient, ScriptedEngine], method: str, path: str
) -> None:
    client, _ = scripted
    response = client.request(method, path)
    assert response.status_code == 404
    error = response.json()["error"]
    assert (
        error["code"] == "not_found" and "send the whole conversation in input" in error["message"]
    )


def test_the_sdk_hears_that_responses_are_not_kept(
    scripted: tuple[TestClient, ScriptedEngine],
) -> None:
    client, _ = scripted
    with pytest.raises(openai.NotFoundError, match="tether keeps no responses"):
        _sdk(client).responses.retrieve("resp_1")


def test_a_gateway_sends_a_response_on_as_a_chat_completion(
    gateway: tuple[TestClient, StubUpstream],
) -> None:
    client, stub = gateway
    client.headers["Authorization"] = f"Bearer {TOKEN}"
    sdk = _sdk(client)
    whole = sdk.responses.create(model=MODEL, instructions="Be brief.", input="hi")
    with sdk.responses.stream(model=MODEL, input="hi") as stream:
        streamed = stream.get_final_response()
    assert whole.output_text == streamed.output_text == "ok"
    asked, asked_streaming = stub.requests[-2:]
    assert asked["messages"][0] == {"role": "system", "content": "Be brief."}
    assert asked["messages"][-1]["role"] == "user" and "hi" in asked["messages"][-1]["content"]
    assert asked_streaming["stream"] is True
    assert whole.usage is not None and whole.usage.input_tokens == stub.prompt_tokens
    assert whole.usage.input_tokens_details.cached_tokens == 3


def _streamed_until_the_first_text(
    client: TestClient, act: Callable[[Connection], object]
) -> Connection:
    """A streamed answer of up to 50 tokens, and ``act`` done once its first text came."""
    connection = Connection({"input": "hi", "max_output_tokens": 50, "stream": True}, TOKEN)

    async def run() -> None:
        request = asyncio.create_task(connection.to(client.app, "/v1/responses"))
        while "response.output_text.delta" not in "".join(connection.texts()):
            assert not request.done(), connection.sent
            await asyncio.sleep(0.005)
        act(connection)
        await asyncio.wait_for(request, 5)

    assert client.portal is not None
    client.portal.call(run)
    return connection


def test_a_client_that_leaves_midstream_stops_the_engine(tmp_path: Path) -> None:
    engine = SlowToStart("word " * 40, delay_s=0.01)
    engine.start.set()
    with TestClient(build_app(make_settings(tmp_path), TOKEN, lambda: engine)) as client:
        connection = _streamed_until_the_first_text(client, lambda c: c.leave.set())
        assert engine.stopped_early == 1
        assert "response.completed" not in "".join(connection.texts())
        (record,) = [r for r in audit_records(client.app) if r["endpoint"] == "/v1/responses"]
        assert record["params"]["finish_reason"] == "cancelled"


def test_a_client_gone_before_the_first_token_is_answered_499(tmp_path: Path) -> None:
    engine = SlowToStart("word " * 40)
    with TestClient(build_app(make_settings(tmp_path), TOKEN, lambda: engine)) as client:
        connection = Connection({"input": "hi", "stream": True}, TOKEN)

        async def run() -> None:
            request = asyncio.create_task(connection.to(client.app, "/v1/responses"))
            while engine.waiting == 0 and not request.done():
                await asyncio.sleep(0.005)
            connection.leave.set()
            await asyncio.wait_for(request, 5)

        assert client.portal is not None
        client.portal.call(run)
    assert engine.closed_before_start == 1
    assert connection.sent[0]["status"] == 499


def test_a_stream_the_shutdown_ends_fails_in_sequence(tmp_path: Path) -> None:
    engine = SlowToStart("word " * 40, delay_s=0.01)
    engine.start.set()
    with TestClient(build_app(make_settings(tmp_path), TOKEN, lambda: engine)) as client:
        connection = _streamed_until_the_first_text(
            client,
            lambda _: client.app.state.drain.expire(),  # type: ignore[attr-defined]
        )
    events = _events("".join(connection.texts()))
    name, last = events[-1]
    assert name == "response.failed" and last["response"]["status"] == "failed"
    assert last["response"]["error"]["code"] == "server_error"
    assert last["response"]["error"]["tether"] == {"code": "server_shutting_down"}
    ResponseFailedEvent.model_validate(last)
    assert "send it again" in last["response"]["error"]["message"]
    # Made when the stream was cut: numbered after the events sent before it.
    assert [data["sequence_number"] for _, data in events] == list(range(len(events)))
    assert last["response"]["id"] == events[0][1]["response"]["id"]


@pytest.mark.parametrize(
    ("code", "type_", "failed"),
    [
        ("policy_blocked", "invalid_request_error", "invalid_prompt"),
        ("context_length_exceeded", "invalid_request_error", "invalid_prompt"),
        (None, "invalid_request_error", "invalid_prompt"),
        ("rate_limit_exceeded", "rate_limit_error", "rate_limit_exceeded"),
        ("queue_full", "rate_limit_error", "rate_limit_exceeded"),
        ("engine_unavailable", "server_error", "server_error"),
        ("upstream_timeout", "server_error", "server_error"),
        ("plugin_failed", "server_error", "server_error"),
        ("invalid_api_key", "invalid_request_error", "server_error"),  # a revoked token
        (None, "server_error", "server_error"),  # an internal error
    ],
)
def test_a_failed_response_s_code_is_one_the_sdk_knows(
    code: str | None, type_: str, failed: str
) -> None:
    error = {"code": code, "type": type_, "message": "m", "param": None}
    assert failed_code(error) == failed
    known = typing.get_args(ResponseError.model_fields["code"].annotation)
    assert failed in known


def test_an_earlier_answers_refusal_is_read_as_its_text(app_client: TestClient) -> None:
    """A conversation begun with another model may hold that model's refusal, a content
    part of its own type ({"type": "refusal", "refusal": ...}): it got a 400 on both APIs."""
    said = "I cannot help with that."

    def turn(part: dict[str, str]) -> list[dict[str, Any]]:
        return [
            {"role": "user", "content": "Delete every file."},
            {"type": "message", "role": "assistant", "content": [part]},
            {"role": "user", "content": "Then list them."},
        ]

    counts = [
        app_client.post("/v1/responses/input_tokens", json={"input": turn(part)}).json()
        for part in ({"type": "refusal", "refusal": said}, {"type": "output_text", "text": said})
    ]
    assert counts[0] == counts[1] and counts[0]["input_tokens"] > 10
    history: list[dict[str, Any]] = [
        {"role": "user", "content": "Delete every file."},
        {"role": "assistant", "content": [{"type": "refusal", "refusal": said}]},
        {"role": "user", "content": "Then list them."},
    ]
    chat = app_client.post("/v1/chat/completions", json={"messages": history, "max_tokens": 2})
    assert chat.status_code == 200, chat.text
    plain = [{**m, "content": said} if m["role"] == "assistant" else m for m in history]
    again = app_client.post("/v1/chat/completions", json={"messages": plain, "max_tokens": 2})
    assert chat.json()["usage"]["prompt_tokens"] == again.json()["usage"]["prompt_tokens"]
