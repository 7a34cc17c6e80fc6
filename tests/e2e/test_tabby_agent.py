"""Tabby's own editor agent (npm ``tabby-agent``) against tether, over its LSP interface.

Nothing may leave the machine: a preloaded hook records every connection and name lookup
the agent's Node.js process attempts, and only loopback is allowed.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.lsp import LspClient
from tests.helpers import RunningServer, tether_server

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
AGENT = ROOT / ".venv" / "node" / "node_modules" / "tabby-agent" / "dist" / "cli.js"
HOOK = Path(__file__).with_name("tabby_agent") / "net_hook.js"
LOOPBACK = ("127.0.0.1:", "localhost:", "[::1]:", "::1:")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    assert AGENT.is_file(), "the Tabby agent is missing: `make test` installs it with npm"
    with tether_server(tmp_path_factory.mktemp("tabby")) as running:
        yield running


def _configure(home: Path, server: RunningServer, *, telemetry_off: bool) -> None:
    """The agent's own config file, as the README tells users to write it."""
    folder = home / ".tabby-client" / "agent"
    folder.mkdir(parents=True, exist_ok=True)
    text = f'[server]\nendpoint = "{server.url}/tabby"\ntoken = "{server.token}"\n'
    if telemetry_off:
        text += "\n[anonymousUsageTracking]\ndisable = true\n"
    (folder / "config.toml").write_text(text)


def _session(home: Path, tmp_path: Path) -> tuple[list[dict[str, str]], object]:
    """One editor session: open a file, ask for a completion, close. Returns what the
    agent's process tried to reach, and the completion it gave."""
    log = tmp_path / f"net-{time.monotonic_ns()}.log"
    log.touch()
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "NODE_OPTIONS": f"--require {HOOK}",
        "TETHER_NET_LOG": str(log),
    }
    node = shutil.which("node")
    assert node is not None, "node is not installed"
    client = LspClient([node, str(AGENT), "--lsp", "--stdio"], env, tmp_path / "agent.err")
    try:
        client.request(
            "initialize", {"processId": os.getpid(), "rootUri": None, "capabilities": {}}
        )
        client.notify("initialized", {})
        uri = (tmp_path / "calc.py").as_uri()
        document = {
            "uri": uri,
            "languageId": "python",
            "version": 1,
            "text": "def add(a, b):\n    return \n",
        }
        client.notify("textDocument/didOpen", {"textDocument": document})
        time.sleep(1.0)  # the agent connects and checks the server's health first
        completion = client.request(
            "textDocument/completion",
            {"textDocument": {"uri": uri}, "position": {"line": 1, "character": 11}},
        )
    finally:
        client.close()  # on shutdown the agent submits its statistics: telemetry, if on
    attempts = [json.loads(line) for line in log.read_text().splitlines()]
    return attempts, completion


def _leaving(attempts: list[dict[str, str]]) -> list[dict[str, str]]:
    return [
        a
        for a in attempts
        if not (a["kind"] == "connect" and a["target"].startswith(LOOPBACK))
        and not (a["kind"] == "lookup" and a["target"] in ("localhost", "127.0.0.1"))
    ]


def test_documented_config_keeps_every_request_on_loopback(
    server: RunningServer, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    _configure(home, server, telemetry_off=True)
    attempts, completion = _session(home, tmp_path)
    assert _leaving(attempts) == []
    assert any(a["target"].startswith("127.0.0.1:") for a in attempts)
    assert isinstance(completion, dict) and completion["items"], completion  # served by tether


def test_the_agent_asks_the_server_and_obeys_it(server: RunningServer, tmp_path: Path) -> None:
    """Configured with endpoint and token only, the agent asks tether's server setting
    (tether reports a Tabby version that makes it ask), keeps the answer, and from then
    on sends nothing anywhere but tether."""
    home = tmp_path / "home"
    _configure(home, server, telemetry_off=False)
    _session(home, tmp_path)
    stored = json.loads((home / ".tabby-client" / "agent" / "data.json").read_text())
    endpoint = f"{server.url}/tabby"
    assert stored["serverConfig"][endpoint] == {"anonymousUsageTracking": {"disable": True}}
    attempts, _ = _session(home, tmp_path)
    assert _leaving(attempts) == []
