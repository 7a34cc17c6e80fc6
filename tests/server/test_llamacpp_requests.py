"""Requests to llama.cpp's /completion and /infill as its clients write them (Continue's
llama.cpp provider, scripts built for llama-server), read as llama-server reads them,
over the real default model."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.conftest import SMALL_WINDOW, TOKEN, make_settings
from tests.helpers import ScriptedEngine, sse_events
from tests.server.test_llamacpp_options import manifest_of
from tether.engines.llamacpp import LlamaCppEngine
from tether.models import default_model_path
from tether.repro.verify import regenerate
from tether.server.app import build_app

COUNTING = "1, 2, 3, 4,"


def _answer(client: TestClient, **body: object) -> dict[str, object]:
    response = client.post("/completion", json=body)
    assert response.status_code == 200, response.text
    answer: dict[str, object] = response.json()
    return answer


def test_n_predict_beyond_the_context_is_a_bound_not_an_error(
    small_window_client: TestClient, tmp_path: Path
) -> None:
    """Continue sends n_predict 4096 whatever the context: the answer stops where the
    context is full, as llama-server's does."""
    client = small_window_client
    prompt = "alpha beta gamma delta " * 110  # about 440 of the 512 tokens
    answer = _answer(client, prompt=prompt, n_predict=4096, temperature=0)
    used = answer["tokens_evaluated"] + answer["tokens_predicted"]  # type: ignore[operator]
    assert answer["stop_type"] in ("limit", "eos") and used <= SMALL_WINDOW
    if answer["stop_type"] == "limit":
        assert used >= SMALL_WINDOW - 1
    # Cut by the window, it is recorded as far as it went (with what was asked), and
    # regenerates to the same bytes on this window or a larger one.
    manifest = manifest_of(client, answer)
    if answer["stop_type"] == "limit":
        assert manifest.params["max_tokens"] == answer["tokens_predicted"]
        assert manifest.params["max_tokens_asked"] == 4096
    else:
        assert manifest.params["max_tokens"] == 4096
    settings = client.app.state.tether.settings  # type: ignore[attr-defined]
    engine = LlamaCppEngine(settings.engine, default_model_path(), tmp_path)
    try:
        assert asyncio.run(regenerate(manifest, engine)).match
    finally:
        asyncio.run(engine.close())
    infill = client.post(
        "/infill",
        json={
            "input_prefix": "def add(a, b):\n",
            "input_suffix": "\n",
            "n_predict": 4096,
            "stop": ["\n"],
            "temperature": 0,
        },
    )
    assert infill.status_code == 200, infill.text
    assert infill.json()["truncated"] is False  # the bound did not take the code's room


def test_max_tokens_stands_for_n_predict(app_client: TestClient) -> None:
    answer = _answer(app_client, prompt=COUNTING, max_tokens=3, temperature=0)
    assert answer["tokens_predicted"] == 3 and answer["stop_type"] == "limit"
    both = _answer(app_client, prompt=COUNTING, max_tokens=3, n_predict=5, temperature=0)
    assert both["tokens_predicted"] == 5
    other_name = app_client.post("/completions", json={"prompt": COUNTING, "n_predict": 3})
    assert other_name.status_code == 200 and other_name.json()["tokens_predicted"] == 3


def test_a_stop_string_is_named_as_the_reason_the_answer_ended(app_client: TestClient) -> None:
    whole = _answer(app_client, prompt=COUNTING, n_predict=12, temperature=0)["content"]
    assert isinstance(whole, str) and " 6," in whole
    stop = " 6,"
    answer = _answer(app_client, prompt=COUNTING, n_predict=12, temperature=0, stop=stop)
    assert answer["content"] == whole[: whole.index(stop)]
    assert (answer["stop_type"], answer["stopping_word"]) == ("word", stop)
    streamed = app_client.post(
        "/completion",
        json={
            "prompt": COUNTING,
            "n_predict": 12,
            "temperature": 0,
            "stop": ["zzz", stop],
            "stream": True,
        },
    )
    last = json.loads(sse_events(streamed.text)[-1])
    assert (last["stop_type"], last["stopping_word"]) == ("word", stop)
    limited = _answer(app_client, prompt=COUNTING, n_predict=2, temperature=0, stop=["zzz"])
    assert (limited["stop_type"], limited["stopping_word"]) == ("limit", "")


