"""llama.cpp's /tokenize, /detokenize, /props and /slots (and a slot's cache to a file and
back), over the real default model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from httpx2 import Response

from tests.conftest import TOKEN, make_settings
from tests.helpers import ScriptedEngine, record_of_request
from tether.engines.llamacpp import LlamaCppEngine
from tether.models import default_model_path
from tether.server.app import build_app

AWS_KEY = "AKIA" + "QZ7RVN2XWLKD5HJT"
CODE = "def add(a, b):\n    return a + b  # naïve ✓\n"


def _tokens(client: TestClient, content: str, **options: object) -> list[object]:
    response = client.post("/tokenize", json={"content": content, **options})
    assert response.status_code == 200, response.text
    tokens: list[object] = response.json()["tokens"]
    return tokens


def test_tokens_spell_the_text_again(app_client: TestClient) -> None:
    tokens = _tokens(app_client, CODE)
    assert tokens and all(isinstance(t, int) for t in tokens)
    assert len(tokens) < len(CODE)  # words, not characters
    answer = app_client.post("/detokenize", json={"tokens": tokens})
    assert answer.status_code == 200 and answer.json() == {"content": CODE}


def test_special_tokens_are_read_only_when_asked(app_client: TestClient) -> None:
    marker = "<|im_start|>"
    assert len(_tokens(app_client, marker)) == 1  # parse_special is on by default
    assert len(_tokens(app_client, marker, parse_special=False)) > 1
    [special] = _tokens(app_client, marker)
    assert app_client.post("/detokenize", json={"tokens": [special]}).json() == {"content": marker}
    # The model's automatic tokens: SmolLM2 adds none, so both ways agree.
    assert _tokens(app_client, CODE, add_special=True) == _tokens(app_client, CODE)


def test_pieces_are_text_or_the_bytes_of_part_of_a_character(app_client: TestClient) -> None:
    text = "x = '🦀🐍'"
    pieces = _tokens(app_client, text, with_pieces=True)
    ids = _tokens(app_client, text)
    assert [p["id"] for p in pieces] == ids  # type: ignore[index]
    spelled = b"".join(
        p["piece"].encode() if isinstance(p["piece"], str) else bytes(p["piece"])  # type: ignore[index]
        for p in pieces
    )
    assert spelled == text.encode()
    assert any(isinstance(p["piece"], list) for p in pieces)  # type: ignore[index]


@pytest.mark.parametrize(
    ("tokens", "says"),
    [
        ([1, 10**9], "not in the model's vocabulary"),
        ([-1], "not in the model's vocabulary"),
        ([2**80], "not in the model's vocabulary"),
        ([1.5], "tokens"),
        ("abc", "tokens"),
    ],
)
def test_a_bad_token_is_refused_with_what_to_send(
    app_client: TestClient, tokens: object, says: str
) -> None:
    response = app_client.post("/detokenize", json={"tokens": tokens})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert says in error["message"] and error["type"] == "invalid_request_error"


def test_tokenize_needs_content_and_a_token(app_client: TestClient) -> None:
    assert app_client.post("/tokenize", json={}).status_code == 400
    assert app_client.post("/tokenize", json={"content": 5}).status_code == 400
    assert _tokens(app_client, "") == []
    gone = app_client.post(
        "/tokenize", json={"content": "x"}, headers={"Authorization": "Bearer wrong"}
    )
    assert gone.status_code == 401 and "error" in gone.json()
    assert app_client.get("/props", headers={"Authorization": ""}).status_code == 401


def test_props_tell_the_context_the_defaults_and_the_template(app_client: TestClient) -> None:
    props = app_client.get("/props").json()
    settings = props["default_generation_settings"]
    assert settings["n_ctx"] == 2048  # the tests' engine.n_ctx: each request's window
    assert settings["params"]["n_predict"] > 0 and settings["params"]["temperature"] == 0.8
    assert props["total_slots"] >= 1
    assert "<|im_start|>" in props["chat_template"]
    assert props["model_path"].endswith(".gguf") and props["model_alias"]
    # What /props promises, /completion does: its defaults are the ones it samples with.
    models = app_client.get("/v1/models").json()["data"]
    assert props["model_alias"] in [m["id"] for m in models]


def test_an_engine_without_a_tokenizer_says_so(tmp_path: Path) -> None:
    engine = ScriptedEngine("x")
    with TestClient(build_app(make_settings(tmp_path), TOKEN, lambda: engine)) as client:
        client.headers["Authorization"] = f"Bearer {TOKEN}"
        for path, body in (("/tokenize", {"content": "x"}), ("/detokenize", {"tokens": [1]})):
            response = client.post(path, json=body)
            assert response.status_code == 400
            assert "no tokenizer of its own" in response.json()["error"]["message"]
            assert f"Ask the upstream's {path}," in response.json()["error"]["message"]
        assert client.get("/props").json()["default_generation_settings"]["n_ctx"] > 0
        slots = client.get("/slots")
        assert slots.status_code == 400
        assert "Ask the upstream's /slots" in slots.json()["error"]["message"]


def test_text_beyond_a_context_window_is_refused(app_client: TestClient) -> None:
    """Tokens and pieces are bounded by what one request can use (2048 tokens here)."""
    words = "alpha beta gamma delta " * 600  # 2,400 tokens: read, then refused
    huge = "x" * 2_000_000  # more characters than 2048 tokens could spell: not read
    for content in (words, huge):
        response = app_client.post("/tokenize", json={"content": content, "with_pieces": True})
        assert response.status_code == 400, response.text[:200]
        error = response.json()["error"]
        assert error["code"] == "context_length_exceeded" and error["param"] == "content"
        assert "send it in pieces" in error["message"]
    assert len(_tokens(app_client, "alpha beta gamma delta " * 300)) <= 2048
    refused = app_client.post("/detokenize", json={"tokens": [1] * 2049})
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "tokens"
    assert app_client.post("/detokenize", json={"tokens": [1] * 2048}).status_code == 200


def test_slots_show_each_sequence_free_when_nothing_generates(app_client: TestClient) -> None:
    props = app_client.get("/props").json()
    slots = app_client.get("/slots").json()
    assert [s["id"] for s in slots] == list(range(props["total_slots"]))
    assert all(s["n_ctx"] == 2048 and s["is_processing"] is False for s in slots)
    assert app_client.get("/slots", params={"fail_on_no_slot": 1}).status_code == 200
    bad = app_client.get("/slots", params={"fail_on_no_slot": "perhaps"})
    assert bad.status_code == 400 and "fail_on_no_slot" in bad.text
    assert app_client.get("/slots", headers={"Authorization": ""}).status_code == 401


def test_slot_files_need_a_save_path_and_erasing_does_not(app_client: TestClient) -> None:
    save = app_client.post("/slots/0", params={"action": "save"}, json={"filename": "a.bin"})
    assert save.status_code == 501, save.text
    error = save.json()["error"]
    assert error["code"] == "not_supported" and "engine.slot_save_path" in error["message"]
    erased = app_client.post("/slots/1", params={"action": "erase"})
    assert erased.status_code == 200 and erased.json() == {"id_slot": 1, "n_erased": 0}
    with_body = app_client.post("/slots/1", params={"action": "erase"}, json={})  # as clients do
    assert with_body.status_code == 200 and with_body.json() == {"id_slot": 1, "n_erased": 0}
    for slot, action in (("9", "erase"), ("x", "erase"), ("0", "dance"), ("0", None)):
        response = app_client.post(f"/slots/{slot}", params={"action": action} if action else {})
        assert response.status_code == 400, (slot, action, response.text)
        assert response.json()["error"]["param"] in ("id_slot", "path.id_slot", "query.action")


def test_an_engine_without_sequences_sends_slot_actions_upstream(tmp_path: Path) -> None:
    engine = ScriptedEngine("x")
    with TestClient(build_app(make_settings(tmp_path), TOKEN, lambda: engine)) as client:
        client.headers["Authorization"] = f"Bearer {TOKEN}"
        response = client.post("/slots/0", params={"action": "erase"})
        assert response.status_code == 400
        assert "Ask the upstream's /slots" in response.json()["error"]["message"]


def test_a_slot_saved_and_restored_over_http_serves_the_next_request(tmp_path: Path) -> None:
    """llama.cpp's POST /slots/{id}: save, erase, restore into another slot, and the next
    request with the same prompt finds it cached and answers the same; bad names, missing
    and foreign files are refused with what to do."""
    folder = tmp_path / "slots"
    settings = make_settings(tmp_path, TETHER_ENGINE_SLOT_SAVE_PATH=str(folder))

    def engine() -> LlamaCppEngine:
        return LlamaCppEngine(settings.engine, default_model_path(), settings.data.home / "c")

    body = {"prompt": CODE * 3, "n_predict": 6, "temperature": 0}
    with TestClient(build_app(settings, TOKEN, engine)) as client:
        client.headers["Authorization"] = f"Bearer {TOKEN}"

        def slot(id_slot: int, action: str, **body: object) -> Response:
            return client.post(f"/slots/{id_slot}", params={"action": action}, json=body or None)

        first = client.post("/completion", json=body).json()
        saved = slot(0, "save", filename="editor.bin")
        assert saved.status_code == 200, saved.text
        assert saved.json()["n_saved"] == first["tokens_evaluated"] + 5
        assert first["tokens_cached"] == saved.json()["n_saved"]  # what the slot holds
        assert saved.json()["n_written"] == (folder / "editor.bin").stat().st_size
        assert (folder / "editor.bin").stat().st_mode & 0o077 == 0
        assert slot(0, "erase").json() == {"id_slot": 0, "n_erased": saved.json()["n_saved"]}
        restored = slot(2, "restore", filename="editor.bin").json()
        assert restored["id_slot"] == 2 and restored["n_restored"] == saved.json()["n_saved"]
        assert restored["timings"]["restore_ms"] >= 0
        again = client.post("/completion", json=body).json()
        assert again["content"] == first["content"]
        assert again["timings"]["cache_n"] >= first["tokens_evaluated"] - 1

        (folder / "junk.bin").write_bytes(b"\x00" * 64)
        for filename, status, says in (
            ("../escape.bin", 400, "letters, digits"),
            (".hidden", 400, "not starting with '.'"),
            ("absent.bin", 404, "save one first"),
            ("junk.bin", 400, "not a sequence saved by this model"),
        ):
            response = slot(1, "restore", filename=filename)
            assert response.status_code == status, (filename, response.text)
            assert says in response.json()["error"]["message"]
        no_name = client.post("/slots/1", params={"action": "save"})
        assert no_name.status_code == 400 and "filename" in no_name.json()["error"]["message"]
        assert not (tmp_path / "escape.bin").exists()


def test_tokenize_counts_what_the_model_would_be_shown(
    app_client: TestClient,
) -> None:
    client = app_client
    text = f"aws_key = '{AWS_KEY}'\n"
    response = client.post("/tokenize", json={"content": text, "with_pieces": True})
    assert response.status_code == 200, response.text
    spelled = "".join(token["piece"] for token in response.json()["tokens"])
    assert spelled == "aws_key = '[REDACTED:aws-access-key-id]'\n"
    record = record_of_request(client.app, response)
    assert [p["rule_id"] for p in record["policy"]] == ["aws-access-key-id"]
    assert AWS_KEY not in json.dumps(record)


def test_tokenize_refuses_a_blocked_value_and_records_why(
    app_client: TestClient,
) -> None:
    client = app_client
    leaked = "tth_" + "Zx9" * 14 + "q"
    response = client.post("/tokenize", json={"content": f"token = '{leaked}'"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "policy_blocked" and "content" in error["message"]
    assert leaked not in response.text
    record = record_of_request(client.app, response)
    assert record["params"]["status"] == 400
    assert [p["rule_id"] for p in record["policy"]] == ["tether-token"]
