"""JSON answers on the embedded engine, over the real default model: chat's
``response_format`` and the Responses API's ``text.format`` keep the answer to JSON, or to
a JSON schema, through llama.cpp's grammar sampler; a schema that cannot be followed is
refused before anything is generated."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.helpers import audit_records
from tether.engines.grammar import MOST_REPEATS

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 20},
        "age": {"type": "integer", "minimum": 0, "maximum": 150},
        # Bounded, so that every answer fits its 80 tokens, sampled or not.
        "languages": {
            "type": "array",
            "items": {"enum": ["python", "rust", "go"]},
            "maxItems": 3,
        },
    },
    "required": ["name", "age", "languages"],
    "additionalProperties": False,
}
ASK = [{"role": "user", "content": "Describe a programmer as JSON."}]


def _chat(client: TestClient, response_format: Any, **body: Any) -> Any:
    sent = {"messages": ASK, "max_tokens": 80, "response_format": response_format, **body}
    return client.post("/v1/chat/completions", json=sent)


def _schema(schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": "person", "schema": schema}}


def test_a_chat_answer_keeps_to_its_json_schema(app_client: TestClient) -> None:
    answer = _chat(app_client, _schema(PERSON))
    assert answer.status_code == 200, answer.text
    choice = answer.json()["choices"][0]
    assert choice["finish_reason"] == "stop"
    person = json.loads(choice["message"]["content"])
    assert set(person) == {"name", "age", "languages"}
    assert isinstance(person["name"], str) and len(person["name"]) <= 20
    assert isinstance(person["age"], int)  # its range is not kept to: llama.cpp's converter
    assert set(person["languages"]) <= {"python", "rust", "go"}
    # Sampled, it keeps to the schema too, and the same seed gives the same bytes.
    sampled = [_chat(app_client, _schema(PERSON), temperature=1.0, seed=7) for _ in range(2)]
    texts = [s.json()["choices"][0]["message"]["content"] for s in sampled]
    assert texts[0] == texts[1]
    assert set(json.loads(texts[0])) == {"name", "age", "languages"}


def test_json_mode_answers_an_object_where_free_text_would_not_be_one(
    app_client: TestClient,
) -> None:
    free = _chat(app_client, {"type": "text"}).json()["choices"][0]["message"]["content"]
    with pytest.raises(ValueError):
        json.loads(free)  # what the model says unasked: the format does the work
    kept = _chat(app_client, {"type": "json_object"}).json()["choices"][0]["message"]["content"]
    assert isinstance(json.loads(kept), dict)


def test_a_streamed_answer_keeps_to_its_schema(app_client: TestClient) -> None:
    sent = {"messages": ASK, "max_tokens": 80, "response_format": _schema(PERSON), "stream": True}
    with app_client.stream("POST", "/v1/chat/completions", json=sent) as response:
        assert response.status_code == 200
        events = [line[6:] for line in response.iter_lines() if line.startswith("data: {")]
    text = "".join(json.loads(e)["choices"][0]["delta"].get("content") or "" for e in events)
    assert set(json.loads(text)) == {"name", "age", "languages"}


def test_the_responses_api_keeps_to_text_format_and_echoes_it(app_client: TestClient) -> None:
    text_format = {"type": "json_schema", "name": "person", "schema": PERSON, "strict": True}
    sent = {"input": ASK[0]["content"], "max_output_tokens": 80, "text": {"format": text_format}}
    answer = app_client.post("/v1/responses", json=sent)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["text"] == {"format": text_format}
    (message,) = body["output"]
    assert set(json.loads(message["content"][0]["text"])) == {"name", "age", "languages"}


def test_the_format_is_recorded_so_a_replay_keeps_to_it(app_client: TestClient) -> None:
    """The trace and the audit record keep the format with the other sampling
    parameters: a manifest made from the trace regenerates the same JSON."""
    from tether.repro.manifest import from_trace

    answer = _chat(app_client, _schema(PERSON)).json()
    app_client.app.state.trace_recorder.flush()  # type: ignore[attr-defined]
    app_client.app.state.audit.flush()  # type: ignore[attr-defined]
    trace = app_client.app.state.traces.get(answer["id"])  # type: ignore[attr-defined]
    assert trace.sampling["response_format"] == _schema(PERSON)
    (record,) = [r for r in audit_records(app_client.app) if r["request_id"] == answer["id"]]
    assert record["params"]["response_format"] == _schema(PERSON)
    request = from_trace(trace).request()
    assert request.params.response_format is not None
    assert json.loads(request.params.response_format) == _schema(PERSON)


@pytest.mark.parametrize(
    ("response_format", "says"),
    [
        (_schema({"type": "string", "maxLength": 10**6}), "schema.maxLength is 1000000"),
        (
            _schema(
                {"type": "object", "properties": {"x": {"type": "string", "pattern": "a{5000}"}}}
            ),
            "schema.properties.x.pattern repeats {5000}",
        ),
        (_schema({"type": "frob"}), "Unrecognized schema"),
        (_schema({"enum": []}), "allows no answer"),
        (_schema({"$ref": "https://example.com/person.json"}), "nothing is fetched"),
    ],
)
def test_a_schema_that_cannot_be_followed_is_refused_before_generating(
    app_client: TestClient, response_format: Any, says: str
) -> None:
    answer = _chat(app_client, response_format)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["param"] == "response_format"
    assert error["message"].startswith("the JSON schema cannot be followed: ")
    assert says in error["message"]
    assert str(MOST_REPEATS) in error["message"] or "repeats" not in says


@pytest.mark.parametrize(
    "response_format",
    [
        {"type": "xml"},
        {"type": "json_schema"},
        {"type": "json_schema", "json_schema": {"name": "a person", "schema": PERSON}},
    ],
)
def test_a_malformed_format_is_told_what_to_send(
    app_client: TestClient, response_format: Any
) -> None:
    answer = _chat(app_client, response_format)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["param"].startswith("response_format")
    assert '{"type": "json_object"}' in error["message"]


def test_the_responses_api_names_its_own_field_of_a_schema_it_cannot_follow(
    app_client: TestClient,
) -> None:
    """The refusal named chat's response_format, a field the Responses API does not have."""
    text_format = {
        "type": "json_schema",
        "name": "x",
        "schema": {"type": "string", "maxLength": 5000},
    }
    for stream in (False, True):
        sent = {
            "input": "hi",
            "max_output_tokens": 5,
            "text": {"format": text_format},
            "stream": stream,
        }
        answer = app_client.post("/v1/responses", json=sent)
        assert answer.status_code == 400, answer.text
        error = answer.json()["error"]
        assert error["param"] == "text.format", error
        assert "schema.maxLength is 5000" in error["message"]


