"""Tool calls the model chooses to make (``tool_choice`` auto, or not sent, with functions
offered): it is shown the functions and told how to write a call, and an answer that is a
whole call of one is given as that call, on chat completions and the Responses API,
streamed or not; any other answer is text, streamed as it comes once it cannot be a call.
The model's words cannot be chosen, so the answers come from a scripted engine and a
gateway's stub upstream."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import openai
import pydantic
import pytest
from fastapi.testclient import TestClient
from openai.types.chat import ChatCompletionChunk

from tests.conftest import TOKEN, make_settings
from tests.helpers import ScriptedEngine
from tests.stub_upstream import StubUpstream
from tether.server.app import build_app
from tether.server.tool_calls import ToolOffer, may_be_call, pieces_may_be_call, tool_offer

WEATHER: dict[str, Any] = {
    "name": "get_weather",
    "description": "The weather in a city now.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
TOOLS: list[Any] = [{"type": "function", "function": WEATHER}]
RESPONSES_TOOLS: list[Any] = [{"type": "function", **WEATHER}, {"type": "web_search"}]
ASK: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]
CALL = '{"name": "get_weather", "arguments": {"city": "Paris"}}'
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def scripted(tmp_path: Path) -> Iterator[tuple[TestClient, ScriptedEngine]]:
    engine = ScriptedEngine(CALL)
    with TestClient(build_app(make_settings(tmp_path), TOKEN, lambda: engine)) as client:
        client.headers["Authorization"] = f"Bearer {TOKEN}"
        yield client, engine


def _sdk(client: TestClient) -> openai.OpenAI:
    return openai.OpenAI(
        base_url="http://testserver/v1", api_key=TOKEN, http_client=client, max_retries=0
    )


def _streamed(client: TestClient) -> list[ChatCompletionChunk]:
    sdk = _sdk(client)
    return list(
        sdk.chat.completions.create(model="scripted", messages=ASK, tools=TOOLS, stream=True)
    )


def _system(engine: ScriptedEngine) -> str:
    return str(engine.requests[-1].prompt).split("<|im_end|>")[0]


@pytest.mark.parametrize(
    ("start", "may"),
    [
        ("", True), ("  \n", True), ('{"na', True), (" {", True), ("`", True), ("``", True),
        ("```", True), ("```json", True), ("```json\n", True), ("```json\n  {", True),
        ("```python\n", True), ("Hello", False), ("I will call", False), ("``x", False),
        ("```json\nThe", False), ("```py thon\n", False), ("[", False),
        ("~~~", True), ("````json\n{", True), ("``` json \n{", True), ("~~x", False),
    ],
)  # fmt: skip
def test_a_streams_start_is_held_only_while_it_may_be_a_call(start: str, may: bool) -> None:
    assert may_be_call(start) is may
    # As a stream's pieces, read to the one with the first "{", the rest undecided by it.
    assert pieces_may_be_call(list(start)) is may
    assert pieces_may_be_call([*start, " after", "}\n{", "x"]) is (may and "{" in start)


def test_a_call_alone_or_alone_in_a_code_block_is_read_and_no_other() -> None:
    offer = tool_offer(TOOLS, "auto", nested=True)
    assert isinstance(offer, ToolOffer) and not offer.required
    for written in (
        CALL,
        f"\n{CALL}\n",
        f"```json\n{CALL}\n```",
        f"```\n{CALL}```\n",
        f"~~~json\n{CALL}\n~~~",
        f"````` json\n{CALL}\n`````",
        '{"name": "get_weather", "arguments": "{\\"city\\": \\"Paris\\"}"}',  # OpenAI's
        '{"name": "get_weather", "parameters": {"city": "Paris"}}',  # Llama 3's
    ):
        (call,) = offer.read(written)
        assert call.name == "get_weather", written
        assert json.loads(call.arguments) == {"city": "Paris"}
    for text in (
        f"Sure: {CALL}",
        f"```json\n{CALL}\n```\nThat is the call.",
        f"```json\n{CALL}\n~~~",
        '{"name": "get_time", "arguments": {}}',  # not offered
        '{"name": "get_weather", "arguments": "Paris"}',
        '{"name": "get_weather", "arguments": "[\\"Paris\\"]"}',
        '{"name": "get_weather"}',
        '{"city": "Paris"}',
    ):
        assert offer.read(text) == (), text


def test_a_code_blocks_closing_fence_may_be_longer_than_its_opening() -> None:
    """CommonMark closes a code block with a fence of its character at least as long as
    the one that opened it."""
    offer = tool_offer(TOOLS, "auto", nested=True)
    assert offer is not None
    for written in (f"```json\n{CALL}\n````", f"~~~\n{CALL}\n~~~~~\n", f"````\n{CALL}\n`````"):
        (call,) = offer.read(written)
        assert call.name == "get_weather", written
    for text in (f"````json\n{CALL}\n```", f"```json\n{CALL}\n```~", f"~~~\n{CALL}\n~~~`"):
        assert offer.read(text) == (), text


def test_none_offers_nothing_and_no_functions_offer_nothing() -> None:
    assert tool_offer(TOOLS, "none", nested=True) is None
    assert tool_offer([{"type": "web_search"}], None, nested=False) is None
    assert tool_offer(None, "auto", nested=True) is None
    allowed = {"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": TOOLS}}
    offer = tool_offer(TOOLS, allowed, nested=True)
    assert offer is not None and not offer.required


@pytest.mark.parametrize("choice", ["auto", None])
def test_a_call_the_model_chooses_is_answered_as_a_call(
    scripted: tuple[TestClient, ScriptedEngine], choice: str | None
) -> None:
    client, engine = scripted
    body: dict[str, Any] = {"messages": ASK, "tools": TOOLS}
    if choice is not None:
        body["tool_choice"] = choice
    answer = client.post("/v1/chat/completions", json=body).json()
    (choice_made,) = answer["choices"]
    assert choice_made["finish_reason"] == "tool_calls"
    assert choice_made["message"]["content"] is None
    (call,) = choice_made["message"]["tool_calls"]
    assert call["function"] == {"name": "get_weather", "arguments": '{"city": "Paris"}'}
    system = _system(engine)
    assert "You can call the function when the user asks for what it does" in system
    assert "Function get_weather:\nThe weather in a city now." in system
    # Nothing keeps the answer to a schema: the model may answer in text.
    assert engine.requests[-1].params.response_format is None


def test_with_none_the_model_is_not_shown_the_functions(
    scripted: tuple[TestClient, ScriptedEngine],
) -> None:
    client, engine = scripted
    answer = client.post(
        "/v1/chat/completions", json={"messages": ASK, "tools": TOOLS, "tool_choice": "none"}
    ).json()
    assert answer["choices"][0]["message"]["content"] == CALL
    assert answer["choices"][0]["finish_reason"] == "stop"
    assert "get_weather" not in str(engine.requests[-1].prompt)


def test_a_streamed_call_comes_whole_and_the_sdk_reads_it(
    scripted: tuple[TestClient, ScriptedEngine],
) -> None:
    client, engine = scripted
    engine.answer = f"```json\n{CALL}\n```"
    chunks = _streamed(client)
    assert not any(c.choices and c.choices[0].delta.content for c in chunks)
    _is_the_weather_call(chunks)


def _is_the_weather_call(chunks: list[ChatCompletionChunk]) -> None:
    """The stream's one call, of get_weather for Paris, ended as calls end."""
    (delta,) = [c.choices[0].delta for c in chunks if c.choices and c.choices[0].delta.tool_calls]
    assert delta.tool_calls is not None
    (call,) = delta.tool_calls
    assert call.function is not None and call.function.name == "get_weather"
    assert json.loads(call.function.arguments or "") == {"city": "Paris"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_a_streamed_calls_content_is_null_as_openais_and_texts_is_empty(
    scripted: tuple[TestClient, ScriptedEngine],
) -> None:
    """OpenAI's stream of a call opens with ``content`` null, so the SDK's stream helper
    gives a message whose content is None, as the answer not streamed has it; a text
    answer's opens with ``content`` "", as OpenAI's does."""
    client, engine = scripted
    sdk = _sdk(client)
    choices: list[Any] = ["auto", {"type": "function", "function": {"name": "get_weather"}}]
    for choice in choices:
        with sdk.chat.completions.stream(
            model="scripted", messages=ASK, tools=TOOLS, tool_choice=choice
        ) as stream:
            final = stream.get_final_completion()
        message = final.choices[0].message
        assert message.content is None, choice
        assert message.tool_calls is not None and len(message.tool_calls) == 1
    for choice in choices:
        chunks = list(
            sdk.chat.completions.create(
                model="scripted", messages=ASK, tools=TOOLS, tool_choice=choice, stream=True
            )
        )
        opened = [c.choices[0].delta for c in chunks if c.choices and c.choices[0].delta.role]
        assert [(d.role, d.content) for d in opened] == [("assistant", None)], choice
        raw = client.post(
            "/v1/chat/completions",
            json={"messages": ASK, "tools": TOOLS, "tool_choice": choice, "stream": True},
        )
        first = json.loads(raw.text.split("\n\n")[0].removeprefix("data: "))
        assert first["choices"][0]["delta"]["content"] is None
    engine.answer = '{"name": "get_weather", "arguments": {"city": "Paris"}}'
    functions: list[Any] = [WEATHER]
    chunks = list(
        sdk.chat.completions.create(
            model="scripted", messages=ASK, functions=functions, stream=True
        )
    )
    opened = [c.choices[0].delta for c in chunks if c.choices and c.choices[0].delta.role]
    assert [(d.role, d.content) for d in opened] == [("assistant", None)]
    # Text, with functions offered or not: content "" first, then the text.
    engine.answer = "Paris is sunny."
    for tools in (TOOLS, None):
        body: dict[str, Any] = {"messages": ASK, "stream": True}
        if tools is not None:
            body["tools"] = tools
        raw = client.post("/v1/chat/completions", json=body)
        first = json.loads(raw.text.split("\n\n")[0].removeprefix("data: "))
        assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}


