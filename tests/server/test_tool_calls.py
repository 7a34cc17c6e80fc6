"""Tool calls a client requires (``tool_choice`` required, a function named, or
``allowed_tools`` in mode required): the model writes the call as JSON of one of the
functions, kept to its parameter schema by the grammar, and the answer is that call, on
chat completions and the Responses API, streamed or not, through the OpenAI SDK. Over the
real default model, and a gateway in front of an upstream that keeps to the schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import openai
import pytest
from fastapi.testclient import TestClient
from openai.types.responses import ResponseFailedEvent

from tests.conftest import TOKEN, make_settings
from tests.helpers import audit_records
from tests.server.test_responses import FailsMidway
from tests.stub_upstream import StubUpstream
from tether.engines.grammar import json_grammar
from tether.errors import RequestError
from tether.server.app import build_app
from tether.server.tool_calls import ToolOffer, in_tool_terms, tool_offer

WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city now.",
    "parameters": {
        "type": "object",
        "properties": {
            "city": {"type": "string", "maxLength": 30},
            "unit": {"enum": ["C", "F"]},
        },
        "required": ["city", "unit"],
        "additionalProperties": False,
    },
}
CLOCK = {
    "name": "get_time",
    "description": "The time in a timezone.",
    "parameters": {
        "type": "object",
        "properties": {"tz": {"type": "string", "maxLength": 30}},
        "required": ["tz"],
    },
}
TOOLS = [{"type": "function", "function": WEATHER}, {"type": "function", "function": CLOCK}]
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]
MODEL = "SmolLM2-135M-Instruct.Q4_1"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


def _sdk(client: TestClient) -> openai.OpenAI:
    return openai.OpenAI(
        base_url="http://testserver/v1", api_key=TOKEN, http_client=client, max_retries=0
    )


def _weather(arguments: str) -> None:
    """``arguments`` keep to WEATHER's parameters."""
    given = json.loads(arguments)
    assert set(given) == {"city", "unit"} and given["unit"] in ("C", "F")
    assert isinstance(given["city"], str) and len(given["city"]) <= 30


def test_a_tool_offer_is_answered_as_a_call_of_one_of_the_functions(
    app_client: TestClient,
) -> None:
    answer = _sdk(app_client).chat.completions.create(
        model=MODEL, messages=ASK, tools=TOOLS, tool_choice="required", max_tokens=80
    )  # type: ignore[call-overload]
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name in ("get_weather", "get_time")
    given = json.loads(call.function.arguments)
    assert set(given) == ({"city", "unit"} if call.function.name == "get_weather" else {"tz"})


def test_a_named_function_is_the_one_called_and_its_schema_kept_to(
    app_client: TestClient,
) -> None:
    """Named, the function is called whatever the model would choose; sampled, the
    arguments still keep to its schema, and the same seed gives the same call."""
    named = {"type": "function", "function": {"name": "get_weather"}}
    calls = []
    for _ in range(2):
        answer = _sdk(app_client).chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "What time is it in Tokyo?"}],
            tools=TOOLS,
            tool_choice=named,
            temperature=1.0,
            seed=11,
            max_tokens=80,
        )  # type: ignore[call-overload]
        (call,) = answer.choices[0].message.tool_calls
        assert call.function.name == "get_weather"
        _weather(call.function.arguments)
        calls.append(call.function.arguments)
    assert calls[0] == calls[1]


def test_a_streamed_call_comes_whole_and_the_sdk_reads_it(app_client: TestClient) -> None:
    stream = _sdk(app_client).chat.completions.create(
        model=MODEL,
        messages=ASK,
        tools=TOOLS[:1],
        tool_choice="required",
        max_tokens=80,
        stream=True,
    )  # type: ignore[call-overload]
    chunks = list(stream)
    assert not any(c.choices and c.choices[0].delta.content for c in chunks)
    (with_call,) = [c for c in chunks if c.choices and c.choices[0].delta.tool_calls]
    (call,) = with_call.choices[0].delta.tool_calls
    assert call.index == 0 and call.id and call.function.name == "get_weather"
    _weather(call.function.arguments)
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_the_responses_api_answers_a_function_call_item(app_client: TestClient) -> None:
    tools: list[Any] = [{"type": "function", **WEATHER}]
    sdk = _sdk(app_client)
    response = sdk.responses.create(
        model=MODEL, input="Weather in Rome?", tools=tools, tool_choice="required"
    )
    (item,) = response.output
    assert item.type == "function_call" and item.name == "get_weather"
    assert item.call_id.startswith("call_") and item.status == "completed"
    _weather(item.arguments)
    assert response.status == "completed" and response.tool_choice == "required"
    with sdk.responses.stream(
        model=MODEL,
        input="Weather in Rome?",
        tools=tools,
        tool_choice={"type": "function", "name": "get_weather"},
    ) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert kinds == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    (streamed,) = final.output
    assert streamed.type == "function_call" and streamed.name == "get_weather"
    _weather(streamed.arguments)


