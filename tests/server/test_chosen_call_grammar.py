"""A call the model chooses to write, on the real default model: kept to the call's schema
once the answer starts as one, and a text answer the same as without that grammar."""

from __future__ import annotations

import json
from typing import Any
from unittest import mock

import pytest
from fastapi.testclient import TestClient

from tests.helpers import audit_records
from tether.server.tool_calls import ToolOffer

PARAMETERS = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city now.",
        "parameters": PARAMETERS,
    },
}
# An earlier call makes the small model start its answer as one: left free, it wrote
# {"name": "Paris", "arguments": {"city": "Paris"}}, a call of no function, so text.
EARLIER: list[dict[str, Any]] = [
    {"role": "user", "content": "Is it sunny in Rome?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": "done"},
    {"role": "assistant", "content": "Done."},
    {"role": "user", "content": "What is the weather in Paris?"},
]


def _chat(client: TestClient, messages: list[dict[str, Any]], free: bool = False) -> Any:
    body = {"messages": messages, "tools": [WEATHER], "temperature": 0, "max_tokens": 64}
    if not free:
        response = client.post("/v1/chat/completions", json=body)
    else:  # as before a call the model chose was kept to its schema
        with mock.patch.object(ToolOffer, "chosen_format", lambda self, given: None):
            response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def test_an_answer_begun_as_a_call_is_kept_to_a_call_of_an_offered_function(
    app_client: TestClient,
) -> None:
    free = _chat(app_client, EARLIER, free=True)["choices"][0]["message"]
    assert free["content"].startswith('{"name": "Paris"')  # what it writes left free
    kept = _chat(app_client, EARLIER)["choices"][0]
    assert kept["finish_reason"] == "tool_calls"
    (call,) = kept["message"]["tool_calls"]
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris"}


@pytest.mark.parametrize(
    "ask",
    [
        "What is the capital of France?",  # text from its first word
        "Show me the contents of README.md.",  # a code block, of no call
    ],
)
def test_a_text_answer_is_the_same_with_the_grammar_as_without(
    app_client: TestClient, ask: str
) -> None:
    messages = [{"role": "user", "content": ask}]
    kept, free = _chat(app_client, messages), _chat(app_client, messages, free=True)
    assert kept["choices"] == free["choices"]
    assert kept["choices"][0]["message"]["content"]


def test_the_grammar_is_parsed_once_an_offer_and_recorded_for_a_replay(
    app_client: TestClient,
) -> None:
    from tether.repro.manifest import from_trace

    engine = app_client.app.state.tether.pipeline.engine  # type: ignore[attr-defined]
    _chat(app_client, [{"role": "user", "content": "Hello"}])
    parsed = len(engine._grammars)
    answer = _chat(app_client, [{"role": "user", "content": "Hi there"}])
    assert len(engine._grammars) == parsed

    app_client.app.state.trace_recorder.flush()  # type: ignore[attr-defined]
    app_client.app.state.audit.flush()  # type: ignore[attr-defined]
    trace = app_client.app.state.traces.get(answer["id"])  # type: ignore[attr-defined]
    kept_to = trace.sampling["chosen_call_format"]
    # The call, or a list of calls (parallel_tool_calls is not false).
    call, listed = kept_to["json_schema"]["schema"]["anyOf"]
    assert call["properties"]["name"] == {"const": "get_weather"}
    assert listed["type"] == "array"
    (record,) = [r for r in audit_records(app_client.app) if r["request_id"] == answer["id"]]
    assert record["params"]["chosen_call_format"] == kept_to
    assert "response_format" not in record["params"]
    request = from_trace(trace).request()
    assert json.loads(request.params.chosen_call_format or "null") == kept_to


def test_functions_too_many_to_keep_a_call_to_leave_the_answer_free(
    app_client: TestClient,
) -> None:
    # Forty functions, and a list of them, are more ways of reading an answer than a
    # grammar follows: a call the model chooses is then left free, as it was before there
    # was a grammar to keep it, rather than the request refused.
    tools = [
        {"type": "function", "function": {"name": f"tool_{i}", "parameters": PARAMETERS}}
        for i in range(40)
    ]
    body = {
        "messages": [{"role": "user", "content": "Hello"}],
        "tools": tools,
        "temperature": 0,
        "max_tokens": 8,
    }
    response = app_client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
