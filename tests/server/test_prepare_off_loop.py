"""A large prompt is governed, fitted and its answer checked in a worker thread, not on
the event loop, where it would hold up every other request; a small one stays on the loop
(a thread hop costs more than it saves), unless a third-party plugin's hooks run."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.conftest import TOKEN, make_settings
from tests.helpers import ScriptedEngine, audit_records
from tether.hookspecs import hookimpl
from tether.pipeline.governance import OFF_LOOP_CHARS
from tether.pipeline.reviews import CompletionReview, PromptReview
from tether.plugins import build_manager
from tether.policy.scanner import _folding
from tether.server.app import build_app

ADMIN = {"Authorization": f"Bearer {TOKEN}"}


def _on_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class LoopWatcher:
    """Records, for each prompt and each answer it reviews, whether it ran on the loop,
    and in which thread."""

    def __init__(self) -> None:
        self.prompts_on_loop: list[bool] = []
        self.answers_on_loop: list[bool] = []
        self.threads: list[str] = []

    @hookimpl
    def govern_prompt(self, review: PromptReview) -> None:
        self.prompts_on_loop.append(_on_loop())
        self.threads.append(threading.current_thread().name)

    @hookimpl
    def check_completion(self, review: CompletionReview) -> None:
        self.answers_on_loop.append(_on_loop())
        self.threads.append(threading.current_thread().name)


@pytest.fixture(params=["tether.watcher"])
def watched(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[tuple[TestClient, LoopWatcher]]:
    """The watcher registered as a built-in (``tether.*``), or as a third-party plugin."""
    settings = make_settings(tmp_path_factory.mktemp("prepare"))
    plugins = build_manager(settings)
    watcher = LoopWatcher()
    plugins.register(watcher, name=request.param)
    app = build_app(settings, TOKEN, lambda: ScriptedEngine("return 1"), plugins)
    with TestClient(app) as client:
        yield client, watcher


@pytest.mark.parametrize("stream", [False, True])
def test_only_large_prompts_leave_the_loop(
    watched: tuple[TestClient, LoopWatcher], stream: bool
) -> None:
    client, watcher = watched
    small = "def add(a, b):\n"
    large = "x = 1\n" * (OFF_LOOP_CHARS // 6 + 1)
    for prompt in (small, large):
        body = {"prompt": prompt, "max_tokens": 2, "stream": stream}
        response = client.post("/v1/completions", headers=ADMIN, json=body)
        assert response.status_code == 200, response.text
    assert watcher.prompts_on_loop == [True, False]
    assert watcher.answers_on_loop == [True, False]


@pytest.mark.parametrize("watched", ["house-rules"], indirect=True)
def test_a_third_party_plugin_s_hooks_run_off_the_loop_whatever_the_size(
    watched: tuple[TestClient, LoopWatcher],
) -> None:
    """A slow plugin would hold up every other request, /health included."""
    client, watcher = watched
    body = {"prompt": "def add(a, b):\n", "max_tokens": 2}
    assert client.post("/v1/completions", headers=ADMIN, json=body).status_code == 200
    assert watcher.prompts_on_loop == [False] and watcher.answers_on_loop == [False]
    assert all(name.startswith("tether-plugin") for name in watcher.threads), watcher.threads


class Gate:
    """A plugin whose prompt review waits until it is let through."""

    def __init__(self) -> None:
        self.entered = threading.Semaphore(0)
        self.opened = threading.Event()

    @hookimpl
    def govern_prompt(self, review: PromptReview) -> None:
        self.entered.release()
        self.opened.wait(60)


def test_slow_plugin_calls_filling_a_pool_hold_up_no_other_work(tmp_path: Path) -> None:
    """As many slow plugin calls as asyncio's own pool has threads: the routes that read
    in that pool (traces, the dashboard, audit flushes) still answer meanwhile."""
    settings = make_settings(tmp_path)
    plugins = build_manager(settings)
    gate = Gate()
    plugins.register(gate, name="slow-review")
    app = build_app(settings, TOKEN, lambda: ScriptedEngine("return 1"), plugins)
    asyncio_pool = min(32, (os.cpu_count() or 1) + 4)
    body = {"prompt": "def add(a, b):\n", "max_tokens": 2}
    with TestClient(app) as client, ThreadPoolExecutor(asyncio_pool + 1) as callers:
        try:
            held = [
                callers.submit(client.post, "/v1/completions", headers=ADMIN, json=body)
                for _ in range(asyncio_pool)
            ]
            for _ in held:
                assert gate.entered.acquire(timeout=60), "a request never reached the plugin"
            traces = callers.submit(client.get, "/v1/traces", headers=ADMIN)
            assert traces.result(timeout=30).status_code == 200
            assert not any(call.done() for call in held)  # the plugin still holds them
        finally:
            gate.opened.set()
        assert [call.result().status_code for call in held] == [200] * asyncio_pool


def test_a_large_blocked_prompt_is_refused_and_audited_as_one(
    watched: tuple[TestClient, LoopWatcher],
) -> None:
    client, watcher = watched
    leaked = "tth_" + "Zx9" * 14 + "q"  # a tether token: blocked by the default policy
    prompt = "x = 1\n" * (OFF_LOOP_CHARS // 6 + 1) + f"token = '{leaked}'\n"
    response = client.post("/v1/completions", headers=ADMIN, json={"prompt": prompt})
    assert response.status_code == 400, response.text
    assert "blocked by policy" in response.json()["error"]["message"]
    # tether's policy blocked it before any other plugin was given it.
    assert watcher.prompts_on_loop == [] and watcher.answers_on_loop == []
    (record,) = [r for r in audit_records(client.app) if "/v1/completions" in r["endpoint"]]
    assert [f["rule_id"] for f in record["policy"]] == ["tether-token"], record["policy"]


def test_the_table_that_folds_text_beyond_ascii_is_built_at_startup_not_on_a_prompt(
    tmp_path: Path,
) -> None:
    _folding.cache_clear()
    settings = make_settings(tmp_path)
    app = build_app(settings, TOKEN, lambda: ScriptedEngine("return 1"), build_manager(settings))
    with TestClient(app):
        deadline = time.monotonic() + 30
        while not _folding.cache_info().currsize and time.monotonic() < deadline:
            time.sleep(0.05)  # built beside the event loop, which goes on meanwhile
        assert _folding.cache_info().currsize == 1