def test_a_call_cut_short_is_given_as_the_text_it_wrote(app_client: TestClient) -> None:
    answer = app_client.post(
        "/v1/chat/completions",
        json={"messages": ASK, "tools": TOOLS, "tool_choice": "required", "max_tokens": 4},
    ).json()
    choice = answer["choices"][0]
    assert choice["finish_reason"] == "length" and "tool_calls" not in choice["message"]
    assert choice["message"]["content"].startswith('{"name')


def test_the_model_is_shown_the_functions_and_the_record_keeps_the_call(
    app_client: TestClient,
) -> None:
    """The functions reach the prompt through the system message (the trace shows it),
    and the call's schema is recorded as the answer's format, so a replay regenerates
    the same call."""
    from tether.repro.manifest import from_trace

    answer = app_client.post(
        "/v1/chat/completions",
        json={"messages": ASK, "tools": TOOLS, "tool_choice": "required", "max_tokens": 80},
    ).json()
    app_client.app.state.trace_recorder.flush()  # type: ignore[attr-defined]
    app_client.app.state.audit.flush()  # type: ignore[attr-defined]
    trace = app_client.app.state.traces.get(answer["id"])  # type: ignore[attr-defined]
    assert "Function get_weather:\nThe weather in a city now." in trace.prompt
    schema = trace.sampling["response_format"]["json_schema"]["schema"]
    assert [c["properties"]["name"] for c in schema["anyOf"]] == [
        {"const": "get_weather"},
        {"const": "get_time"},
    ]
    (record,) = [r for r in audit_records(app_client.app) if r["request_id"] == answer["id"]]
    assert record["params"]["response_format"]["json_schema"]["name"] == "tool_call"
    replayed = from_trace(trace).request()
    assert replayed.params.response_format is not None
    assert json.loads(replayed.params.response_format)["json_schema"]["schema"] == schema


