"""examples/node: the official openai npm client streams a chat answer and a FIM
completion from a real tether server, with a scoped token, and reaches nothing else."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import RunningServer, tether_server

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "node"
HOOK = Path(__file__).with_name("tabby_agent") / "net_hook.js"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    assert (EXAMPLE / "node_modules" / "openai").is_dir(), "`make test` installs it with npm"
    with tether_server(tmp_path_factory.mktemp("node")) as running:
        yield running


def _example(server: RunningServer, token: str, log: Path) -> subprocess.CompletedProcess[str]:
    node = shutil.which("node")
    assert node is not None, "node is not installed"
    log.touch()
    env = {
        "PATH": os.environ["PATH"],
        "TETHER_URL": f"{server.url}/v1",
        "TETHER_TOKEN": token,
        "NODE_OPTIONS": f"--require {HOOK}",
        "TETHER_NET_LOG": str(log),
    }
    return subprocess.run(
        [node, "index.mjs"], cwd=EXAMPLE, env=env, capture_output=True, text=True, timeout=120
    )


def test_streaming_chat_and_fim_through_the_openai_npm_client(
    server: RunningServer, tmp_path: Path
) -> None:
    with server.client() as client:
        made = client.post(
            "/v1/tokens", json={"principal": "node-app", "scopes": ["chat", "completions"]}
        )
    assert made.status_code == 201, made.text
    log = tmp_path / "net.log"
    done = _example(server, made.json()["token"], log)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["model"] and answer["chat"].strip() and answer["fim"]
    reached = [json.loads(line) for line in log.read_text().splitlines()]
    connects = [r["target"] for r in reached if r["kind"] == "connect"]
    address = server.url.removeprefix("http://")
    assert connects and set(connects) == {address}, reached  # tether, and nothing else


def test_a_refused_token_is_a_clear_error(server: RunningServer, tmp_path: Path) -> None:
    done = _example(server, "tth_not-a-token", tmp_path / "net.log")
    assert done.returncode == 1
    assert done.stderr.startswith("error (HTTP 401):")
