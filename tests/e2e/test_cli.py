"""The `tether` entry point, in process and against a running server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import RunningServer, refusing_proxy, tether_env, tether_server
from tests.stub_upstream import stub_upstream

pytestmark = pytest.mark.e2e

SOURCE = """import math


def area(radius):
    return math.pi * radius ** 2


def perimeter(radius):
    return 2 * math.pi * radius
"""


def tether(
    home: Path, *args: str, cwd: Path | None = None, stdin: str | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tether", *args],
        env=tether_env(home, **env),
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, RunningServer]]:
    home = tmp_path_factory.mktemp("cli-srv")
    with tether_server(home) as running:
        yield home, running


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "geometry.py").write_text(SOURCE)
    return tmp_path


@pytest.mark.parametrize("remote", [False, True], ids=["in-process", "server"])
def test_complete_at_cursor(
    project: Path, server: tuple[Path, RunningServer], remote: bool
) -> None:
    home, running = server
    extra = ["--server", running.url] if remote else []
    result = tether(
        home,
        "complete",
        str(project / "geometry.py"),
        "--line",
        "5",
        "--col",
        "5",
        "--max-tokens",
        "12",
        "--json",
        *extra,
    )
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr, result.stderr
    body = json.loads(result.stdout)
    # In process beside the server that keeps the audit log, the answer is recorded
    # through that server, and its trace matches the record.
    explained = tether(home, "explain", body["id"])
    assert explained.returncode == 0, explained.stdout + explained.stderr
    assert "prompt and answer match what the record committed to" in explained.stdout
    assert body["seed"] == 0 and body["system_fingerprint"].startswith("fp_")
    assert body["usage"]["completion_tokens"] <= 12


def test_complete_same_answer_in_process_and_remote(
    project: Path, server: tuple[Path, RunningServer]
) -> None:
    """Same command, same prompt, same answer: language and context travel to the server."""
    home, running = server
    (project / "units.py").write_text("CM_PER_INCH = 2.54\n")
    args = ["complete", "geometry.py", "--line", "9", "--col", "12", "--max-tokens", "10"]
    args += ["--context", "units.py", "--json"]
    local = tether(home, *args, cwd=project)
    remote = tether(home, *args, "--server", running.url, cwd=project)
    assert local.returncode == remote.returncode == 0, local.stderr + remote.stderr
    answers = [json.loads(r.stdout) for r in (local, remote)]
    assert answers[0]["text"] == answers[1]["text"]
    prompts = []
    for answer in answers:
        shown = tether(home, "explain", answer["id"], "--json", cwd=project)
        assert shown.returncode == 0, shown.stderr
        prompts.append(json.loads(shown.stdout)["prompt"])
    assert prompts[0] == prompts[1]
    assert "# units.py\nCM_PER_INCH = 2.54" in prompts[0]  # Python comments: the language


def test_complete_cursor_out_of_range(project: Path, tmp_path: Path) -> None:
    result = tether(tmp_path, "complete", str(project / "geometry.py"), "--line", "99")
    assert result.returncode == 2
    assert "past the end of the file" in result.stderr


@pytest.mark.parametrize("remote", [False, True], ids=["in-process", "server"])
def test_chat_one_shot(server: tuple[Path, RunningServer], remote: bool) -> None:
    home, running = server
    extra = ["--server", running.url] if remote else []
    result = tether(home, "chat", "-m", "Say hello", "--max-tokens", "8", "--json", *extra)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["text"]


def test_chat_interactive_keeps_history(tmp_path: Path) -> None:
    result = tether(tmp_path, "chat", "--max-tokens", "6", stdin="Hello\nAnd again\n\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("\n") >= 2


def test_a_conversation_longer_than_the_context_forgets_its_oldest_turns(tmp_path: Path) -> None:
    question = "Tell me one more fact about the sea, in one short sentence please.\n"
    result = tether(
        tmp_path, "chat", "--max-tokens", "40", stdin=question * 6 + "\n",
        TETHER_ENGINE_N_CTX="256",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "the oldest turn no longer fits and is left out" in result.stderr


def test_remote_without_token_is_explained(
    tmp_path: Path, server: tuple[Path, RunningServer]
) -> None:
    _, running = server
    result = tether(tmp_path, "chat", "-m", "x", "--server", running.url)
    assert result.returncode == 4
    assert "needs a token and none is known for that address" in result.stderr
    wrong = tether(tmp_path, "chat", "-m", "x", "--server", running.url, "--token", "nope")
    assert wrong.returncode == 4 and "refused the token" in wrong.stderr


def test_remote_server_down_is_explained(tmp_path: Path) -> None:
    result = tether(tmp_path, "chat", "-m", "x", "--server", "http://127.0.0.1:9", "--token", "t")
    assert result.returncode == 3 and "is `tether serve` running there?" in result.stderr


CHANGED = SOURCE.replace(
    "def area(radius):\n", 'def area(radius):\n    """The area of a circle."""\n'
)


@pytest.mark.parametrize("remote", [False, True], ids=["in-process", "server"])
def test_suggest_writes_a_patch_that_applies(project: Path, tmp_path: Path, remote: bool) -> None:
    """The whole suggest-review-apply path, over an upstream whose answer is known."""
    args = ["suggest", "geometry.py", "-i", "Add a docstring to area.", "--json"]
    with stub_upstream(f"Here it is:\n```python\n{CHANGED}```\n") as stub:
        gateway = {"TETHER_ENGINE_KIND": "openai", "TETHER_UPSTREAM_BASE_URLS": stub.base_url}
        if remote:
            with tether_server(
                tmp_path / "srv",
                TETHER_ENGINE_KIND="openai",
                TETHER_UPSTREAM_BASE_URLS=stub.base_url,
            ) as srv:
                result = tether(
                    tmp_path, *args, "--server", srv.url, "--token", srv.token, cwd=project
                )
        else:
            result = tether(tmp_path, *args, cwd=project, **gateway)
    assert result.returncode == 0, result.stderr
    assert "Add a docstring to area." in json.dumps(stub.requests[0]["messages"])
    patch = Path(json.loads(result.stdout)["patch"])
    assert patch.read_text().startswith("--- a/geometry.py\n+++ b/geometry.py\n")
    assert (project / "geometry.py").read_text() == SOURCE  # nothing applied before review
    applied = tether(tmp_path, "suggest", "--apply", str(patch), cwd=project)
    assert applied.returncode == 0, applied.stderr
    assert (project / "geometry.py").read_text() == CHANGED
    again = tether(tmp_path, "suggest", "--apply", str(patch), cwd=project)
    assert again.returncode == 2 and "the patch is already applied" in again.stderr
    assert (project / "geometry.py").read_text() == CHANGED


def test_suggest_on_the_real_model_answers(
    project: Path, server: tuple[Path, RunningServer]
) -> None:
    home, _ = server
    args = ["suggest", "geometry.py", "-i", "Add a docstring to area.", "--max-tokens", "40"]
    result = tether(home, *args, "--json", cwd=project)
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert body["id"].startswith("chatcmpl-") and body["seed"] == 0
    assert (project / "geometry.py").read_text() == SOURCE


def test_suggest_apply_refuses_a_stale_patch(project: Path, tmp_path: Path) -> None:
    from tether.suggestions import make_patch

    patch = tmp_path / "change.patch"
    patch.write_text(make_patch(SOURCE, SOURCE.replace("2 *", "2.0 *"), "geometry.py"))
    (project / "geometry.py").write_text(SOURCE.replace("radius ** 2", "radius * radius"))
    before = (project / "geometry.py").read_text()
    ok = tether(tmp_path, "suggest", "--apply", str(patch), cwd=project)
    assert ok.returncode == 0, ok.stderr  # the hunk's own lines still match
    assert "2.0 * math.pi" in (project / "geometry.py").read_text()
    (project / "geometry.py").write_text(before.replace("2 * math.pi", "math.tau"))
    stale = tether(tmp_path, "suggest", "--apply", str(patch), cwd=project)
    assert stale.returncode == 2 and "no longer matches" in stale.stderr
    assert "math.tau" in (project / "geometry.py").read_text()


def test_a_company_proxy_in_the_environment_is_not_asked_for_this_machine(
    project: Path, server: tuple[Path, RunningServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTTP_PROXY and HTTPS_PROXY set for the internet, without NO_PROXY: the proxy answered
    the CLI's requests to the server on 127.0.0.1 with its own page, and the CLI called the
    server "not a tether server"; in process, the answer's audit record did not reach the
    server's log. Doctor's check of the server went there too."""
    home, running = server
    args = ["complete", "geometry.py", "--line", "5", "--col", "5", "--max-tokens", "4"]
    with refusing_proxy() as (variables, seen):
        for name, value in variables.items():  # the commands' environment is this one's
            monkeypatch.setenv(name, value)
        remote = tether(home, *args, "--server", running.url, cwd=project)
        local = tether(home, *args, cwd=project)
        doctor = tether(home, "doctor", "--json")
    assert remote.returncode == local.returncode == 0, remote.stderr + local.stderr
    assert "warning" not in remote.stderr + local.stderr, remote.stderr + local.stderr
    checks = {c["check"]: c for c in json.loads(doctor.stdout)}
    assert checks["server"]["ok"], checks["server"]
    assert seen == []