@pytest.mark.parametrize(
    ("body", "param", "says"),
    [
        ({"tool_choice": "required"}, "tool_choice", "no function is offered to call"),
        (
            {"tools": [{"type": "custom", "custom": {"name": "x"}}], "tool_choice": "required"},
            "tool_choice",
            "tether calls functions only",
        ),
        (
            {"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "nope"}}},
            "tool_choice",
            "name one of 'get_weather', 'get_time', or offer it in tools",
        ),
        (
            {"tools": [{"type": "function", "function": {"name": "bad name"}}],
             "tool_choice": "required"},
            "tools[0].function.name",
            "1 to 64 letters, digits, _ or -, not 'bad name'",
        ),
        (
            {"tools": [TOOLS[0], TOOLS[0]], "tool_choice": "required"},
            "tools[1].function.name",
            "two functions named 'get_weather'",
        ),
        (
            {"tools": [{"type": "function", "function": {"name": "f", "parameters": []}}],
             "tool_choice": "required"},
            "tools[0].function.parameters",
            "must be a JSON schema, an object",
        ),
        (
            {"tools": [{"type": "function", "function": {"name": "f", "parameters": {
                "type": "string"}}}], "tool_choice": "required"},
            "tools[0].function.parameters",
            'the JSON schema of an object (the arguments by name), not of type "string"',
        ),
        (
            {"tools": [{"type": "function", "function": {"name": "f", "parameters": {
                "type": "object", "properties": {"x": {"$ref": "#/$defs/Missing"}}}}}],
             "tool_choice": "required"},
            "tools",
            "the functions' parameter schemas (as one JSON schema) cannot be followed",
        ),
        (
            {"tools": TOOLS, "tool_choice": {"type": "allowed_tools", "allowed_tools": {
                "mode": "required", "tools": [{"type": "function", "function": "get_time"}]}}},
            "tool_choice",
            "list functions by name",
        ),
    ],
)  # fmt: skip
def test_a_call_that_cannot_be_made_is_refused_naming_what_to_change(
    app_client: TestClient, body: dict[str, Any], param: str, says: str
) -> None:
    response = app_client.post(
        "/v1/chat/completions", json={"messages": ASK, "max_tokens": 8, **body}
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param and says in error["message"], error


def test_a_function_in_the_other_apis_shape_is_refused_saying_where_its_name_goes(
    app_client: TestClient,
) -> None:
    chat_shaped = [{"type": "function", "function": WEATHER}]
    response = app_client.post(
        "/v1/responses", json={"input": "hi", "tools": chat_shaped, "tool_choice": "required"}
    )
    error = response.json()["error"]
    assert response.status_code == 400 and error["param"] == "tools[0].name"
    assert "beside its type, not in function" in error["message"], error
    responses_shaped = [{"type": "function", **WEATHER}]
    response = app_client.post(
        "/v1/chat/completions",
        json={"messages": ASK, "tools": responses_shaped, "tool_choice": "required"},
    )
    error = response.json()["error"]
    assert response.status_code == 400 and error["param"] == "tools[0].function"
    assert "not beside its type, as the Responses API has it" in error["message"], error


def test_the_responses_api_names_its_own_shapes_in_a_refusal(app_client: TestClient) -> None:
    tools = [{"type": "function", "name": "f", "parameters": {"$ref": "#/nowhere"}}]
    response = app_client.post(
        "/v1/responses", json={"input": "hi", "tools": tools, "tool_choice": "required"}
    )
    assert response.status_code == 400 and response.json()["error"]["param"] == "tools"
    bad = [{"type": "function", "name": "", "parameters": {}}]
    response = app_client.post(
        "/v1/responses", json={"input": "hi", "tools": bad, "tool_choice": "required"}
    )
    assert response.json()["error"]["param"] == "tools[0].name"


def test_pydantic_models_in_defs_are_followed_where_their_function_is_put() -> None:
    """Each function's ``$defs`` (pydantic's models) are put beside its parameters under
    names of its own, their ``$ref``s with them, so that two functions' models of one name
    stay apart."""
    item = {"type": "object", "properties": {"sku": {"type": "string"}}, "required": ["sku"]}
    order = {
        "type": "object",
        "properties": {"items": {"type": "array", "items": {"$ref": "#/$defs/Item"}}},
        "required": ["items"],
        "$defs": {"Item": item},
    }
    tools = [
        {"type": "function", "function": {"name": "order", "parameters": order}},
        {"type": "function", "function": {"name": "ping"}},
    ]
    call = tool_offer(tools, "required", nested=True)
    assert isinstance(call, ToolOffer)
    schema = json.loads(call.answer_format())["json_schema"]["schema"]
    moved = schema["$defs"]["fn0"]["properties"]["items"]["items"]
    assert moved == {"$ref": "#/$defs/fn0--Item"} and schema["$defs"]["fn0--Item"] == item
    assert "$defs" not in schema["$defs"]["fn0"]
    assert schema["$defs"]["fn1"] == {"type": "object", "properties": {}}
    assert call.read('{"name": "order", "arguments": {"items": []}}') != ()
    assert call.read('{"name": "other", "arguments": {}}') == ()
    assert call.read('{"name": "order", "arguments": [1]}') == ()
    # Not JSON a client reads back: arguments are sent as JSON text, and no parser but
    # Python's reads NaN or Infinity (a number too large for a float reads as one).
    for number in ("NaN", "Infinity", "-1e999"):
        assert call.read(f'{{"name": "order", "arguments": {{"items": [{number}]}}}}') == ()


def _item(field: str, kind: str) -> dict[str, Any]:
    return {"type": "object", "properties": {field: {"type": kind}}, "required": [field]}


def _with_item(item: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"item": {"$ref": "#/$defs/Item"}},
        "required": ["item"],
        "$defs": {"Item": item},
    }


def test_two_functions_models_of_one_name_are_each_kept_to() -> None:
    """llama.cpp's converter names a $ref's rule by its last step: under one name the
    second function's model was read as the first's, and its call kept to the wrong one."""
    tools = [
        {"type": "function", "function": {"name": "add", "parameters": _with_item(_item(
            "sku", "string"))}},
        {"type": "function", "function": {"name": "count", "parameters": _with_item(_item(
            "qty", "integer"))}},
    ]  # fmt: skip
    call = tool_offer(tools, "required", nested=True)
    assert isinstance(call, ToolOffer)
    grammar = json_grammar(call.answer_format())
    assert '"\\"sku\\""' in grammar and '"\\"qty\\""' in grammar, grammar


NODE = {
    "$defs": {
        "Node": {
            "type": "object",
            "properties": {
                "name": {"type": "string", "maxLength": 12},
                "next": {"anyOf": [{"$ref": "#/$defs/Node"}, {"type": "null"}]},
            },
            "required": ["name", "next"],
        }
    },
    "$ref": "#/$defs/Node",
}


@pytest.mark.parametrize(
    "parameters",
    [
        # pydantic's schema of a recursive model: its $defs beside its $ref
        NODE,
        # a schema that names itself
        {"type": "object", "properties": {"name": {"type": "string", "maxLength": 12},
         "next": {"anyOf": [{"$ref": "#"}, {"type": "null"}]}}, "required": ["name", "next"]},
        # a model's name escaped in its JSON pointer
        {"type": "object", "properties": {"name": {"$ref": "#/definitions/a~1b"}, "next": {
         "type": "null"}}, "required": ["name", "next"], "definitions": {"a/b": {
         "type": "string", "maxLength": 12}}},
    ],
)  # fmt: skip
def test_parameters_that_follow_their_own_refs_are_kept_to(
    app_client: TestClient, parameters: dict[str, Any]
) -> None:
    tools = [{"type": "function", "function": {"name": "chain", "parameters": parameters}}]
    response = app_client.post(
        "/v1/chat/completions",
        json={"messages": [{"role": "user", "content": "A chain of one node, a."}],
              "tools": tools, "tool_choice": "required", "max_tokens": 120},
    )  # fmt: skip
    assert response.status_code == 200, response.text
    choice = response.json()["choices"][0]
    if choice["finish_reason"] == "tool_calls":  # else cut short by max_tokens, as it may be
        given = json.loads(choice["message"]["tool_calls"][0]["function"]["arguments"])
        assert isinstance(given["name"], str) and "next" in given


def test_a_gateway_has_its_upstream_keep_to_the_call_and_answers_with_it(
    gateway: tuple[TestClient, StubUpstream],
) -> None:
    """Behind a gateway the call's schema goes upstream as a response_format, the
    functions in the system message, and the JSON the upstream answers is the call."""
    client, stub = gateway
    stub.answer = '{"name": "get_time", "arguments": {"tz": "Asia/Tokyo"}}'
    # smolagents sends its stop strings with every forced call: one met in an argument
    # would cut the call short, so they are not sent with the call's schema.
    answer = client.post(
        "/v1/chat/completions",
        json={"messages": ASK, "tools": TOOLS, "tool_choice": "required",
              "stop": ["Observation:", "Tokyo"]},
        headers=ADMIN,
    ).json()  # fmt: skip
    (call,) = answer["choices"][0]["message"]["tool_calls"]
    assert call["function"] == {"name": "get_time", "arguments": '{"tz": "Asia/Tokyo"}'}
    sent = stub.requests[-1]
    assert sent["response_format"]["json_schema"]["name"] == "tool_call"
    assert "tools" not in sent and "tool_choice" not in sent and "stop" not in sent
    assert sent["messages"][0]["role"] == "system"
    assert "Function get_time:" in sent["messages"][0]["content"]
    # An answer that is not a call of a function offered is given as its text.
    stub.answer = '{"name": "rm_rf", "arguments": {}}'
    answer = client.post(
        "/v1/chat/completions",
        json={"messages": ASK, "tools": TOOLS, "tool_choice": "required"},
        headers=ADMIN,
    ).json()
    assert answer["choices"][0]["message"]["content"] == stub.answer
    assert answer["choices"][0]["finish_reason"] == "stop"


def test_a_gateway_sends_nothing_of_the_format_a_chosen_call_keeps_to(
    gateway: tuple[TestClient, StubUpstream],
) -> None:
    """Where the model may choose, the upstream is shown the functions as text and sent
    no format: the lazy grammar that keeps a call begun is the embedded engine's."""
    client, stub = gateway
    stub.answer = '{"name": "get_time", "arguments": {"tz": "Asia/Tokyo"}}'
    answer = client.post(
        "/v1/chat/completions", json={"messages": ASK, "tools": TOOLS}, headers=ADMIN
    ).json()
    (call,) = answer["choices"][0]["message"]["tool_calls"]
    assert call["function"]["name"] == "get_time"
    sent = stub.requests[-1]
    assert "response_format" not in sent and "chosen_call_format" not in sent
    assert "Function get_time:" in sent["messages"][0]["content"]
    # Nor is it kept: a format no engine used would swell every trace and audit record.
    client.app.state.trace_recorder.flush()  # type: ignore[attr-defined]
    trace = client.get(f"/v1/traces/{answer['id']}", headers=ADMIN).json()
    assert trace["sampling"]["max_tokens"] and "chosen_call_format" not in trace["sampling"]


def test_a_secret_in_a_functions_description_is_governed_as_the_prompt_is(
    gateway: tuple[TestClient, StubUpstream],
) -> None:
    client, stub = gateway
    stub.answer = '{"name": "deploy", "arguments": {}}'
    secret = "AKIA" + "QZ7RVN2XWLKD5HJT"
    parameters = {
        "type": "object",
        "properties": {
            "description": {"type": "string", "description": f"as {secret}", "title": "D"},
            "env": {"enum": [{"description": "kept"}]},
        },
    }
    function = {"name": "deploy", "description": f"key {secret}", "parameters": parameters}
    answer = client.post(
        "/v1/chat/completions",
        json={"messages": ASK, "tools": [{"type": "function", "function": function}],
              "tool_choice": "required"},
        headers=ADMIN,
    ).json()  # fmt: skip
    assert answer["choices"][0]["finish_reason"] == "tool_calls"
    assert secret not in json.dumps(stub.requests[-1])
    findings = answer["tether"]["findings"]
    assert any(f["rule_id"] == "aws-access-key-id" and "tools" in f["message"] for f in findings)
    # The schema the answer keeps to says what values may be, not what they mean.
    schema = stub.requests[-1]["response_format"]["json_schema"]["schema"]
    assert schema["$defs"]["fn0"]["properties"] == {
        "description": {"type": "string"},
        "env": {"enum": [{"description": "kept"}]},
    }


def test_a_secret_the_answer_would_write_is_governed_in_its_schema(
    gateway: tuple[TestClient, StubUpstream],
) -> None:
    """A property's name or an enum's value is in the schema the answer keeps to, which
    goes to the engine, the trace and the audit record: governed as the prompt is, the
    model cannot be made to write it."""
    client, stub = gateway
    secret = "AKIA" + "QZ7RVN2XWLKD5HJT"
    stub.answer = '{"name": "deploy", "arguments": {"key": "[REDACTED:aws-access-key-id]"}}'
    parameters = {"type": "object", "properties": {"key": {"enum": [secret]}}}
    tools = [{"type": "function", "function": {"name": "deploy", "parameters": parameters}}]
    answer = client.post(
        "/v1/chat/completions",
        json={"messages": ASK, "tools": tools, "tool_choice": "required"},
        headers=ADMIN,
    ).json()
    assert secret not in json.dumps(stub.requests[-1])
    (call,) = answer["choices"][0]["message"]["tool_calls"]
    assert secret not in call["function"]["arguments"]
    findings = answer["tether"]["findings"]
    assert any("response_format" in f["message"] for f in findings), findings
    # A plain response_format likewise.
    stub.answer = "{}"
    schema = {"type": "object", "properties": {secret: {"type": "string"}}}
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    client.post(
        "/v1/chat/completions", json={"messages": ASK, "response_format": fmt}, headers=ADMIN
    )
    assert secret not in json.dumps(stub.requests[-1])


def test_an_upstream_that_cannot_keep_to_a_schema_is_refused_in_the_tools_terms(
    gateway: tuple[TestClient, StubUpstream],
) -> None:
    """llama-cpp-python's server fails a json_schema response_format (HTTP 500): a client
    that required a call sent no response_format, so the refusal names the tools and says
    what it can change, not to ask for another response_format."""
    client, stub = gateway
    stub.poison = '"json_schema"'
    stub.refusal = (
        "1 validation error:\n  {'type': 'literal_error', 'loc': ('body', 'response_format', "
        "'type'), 'msg': \"Input should be 'text' or 'json_object'\", 'input': 'json_schema'}"
    )
    function = {"type": "function", **WEATHER}
    for path, body in (
        ("/v1/chat/completions", {"messages": ASK, "tools": TOOLS}),
        ("/v1/responses", {"input": "Weather in Paris?", "tools": [function]}),
    ):
        refused = client.post(path, json={**body, "tool_choice": "required"}, headers=ADMIN)
        assert refused.status_code == 400
        error = refused.json()["error"]
        assert error["param"] == "tools"
        assert "response_format" not in error["message"].split("(HTTP 500")[0]
        assert "json_object" not in error["message"].split(")")[-1]
        assert "Input should be 'text' or 'json_object'" in error["message"]  # the upstream's
        assert "tool_choice auto" in error["message"]


def test_json_nested_deeper_than_python_reads_is_no_call_and_no_failure(
    gateway: tuple[TestClient, StubUpstream],
) -> None:
    """An upstream's answer, or a history's earlier call, nested deeper than Python's
    parser goes is text: the answer is given as it was written, the call as it was sent."""
    client, stub = gateway
    deep = "[" * 5000 + "]" * 5000
    stub.answer = '{"name": "get_time", "arguments": {"tz": ' + deep + "}}"
    response = client.post(
        "/v1/chat/completions",
        json={"messages": ASK, "tools": TOOLS, "tool_choice": "required"},
        headers=ADMIN,
    )
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == stub.answer
    earlier = {"id": "c1", "type": "function", "function": {"name": "get_time", "arguments": deep}}
    history = [
        *ASK,
        {"role": "assistant", "content": None, "tool_calls": [earlier]},
        {"role": "tool", "tool_call_id": "c1", "content": "noon"},
    ]
    stub.answer = '{"name": "get_time", "arguments": {"tz": "UTC"}}'
    response = client.post(
        "/v1/chat/completions",
        json={"messages": history, "tools": TOOLS, "tool_choice": "required"},
        headers=ADMIN,
    )
    assert response.status_code == 200, response.text
    assert deep in stub.requests[-1]["messages"][2]["content"]


def test_a_gateway_sends_tool_results_as_an_upstream_takes_them(
    gateway: tuple[TestClient, StubUpstream],
) -> None:
    """The upstream is shown the calls as text, as the model writes them, and sent no
    tools: a ``tool`` message, which an OpenAI-compatible upstream takes only after an
    assistant's ``tool_calls`` and with the ``tool_call_id`` it answers (OpenAI: 400,
    "messages with role 'tool' must be a response to a preceding message with
    'tool_calls'"), goes as the user's, naming the call it answers."""
    client, stub = gateway
    stub.answer = "Sunny, 21 C."
    weather = {"name": "get_weather", "arguments": '{"city": "Paris", "unit": "C"}'}
    clock = {"name": "get_time", "arguments": '{"tz": "Europe/Paris"}'}
    history = [
        *ASK,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_w", "type": "function", "function": weather},
                {"id": "call_t", "type": "function", "function": clock},
            ],
        },
        {"role": "tool", "tool_call_id": "call_w", "content": "sunny, 21 C"},
        {"role": "tool", "tool_call_id": "call_t", "content": "noon"},
    ]
    items = [
        *ASK,
        {"type": "function_call", "call_id": "call_w", **weather},
        {"type": "function_call", "call_id": "call_t", **clock},
        {"type": "function_call_output", "call_id": "call_w", "output": "sunny, 21 C"},
        {"type": "function_call_output", "call_id": "call_t", "output": "noon"},
    ]
    chat = client.post(
        "/v1/chat/completions", json={"messages": history, "tools": TOOLS}, headers=ADMIN
    )
    assert chat.status_code == 200, chat.text
    assert chat.json()["choices"][0]["message"]["content"] == "Sunny, 21 C."
    response = client.post(
        "/v1/responses",
        json={"input": items, "tools": [{"type": "function", **CLOCK}]},
        headers=ADMIN,
    )
    assert response.status_code == 200, response.text
    for sent in (stub.requests[-2]["messages"], stub.requests[-1]["messages"]):
        assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]
        assert sent[-1]["content"] == (
            "Result of get_weather (call call_w):\nsunny, 21 C\n\n"
            "Result of get_time (call call_t):\nnoon"
        )
    # The older API's function result names its function.
    old = [
        *ASK,
        {"role": "assistant", "content": None, "function_call": clock},
        {"role": "function", "name": "get_time", "content": "noon"},
    ]
    answer = client.post(
        "/v1/chat/completions", json={"messages": old, "functions": [CLOCK]}, headers=ADMIN
    )
    assert answer.status_code == 200, answer.text
    sent = stub.requests[-1]["messages"]
    assert sent[-1] == {"role": "user", "content": "Result of get_time:\nnoon"}