def test_values_and_names_with_escapes_in_json_are_kept_to_as_json(
    app_client: TestClient,
) -> None:
    """The converter's literals left JSON's backslashes unescaped: the answer had to spell
    a path's backslashes as tabs and newlines, a newline's escape as a newline (no longer
    JSON), and a quote in a value or a property's name made a grammar llama.cpp could not
    read (400)."""
    values = ["C:\\temp\\new", 'say "hi"', "line one\nline two", "café"]
    name = 'the "path"'
    person = {
        "type": "object",
        "properties": {name: {"enum": values}},
        "required": [name],
        "additionalProperties": False,
    }
    for temperature in (0.0, 1.0):
        answer = _chat(app_client, _schema(person), temperature=temperature, seed=3)
        assert answer.status_code == 200, answer.text
        content = answer.json()["choices"][0]["message"]["content"]
        assert json.loads(content)[name] in values, content


@pytest.mark.parametrize(
    ("pattern", "ask"),
    [
        (r"^\d{4}-\d{2}-\d{2}$", "Say a date."),
        (r"^[\w.-]{1,8}@[\w-]{1,8}\.[a-z]{2,3}$", "Say an email address."),
        (r"^v\d\.\d\.\d$", "Say a version."),
    ],
)
def test_a_pattern_of_regular_expressions_escapes_is_kept_to(
    app_client: TestClient, pattern: str, ask: str
) -> None:
    """The converter copied \\d, \\w, \\s and an escaped mark such as \\. into the grammar,
    where llama.cpp cannot read them: such patterns, the commonest, were refused as if
    their schema allowed no answer."""
    schema = {"type": "object", "properties": {"x": {"type": "string", "pattern": pattern}}}
    schema["required"] = ["x"]
    sent = [{"role": "user", "content": ask}]
    answer = _chat(app_client, _schema(schema), messages=sent, max_tokens=40)
    assert answer.status_code == 200, answer.text
    choice = answer.json()["choices"][0]
    assert choice["finish_reason"] == "stop", choice
    assert re.fullmatch(pattern, json.loads(choice["message"]["content"])["x"]), choice


def test_a_patterns_escape_without_a_class_is_refused_as_such(app_client: TestClient) -> None:
    answer = _chat(app_client, _schema({"type": "string", "pattern": r"^\bword$"}))
    assert answer.status_code == 400, answer.text
    assert "such as \\b or \\p{L}, has no grammar" in answer.json()["error"]["message"]


