"""A plugin's print() goes to standard error, never into what machines read on stdout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tether.hookspecs import hookimpl
from tether.pipeline.reviews import PromptReview
from tether.plugins import build_manager, register_plugins
from tether.settings import load_settings


class _Chatty:
    """Prints in its hook, and waits there until tether has written output of its own."""

    def __init__(self) -> None:
        self.printed = threading.Event()
        self.let_go = threading.Event()

    @hookimpl
    def govern_prompt(self, review: PromptReview) -> None:
        print("chatty: reviewing")
        self.printed.set()
        self.let_go.wait(20)


def test_a_hook_s_print_goes_to_stderr_and_no_other_thread_s(
    capsys: pytest.CaptureFixture[str],
) -> None:
    manager = build_manager(load_settings(environ={}))
    chatty = _Chatty()
    register_plugins(manager, [("chatty", chatty)])
    review = PromptReview("chat", {"messages[0]": "hi"})
    request = threading.Thread(target=lambda: manager.hook.govern_prompt(review=review))
    request.start()
    try:
        assert chatty.printed.wait(20)
        print('{"answer": 1}')  # tether's own output, while the hook still runs
    finally:
        chatty.let_go.set()
        request.join()
    out, err = capsys.readouterr()
    assert out == '{"answer": 1}\n'
    assert "chatty: reviewing" in err


def test_a_plugin_printing_as_it_is_imported_leaves_mcp_s_stream_json(tmp_path: Path) -> None:
    plugins = tmp_path / "plugins"
    info = plugins / "noisy_plugin-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "entry_points.txt").write_text("[tether]\nnoisy = noisy_plugin\n")
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: noisy-plugin\nVersion: 0.1\n")
    (plugins / "noisy_plugin.py").write_text("print('noisy plugin loaded')\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
    path = os.pathsep.join(p for p in (str(plugins), os.environ.get("PYTHONPATH")) if p)
    env.update(PYTHONPATH=path, TETHER_HOME=str(tmp_path / "home"), TETHER_PLUGINS_ENABLED="noisy")
    hello = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
             "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                        "clientInfo": {"name": "test", "version": "1"}}}  # fmt: skip
    run = subprocess.run(
        [sys.executable, "-m", "tether", "mcp"],
        input=json.dumps(hello) + "\n",
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    first = run.stdout.splitlines()[0] if run.stdout else ""
    assert json.loads(first)["id"] == 1, (run.stdout, run.stderr)
    assert "noisy plugin loaded" in run.stderr