def test_a_gateway_merges_results_with_the_users_turns_beside_them(
    gateway: tuple[TestClient, StubUpstream],
) -> None:
    """Results sent as the user's message must not make two user turns in a row with the
    user's own: templates that alternate user and assistant turns (Mistral's, Gemma's, in
    vLLM or llama.cpp's server) refuse them. A result and the user's text beside it go as
    one turn, each kept, set apart by a rule; the user's own turns side by side are sent as
    the client sent them."""
    client, stub = gateway
    stub.answer = "Rain tomorrow."
    weather = {"name": "get_weather", "arguments": '{"city": "Paris", "unit": "C"}'}
    history = [
        *ASK,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "call_w", "type": "function", "function": weather}],
        },
        {"role": "tool", "tool_call_id": "call_w", "content": "sunny, 21 C"},
        {"role": "user", "content": "And tomorrow?"},
    ]
    items = [
        *ASK,
        {"type": "function_call", "call_id": "call_w", **weather},
        {"type": "function_call_output", "call_id": "call_w", "output": "sunny, 21 C"},
        {"role": "user", "content": "And tomorrow?"},
    ]
    chat = client.post(
        "/v1/chat/completions", json={"messages": history, "tools": TOOLS}, headers=ADMIN
    )
    assert chat.status_code == 200, chat.text
    response = client.post(
        "/v1/responses",
        json={"input": items, "tools": [{"type": "function", **WEATHER}]},
        headers=ADMIN,
    )
    assert response.status_code == 200, response.text
    for sent in (stub.requests[-2]["messages"], stub.requests[-1]["messages"]):
        assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]
        assert sent[-1]["content"] == (
            "Result of get_weather (call call_w):\nsunny, 21 C\n\n---\n\nAnd tomorrow?"
        )
    # A result with no call before it, after the user's turn: one turn, the user's first;
    # the user's own turns side by side are not the gateway's to join.
    lone = [
        {"role": "user", "content": "Hello."},
        {"role": "user", "content": "I ran it myself:"},
        {"role": "tool", "tool_call_id": "call_x", "content": "noon"},
    ]
    answer = client.post(
        "/v1/chat/completions", json={"messages": lone, "tools": TOOLS}, headers=ADMIN
    )
    assert answer.status_code == 200, answer.text
    sent = stub.requests[-1]["messages"]
    assert sent[1:] == [
        {"role": "user", "content": "Hello."},
        {"role": "user", "content": "I ran it myself:\n\n---\n\nResult of call call_x:\nnoon"},
    ]


