"""A third-party hook that fails or hangs while serving a request: named to the client,
told not to be retried, counted, and never left holding the request."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from tests.conftest import TOKEN, make_settings
from tests.helpers import ScriptedEngine
from tether.hookspecs import hookimpl
from tether.pipeline.reviews import PromptReview
from tether.plugins import build_manager, register_plugins


class _Failing:
    def __init__(self) -> None:
        self.calls = 0

    @hookimpl
    def govern_prompt(self, review: PromptReview) -> None:
        self.calls += 1
        raise RuntimeError("the rules server is gone")


def test_a_failing_plugin_is_not_retried_by_openai_clients(tmp_path: Path) -> None:
    from tether.server.app import build_app

    settings = make_settings(tmp_path)
    manager = build_manager(settings)
    register_plugins(manager, [("failing", _Failing())])
    app = build_app(settings, TOKEN, lambda: ScriptedEngine("x"), manager)
    with TestClient(app) as client:
        client.headers["Authorization"] = f"Bearer {TOKEN}"
        answer = client.post("/v1/completions", json={"prompt": "y = 2\n"})
    assert answer.status_code == 500
    assert answer.json()["error"]["code"] == "plugin_failed"
    # The SDKs retry any 5xx unless told not to; the same plugin would fail the same way.
    assert answer.headers["x-should-retry"] == "false"