def test_models_config_doctor(tmp_path: Path, server: tuple[Path, RunningServer]) -> None:
    home, running = server
    models = tether(tmp_path, "models", "--json")
    assert models.returncode == 0, models.stderr
    (entry,) = json.loads(models.stdout)
    assert entry["size_bytes"] > 10**7 and len(entry["sha256"]) == 64
    assert entry["fim"] == "prefix-editor" and entry["trained_context"] == 8192
    remote = tether(home, "models", "--json", "--server", running.url)
    assert json.loads(remote.stdout)[0]["meta"]["sha256"] == entry["sha256"]

    (tmp_path / "tether.toml").write_text("[engine]\nn_parallel = 2\n")
    config = tether(tmp_path, "config", "--json", cwd=tmp_path, TETHER_SERVER_PORT="9999")
    rows = {r["key"]: r for r in json.loads(config.stdout)["settings"]}
    assert rows["engine.n_parallel"]["value"] == 2 and rows["engine.n_parallel"]["source"].endswith(
        "tether.toml"
    )
    assert rows["server.port"]["source"] == "env TETHER_SERVER_PORT"

    doctor = tether(tmp_path, "doctor", "--json")
    assert doctor.returncode == 0, doctor.stdout
    checks = {c["check"]: c for c in json.loads(doctor.stdout)}
    assert checks["llama.cpp decode"]["ok"]  # a real decode, in a child process
    # The running server's databases, open and written to, are checked and found whole.
    live = {c["check"]: c for c in json.loads(tether(home, "doctor", "--json").stdout)}
    assert live["traces.sqlite"]["ok"], live["traces.sqlite"]
    assert "not checked" not in live["traces.sqlite"]["detail"]
    broken = tether(tmp_path, "doctor", TETHER_ENGINE_MODEL_PATH=str(tmp_path / "missing.gguf"))
    assert broken.returncode == 1 and "no model file at" in broken.stdout


