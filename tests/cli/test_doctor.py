"""`tether doctor` decodes the model in a child process: a llama.cpp built with kernels
the CPU cannot run crashes that child, and the check says how to rebuild it."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from fastapi import Depends, FastAPI

from tests.helpers import isolate_tether
from tether import hookimpl, plugins, require
from tether.cli.info import _decode_check, _not_ready_reason
from tether.cli.main import cli
from tether.models import default_model_path
from tether.server.runtime import RuntimeRecord, write_runtime_file


def test_the_model_decodes_here() -> None:
    check = _decode_check(default_model_path())
    assert check["ok"], check
    assert check["detail"] == "decodes the model on this CPU" and check["fix"] == ""


def test_a_crash_while_decoding_is_named_with_the_rebuild_that_fixes_it() -> None:
    crash = "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"
    check = _decode_check(default_model_path(), [sys.executable, "-c", crash])
    assert not check["ok"]
    assert check["detail"] == "crashed (SIGSEGV) while decoding"
    assert "-mno-amx-int8" in check["fix"] and "--force-reinstall" in check["fix"]


def test_a_failure_says_what_the_child_said() -> None:
    fail = "import sys; sys.exit('llama.cpp could not allocate its buffers')"
    check = _decode_check(default_model_path(), [sys.executable, "-c", fail])
    assert not check["ok"]
    assert check["detail"] == (
        "failed to load or decode it (exit 1): llama.cpp could not allocate its buffers"
    )
    assert "GGUF" in check["fix"] and "--force-reinstall" not in check["fix"]


def test_a_decode_that_does_not_finish_is_not_blamed_on_the_build() -> None:
    hang = "import time; time.sleep(30)"
    check = _decode_check(default_model_path(), [sys.executable, "-c", hang], timeout_s=0.5)
    assert not check["ok"] and check["detail"] == "no answer in 0.5 s"
    assert "engine.n_threads" in check["fix"] and "--force-reinstall" not in check["fix"]


def test_the_not_ready_reason_is_read_from_old_and_new_servers() -> None:
    def said(body: object) -> str:
        return _not_ready_reason(httpx.Response(503, json=body))

    assert said({"status": "unavailable", "engine": "openai", "reason": "r"}) == "r"
    assert said({"engine": "openai"}) == "the openai engine is not answering"  # before reason
    assert said({"engine": "embedded", "audit": "disk full"}) == "disk full"
    assert said(["not", "an", "object"]) == "HTTP 503"
    assert _not_ready_reason(httpx.Response(503, text="<html>")) == "HTTP 503"


def test_doctor_asks_each_upstream_of_a_gateway(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It used to list the URLs as fine with nothing listening there."""
    from tests.stub_upstream import stub_upstream

    isolate_tether(monkeypatch, tmp_path)
    with stub_upstream("up") as up:
        dead = "http://127.0.0.1:9/v1"
        monkeypatch.setenv("TETHER_ENGINE_KIND", "openai")
        monkeypatch.setenv("TETHER_UPSTREAM_BASE_URLS", f"{up.base_url},{dead}")
        doctor = CliRunner().invoke(cli, ["doctor", "--json"])
        up.refuse = (401, {})
        refused = CliRunner().invoke(cli, ["doctor", "--json"])
    checks = {c["check"]: c for c in json.loads(doctor.output)}
    assert checks[f"upstream {up.base_url}"]["ok"]
    assert (
        not checks[f"upstream {dead}"]["ok"]
        and "does not answer" in checks[f"upstream {dead}"]["detail"]
    )
    assert doctor.exit_code == 1
    again = {c["check"]: c for c in json.loads(refused.output)}
    assert "refuses tether's credentials" in again[f"upstream {up.base_url}"]["detail"]