def test_null_is_the_default_and_the_model_is_not_checked(app_client: TestClient) -> None:
    nulls: dict[str, object] = {
        "stop": None,
        "temperature": None,
        "top_p": None,
        "stream": None,
        "seed": None,
    }
    # What llama.cpp clients send unless they want probabilities or token ids.
    nulls.update(n_probs=0, return_tokens=False, grammar="", json_schema={})
    answer = _answer(app_client, prompt=COUNTING, n_predict=4, model="gpt-3.5-turbo", **nulls)
    assert answer["tokens_predicted"] == 4 and answer["seed"] == 0
    assert answer["model"] != "gpt-3.5-turbo"  # the answer says which model wrote it


def test_null_is_the_default_for_every_field_of_infill_too(app_client: TestClient) -> None:
    """llama.cpp reads each field with json_value, null as the default: a null filename,
    indentation or list was a 400 here."""
    body = {
        "input_prefix": "x = ",
        "input_suffix": None,
        "input_extra": [{"text": "a = 1\n", "filename": None}],
        "prompt": None,
        "n_indent": None,
        "response_fields": None,
        "n_predict": 2,
    }
    answer = app_client.post("/infill", json=body)
    assert answer.status_code == 200, answer.text
    missing = app_client.post("/infill", json={"input_extra": [{"text": None}], "n_predict": 1})
    assert missing.status_code == 400  # a required field sent as null is still refused
    assert missing.json()["error"]["param"] == "input_extra.0.text"
    # for its type: "Field required" would say it was not sent
    assert (
        "input_extra.0.text: Input should be a valid string" in missing.json()["error"]["message"]
    )


def test_greedy_as_llama_cpp_spells_it(app_client: TestClient) -> None:
    """top_k 1 and a temperature of 0 or less all take the most likely token."""
    body = {"prompt": "def parse(text):\n", "n_predict": 12, "seed": 7}
    greedy = _answer(app_client, **body, temperature=0)["content"]
    assert _answer(app_client, **body, temperature=-1)["content"] == greedy
    assert _answer(app_client, **body, temperature=1.5, top_k=1)["content"] == greedy
    assert _answer(app_client, **body, temperature=3.0, top_p=0)["tokens_predicted"] == 12


@pytest.mark.parametrize("drawn", [-1, 0xFFFFFFFF])  # the latter: -1 as llama.cpp's uint32
def test_seed_minus_one_draws_a_seed_and_says_which(app_client: TestClient, drawn: int) -> None:
    body = {"prompt": "Once upon a time", "n_predict": 16, "temperature": 1.0}
    first = _answer(app_client, **body, seed=drawn)
    second = _answer(app_client, **body, seed=drawn)
    assert first["seed"] != second["seed"]  # two in 2**32 alike: never in practice
    assert first["seed"] != 0xFFFFFFFF
    again = _answer(app_client, **body, seed=first["seed"])
    assert again["content"] == first["content"]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"prompt": [1, 2, 3]}, "token ids is not accepted"),
        ({"prompt": "x", "temperature": "hot"}, "temperature"),
        ({"prompt": "x", "stop": [1]}, "stop"),
        ({"prompt": "x", "max_tokens": -2}, "max_tokens"),
        ({"prompt": "x", "n_probs": 5}, "token probabilities are not supported"),
        ({"prompt": "x", "return_tokens": True}, "send the answer's text to POST /tokenize"),
        # A grammar the answer would not keep to; a JSON schema it cannot keep to.
        ({"prompt": "x", "grammar": 'root ::= "x"'}, "grammars are not applied"),
        ({"prompt": "x", "json_schema": {"type": "frob"}}, "the JSON schema cannot be followed"),
        ({"prompt": "x", "json_schema": ["object"]}, "send a JSON schema as an object"),
    ],
)
def test_what_llama_cpp_would_not_read_either_is_refused(
    app_client: TestClient, body: dict[str, object], says: str
) -> None:
    response = app_client.post("/completion", json=body)
    assert response.status_code == 400, response.text
    assert says in response.json()["error"]["message"]