def test_a_result_names_no_function_an_earlier_call_did_not_name(
    gateway: tuple[TestClient, StubUpstream],
) -> None:
    """An earlier call sent with no function name, or a name not a string, gives its
    result no function to name: it is headed by the call's id alone, not "None"."""
    client, stub = gateway
    for name in ({}, {"name": None}, {"name": 7}):
        history = [
            *ASK,
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "call_w", "type": "function", "function": {**name, "arguments": "{}"}}
                ],
            },
            {"role": "tool", "tool_call_id": "call_w", "content": "sunny"},
        ]
        answer = client.post(
            "/v1/chat/completions", json={"messages": history, "tools": TOOLS}, headers=ADMIN
        )
        assert answer.status_code == 200, answer.text
        sent = stub.requests[-1]["messages"]
        assert sent[-1] == {"role": "user", "content": "Result of call call_w:\nsunny"}, name


def _answered(call_id: Any, result_id: Any) -> list[dict[str, Any]]:
    """A history whose call of get_weather has the id ``call_id``, and whose result names
    ``result_id``."""
    call = {"name": "get_weather", "arguments": "{}"}
    return [
        *ASK,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": call_id, "type": "function", "function": call}],
        },
        {"role": "tool", "tool_call_id": result_id, "content": "sunny"},
    ]