def test_doctor_names_an_upstream_url_the_gateway_refuses_without_its_query(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It used to show the URL whole, its key in the query, and report the 404 that the
    paths added after the query got."""
    from tests.stub_upstream import stub_upstream

    isolate_tether(monkeypatch, tmp_path)
    with stub_upstream("up") as up:
        monkeypatch.setenv("TETHER_ENGINE_KIND", "openai")
        monkeypatch.setenv("TETHER_UPSTREAM_BASE_URLS", f"{up.base_url}?key=QKEY")
        doctor = CliRunner().invoke(cli, ["doctor", "--json"])
    assert "QKEY" not in doctor.output
    checks = {c["check"]: c for c in json.loads(doctor.output)}
    check = checks[f"upstream {up.base_url}?***"]
    assert not check["ok"] and "has a query string or fragment" in check["fix"]
    assert doctor.exit_code == 1


def test_doctor_says_when_the_admin_token_file_would_stop_the_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It used to call everything fine while `tether serve` refused to start."""
    isolate_tether(monkeypatch, tmp_path)
    monkeypatch.setenv("TETHER_ENGINE_KIND", "openai")  # no model to decode
    monkeypatch.setenv("TETHER_UPSTREAM_BASE_URLS", "http://127.0.0.1:9/v1")

    def token_check() -> dict[str, object]:
        doctor = CliRunner().invoke(cli, ["doctor", "--json"])
        checks: list[dict[str, object]] = json.loads(doctor.output)
        (check,) = [c for c in checks if c["check"] == "admin token"]
        return check

    assert token_check() == {
        "check": "admin token", "ok": True, "detail": "a new one at each start", "fix": ""
    }  # fmt: skip
    secret = tmp_path / "admin-token"
    monkeypatch.setenv("TETHER_SERVER_TOKEN_FILE", str(secret))
    missing = token_check()
    assert not missing["ok"] and "mount the secret there" in str(missing["fix"])
    secret.write_text("\n")
    assert "must hold one token on one line" in str(token_check()["fix"])
    secret.write_text("tth_secret-value\n")
    mounted = token_check()
    assert mounted["ok"] and mounted["detail"] == f"from {secret}"
    assert "tth_secret-value" not in json.dumps(mounted)


def test_doctor_names_a_broken_policy_rule_before_serve_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A custom rule RE2 rejects used to show only when `tether serve` refused to start."""
    isolate_tether(monkeypatch, tmp_path)
    config = tmp_path / "tether.toml"
    monkeypatch.setenv("TETHER_CONFIG", str(config))
    monkeypatch.setenv("TETHER_ENGINE_KIND", "openai")  # no model to decode
    monkeypatch.setenv("TETHER_UPSTREAM_BASE_URLS", "http://127.0.0.1:9/v1")

    def policy_check() -> dict[str, object]:
        doctor = CliRunner().invoke(cli, ["doctor", "--json"])
        checks: list[dict[str, object]] = json.loads(doctor.output)
        (check,) = [c for c in checks if c["check"] == "prompt policy"]
        return check

    config.write_text('[[policy.rules]]\nid = "ticket"\nregex = "TCK-[0-9]{6}"\n')
    fine = policy_check()
    assert fine["ok"] and "1 custom" in str(fine["detail"])
    config.write_text('[[policy.rules]]\nid = "ticket"\nregex = "(?<=id=)[0-9]+"\n')
    broken = policy_check()
    assert not broken["ok"] and broken["detail"] == "broken"
    assert "rule 'ticket'" in str(broken["fix"]) and "look-arounds" in str(broken["fix"])
    config.write_text('[policy]\nactions = { emial = "block" }\n')
    assert "no rule 'emial'" in str(policy_check()["fix"])


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"TETHER_COMPLIANCE_ACTIONS": '{"security/eval": "nuke"}'}, "'nuke'; use one of"),
        ({"TETHER_ENGINE_KIND": "nosuch"}, "unknown engine.kind 'nosuch'"),
        ({"TETHER_SERVER_TLS_CERT": "/nonexistent.pem"}, "set both server.tls_cert"),
    ],
)
def test_doctor_names_what_serve_would_refuse_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], says: str
) -> None:
    isolate_tether(monkeypatch, tmp_path)
    monkeypatch.setenv("TETHER_ENGINE_KIND", "openai")  # no model to decode
    monkeypatch.setenv("TETHER_UPSTREAM_BASE_URLS", "http://127.0.0.1:9/v1")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    doctor = CliRunner().invoke(cli, ["doctor", "--json"])
    (check,) = [c for c in json.loads(doctor.stdout) if c["check"] == "serve settings"]
    assert not check["ok"] and says in check["fix"], check
    assert doctor.exit_code != 0


@pytest.mark.parametrize(
    "refused",
    [("TETHER_ENGINE_KIND", "TETHER_SERVER_TLS_CERT"), ("TETHER_COMPLIANCE_ACTIONS",)],
)
def test_doctor_names_every_setting_serve_would_refuse_not_only_the_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, refused: tuple[str, ...]
) -> None:
    isolate_tether(monkeypatch, tmp_path)
    env = {
        "TETHER_ENGINE_KIND": ("nosuch", "unknown engine.kind 'nosuch'"),
        "TETHER_COMPLIANCE_ACTIONS": ('{"security/eval": "nuke"}', "'nuke'; use one of"),
        "TETHER_SERVER_TLS_CERT": ("/nonexistent.pem", "set both server.tls_cert"),
    }
    for name in (*refused, "TETHER_SERVER_TLS_CERT"):
        monkeypatch.setenv(name, env[name][0])
    doctor = CliRunner().invoke(cli, ["doctor", "--json"])
    (check,) = [c for c in json.loads(doctor.stdout) if c["check"] == "serve settings"]
    for name in (*refused, "TETHER_SERVER_TLS_CERT"):
        assert check["fix"].count(env[name][1]) == 1, check


class _RoutesFail:
    @hookimpl
    def register_routes(self, app: FastAPI) -> None:
        app.get("/house", dependencies=[Depends(require("house:read"))])(lambda: {})


class _RoutesClash:
    @hookimpl
    def register_routes(self, app: FastAPI) -> None:
        app.get("/v1/models")(lambda: {"data": []})


@pytest.mark.parametrize(
    ("plugin", "said"),
    [
        (_RoutesFail(), ("plugin 'house' failed to add its routes", "'house:read' is not a scope")),
        (_RoutesClash(), ("a plugin adds routes on tether's own paths: GET /v1/models",)),
    ],
    ids=["scope", "tether-s-path"],
)
def test_doctor_names_a_plugin_whose_routes_serve_would_refuse(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, plugin: object, said: tuple[str, ...]
) -> None:
    isolate_tether(monkeypatch, tmp_path)
    monkeypatch.setenv("TETHER_ENGINE_KIND", "openai")  # no model to decode
    monkeypatch.setenv("TETHER_UPSTREAM_BASE_URLS", "http://127.0.0.1:9/v1")
    monkeypatch.setattr(plugins, "enabled_plugins", lambda settings: [("house", plugin)])
    doctor = CliRunner().invoke(cli, ["doctor", "--json"])
    (check,) = [c for c in json.loads(doctor.stdout) if c["check"] == "serve settings"]
    assert not check["ok"], check
    for words in said:
        assert words in check["fix"], check


class _Route:
    def __init__(self, method: str, path: str) -> None:
        self.method, self.path = method, path

    @hookimpl
    def register_routes(self, app: FastAPI) -> None:
        app.add_api_route(self.path, lambda: {}, methods=[self.method])


@pytest.mark.parametrize(
    ("method", "path", "refused"),
    [
        ("GET", "/redoc", False),  # a page the server leaves out, a plugin may serve
        ("DELETE", "/mcp", True),  # /mcp answers every method
        ("GET", "/openapi.json", True),
    ],
)
def test_doctor_refuses_the_plugin_routes_serve_refuses_and_no_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, method: str, path: str, refused: bool
) -> None:
    from tests.conftest import make_settings
    from tests.helpers import ScriptedEngine
    from tether.errors import ConfigError
    from tether.server.app import build_app

    manager = plugins.build_manager(make_settings(tmp_path))
    plugins.register_plugins(manager, [("house", _Route(method, path))])
    try:
        build_app(make_settings(tmp_path), "t" * 40, lambda: ScriptedEngine("x"), manager)
    except ConfigError:
        served = False
    else:
        served = True
    assert served is not refused  # the server's own word, which doctor must repeat
    isolate_tether(monkeypatch, tmp_path)
    monkeypatch.setenv("TETHER_ENGINE_KIND", "openai")  # no model to decode
    monkeypatch.setenv("TETHER_UPSTREAM_BASE_URLS", "http://127.0.0.1:9/v1")
    house = _Route(method, path)
    monkeypatch.setattr(plugins, "enabled_plugins", lambda settings: [("house", house)])
    doctor = CliRunner().invoke(cli, ["doctor", "--json"])
    (check,) = [c for c in json.loads(doctor.stdout) if c["check"] == "serve settings"]
    assert check["ok"] is not refused, check
    if refused:
        assert f"a plugin adds routes on tether's own paths: {method} {path}" in check["fix"]


def _html_page(status: int, page: bytes) -> type[BaseHTTPRequestHandler]:
    """A web server's answer to every GET: ``status`` with an HTML ``page``, not tether's."""

    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args: object) -> None:
            pass

    return Page


_WebPage = _html_page(404, b"<html>Not Found</html>")


@pytest.mark.parametrize("from_env", [False, True])
def test_doctor_checks_the_server_commands_are_pointed_at(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, from_env: bool
) -> None:
    """`cannot reach the server … (tether doctor checks)`: it checked only the runtime
    file's server, never the one --server or TETHER_SERVER names."""
    isolate_tether(monkeypatch, tmp_path)
    monkeypatch.setenv("TETHER_ENGINE_KIND", "openai")  # no model to decode
    monkeypatch.setenv("TETHER_UPSTREAM_BASE_URLS", "http://127.0.0.1:9/v1")
    web = ThreadingHTTPServer(("127.0.0.1", 0), _WebPage)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{web.server_address[1]}"

    def server_check(args: list[str]) -> dict[str, object]:
        doctor = CliRunner().invoke(cli, ["doctor", "--json", *args])
        checks: list[dict[str, object]] = json.loads(doctor.output)
        (check,) = [c for c in checks if c["check"] == "server"]
        return check

    try:
        if from_env:
            monkeypatch.setenv("TETHER_SERVER", url)
        other = server_check([] if from_env else ["--server", url])
        dead = server_check(["--server", "http://127.0.0.1:9"])
    finally:
        web.shutdown()
        web.server_close()
    assert not other["ok"] and "is not a tether server (HTTP 404 on /readyz)" in str(other)
    assert not dead["ok"] and dead["detail"] == "http://127.0.0.1:9 does not answer"


_ProxyOfAStoppedServer = _html_page(502, b"<html><title>502 Bad Gateway</title>nginx</html>")


def test_a_proxy_in_front_of_a_stopped_server_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It said "answers but is not ready: HTTP 502; a gateway needs an upstream", of a
    server that was not running behind nginx."""
    isolate_tether(monkeypatch, tmp_path)
    monkeypatch.setenv("TETHER_ENGINE_KIND", "openai")  # no model to decode
    monkeypatch.setenv("TETHER_UPSTREAM_BASE_URLS", "http://127.0.0.1:9/v1")
    proxy = ThreadingHTTPServer(("127.0.0.1", 0), _ProxyOfAStoppedServer)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{proxy.server_address[1]}/tether"
    try:
        doctor = CliRunner().invoke(cli, ["doctor", "--json", "--server", url])
    finally:
        proxy.shutdown()
        proxy.server_close()
    (check,) = [c for c in json.loads(doctor.output) if c["check"] == "server"]
    assert not check["ok"]
    assert check["detail"].startswith(f"{url} did not answer /readyz: a proxy answered 502")
    assert "check that `tether serve` runs" in check["detail"]


@pytest.mark.parametrize("home", ["/proc/tether-home", "/sys/kernel/tether-home"])
def test_a_data_directory_that_cannot_be_made_is_not_passed(home: str) -> None:
    """Root may write anywhere by os.access, /proc and /sys included, where nothing can be
    made: the first command then failed where doctor had said ok."""
    from tether.cli.info import _data_directory_check

    check = _data_directory_check(Path(home))
    assert not check["ok"] and "cannot write in" in check["detail"], check
    assert "set TETHER_HOME" in check["fix"]


def test_a_writable_data_directory_is_passed_and_left_as_it_was(tmp_path: Path) -> None:
    from tether.cli.info import _data_directory_check

    assert _data_directory_check(tmp_path / "home")["ok"]
    assert list(tmp_path.iterdir()) == []  # nothing made, nothing left behind


def test_a_port_another_program_holds_is_named_before_serve_fails_on_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    isolate_tether(monkeypatch, tmp_path)
    monkeypatch.setenv("TETHER_ENGINE_KIND", "openai")
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        monkeypatch.setenv("TETHER_SERVER_PORT", str(held.getsockname()[1]))
        doctor = CliRunner().invoke(cli, ["doctor", "--json"])
    (check,) = [c for c in json.loads(doctor.output) if c["check"] == "server"]
    assert not check["ok"] and "`tether serve` would fail: cannot listen on" in check["detail"]
    assert "choose another port with --port" in check["fix"]
    freed = CliRunner().invoke(cli, ["doctor", "--json"])
    (check,) = [c for c in json.loads(freed.output) if c["check"] == "server"]
    assert check["ok"] and "is free for `tether serve`" in check["detail"]


def test_a_runtime_folder_serve_cannot_make_is_named_before_serve_fails_on_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under a HOME that cannot be written (a service user's /nonexistent), every check
    passed, and `tether serve` then stopped at once on its runtime folder."""
    isolate_tether(monkeypatch, tmp_path)
    monkeypatch.setenv("TETHER_ENGINE_KIND", "openai")
    monkeypatch.setenv("TETHER_SERVER_RUNTIME_DIR", "/proc/tether-run")
    doctor = CliRunner().invoke(cli, ["doctor", "--json"])
    (check,) = [c for c in json.loads(doctor.output) if c["check"] == "server"]
    assert not check["ok"], check
    assert (
        "`tether serve` would fail: cannot make the runtime folder /proc/tether-run"
        in (check["detail"])
    )
    assert "TETHER_SERVER_RUNTIME_DIR" in check["fix"]
    fine = tmp_path / "run"
    monkeypatch.setenv("TETHER_SERVER_RUNTIME_DIR", str(fine))
    freed = CliRunner().invoke(cli, ["doctor", "--json"])
    (check,) = [c for c in json.loads(freed.output) if c["check"] == "server"]
    assert check["ok"], check
    assert not fine.exists()  # tried, not made


def test_doctor_asks_an_upstream_for_the_model_and_a_completion(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An upstream that answered its listing was called fine though it did not serve the
    model named, or failed every completion."""
    from tests.stub_upstream import MODEL, stub_upstream

    isolate_tether(monkeypatch, tmp_path)
    monkeypatch.setenv("TETHER_ENGINE_KIND", "openai")

    def upstream_check(model: str | None = None) -> dict[str, str]:
        if model is not None:
            monkeypatch.setenv("TETHER_UPSTREAM_MODEL", model)
        doctor = CliRunner().invoke(cli, ["doctor", "--json"])
        checks: dict[str, dict[str, str]] = {c["check"]: c for c in json.loads(doctor.output)}
        return checks[f"upstream {up.base_url}"]

    with stub_upstream("up") as up:
        monkeypatch.setenv("TETHER_UPSTREAM_BASE_URLS", up.base_url)
        fine = upstream_check()
        named = upstream_check(MODEL)
        unlisted = upstream_check("no-such-model")
        monkeypatch.delenv("TETHER_UPSTREAM_MODEL")
        up.poison = "Hi"  # every completion doctor sends fails
        failing = upstream_check()
        key = "sk-gateway-key-0123456789"
        monkeypatch.setenv("TETHER_UPSTREAM_API_KEY", key)
        # Echoed back, as some do, where a cut at 200 characters would fall inside it.
        up.refusal = f"{'x' * 160} upstream auth failed for Bearer {key}"
        echoed = upstream_check()
        up.poison, up.raw = None, ("text/html", b"<html>a proxy's page</html>")
        garbage = upstream_check()
    assert fine["ok"] and fine["detail"] == f"answers a one-token completion with {MODEL}"
    assert named["ok"]
    assert (
        not unlisted["ok"] and "does not list upstream.model 'no-such-model'" in unlisted["detail"]
    )
    assert MODEL in unlisted["detail"]
    assert not failing["ok"] and "fails a one-token completion (HTTP 500" in failing["detail"]
    assert not garbage["ok"] and "not an OpenAI completion" in garbage["detail"]
    assert key[:8] not in json.dumps(echoed) and "auth failed for Bearer ***" in echoed["detail"]


def test_a_data_directory_whose_entries_cannot_be_read_is_named_not_a_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another user's data directory (mode 0700, or read but not searched): each check
    that looks inside it is a finding, and doctor still reports the rest."""
    import errno
    import os

    isolate_tether(monkeypatch, tmp_path)
    home = tmp_path / "home"
    (home / "audit").mkdir(parents=True)
    real_stat = Path.stat

    def stat(path: Path, **kwargs: object) -> os.stat_result:
        if home in path.parents:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_stat(path, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "stat", stat)
    doctor = CliRunner().invoke(cli, ["doctor", "--json"])
    assert doctor.exit_code == 1, doctor.output
    found = {check["check"]: check for check in json.loads(doctor.stdout)}
    assert not found["audit log"]["ok"] and "Permission denied" in found["audit log"]["detail"]
    assert "make it readable" in found["audit log"]["fix"]
    assert not found["serve settings"]["ok"], found["serve settings"]
    assert "corpus.sqlite" in found["serve settings"]["fix"]
    assert "server" in found  # the checks after these still ran


def test_doctor_names_the_runtime_file_of_a_server_that_is_gone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server killed (kill -9, the OOM killer) leaves its runtime file: it was removed
    without a word, though the server the user thinks is running is not."""
    isolate_tether(monkeypatch, tmp_path)
    monkeypatch.setenv("TETHER_ENGINE_KIND", "openai")  # no model to decode
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)  # fmt: skip
    pid = int(ended.stdout)
    record = RuntimeRecord("http://127.0.0.1:9", "t", pid, data_home=str(tmp_path / "home"))
    left = write_runtime_file(tmp_path / "run", 9, record)
    doctor = CliRunner().invoke(cli, ["doctor", "--json"])
    (check,) = [c for c in json.loads(doctor.output) if c["check"] == "runtime file"]
    assert f"http://127.0.0.1:9 (pid {pid}) ended without removing" in check["detail"]
    assert "tether serve" in check["detail"] and not left.exists()