def test_serve_with_missing_model_fails_clearly(tmp_path: Path) -> None:
    result = tether(tmp_path, "serve", "--port", "0", "--model", str(tmp_path / "nope.gguf"))
    assert result.returncode == 2
    assert "no model file at" in result.stderr


def test_bad_config_fails_clearly(tmp_path: Path) -> None:
    (tmp_path / "tether.toml").write_text("[server]\nprot = 1\n")
    result = tether(tmp_path, "config", cwd=tmp_path)
    assert result.returncode == 2 and "server.prot" in result.stderr
    assert os.path.exists(tmp_path / "tether.toml")


def test_config_never_prints_a_credential(tmp_path: Path) -> None:
    env: dict[str, str] = {
        "TETHER_SERVER_TOKEN": "tth_team-secret-0123",
        "TETHER_UPSTREAM_API_KEY": "sk-upstream-secret",
        "TETHER_AUDIT_SENTRY_DSN": "https://abcdef0123@o1.ingest.example/1",
        "TETHER_AUDIT_WEBHOOK_URL": "https://user:pass@hooks.example/x?token=hooksecret",
        "TETHER_UPSTREAM_BASE_URLS": '["http://u:pw@up.example:8000/v1"]',
    }
    for args in (("config",), ("config", "--json")):
        result = tether(tmp_path, *args, cwd=tmp_path, **env)
        assert result.returncode == 0, result.stderr
        secrets = ("team-secret", "upstream-secret", "abcdef0123", "pass@", "hooksecret", "pw@")
        assert not [secret for secret in secrets if secret in result.stdout]
    rows = {r["key"]: r["value"] for r in json.loads(result.stdout)["settings"]}
    assert rows["upstream.base_urls"] == ["http://up.example:8000/v1"]
    assert (
        rows["audit.webhook_url"] == "https://hooks.example/***?***"
    )  # its path may be its secret
    assert rows["upstream.api_key"] == "***" and rows["server.port"] == 8421


def test_configured_token_replaces_the_generated_one(tmp_path: Path) -> None:
    with tether_server(tmp_path, TETHER_SERVER_TOKEN="tth_team-secret-0123") as srv:
        assert srv.token == "tth_team-secret-0123"
        with srv.client() as http:
            assert http.get("/v1/models").status_code == 200
        result = tether(tmp_path, "chat", "-m", "hi", "--max-tokens", "2", "--server", srv.url)
        assert result.returncode == 0, result.stderr


def test_port_in_use_is_explained(tmp_path: Path, server: tuple[Path, RunningServer]) -> None:
    _, running = server
    port = running.url.rsplit(":", 1)[1]
    result = tether(tmp_path, "serve", "--port", port)
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