@pytest.mark.parametrize(
    "answer",
    [
        "Paris is sunny today, I think, and warm.",  # text from its first piece
        "```python\nprint('sunny')\nprint('warm')\n```",  # a code block, once it is not JSON
    ],
)
def test_text_streams_as_it_comes_once_it_cannot_be_a_call(
    scripted: tuple[TestClient, ScriptedEngine], answer: str
) -> None:
    """The text is held only while it may be a call, and sent whole, as written."""
    client, engine = scripted
    engine.answer = answer
    chunks = _streamed(client)
    sent = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert "".join(sent) == answer and len(sent) > 2
    assert chunks[-1].choices[0].finish_reason == "stop"
    # JSON that is no call is held to its end, and sent as its text.
    engine.answer = '{"weather": "sunny", "city": "Paris"}'
    chunks = _streamed(client)
    sent = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert sent == [engine.answer]


def test_a_call_cut_short_is_given_as_the_text_it_wrote(tmp_path: Path) -> None:
    engine = ScriptedEngine(CALL[:30], finish_reason="length")
    with TestClient(build_app(make_settings(tmp_path), TOKEN, lambda: engine)) as client:
        client.headers["Authorization"] = f"Bearer {TOKEN}"
        answer = client.post("/v1/chat/completions", json={"messages": ASK, "tools": TOOLS})
    (choice,) = answer.json()["choices"]
    assert choice["message"]["content"] == CALL[:30] and choice["finish_reason"] == "length"


