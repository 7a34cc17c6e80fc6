"""llama.cpp's request options that shape an answer: t_max_predict_ms, n_indent and
response_fields, as llama.vim sends them."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from bench.llama_vim_budget import FIELDS as LLAMA_VIM_FIELDS
from fastapi.testclient import TestClient

from tests.conftest import TOKEN, make_settings
from tests.helpers import ScriptedEngine, answer_trace, audit_records, sse_events
from tether.repro.manifest import Manifest, from_trace
from tether.repro.verify import regenerate
from tether.server.app import build_app

LINES = "abcd\n" * 20  # one line a chunk: ScriptedEngine sends five characters at a time


@pytest.fixture
def slow_engine() -> ScriptedEngine:
    return ScriptedEngine(LINES, delay_s=0.02)  # 0.4 s for the whole answer


@contextlib.contextmanager
def serving(tmp_path: Path, engine: ScriptedEngine) -> Iterator[TestClient]:
    with TestClient(build_app(make_settings(tmp_path), TOKEN, lambda: engine)) as client:
        client.headers["Authorization"] = f"Bearer {TOKEN}"
        yield client


@pytest.fixture
def client(tmp_path: Path, slow_engine: ScriptedEngine) -> Iterator[TestClient]:
    with serving(tmp_path, slow_engine) as client:
        yield client


def manifest_of(client: TestClient, answer: dict[str, object]) -> Manifest:
    """The manifest of an answer's trace, as `tether repro record` makes it."""
    return from_trace(answer_trace(client.app, answer))


def test_the_time_limit_ends_the_answer_with_the_line_it_was_writing(
    client: TestClient, slow_engine: ScriptedEngine
) -> None:
    body = {"prompt": "x", "n_predict": 100, "t_max_predict_ms": 60}
    answer = client.post("/completion", json=body).json()
    content = answer["content"]
    assert LINES.startswith(content) and content.endswith("\n")
    assert 1 <= content.count("\n") < 20  # cut at a line's end, well before the last
    assert answer["stop_type"] == "limit"
    assert slow_engine.stopped_early == 1  # the engine stopped there, not at its end
    (record,) = [r for r in audit_records(client.app) if r.get("endpoint") == "/completion"]
    assert record["params"]["line_deadline_s"] == 0.06
    assert record["params"]["finish_reason"] == "length"
    # The answer's manifest regenerates to the same bytes, as far as the answer went.
    manifest = manifest_of(client, answer)
    assert manifest.ended_early and manifest.output == content
    assert asyncio.run(regenerate(manifest, ScriptedEngine(LINES))).match


def test_the_time_limit_waits_for_a_line_to_end(tmp_path: Path) -> None:
    long_line = "x" * 50 + "\nabcd" * 10  # the first newline comes in the eleventh chunk
    with serving(tmp_path, ScriptedEngine(long_line, delay_s=0.01)) as client:
        answer = client.post(
            "/infill", json={"input_prefix": "", "n_predict": 100, "t_max_predict_ms": 1}
        ).json()
    # The line that the newline's chunk ends, and nothing after it in that chunk (the
    # editor's filter drops the newline before an empty suffix).
    assert answer["content"] == "x" * 50


@pytest.mark.parametrize("limit", [None, 0, -1])
def test_no_time_limit_unless_one_is_set(
    client: TestClient, slow_engine: ScriptedEngine, limit: int | None
) -> None:
    limited = {} if limit is None else {"t_max_predict_ms": limit}
    body = {"prompt": "x", "n_predict": 100, **limited}
    assert client.post("/completion", json=body).json()["content"] == LINES
    assert slow_engine.stopped_early == 0


def test_a_streamed_answer_ends_at_the_time_limit_too(
    client: TestClient, slow_engine: ScriptedEngine
) -> None:
    body = {"prompt": "x", "n_predict": 100, "t_max_predict_ms": 60, "stream": True}
    events = [json.loads(e) for e in sse_events(client.post("/completion", json=body).text)]
    content = "".join(e["content"] for e in events)
    assert LINES.startswith(content) and content.endswith("\n") and content != LINES
    assert events[-1]["stop"] is True and slow_engine.stopped_early == 1


def test_a_time_limit_must_be_a_whole_number(client: TestClient) -> None:
    reply = client.post("/completion", json={"prompt": "x", "t_max_predict_ms": 2.5})
    assert reply.status_code == 400
    assert "t_max_predict_ms" in reply.json()["error"]["message"]


BLOCK = "total = 0\n    for x in xs:\n        total += x\n    return total\nprint(total)\n"
BLOCK_THEN_MORE = BLOCK + "x = 1\n" * 20


