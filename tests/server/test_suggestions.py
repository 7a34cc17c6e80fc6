"""``POST /v1/suggestions``: what comes back when the model's answer is not a file."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from pathlib import Path

from fastapi.testclient import TestClient

from tests.conftest import TOKEN, make_settings
from tests.helpers import ScriptedEngine
from tether.engines.base import GenerationChunk, GenerationRequest
from tether.errors import ContextLengthError
from tether.server.app import build_app

BODY = {"path": "a.py", "source": "def f():\n    return 1\n", "instruction": "docstring"}


def _suggest(
    tmp_path: Path, answer: str, cut_off: bool = False, **extra: object
) -> dict[str, object]:
    engine = ScriptedEngine(answer, finish_reason="length" if cut_off else "stop")
    with TestClient(build_app(make_settings(tmp_path), TOKEN, lambda: engine)) as client:
        response = client.post(
            "/v1/suggestions",
            json={**BODY, **extra},
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
    assert response.status_code == 200, response.text
    answered: dict[str, object] = response.json()
    return answered


def test_prose_in_place_of_the_file_is_no_patch_and_says_why(tmp_path: Path) -> None:
    answered = _suggest(tmp_path, "Here is the complete updated file with a docstring.")
    assert answered["patch"] is None
    assert "answered without a code block" in str(answered["problem"])


def test_a_fenced_file_is_a_patch_without_a_problem(tmp_path: Path) -> None:
    answered = _suggest(tmp_path, '```python\ndef f():\n    """One."""\n    return 1\n```\n')
    assert answered["problem"] is None
    assert '+    """One."""' in str(answered["patch"])


def test_an_answer_cut_off_inside_its_file_is_no_patch(tmp_path: Path) -> None:
    # What the model did not write would read as lines to delete: the rest of the file.
    for answer in ('```python\ndef f():\n    """One."""\n', 'def f():\n    """One."""\n'):
        pieces = -(-len(answer) // 5)  # the scripted engine's tokens
        answered = _suggest(tmp_path, answer, cut_off=True, max_tokens=pieces)
        assert answered["patch"] is None and answered["truncated"] is True
        assert "would delete the rest of the file" in str(answered["problem"])
        assert "(max_tokens)" in str(answered["problem"])
        assert "raise --max-tokens" in str(answered["problem"])


def test_an_answer_cut_off_on_an_empty_file_says_what_it_would_write(tmp_path: Path) -> None:
    """An empty file has no rest to delete: the refusal said it would delete it."""
    answer = "```python\ndef f():\n"
    pieces = -(-len(answer) // 5)  # the scripted engine's tokens
    answered = _suggest(tmp_path, answer, cut_off=True, max_tokens=pieces, source="")
    problem = str(answered["problem"])
    assert answered["patch"] is None and answered["truncated"] is True
    assert "would write a file cut off part way" in problem
    assert "delete the rest of the file" not in problem


def test_an_answer_the_context_window_cut_short_says_so_not_to_raise_max_tokens(
    tmp_path: Path,
) -> None:
    """Cut off before the max_tokens it was allowed, the answer ran out of window: more
    max_tokens would only be refused, as the prompt and it would not fit."""
    answered = _suggest(tmp_path, 'def f():\n    """One."""\n', cut_off=True, max_tokens=500)
    problem = str(answered["problem"])
    assert answered["patch"] is None and "filled the model's context window" in problem
    assert "too long to be written again whole" in problem and "--max-tokens" not in problem


def test_an_answer_cut_off_after_its_file_is_a_patch(tmp_path: Path) -> None:
    whole = '```python\ndef f():\n    """One."""\n    return 1\n```\n\nThis adds a docstring that'
    answered = _suggest(tmp_path, whole, cut_off=True)
    assert answered["problem"] is None and answered["truncated"] is True
    assert '+    """One."""' in str(answered["patch"])
    assert "-    return 1" not in str(answered["patch"])


def test_a_field_under_another_name_is_named_not_dropped(tmp_path: Path) -> None:
    engine = ScriptedEngine("unused")
    body = {"path": "a.py", "content": BODY["source"], "instruction": "docstring"}
    with TestClient(build_app(make_settings(tmp_path), TOKEN, lambda: engine)) as client:
        response = client.post(
            "/v1/suggestions", json=body, headers={"Authorization": f"Bearer {TOKEN}"}
        )
    assert response.status_code == 400
    message = response.json()["error"]["message"]
    assert "source: Field required" in message
    assert "content: is not a field of this request" in message
    assert engine.requests == []


def test_with_traces_off_an_answer_names_no_trace(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, TETHER_TRACES_ENABLED="false")
    engine = ScriptedEngine("```python\ndef f():\n    return 2\n```\n")
    with TestClient(build_app(settings, TOKEN, lambda: engine)) as client:
        client.headers["Authorization"] = f"Bearer {TOKEN}"
        suggested = client.post("/v1/suggestions", json=BODY).json()
        completed = client.post("/v1/completions", json={"prompt": "x", "max_tokens": 2}).json()
        for answer in (suggested, completed):
            assert answer["tether"]["trace_id"] is None
            assert client.get(f"/v1/traces/{answer['id']}").status_code == 404
    assert suggested["patch"]


class _WindowTooSmall(ScriptedEngine):
    """Refuses every prompt, as the embedded engine refuses one past its window."""

    async def generate(self, request: GenerationRequest) -> AsyncGenerator[GenerationChunk, None]:
        raise ContextLengthError(
            "the prompt is 9000 tokens, the context window 4096; shorten the prompt"
        )
        yield GenerationChunk(text="")  # pragma: no cover - makes this a generator


def test_a_file_too_long_for_the_window_is_named_not_the_prompt(tmp_path: Path) -> None:
    engine = _WindowTooSmall("")
    with TestClient(build_app(make_settings(tmp_path), TOKEN, lambda: engine)) as client:
        response = client.post(
            "/v1/suggestions", json=BODY, headers={"Authorization": f"Bearer {TOKEN}"}
        )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "context_length_exceeded", error
    assert error["message"].startswith(
        "a.py is too long for a suggestion in this context window (the prompt is 9000 "
        "tokens, the context window 4096): "
    )
    assert "shorten the prompt" not in error["message"]


def test_a_byte_order_mark_is_kept_in_the_patch_and_not_shown_to_the_model(
    tmp_path: Path,
) -> None:
    engine = ScriptedEngine('```python\ndef f():\n    """One."""\n    return 1\n```\n')
    with TestClient(build_app(make_settings(tmp_path), TOKEN, lambda: engine)) as client:
        response = client.post(
            "/v1/suggestions",
            json={**BODY, "source": "\ufeff" + str(BODY["source"])},
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
    assert response.status_code == 200, response.text
    (request,) = engine.requests
    assert "\ufeff" not in request.shown_text()
    patch = str(response.json()["patch"])
    assert '+    """One."""' in patch and "\ufeffdef f():" in patch  # the file's first line