def test_the_token_count_refuses_a_schema_the_answer_could_not_keep_to(
    app_client: TestClient,
) -> None:
    """POST /v1/responses/input_tokens refuses what POST /v1/responses would: it counted
    the prompt of a request whose JSON schema the engine then refused."""
    too_long = {"type": "json_schema", "name": "s", "schema": {"type": "string", "maxLength": 5000}}
    answer = app_client.post(
        "/v1/responses/input_tokens", json={"input": "hi", "text": {"format": too_long}}
    )
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["param"] == "text.format"
    kept = {"type": "json_schema", "name": "s", "schema": PERSON}
    counted = app_client.post(
        "/v1/responses/input_tokens", json={"input": "hi", "text": {"format": kept}}
    )
    assert counted.status_code == 200 and counted.json()["input_tokens"] > 0


@pytest.mark.parametrize("pattern", [r"^.{3,10}$", r"^[^a]{1,20}$"])
def test_a_patterns_any_character_is_one_a_json_string_holds(
    app_client: TestClient, pattern: str
) -> None:
    """The converter's "." and negated class matched a raw quote, backslash or line
    break: a sampled answer ended its string early ('{"x": "\\n"}"}') or was no JSON."""
    schema = {"type": "object", "properties": {"x": {"type": "string", "pattern": pattern}}}
    schema["required"] = ["x"]
    for ask in ("Quote a famous line, with its quotation marks.", "Write a Windows path."):
        for seed in range(5):
            sent = [{"role": "user", "content": ask + " Answer as JSON."}]
            answer = _chat(app_client, _schema(schema), messages=sent, temperature=1.0, seed=seed)
            choice = answer.json()["choices"][0]
            assert choice["finish_reason"] == "stop", choice
            value = json.loads(choice["message"]["content"])["x"]
            assert re.fullmatch(pattern, value), choice


@pytest.mark.parametrize(
    "response_format",
    [
        {"type": "json_object"},
        _schema({"type": "object", "properties": {"x": {"type": "string", "maxLength": 60}}}),
    ],
)
def test_a_strings_line_breaks_are_escaped(app_client: TestClient, response_format: Any) -> None:
    """The converter's rule of a string's character took a raw line break, which JSON
    holds only escaped: an answer of several lines was no JSON."""
    sent = [{"role": "user", "content": "Write a poem of three short lines as JSON."}]
    for seed in range(3):
        answer = _chat(app_client, response_format, messages=sent, temperature=1.0, seed=seed)
        choice = answer.json()["choices"][0]
        assert "\n" not in choice["message"]["content"], choice
        if choice["finish_reason"] == "stop":
            json.loads(choice["message"]["content"])


def test_a_grammar_llama_cpp_cannot_read_is_one_line_of_the_log(
    app_client: TestClient, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """llama.cpp reports a grammar it cannot read on stderr, outside the log, with the
    grammar whole: a schema of many properties printed hundreds of lines."""
    properties: dict[str, Any] = {f"field_{n}": {"type": "string"} for n in range(200)}
    properties["none"] = {"enum": []}
    schema = {"type": "object", "properties": properties, "required": list(properties)}
    capfd.readouterr()
    with caplog.at_level(logging.WARNING, logger="tether.engines.llamacpp"):
        answer = _chat(app_client, _schema(schema))
    assert answer.status_code == 400, answer.text
    assert "allows no answer" in answer.json()["error"]["message"]
    _, err = capfd.readouterr()
    assert "field_" not in err and "grammar" not in err, err[:500]
    said = [r.getMessage() for r in caplog.records if "grammar" in r.getMessage()]
    (line,) = said  # llama.cpp's reason, without the grammar it quotes
    assert line.startswith("llama.cpp cannot read the grammar of a JSON schema: "), said
    assert "field_" not in line and len(line) < 150, said


def test_a_json_answer_is_not_cut_by_a_stop_string_inside_it(app_client: TestClient) -> None:
    """A client's stop string met inside the JSON (in a value, a property's name) cut
    the answer short, no JSON, with finish_reason stop as if it had ended."""
    answer = _chat(app_client, _schema(PERSON), stop=['"age"', "python"])
    assert answer.status_code == 200, answer.text
    choice = answer.json()["choices"][0]
    assert choice["finish_reason"] == "stop", choice
    assert set(json.loads(choice["message"]["content"])) == {"name", "age", "languages"}
    # The same request without a format stops where the model first writes one.
    free = _chat(app_client, {"type": "text"}, stop=["a"]).json()["choices"][0]
    assert "a" not in free["message"]["content"], free