@pytest.fixture
def block_engine() -> ScriptedEngine:
    return ScriptedEngine(BLOCK_THEN_MORE, delay_s=0.001)


@pytest.mark.parametrize(
    ("path", "field"), [("/completion", "prompt"), ("/infill", "input_prefix")]
)
def test_n_indent_ends_the_answer_where_a_line_leaves_the_block(
    tmp_path: Path, block_engine: ScriptedEngine, path: str, field: str
) -> None:
    with serving(tmp_path, block_engine) as client:
        body = {field: "def f(xs):\n    ", "n_predict": 200, "n_indent": 4}
        answer = client.post(path, json=body).json()
        (record,) = [r for r in audit_records(client.app) if r.get("endpoint") == path]
        manifest = manifest_of(client, answer)
    content = answer["content"]
    assert "return total" in content and "print" not in content
    if path == "/completion":  # no fill-in-the-middle editing: exactly llama.cpp's cut
        assert content == BLOCK[: BLOCK.index("print")]
    assert answer["stop_type"] == "limit"
    assert block_engine.stopped_early == 1  # the engine stopped there, not at its end
    assert block_engine.requests[-1].stream  # in pieces, though asked for whole
    assert record["params"]["min_indent"] == 4
    assert manifest.ended_early
    assert asyncio.run(regenerate(manifest, ScriptedEngine(BLOCK_THEN_MORE))).match


def test_n_indent_cuts_a_streamed_answer_too(client: TestClient) -> None:
    # LINES has no indentation: with n_indent 1 the answer ends after its first line.
    body = {"prompt": "x", "n_predict": 100, "n_indent": 1, "stream": True}
    events = [json.loads(e) for e in sse_events(client.post("/completion", json=body).text)]
    assert "".join(e["content"] for e in events) == "abcd\n"
    assert events[-1]["stop"] is True and events[-1]["stop_type"] == "limit"


def test_without_n_indent_the_answer_is_whole(
    client: TestClient, slow_engine: ScriptedEngine
) -> None:
    answer = client.post("/completion", json={"prompt": "x", "n_indent": 0}).json()
    assert answer["content"] == LINES and slow_engine.stopped_early == 0
    # Nothing ends it early, yet it is asked for in pieces: its timings need the first.
    assert slow_engine.requests[-1].stream


@pytest.mark.parametrize("value", [-1, 2.5, "four"])
def test_n_indent_must_be_a_count(client: TestClient, value: object) -> None:
    reply = client.post("/infill", json={"input_prefix": "x", "n_indent": value})
    assert reply.status_code == 400
    assert "n_indent" in reply.json()["error"]["message"]


def test_response_fields_keep_only_the_asked_paths(app_client: TestClient) -> None:
    fields = [*LLAMA_VIM_FIELDS, "timings/no_such_field"]  # and a path the answer lacks
    body = {"input_prefix": "def add(a, b):\n", "prompt": "    return", "n_predict": 8}
    answer = app_client.post("/infill", json={**body, "response_fields": fields}).json()
    assert set(answer) == set(fields) - {"timings/no_such_field"}
    assert answer["truncated"] is False  # the code fitted the context as it was
    assert answer["timings/predicted_n"] > 0 and answer["timings/prompt_ms"] > 0
    assert answer["timings/predicted_per_second"] > 0


@pytest.mark.parametrize("stream", [False, True])
def test_truncated_says_the_code_was_cut_to_fit_the_context(
    client: TestClient, stream: bool
) -> None:
    # The scripted engine's context is 4096 tokens of about four characters.
    far_above = "".join(f"line_{number} = {number}\n" for number in range(2000))
    answers = []
    for prefix in (far_above, "x = 1\n"):
        body = {"input_prefix": prefix, "prompt": "y = ", "n_predict": 8, "stream": stream}
        reply = client.post("/infill", json=body)
        answers.append(json.loads(sse_events(reply.text)[-1]) if stream else reply.json())
    assert [answer["truncated"] for answer in answers] == [True, False]


def test_llama_timings_add_up(app_client: TestClient) -> None:
    body = {"input_prefix": "def add(a, b):\n", "prompt": "    return", "n_predict": 8}
    answer = app_client.post("/infill", json=body).json()
    timings = answer["timings"]
    # Read tokens and cached ones make the prompt, as llama.cpp counts them.
    assert timings["prompt_n"] + timings["cache_n"] == answer["tokens_evaluated"]
    assert timings["predicted_n"] == answer["tokens_predicted"]
    assert timings["prompt_per_second"] == pytest.approx(
        timings["prompt_n"] * 1000 / timings["prompt_ms"]
    )