@pytest.mark.parametrize(("call_id", "result_id"), [(1, "1"), (1, 1), ("1", 1), (0, "0"), (2, 2.0)])
def test_a_call_numbered_by_its_client_is_the_one_its_result_names(
    gateway: tuple[TestClient, StubUpstream], call_id: Any, result_id: Any
) -> None:
    """Some clients number their calls (``"id": 1``): a whole number is read as its
    digits, in the call and in its result alike, so the result names its function."""
    client, stub = gateway
    history = _answered(call_id, result_id)
    answer = client.post(
        "/v1/chat/completions", json={"messages": history, "tools": TOOLS}, headers=ADMIN
    )
    assert answer.status_code == 200, answer.text
    sent = stub.requests[-1]["messages"][-1]
    assert sent == {"role": "user", "content": f"Result of get_weather (call {call_id}):\nsunny"}


@pytest.mark.parametrize("bad", [True, 1.5, {"n": 1}, ["1"]])
def test_a_call_id_of_another_type_is_refused_saying_to_send_a_string(
    gateway: tuple[TestClient, StubUpstream], bad: Any
) -> None:
    """Neither a boolean, a fraction nor an object names a call: refused, as OpenAI
    refuses them, rather than a result that cannot say which call it answers."""
    client, stub = gateway
    asked = len(stub.requests)
    for history, param in (
        (_answered(bad, "1"), "messages[1].tool_calls[0].id"),
        (_answered("1", bad), "messages.2.tool.tool_call_id"),
    ):
        answer = client.post(
            "/v1/chat/completions", json={"messages": history, "tools": TOOLS}, headers=ADMIN
        )
        assert answer.status_code == 400, answer.text
        error = answer.json()["error"]
        assert error["type"] == "invalid_request_error" and error["param"] == param
        assert param in error["message"] and "must be a string, the id " in error["message"]
    # A call with no id, and a result naming none, are taken as before: nothing to match.
    history = _answered(None, None)
    answer = client.post("/v1/chat/completions", json={"messages": history}, headers=ADMIN)
    assert answer.status_code == 200, answer.text
    assert stub.requests[-1]["messages"][-1]["content"] == "sunny"
    assert len(stub.requests) == asked + 1


