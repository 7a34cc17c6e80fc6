"""A trace keeps what the client got beside what the engine wrote, where they differ and
no pseudonymized value went back into it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from fastapi.testclient import TestClient

from tests.conftest import TOKEN, make_settings
from tests.helpers import ScriptedEngine, answer_trace
from tether.server.app import build_app
from tether.traces import render_explanation

# The hole's body, then usage at column 0, which leaves the block: the editor gets the body.
BODY = "return a + b"
ANSWER = f"{BODY}\n\nprint(add(1, 2))\n"
HOLE = {"input_prefix": "def add(a, b):\n    ", "input_suffix": "\n"}


@contextlib.contextmanager
def serving(tmp_path: Path, answer: str, **env: str) -> Iterator[TestClient]:
    engine = ScriptedEngine(answer)
    with TestClient(build_app(make_settings(tmp_path, **env), TOKEN, lambda: engine)) as client:
        client.headers["Authorization"] = f"Bearer {TOKEN}"
        yield client


def test_an_editor_answer_keeps_the_text_that_filled_the_hole(tmp_path: Path) -> None:
    with serving(tmp_path, ANSWER) as client:
        answer = client.post("/infill", json=HOLE).json()
        trace = answer_trace(client.app, answer)
        page = f"/v1/dashboard/traces/{trace.id}"
        shown = client.get(page).json()
        viewer = client.post("/v1/tokens", json={"principal": "v", "scopes": ["dashboard"]})
        bearer = {"Authorization": f"Bearer {viewer.json()['token']}"}
        hidden = client.get(page, headers=bearer).json()
    assert shown["delivered"] == BODY
    assert hidden["content_hidden"] and hidden["delivered"] is None  # as the prompt is
    assert answer["content"] == BODY
    assert trace.delivered == BODY
    # What the engine wrote until the filter stopped it, a little past the hole.
    assert ANSWER.startswith(trace.output) and BODY + "\n" in trace.output
    assert trace.ended_early and len(trace.output) < len(ANSWER)
    shown = render_explanation(trace)
    assert "what the engine wrote, until the pipeline stopped it:" in shown
    assert f"what the client got ({len(BODY)} characters):\n    | {BODY}\n" in shown


def test_an_answer_given_as_written_keeps_it_once(tmp_path: Path) -> None:
    with serving(tmp_path, "hello there") as client:
        answer = client.post(
            "/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]}
        ).json()
        trace = answer_trace(client.app, answer)
    assert trace.output == "hello there" and trace.delivered is None
    assert "what the client got" not in render_explanation(trace)


def test_a_text_with_pseudonymized_values_put_back_is_not_kept(tmp_path: Path) -> None:
    email = "ada@example.com"
    rules = '{"email": "pseudonymize"}'
    with serving(tmp_path, "mail <EMAIL_1> now", TETHER_POLICY_ACTIONS=rules) as client:
        answer = client.post(
            "/v1/chat/completions",
            json={"messages": [{"role": "user", "content": f"write to {email}"}]},
        ).json()
        trace = answer_trace(client.app, answer)
    assert answer["choices"][0]["message"]["content"] == f"mail {email} now"
    assert trace.delivered is None and email not in trace.to_json()
    assert "pseudonymized values put back; that text is not kept" in render_explanation(trace)