def test_the_responses_api_answers_a_call_or_text_as_the_model_chose(
    scripted: tuple[TestClient, ScriptedEngine],
) -> None:
    client, engine = scripted
    sdk = _sdk(client)
    response = sdk.responses.create(model="scripted", input="Weather?", tools=RESPONSES_TOOLS)
    (item,) = response.output
    assert item.type == "function_call" and item.name == "get_weather"
    assert json.loads(item.arguments) == {"city": "Paris"}
    with sdk.responses.stream(model="scripted", input="Weather?", tools=RESPONSES_TOOLS) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert "response.function_call_arguments.done" in kinds
    assert "response.output_text.delta" not in kinds
    assert final.output[0].type == "function_call"
    engine.answer = "It is sunny in Paris."
    with sdk.responses.stream(model="scripted", input="Weather?", tools=RESPONSES_TOOLS) as stream:
        deltas = [event.delta for event in stream if event.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert len(deltas) > 2 and "".join(deltas) == engine.answer
    assert final.output_text == engine.answer


def test_a_responses_stream_of_json_that_is_no_call_is_its_text(
    scripted: tuple[TestClient, ScriptedEngine],
) -> None:
    client, engine = scripted
    engine.answer = '{"name": "rm_rf", "arguments": {}}'
    with _sdk(client).responses.stream(
        model="scripted",
        input="Weather?",
        tools=RESPONSES_TOOLS,
    ) as stream:
        deltas = [event.delta for event in stream if event.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert deltas == [engine.answer] and final.output_text == engine.answer


def test_a_gateway_sends_the_functions_upstream_and_reads_the_call_back(
    gateway: tuple[TestClient, StubUpstream],
) -> None:
    client, stub = gateway
    stub.answer = CALL
    answer = client.post(
        "/v1/chat/completions",
        json={"messages": ASK, "tools": TOOLS, "tool_choice": "auto", "stop": ["\n\n"]},
        headers=ADMIN,
    ).json()
    (call,) = answer["choices"][0]["message"]["tool_calls"]
    assert call["function"]["name"] == "get_weather"
    sent = stub.requests[-1]
    assert "response_format" not in sent and "tools" not in sent
    assert sent["stop"] == ["\n\n"]  # an answer in text keeps its stop strings
    assert "Function get_weather:" in sent["messages"][0]["content"]


def test_a_malformed_function_is_refused_though_the_model_may_choose(
    scripted: tuple[TestClient, ScriptedEngine],
) -> None:
    """Offered for the model to read, a function is checked as a required one is."""
    client, _ = scripted
    bad = [{"type": "function", "function": {"name": "get weather"}}]
    refused = client.post("/v1/chat/completions", json={"messages": ASK, "tools": bad})
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error["param"] == "tools[0].function.name"
    assert "1 to 64 letters, digits, _ or -" in error["message"]


def test_allowed_tools_in_mode_auto_may_list_built_in_tools(
    scripted: tuple[TestClient, ScriptedEngine],
) -> None:
    """A built-in tool the model may choose is taken, as one offered in tools is, and not
    shown: the functions listed beside it are."""
    client, engine = scripted
    both = [{"type": "function", "name": "get_weather"}, {"type": "web_search"}]
    for listed, shown in ((both, True), ([{"type": "web_search"}], False)):
        choice = {"type": "allowed_tools", "mode": "auto", "tools": listed}
        answer = client.post(
            "/v1/responses",
            json={"input": "Weather?", "tools": RESPONSES_TOOLS, "tool_choice": choice},
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["output"][0]["type"] == ("function_call" if shown else "message")
        assert ("Function get_weather:" in _system(engine)) is shown
    custom = {"type": "custom", "custom": {"name": "patch"}}
    chat_choice = {
        "type": "allowed_tools",
        "allowed_tools": {"mode": "auto", "tools": [*TOOLS, custom]},
    }
    answer = client.post(
        "/v1/chat/completions",
        json={"messages": ASK, "tools": [*TOOLS, custom], "tool_choice": chat_choice},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["finish_reason"] == "tool_calls"


def test_the_older_apis_functions_are_offered_and_answered_with_a_function_call(
    scripted: tuple[TestClient, ScriptedEngine],
) -> None:
    """OpenAI's older ``functions`` and ``function_call``, which LangChain's and AutoGen's
    older releases send: the model chooses, or must call the function named, and the call
    is the message's ``function_call`` (``finish_reason`` function_call)."""
    client, engine = scripted
    for choice in ("auto", {"name": "get_weather"}):
        answer = client.post(
            "/v1/chat/completions",
            json={"messages": ASK, "functions": [WEATHER], "function_call": choice},
        ).json()
        (made,) = answer["choices"]
        assert made["finish_reason"] == "function_call", choice
        assert made["message"]["function_call"] == {
            "name": "get_weather",
            "arguments": '{"city": "Paris"}',
        }
        assert "tool_calls" not in made["message"] and made["message"]["content"] is None
        assert "Function get_weather:" in _system(engine)
    # A function named must be called: the answer keeps to its schema.
    assert engine.requests[-1].params.response_format is not None
    functions: list[Any] = [WEATHER]
    sdk = _sdk(client)
    streamed = list(
        sdk.chat.completions.create(
            model="scripted", messages=ASK, functions=functions, stream=True
        )
    )
    (delta,) = [
        c.choices[0].delta for c in streamed if c.choices and c.choices[0].delta.function_call
    ]
    assert delta.function_call is not None and delta.function_call.name == "get_weather"
    assert streamed[-1].choices[0].finish_reason == "function_call"
    # none: not shown, and the answer is text.
    answer = client.post(
        "/v1/chat/completions",
        json={"messages": ASK, "functions": [WEATHER], "function_call": "none"},
    ).json()
    assert answer["choices"][0]["message"]["content"] == CALL
    assert "get_weather" not in str(engine.requests[-1].prompt)


@pytest.mark.parametrize(
    ("body", "param", "says"),
    [
        ({"functions": [WEATHER], "function_call": {"name": "get_time"}}, "function_call",
         "function_call names the function 'get_time', which functions does not offer: "
         "name one of 'get_weather', or offer it in functions"),
        ({"function_call": {"name": "get_weather"}}, "function_call",
         "function_call names the function 'get_weather', which functions does not offer: "
         "offer it in functions; functions offers no function"),
        ({"functions": [], "function_call": {"name": "get_weather"}}, "function_call",
         "offer it in functions; functions offers no function"),
        ({"functions": [{"name": "get weather"}]}, "functions[0].name",
         "functions[0].name must be 1 to 64 letters"),
        ({"functions": [WEATHER, WEATHER]}, "functions[1].name",
         "functions offers two functions named 'get_weather'"),
    ],
)  # fmt: skip
def test_the_older_apis_functions_are_refused_in_its_own_terms(
    scripted: tuple[TestClient, ScriptedEngine], body: dict[str, Any], param: str, says: str
) -> None:
    client, _ = scripted
    refused = client.post("/v1/chat/completions", json={"messages": ASK, **body})
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error["param"] == param and says in error["message"], error


def test_an_earlier_function_call_is_shown_in_its_turn(
    scripted: tuple[TestClient, ScriptedEngine],
) -> None:
    client, engine = scripted
    history = [
        *ASK,
        {"role": "assistant", "content": None,
         "function_call": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
        {"role": "function", "name": "get_weather", "content": "sunny"},
    ]  # fmt: skip
    engine.answer = "It is sunny."
    answer = client.post(
        "/v1/chat/completions", json={"messages": history, "functions": [WEATHER]}
    ).json()
    assert answer["choices"][0]["message"]["content"] == "It is sunny."
    prompt = str(engine.requests[-1].prompt)
    assert (
        '<|im_start|>assistant\n{"name": "get_weather", "arguments": {"city": "Paris"}}' in prompt
    )


def test_a_held_streams_start_is_read_no_further_than_its_first_brace() -> None:
    """A call's text is held to its end: joined at each of its pieces to be read, a call of
    200,000 characters (a file written whole) took seconds of the event loop, every other
    stream waiting. The piece with the first ``{`` decides it: what follows is not read."""
    unread: Any = object()  # joined or searched, it would raise
    assert pieces_may_be_call(['{"name": "get_weather", "arguments": {"city": "', unread])
    assert pieces_may_be_call(["```json\n", '{"name"', unread])
    assert not pieces_may_be_call(["```json\n", "x = {", unread])


STRICT: dict[str, Any] = {
    **WEATHER,
    "strict": True,
    "parameters": {**WEATHER["parameters"], "additionalProperties": False},
}
OFF_SCHEMA = '{"name": "get_weather", "arguments": {"town": "Paris"}}'


@pytest.mark.parametrize("strict", [True, False])
def test_a_strict_functions_call_off_its_schema_is_text(
    scripted: tuple[TestClient, ScriptedEngine], strict: bool
) -> None:
    """OpenAI's SDKs trust a strict function's arguments to keep to its schema (``parse()``
    validates them, and raised on these): a call that does not is given as text. A
    function that is not strict is called with what the model wrote."""
    client, engine = scripted
    engine.answer = OFF_SCHEMA
    tools = [{"type": "function", "function": {**STRICT, "strict": strict}}]
    answer = client.post("/v1/chat/completions", json={"messages": ASK, "tools": tools}).json()
    message = answer["choices"][0]["message"]
    if strict:
        assert message["content"] == OFF_SCHEMA and "tool_calls" not in message
    else:
        assert message["tool_calls"][0]["function"]["arguments"] == '{"town": "Paris"}'
    # The Responses API's functions are strict unless they say they are not.
    responses_tool: dict[str, Any] = {"type": "function", **STRICT}
    if not strict:
        responses_tool["strict"] = False
    else:
        del responses_tool["strict"]
    output = client.post(
        "/v1/responses", json={"input": "Weather?", "tools": [responses_tool]}
    ).json()["output"]
    assert output[0]["type"] == ("message" if strict else "function_call")


def test_a_null_strict_is_the_apis_default(
    scripted: tuple[TestClient, ScriptedEngine],
) -> None:
    """OpenAI's ``strict`` may be null, which is its default: strict for the Responses
    API's functions (whose SDK types make it a field to send, null or not), not for
    chat's."""
    client, engine = scripted
    engine.answer = OFF_SCHEMA
    responses_tool = {"type": "function", **STRICT, "strict": None}
    output = client.post(
        "/v1/responses", json={"input": "Weather?", "tools": [responses_tool]}
    ).json()["output"]
    assert output[0]["type"] == "message"
    tools = [{"type": "function", "function": {**STRICT, "strict": None}}]
    answer = client.post("/v1/chat/completions", json={"messages": ASK, "tools": tools}).json()
    assert answer["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "get_weather"


def test_a_strict_schema_is_checked_by_the_draft_its_schema_names(
    scripted: tuple[TestClient, ScriptedEngine],
) -> None:
    """``$schema`` names the draft whose rules the arguments keep to; without it, draft
    2020-12's. Draft 7's ``dependencies`` (2020-12's ``dependentRequired``) are its own."""
    client, engine = scripted
    engine.answer = '{"name": "get_weather", "arguments": {"units": "metric"}}'
    parameters = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "units": {"type": "string"}},
        "dependencies": {"units": ["city"]},
    }
    draft7 = {"$schema": "http://json-schema.org/draft-07/schema#", **parameters}
    kinds = []
    for schema in (draft7, parameters):
        tool = {"type": "function", "name": "get_weather", "parameters": schema}
        answer = client.post("/v1/responses", json={"input": "Weather?", "tools": [tool]})
        kinds.append(answer.json()["output"][0]["type"])
    assert kinds == ["message", "function_call"]


def test_the_sdks_parse_reads_a_strict_call_and_text_alike(
    scripted: tuple[TestClient, ScriptedEngine],
) -> None:
    class Weather(pydantic.BaseModel):
        city: str

    client, engine = scripted
    sdk = _sdk(client)
    tools = [openai.pydantic_function_tool(Weather, name="get_weather")]
    parsed = sdk.chat.completions.parse(model="scripted", messages=ASK, tools=tools)
    (call,) = parsed.choices[0].message.tool_calls or []
    assert call.function.parsed_arguments == Weather(city="Paris")
    engine.answer = OFF_SCHEMA  # raised pydantic's ValidationError in parse()
    parsed = sdk.chat.completions.parse(model="scripted", messages=ASK, tools=tools)
    assert parsed.choices[0].message.content == OFF_SCHEMA


def test_a_gateways_required_call_off_a_strict_schema_is_text(
    gateway: tuple[TestClient, StubUpstream],
) -> None:
    """The upstream is asked to keep the call to the schema: one that did not is not
    given as a strict function's call."""
    client, stub = gateway
    stub.answer = OFF_SCHEMA
    tools = [{"type": "function", "function": STRICT}]
    answer = client.post(
        "/v1/chat/completions",
        json={"messages": ASK, "tools": tools, "tool_choice": "required"},
        headers=ADMIN,
    ).json()
    assert answer["choices"][0]["message"]["content"] == OFF_SCHEMA
    stub.answer = CALL
    answer = client.post(
        "/v1/chat/completions",
        json={"messages": ASK, "tools": tools, "tool_choice": "required"},
        headers=ADMIN,
    ).json()
    assert answer["choices"][0]["finish_reason"] == "tool_calls"


def test_the_older_apis_functions_are_never_strict(
    scripted: tuple[TestClient, ScriptedEngine],
) -> None:
    """Strict arguments came with tools: a function of the older API is called with what
    the model wrote, as OpenAI's was."""
    client, engine = scripted
    engine.answer = OFF_SCHEMA
    answer = client.post(
        "/v1/chat/completions", json={"messages": ASK, "functions": [STRICT]}
    ).json()
    assert answer["choices"][0]["message"]["function_call"]["arguments"] == '{"town": "Paris"}'


@pytest.mark.parametrize(
    "parameters",
    [
        {"type": "object", "properties": []},
        {"type": "object", "properties": {"city": {"items": 5}}},
        {"type": "object", "properties": {"city": {"$ref": 5}}},
        {"type": "object", "$id": 5},
    ],
)
def test_a_strict_schema_the_validator_cannot_read_leaves_the_call_as_written(
    scripted: tuple[TestClient, ScriptedEngine], parameters: dict[str, Any]
) -> None:
    """A malformed schema is no reason to refuse the call, nor to fail the answer."""
    client, engine = scripted
    engine.answer = CALL
    tool = {"type": "function", "name": "get_weather", "parameters": parameters}
    answer = client.post("/v1/responses", json={"input": "Weather?", "tools": [tool]})
    assert answer.status_code == 200, answer.text
    assert answer.json()["output"][0]["type"] == "function_call"


CLOCK: dict[str, Any] = {
    "name": "get_time",
    "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}},
}
BOTH: list[Any] = [
    {"type": "function", "function": WEATHER},
    {"type": "function", "function": CLOCK},
]
TWO_CALLS = f'[{CALL}, {{"name": "get_time", "arguments": {{"tz": "Europe/Paris"}}}}]'


def test_several_calls_at_once_are_answered_as_several(
    scripted: tuple[TestClient, ScriptedEngine],
) -> None:
    """With ``parallel_tool_calls`` (the default), a model that may choose is told it may
    write a list of calls, and the list is the answer's calls, each with an id of its own."""
    client, engine = scripted
    engine.answer = f"```json\n{TWO_CALLS}\n```"
    answer = client.post("/v1/chat/completions", json={"messages": ASK, "tools": BOTH}).json()
    (made,) = answer["choices"]
    assert made["finish_reason"] == "tool_calls"
    calls = made["message"]["tool_calls"]
    assert [c["function"]["name"] for c in calls] == ["get_weather", "get_time"]
    assert len({c["id"] for c in calls}) == 2
    assert "as a JSON list of calls" in _system(engine)
    with _sdk(client).chat.completions.stream(model="scripted", messages=ASK, tools=BOTH) as stream:
        final = stream.get_final_completion()
    streamed = final.choices[0].message.tool_calls or []
    assert [(c.function.name, json.loads(c.function.arguments)) for c in streamed] == [
        ("get_weather", {"city": "Paris"}),
        ("get_time", {"tz": "Europe/Paris"}),
    ]
    assert len({c.id for c in streamed}) == 2
    sdk_tools: list[Any] = [
        {"type": "function", **WEATHER},
        {"type": "function", **CLOCK, "strict": False},
    ]
    with _sdk(client).responses.stream(model="scripted", input="?", tools=sdk_tools) as events:
        response = events.get_final_response()
    items = [(item.type, getattr(item, "name", None)) for item in response.output]
    assert items == [("function_call", "get_weather"), ("function_call", "get_time")]
    assert len({getattr(item, "call_id", None) for item in response.output}) == 2


@pytest.mark.parametrize(
    "body",
    [
        {"tools": BOTH, "parallel_tool_calls": False},  # one call, as asked
        {"tools": BOTH, "tool_choice": "required"},  # a required call is one
        {"functions": [WEATHER, CLOCK]},  # the older API's function_call is one
    ],
)
def test_a_list_of_calls_where_one_is_asked_for_is_text(
    scripted: tuple[TestClient, ScriptedEngine], body: dict[str, Any]
) -> None:
    client, engine = scripted
    engine.answer = TWO_CALLS
    answer = client.post("/v1/chat/completions", json={"messages": ASK, **body}).json()
    assert answer["choices"][0]["message"]["content"] == TWO_CALLS
    assert "as a JSON list of calls" not in _system(engine)


def test_a_list_is_calls_only_where_each_is_one() -> None:
    offer = tool_offer(BOTH, "auto", nested=True, parallel=True)
    assert offer is not None and offer.parallel
    assert len(offer.read(TWO_CALLS)) == 2
    for text in ("[]", f"[{CALL}, 5]", f'[{CALL}, {{"name": "rm", "arguments": {{}}}}]'):
        assert offer.read(text) == (), text
    for start in ("[", "[ \n", f"[{CALL[:5]}", "```json\n[", "```json\n[\n {"):
        assert may_be_call(start, listed=True) and not may_be_call(start), start
    assert not may_be_call("[docs](", listed=True)


def test_an_answers_several_calls_are_shown_back_as_the_list_it_wrote(
    scripted: tuple[TestClient, ScriptedEngine],
) -> None:
    """Sent back, on chat or the Responses API, an answer's calls are its turn as the model
    was told to write them, a list: calls a line each would teach it to write them so,
    which is text."""
    client, engine = scripted
    engine.answer = TWO_CALLS
    made = client.post("/v1/chat/completions", json={"messages": ASK, "tools": BOTH}).json()
    message = made["choices"][0]["message"]
    outputs = [
        {"role": "tool", "tool_call_id": c["id"], "content": "?"} for c in message["tool_calls"]
    ]
    client.post("/v1/chat/completions", json={"messages": [*ASK, message, *outputs], "tools": BOTH})
    tools: list[Any] = [
        {"type": "function", **WEATHER},
        {"type": "function", **CLOCK, "strict": False},
    ]
    items = client.post("/v1/responses", json={"input": ASK, "tools": tools}).json()["output"]
    assert [item["type"] for item in items] == ["function_call", "function_call"]
    outputs = [
        {"type": "function_call_output", "call_id": i["call_id"], "output": "?"} for i in items
    ]
    client.post("/v1/responses", json={"input": [*ASK, *items, *outputs], "tools": tools})
    offer = tool_offer(BOTH, "auto", nested=True, parallel=True)
    assert offer is not None
    for request in (engine.requests[1], engine.requests[3]):
        turn = str(request.prompt).split("<|im_start|>assistant\n")[1].split("<|im_end|>")[0]
        assert json.loads(turn) == json.loads(TWO_CALLS)
        assert [call.name for call in offer.read(turn)] == ["get_weather", "get_time"]


REPORT: dict[str, Any] = {
    "type": "object",
    "properties": {"summary": {"$ref": "#/$defs/Text"}},
    "required": ["summary"],
    "additionalProperties": False,
    "$defs": {"Text": {"type": "string"}},
}


def test_a_schema_the_answer_keeps_to_leaves_room_for_a_call(
    gateway: tuple[TestClient, StubUpstream],
) -> None:
    """An agent with an output type and tools (openai-agents' ``output_type``) sends a
    ``response_format`` beside ``tool_choice`` auto: the answer keeps to its schema or is a
    call of a function offered (several, where they may be made at once), as OpenAI's
    model may answer either. Kept to the output's schema alone, no call could be written,
    and the agent's tools were never called."""
    client, stub = gateway
    stub.answer = CALL
    response_format = {
        "type": "json_schema",
        "json_schema": {"name": "final_output", "schema": REPORT, "strict": True},
    }
    for body in (
        {"messages": ASK, "tools": TOOLS, "response_format": response_format},
        {
            "input": ASK,
            "tools": RESPONSES_TOOLS,
            "text": {"format": {"type": "json_schema", "name": "final_output", "schema": REPORT}},
        },
    ):
        path = "/v1/chat/completions" if "messages" in body else "/v1/responses"
        answer = client.post(path, json=body, headers=ADMIN)
        assert answer.status_code == 200, answer.text
        if "messages" in body:
            (call,) = answer.json()["choices"][0]["message"]["tool_calls"]
            assert call["function"]["name"] == "get_weather"
        else:
            assert [item["type"] for item in answer.json()["output"]] == ["function_call"]
        schema = stub.requests[-1]["response_format"]["json_schema"]["schema"]
        validator = jsonschema.Draft202012Validator(schema)
        assert validator.is_valid(json.loads(CALL))
        assert validator.is_valid([json.loads(CALL), json.loads(CALL)])
        assert validator.is_valid({"summary": "Sunny."})
        assert not validator.is_valid({"summary": 1})
        assert not validator.is_valid({"name": "get_weather", "arguments": {}})
    # The answer in the schema is the answer's text.
    stub.answer = '{"summary": "Sunny."}'
    body = {"messages": ASK, "tools": TOOLS, "response_format": response_format}
    answer = client.post("/v1/chat/completions", json=body, headers=ADMIN).json()
    assert answer["choices"][0]["message"]["content"] == stub.answer
    # Without functions shown, the schema is sent as the client sent it, and JSON of any
    # shape, which has room for a call, is too.
    for tool_choice, sent in (("none", response_format), ("auto", {"type": "json_object"})):
        body = {**body, "tool_choice": tool_choice, "response_format": sent}
        assert client.post("/v1/chat/completions", json=body, headers=ADMIN).status_code == 200
        assert stub.requests[-1]["response_format"] == sent


@pytest.fixture(params=[(0.05, 0.005), (0.01, 0.03)], ids=["slow-pieces", "quick-pieces"])
def slow(
    tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[TestClient, ScriptedEngine]]:
    """A scripted engine that pauses before each of its ten pieces: far longer than the
    keepalive's interval, or shorter, the ten of them together longer, as a model's
    tokens come while it writes a long call."""
    delay_s, every_s = request.param
    engine = ScriptedEngine(CALL, delay_s=delay_s)
    settings = make_settings(tmp_path, TETHER_SERVER_STREAM_KEEPALIVE_S=str(every_s))
    with TestClient(build_app(settings, TOKEN, lambda: engine)) as client:
        client.headers["Authorization"] = f"Bearer {TOKEN}"
        yield client, engine


def _frames(body: str) -> list[str]:
    return [frame for frame in body.split("\n\n") if frame]


def test_a_held_stream_sends_comments_until_its_call_and_the_sdk_reads_the_call(
    slow: tuple[TestClient, ScriptedEngine],
) -> None:
    """A stream held while it may be a call is kept alive by comment lines, which a proxy's
    read timeout sees as traffic and SSE clients skip; once events flow, none follow."""
    client, _ = slow
    raw = client.post(
        "/v1/chat/completions", json={"messages": ASK, "tools": TOOLS, "stream": True}
    )
    frames = _frames(raw.text)
    first_data = next(i for i, frame in enumerate(frames) if frame.startswith("data:"))
    assert first_data > 0 and set(frames[:first_data]) == {": keepalive"}
    assert ": keepalive" not in frames[first_data:]
    first = json.loads(frames[first_data].removeprefix("data: "))
    assert first["choices"][0]["delta"]["tool_calls"][0]["function"]["name"] == "get_weather"
    chunks = _streamed(client)
    _is_the_weather_call(chunks)


def test_a_held_responses_stream_sends_comments_between_its_start_and_its_call(
    slow: tuple[TestClient, ScriptedEngine],
) -> None:
    client, _ = slow
    body = {"input": "Weather?", "tools": RESPONSES_TOOLS, "stream": True}
    frames = _frames(client.post("/v1/responses", json=body).text)
    kinds = [frame.split("\n")[0].removeprefix("event: ") for frame in frames]
    created = kinds.index("response.created")
    started = kinds.index("response.in_progress")
    added = kinds.index("response.output_item.added")
    assert added > started + 1 and set(kinds[started + 1 : added]) == {": keepalive"}
    # Before its first piece, the stream waited for it: comments, too, where it was slow.
    assert set(kinds[:created]) <= {": keepalive"}
    assert ": keepalive" not in kinds[created:started] + kinds[added:]
    with _sdk(client).responses.stream(
        model="scripted", input="Weather?", tools=RESPONSES_TOOLS
    ) as stream:
        done = [e for e in stream if e.type == "response.function_call_arguments.done"]
        final = stream.get_final_response()
    assert [json.loads(event.arguments) for event in done] == [{"city": "Paris"}]
    (item,) = final.output
    assert item.type == "function_call" and item.name == "get_weather"


def test_a_stream_not_held_sends_no_comments_once_its_text_flows(
    slow: tuple[TestClient, ScriptedEngine],
) -> None:
    """Comments come only while nothing else is sent: before the first piece where it is
    slower than their interval, never between pieces that flow."""
    client, engine = slow
    engine.answer = "Paris is sunny."
    for path, body in (
        ("/v1/chat/completions", {"messages": ASK, "tools": TOOLS, "stream": True}),
        ("/v1/chat/completions", {"messages": ASK, "stream": True}),
        ("/v1/responses", {"input": "Weather?", "tools": RESPONSES_TOOLS, "stream": True}),
        ("/v1/responses", {"input": "Weather?", "stream": True}),
    ):
        raw = client.post(path, json=body)
        assert raw.status_code == 200 and "Paris" in raw.text
        frames = _frames(raw.text)
        first = next(i for i, frame in enumerate(frames) if frame != ": keepalive")
        assert ": keepalive" not in frames[first:], (path, body)