def test_health_answers_as_llama_cpp_servers_do(app_client: TestClient, tmp_path: Path) -> None:
    anonymous = TestClient(app_client.app)
    for path in ("/health", "/v1/health"):
        response = anonymous.get(path)
        assert (response.status_code, response.json()) == (200, {"status": "ok"})

    class Down(ScriptedEngine):
        async def health(self) -> bool:
            return False

    with TestClient(build_app(make_settings(tmp_path), TOKEN, lambda: Down("x"))) as client:
        response = client.get("/health")
        assert response.status_code == 503 and response.headers["Retry-After"] == "1"
        error = response.json()["error"]
        assert error["code"] == "engine_unavailable" and "/readyz" in error["message"]


@pytest.mark.parametrize("newline", ["\r\n", "\r"])
def test_a_hole_in_a_file_with_other_line_ends_is_filled_as_in_an_lf_file(
    app_client: TestClient, newline: str
) -> None:
    """Cut at its line's end, an answer in a CRLF file kept the line's ``\\r``: ``\\r\\r\\n``
    in the file once accepted. Lines that end in a lone ``\\r`` (classic Mac OS) were read
    as one line: the answer was indented again and ran on past the code after the cursor.
    Read with LF line ends, each file gets the answer the LF file does."""

    def filled(line_end: str) -> str:
        body = {
            "input_prefix": "import os\n\ndef add(a, b):\n    return a + b\n\ndef sub(a, b):\n    ",
            "input_suffix": "\n\ndef mul(a, b):\n    return a * b\n",
            "n_predict": 30,
            "temperature": 0,
        }
        for key in ("input_prefix", "input_suffix"):
            body[key] = str(body[key]).replace("\n", line_end)
        answer = app_client.post("/infill", json=body)
        assert answer.status_code == 200, answer.text
        return str(answer.json()["content"])

    other = filled(newline)
    assert "\r" not in other and other.strip(), repr(other)
    assert other == filled("\n")


def test_a_byte_order_mark_before_the_code_is_no_part_of_the_prompt(
    app_client: TestClient,
) -> None:
    """A file sent as stored begins with its BOM; before the code it drew the model away
    (an empty answer where the same file without it was completed)."""

    def filled(mark: str) -> tuple[str, str]:
        body = {
            "input_prefix": mark + "import os\n\ndef add(a, b):\n    ",
            "input_suffix": "\n",
            "input_extra": [
                {"filename": "util.py", "text": mark + "def twice(x):\n    return 2 * x\n"}
            ],
            "n_predict": 16,
            "temperature": 0,
        }
        answer = app_client.post("/infill", json=body)
        assert answer.status_code == 200, answer.text
        trace_id = answer.json()["tether"]["trace_id"]
        prompt = app_client.get(f"/v1/traces/{trace_id}").json()["prompt"]
        return str(answer.json()["content"]), prompt

    with_mark, without = filled("\ufeff"), filled("")
    assert "\ufeff" not in with_mark[1]
    assert with_mark == without and without[0].strip()


def test_a_json_schema_is_kept_to_as_llama_cpp_keeps_to_it(app_client: TestClient) -> None:
    """llama.cpp's /completion takes json_schema and answers JSON of it; tether refused it.
    An empty one, which clients send by default, asks for nothing."""
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string", "maxLength": 12}, "lines": {"type": "integer"}},
        "required": ["name", "lines"],
    }
    prompt = "A Python function as JSON with its name and its number of lines:\n"
    answer = _answer(app_client, prompt=prompt, n_predict=64, json_schema=schema)
    assert set(json.loads(str(answer["content"]))) == {"name", "lines"}, answer["content"]
    free = _answer(app_client, prompt=prompt, n_predict=16, json_schema={}, temperature=0)
    assert not str(free["content"]).lstrip().startswith("{"), free["content"]