def test_a_prompt_too_long_for_the_window_says_the_functions_are_in_it(
    small_window_client: TestClient,
) -> None:
    many = [
        {"type": "function", "function": {"name": f"f{i}", "description": "Does a thing." * 4}}
        for i in range(40)
    ]
    response = small_window_client.post(
        "/v1/chat/completions",
        json={"messages": ASK, "tools": many, "tool_choice": "required", "max_tokens": 8},
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "context_length_exceeded"
    assert "the prompt holds the functions in tools" in error["message"], error


def test_a_schema_too_large_is_measured_as_sent_without_descriptions() -> None:
    wide = {"type": "object", "properties": {f"p{i}": {"enum": ["x" * 300]} for i in range(900)}}
    call = tool_offer(
        [{"type": "function", "function": {"name": "f", "parameters": wide}}], "required",
        nested=True,
    )  # fmt: skip
    assert isinstance(call, ToolOffer)
    with pytest.raises(RequestError) as refused:
        json_grammar(call.answer_format())
    in_tool_terms(refused.value, call)
    assert refused.value.param == "tools"
    assert "characters, over" in refused.value.message
    assert "descriptions" not in refused.value.message


def test_parameters_nested_too_deeply_are_refused_naming_them(app_client: TestClient) -> None:
    nested: dict[str, Any] = {"type": "string"}
    for _ in range(400):
        nested = {"type": "object", "properties": {"a": nested}, "required": ["a"]}
    tools = [{"type": "function", "function": {"name": "f", "parameters": nested}}]
    bodies: list[tuple[str, dict[str, Any]]] = [
        ("/v1/chat/completions", {"messages": ASK, "tools": tools}),
        ("/v1/responses", {"input": "hi", "tools": [{"type": "function", "name": "f",
                                                     "parameters": nested}]}),
    ]  # fmt: skip
    for path, body in bodies:
        response = app_client.post(path, json={**body, "tool_choice": "required"})
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert "nest too deeply" in error["message"] and error["param"].startswith("tools[0]")


def test_a_held_call_that_fails_midway_fails_with_nothing_sent(tmp_path: Path) -> None:
    """A failed response's output is what its stream sent: of a call held until it is
    whole, nothing, not the text the client never got."""
    tools = [{"type": "function", **WEATHER}]
    with TestClient(
        build_app(make_settings(tmp_path), TOKEN, lambda: FailsMidway("unused"))
    ) as client:
        client.headers["Authorization"] = f"Bearer {TOKEN}"
        streamed = client.post(
            "/v1/responses",
            json={"input": "hi", "tools": tools, "tool_choice": "required", "stream": True},
        )
    events = [
        json.loads(line[6:]) for line in streamed.text.splitlines() if line.startswith("data: ")
    ]
    assert [e["type"] for e in events] == [
        "response.created",
        "response.in_progress",
        "response.failed",
    ]
    assert events[-1]["response"]["output"] == []
    ResponseFailedEvent.model_validate(events[-1])
