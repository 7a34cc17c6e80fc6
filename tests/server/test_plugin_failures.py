"""A third-party hook that fails or hangs while serving a request: named to the client,
told not to be retried, counted, and never left holding the request."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.conftest import TOKEN, make_settings
from tests.helpers import ScriptedEngine
from tether import hooklimit
from tether.errors import PluginFailedError, PluginTimeoutError
from tether.hookspecs import hookimpl
from tether.pipeline.governance import file_checker
from tether.pipeline.reviews import CompletionReview, PromptReview
from tether.plugins import build_manager, register_plugins
from tether.server.app import build_app


class _Failing:
    def __init__(self) -> None:
        self.calls = 0

    @hookimpl
    def govern_prompt(self, review: PromptReview) -> None:
        self.calls += 1
        raise RuntimeError("the rules server is gone")


def test_a_failing_plugin_is_not_retried_by_openai_clients(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    manager = build_manager(settings)
    register_plugins(manager, [("failing", _Failing())])
    app = build_app(settings, TOKEN, lambda: ScriptedEngine("x"), manager)
    with TestClient(app) as client:
        client.headers["Authorization"] = f"Bearer {TOKEN}"
        answer = client.post("/v1/completions", json={"prompt": "y = 2\n"})
        metrics = client.get("/metrics").text
    assert answer.status_code == 500
    assert answer.json()["error"]["code"] == "plugin_failed"
    # The SDKs retry any 5xx unless told not to; the same plugin would fail the same way.
    assert answer.headers["x-should-retry"] == "false"
    # An operator sees it without reading the log.
    failed = 'tether_plugin_failures_total{hook="govern_prompt",kind="error",plugin="failing"}'
    assert f"{failed} 1.0" in metrics


class _Hanging:
    """A prompt review that waits on a service that does not answer, until let go."""

    def __init__(self) -> None:
        self.calls = 0
        self.let_go = threading.Event()

    @hookimpl
    def govern_prompt(self, review: PromptReview) -> None:
        self.calls += 1
        self.let_go.wait(20)


@pytest.fixture
def hanging() -> Iterator[_Hanging]:
    plugin = _Hanging()
    yield plugin
    plugin.let_go.set()
    for call in hooklimit.stuck_calls():
        call.thread.join()


def _served_with(tmp_path: Path, plugin: object, **env: str) -> TestClient:
    settings = make_settings(tmp_path, TETHER_PLUGINS_HOOK_TIMEOUT_S="0.05", **env)
    manager = build_manager(settings)
    register_plugins(manager, [("hanging", plugin)])
    client = TestClient(build_app(settings, TOKEN, lambda: ScriptedEngine("x"), manager))
    client.headers["Authorization"] = f"Bearer {TOKEN}"
    return client


def test_a_hanging_hook_fails_its_request_naming_plugin_and_hook(
    tmp_path: Path, hanging: _Hanging
) -> None:
    with _served_with(tmp_path, hanging) as client:
        answer = client.post("/v1/completions", json={"prompt": "y = 2\n"})
        assert answer.status_code == 504, answer.text
        error = answer.json()["error"]
        assert error["code"] == "plugin_timeout"
        assert "'hanging'" in error["message"] and "govern_prompt" in error["message"]
        assert "plugins.hook_timeout_s (0.05 s)" in error["message"]
        assert answer.headers["x-should-retry"] == "false"
        # The call runs on (Python cannot stop it), and is known to: not so the server.
        assert [(c.plugin, c.hook) for c in hooklimit.stuck_calls()] == [
            ("hanging", "govern_prompt")
        ]
        assert client.get("/health").status_code == 200
        metrics = client.get("/metrics").text
    labels = 'hook="govern_prompt",kind="timeout",plugin="hanging"'
    assert f"tether_plugin_failures_total{{{labels}}} 1.0" in metrics
    assert 'tether_plugin_calls_stuck{hook="govern_prompt",plugin="hanging"} 1.0' in metrics


def test_a_plugin_with_too_many_calls_stuck_is_not_called_again(
    tmp_path: Path, hanging: _Hanging, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each stuck call holds a thread for good: past the limit the request fails at once,
    with the same error, rather than leave one more behind."""
    monkeypatch.setattr(hooklimit, "STUCK_CALLS_MAX", 2)
    with _served_with(tmp_path, hanging) as client:
        said = [
            client.post("/v1/completions", json={"prompt": "y = 2\n"}).json()["error"]
            for _ in range(3)
        ]
    assert [e["code"] for e in said] == ["plugin_timeout"] * 3
    assert "did not finish govern_prompt" in said[1]["message"]
    assert "2 of its calls still run past plugins.hook_timeout_s" in said[2]["message"]
    assert hanging.calls == 2
    hanging.let_go.set()
    for call in hooklimit.stuck_calls():
        call.thread.join()
    assert hooklimit.stuck_calls() == []  # once they end, they are forgotten


def test_a_hanging_hook_holds_no_caller_outside_a_server(hanging: _Hanging) -> None:
    """The command line calls hooks on its main thread: it is let go just the same."""
    from tether.settings import load_settings

    settings = load_settings(environ={"TETHER_PLUGINS_HOOK_TIMEOUT_S": "0.05"})
    manager = build_manager(settings)
    register_plugins(manager, [("hanging", hanging)])
    with pytest.raises(PluginTimeoutError, match="'hanging' did not finish govern_prompt"):
        manager.hook.govern_prompt(review=PromptReview("chat", {"messages[0]": "hi"}))


class _Interrupting:
    @hookimpl
    def check_completion(self, review: CompletionReview) -> None:
        raise KeyboardInterrupt


def test_a_plugin_s_keyboard_interrupt_in_the_main_thread_names_the_plugin(
    tmp_path: Path,
) -> None:
    """A request's hook runs in a thread of its own, where no Ctrl-C is delivered: what
    it raises is the plugin's, also when called from the main thread (`tether check`)."""
    assert threading.current_thread() is threading.main_thread()
    manager = build_manager(make_settings(tmp_path))
    register_plugins(manager, [("interrupting", _Interrupting())])
    check = file_checker(manager)
    assert check is not None
    with pytest.raises(PluginFailedError, match="plugin 'interrupting' failed in check_comp"):
        check("x = 1\n", "python")
    assert manager.failures() == {("interrupting", "check_completion", "error"): 1}
