"""Which server a command talks to, with which token, and the status when that fails."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
from click.testing import CliRunner

from tests.conftest import make_settings
from tests.helpers import isolate_tether
from tether.cli.backend import HttpBackend
from tether.cli.common import EXIT_AUTH, EXIT_UNAVAILABLE, EXIT_USAGE
from tether.cli.main import cli
from tether.engines.base import SamplingParams
from tether.errors import EngineUnavailableError
from tether.pipeline import ChatTask
from tether.server.runtime import RuntimeRecord, write_runtime_file

TOKEN = "the-admin-token"


class _Server(BaseHTTPRequestHandler):
    """Answers /v1/models to the admin token, 401 to any other token, 404 elsewhere."""

    def do_GET(self) -> None:
        body: dict[str, object]
        if self.path != "/v1/models":
            status, body = 404, {"error": {"message": f"no route GET {self.path}"}}
        elif self.headers.get("Authorization") == f"Bearer {TOKEN}":
            meta = {"n_ctx": 8192, "model_sha256": None, "sha256": None,
                    "fim": {"prefix": "<fim_prefix>"}, "stops": ["\n"]}  # fmt: skip
            status, body = 200, {"data": [{"id": "stub", "meta": meta}, {"id": "second"}]}
        else:
            status, body = 401, {"error": {"message": "missing or unknown token"}}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def run_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    isolate_tether(monkeypatch, tmp_path)
    monkeypatch.chdir(tmp_path)
    return tmp_path / "run"


def _serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[int]:
    """The port of an HTTP server answering with ``handler``, for the test's length."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture
def port() -> Iterator[int]:
    yield from _serving(_Server)


def _record(run_dir: Path, port: int, pid: int) -> None:
    write_runtime_file(run_dir, port, RuntimeRecord(f"http://127.0.0.1:{port}", TOKEN, pid))


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_localhost_finds_the_runtime_file_of_the_server_on_127_0_0_1(
    run_dir: Path, port: int
) -> None:
    _record(run_dir, port, os.getpid())
    result = CliRunner().invoke(cli, ["models", "--server", f"http://localhost:{port}/"])
    assert result.exit_code == 0, result.output
    # The description's lines under the id, each name once (not as well under its alias).
    assert result.output.splitlines() == [
        "id               stub",
        "n_ctx            8192",
        "sha256           -",
        "fim",
        "  prefix         <fim_prefix>",
        'stops            ["\\n"]',
        "",
        "id               second",
    ]


@pytest.mark.parametrize("suffix", ["/v1", "/v1/"])
def test_a_server_url_with_the_v1_of_openai_clients_is_taken(
    run_dir: Path, port: int, suffix: str
) -> None:
    _record(run_dir, port, os.getpid())  # its token is found, too
    result = CliRunner().invoke(cli, ["models", "--server", f"http://127.0.0.1:{port}{suffix}"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("id               stub\n")


def test_no_token_for_a_server_that_answers_is_refused_saying_what_to_pass(
    run_dir: Path, port: int
) -> None:
    result = CliRunner().invoke(cli, ["models", "--server", f"http://127.0.0.1:{port}"])
    assert result.exit_code == EXIT_AUTH, result.output
    assert "needs a token" in result.output and "--token" in result.output


@pytest.mark.parametrize("stale", [True, False])
def test_no_token_for_a_server_that_is_not_there_is_unavailable(run_dir: Path, stale: bool) -> None:
    if stale:  # the server was killed and left its runtime file
        _record(run_dir, 9, _dead_pid())
    result = CliRunner().invoke(cli, ["models", "--server", "http://127.0.0.1:9"])
    assert result.exit_code == EXIT_UNAVAILABLE, result.output
    assert "cannot reach the server" in result.output


@pytest.mark.parametrize("url", ["notaurl", "ftp://127.0.0.1:9", "http://", "http://[::1"])
def test_a_server_that_is_not_a_url_is_bad_input(run_dir: Path, url: str) -> None:
    result = CliRunner().invoke(cli, ["models", "--server", url, "--token", "x"])
    assert result.exit_code == EXIT_USAGE, result.output
    assert "is not a server URL" in result.output


def test_a_server_url_from_the_environment_is_named_by_its_variable(
    run_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TETHER_SERVER", "notaurl")
    result = CliRunner().invoke(cli, ["models", "--token", "x"])
    assert result.exit_code == EXIT_USAGE, result.output
    assert "TETHER_SERVER='notaurl' is not a server URL" in result.output
    assert "--server" not in result.output


@pytest.mark.parametrize(
    ("trace_id", "url"),
    [
        ("chatcmpl-1a2b", "/v1/traces/chatcmpl-1a2b"),
        ("../tokens", "/v1/traces/..%2Ftokens"),
        ("x?limit=1", "/v1/traces/x%3Flimit%3D1"),
        ("a#b", "/v1/traces/a%23b"),
    ],
)
def test_a_trace_id_is_a_name_in_the_url_never_a_path_or_query(trace_id: str, url: str) -> None:
    from tether.cli.backend import trace_url

    assert trace_url(trace_id) == url


def test_an_empty_trace_id_is_refused() -> None:
    from tether.cli.backend import trace_url
    from tether.errors import RequestError

    for refused in ("  ", ".", ".."):
        with pytest.raises(RequestError, match="explain --recent"):
            trace_url(refused)


@pytest.mark.parametrize("token", ["\u201cthe-admin-token\u201d", "caf\u00e9", "a\nb", "x\udcff"])
def test_a_token_no_header_can_carry_is_refused_in_words(
    run_dir: Path, port: int, token: str
) -> None:
    # From the environment: an argument that is not UTF-8 is refused before any command.
    result = CliRunner().invoke(
        cli, ["models", "--server", f"http://127.0.0.1:{port}"], env={"TETHER_TOKEN": token}
    )
    assert result.exit_code == EXIT_AUTH, result.output
    assert "characters no token has" in result.output and "internal error" not in result.output


def test_a_token_with_a_trailing_newline_is_read_as_the_server_reads_it(
    run_dir: Path, port: int
) -> None:
    server = f"http://127.0.0.1:{port}"
    result = CliRunner().invoke(cli, ["models", "--server", server, "--token", f"{TOKEN}\n"])
    assert result.exit_code == 0, result.output


# Another program's server: its answer to each path.
_OTHER_ANSWERS: dict[str, tuple[int, str, bytes]] = {
    "/v1/models": (404, "text/html", b"<html><body>Not Found</body></html>"),
    "/v1/chat/completions": (200, "text/html", b"<html><body>Welcome</body></html>"),
    "/v1/fim/completions": (404, "application/json", b'{"detail": "Not Found"}'),
    "/wrong/v1/models": (200, "application/json", b'{"models": ["x"]}'),
    "/plain/v1/models": (200, "text/plain", b"it works"),
    "/wrong/v1/chat/completions": (200, "text/event-stream", b'data: {"choices": ["hi"]}\n\n'),
    "/wrong/v1/fim/completions": (200, "text/event-stream", b'data: {"error": "no"}\n\n'),
    "/wrong/v1/suggestions": (200, "application/json", b'{"choices": []}'),
    "/wrong/v1/traces/abc": (200, "application/json", b'{"trace": "abc"}'),
    "/wrong/v1/traces?limit=20": (200, "application/json", b"[]"),
    "/empty/v1/chat/completions": (200, "text/event-stream", b""),
    "/cut/v1/chat/completions": (
        200,
        "text/event-stream",
        b'data: {"choices": [{"index": 0, "delta": {"content": "Hel"}}]}\n\n',
    ),
    "/openai/v1/fim/completions": (
        404,
        "application/json",
        b'{"error": {"message": "File Not Found", "type": "not_found_error"}}',
    ),
}


_TETHER_MODELS = json.dumps({"data": [{"id": "stub", "meta": {"n_ctx": 8192}}]}).encode()
for _base in ("/empty", "/cut"):  # a tether server whose answers are cut short
    _OTHER_ANSWERS[f"{_base}/v1/models"] = (200, "application/json", _TETHER_MODELS)

# A reverse proxy's own answers in front of a tether server: nginx's pages, Caddy's nothing.
_NGINX_PAGE = b"<html><head><title>%d</title></head><body>nginx</body></html>"
_OTHER_ANSWERS["/down/v1/models"] = (502, "text/html", _NGINX_PAGE % 502)
_OTHER_ANSWERS["/caddy-down/v1/models"] = (502, "", b"")
_OTHER_ANSWERS["/paused/v1/models"] = (503, "text/html", _NGINX_PAGE % 503)
for _base, _status in (("/small-body", 413), ("/short-timeout", 504), ("/rate-limited", 429)):
    _OTHER_ANSWERS[f"{_base}/v1/models"] = (200, "application/json", _TETHER_MODELS)
    _OTHER_ANSWERS[f"{_base}/v1/chat/completions"] = (_status, "text/html", _NGINX_PAGE % _status)


class _Other(BaseHTTPRequestHandler):
    def _answer(self) -> None:
        status, kind, data = _OTHER_ANSWERS.get(self.path, (404, "text/html", b"<html></html>"))
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._answer()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def other_port() -> Iterator[int]:
    yield from _serving(_Other)


@pytest.mark.parametrize(
    ("args", "base"),
    [
        (["models"], ""),  # a web page for 404
        (["models"], "/wrong"),  # JSON of another shape
        (["models"], "/plain"),  # not JSON
        (["chat", "-m", "hi"], ""),  # a web page for 200
        (["complete", "a.py", "--line", "1"], ""),  # a bare 404
        (["complete", "a.py", "--line", "1"], "/openai"),  # an OpenAI server without FIM
        (["explain", "abc"], "/wrong"),  # JSON that is not a trace
        (["chat", "-m", "hi"], "/wrong"),  # events of another shape
        (["complete", "a.py", "--line", "1"], "/wrong"),
        (["explain", "--recent"], "/wrong"),  # a list that is not tether's
        (["repro", "record", "abc"], "/wrong"),
        (["suggest", "a.py", "-i", "tidy"], "/wrong"),
    ],
)
def test_a_server_that_is_not_tether_is_named_so(
    run_dir: Path, other_port: int, args: list[str], base: str
) -> None:
    Path("a.py").write_text("x = 1\n")
    server = f"http://127.0.0.1:{other_port}{base}"
    result = CliRunner().invoke(cli, [*args, "--server", server, "--token", "t"])
    assert result.exit_code == EXIT_USAGE, result.output
    assert f"the server at {server} is not a tether server" in result.output
    assert "check --server" in result.output
    assert "internal error" not in result.output and "<html>" not in result.output


@pytest.mark.parametrize(
    ("base", "status", "exit_code", "advice"),
    [
        ("/down", 502, EXIT_UNAVAILABLE, "check that `tether serve` runs"),
        ("/caddy-down", 502, EXIT_UNAVAILABLE, "check that `tether serve` runs"),
        ("/paused", 503, EXIT_UNAVAILABLE, "check that `tether serve` runs"),
        # nginx's limit_req and limit_conn refuse with 503 too, tether running behind them
        ("/paused", 503, EXIT_UNAVAILABLE, "limit_req"),
        ("/small-body", 413, EXIT_USAGE, "client_max_body_size"),
        ("/short-timeout", 504, EXIT_UNAVAILABLE, "proxy_read_timeout"),
        # nginx's limit_req with limit_req_status 429: "not a tether server; check --server"
        ("/rate-limited", 429, EXIT_UNAVAILABLE, "limit_req"),
    ],
)
def test_a_proxys_own_answer_says_what_to_change_there(
    run_dir: Path, other_port: int, base: str, status: int, exit_code: int, advice: str
) -> None:
    """nginx's 502 page for a tether server that is down, or its 413 for a prompt over its
    body limit, was called another program: "not a tether server; check --server"."""
    server = f"http://127.0.0.1:{other_port}{base}"
    result = CliRunner().invoke(cli, ["chat", "-m", "hi", "--server", server, "--token", "t"])
    assert result.exit_code == exit_code, result.output
    assert f"the server at {server} did not answer" in result.output
    assert f"a proxy answered {status}" in result.output and advice in result.output
    assert "not a tether server" not in result.output and "<html>" not in result.output


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A server that takes connections and never answers."""
    listener = socket.create_server(("127.0.0.1", 0))
    taken: list[socket.socket] = []

    def accept() -> None:
        with contextlib.suppress(OSError):  # the listener closed: the test is over
            while True:
                taken.append(listener.accept()[0])

    threading.Thread(target=accept, daemon=True).start()
    yield listener.getsockname()[1]
    listener.close()
    for connection in taken:
        connection.close()


@pytest.mark.parametrize("args", [["models"], ["chat", "-m", "hi"]])
def test_a_server_that_never_answers_is_named_silent(
    run_dir: Path, silent_port: int, args: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("tether.cli.backend.READ_TIMEOUT_S", 0.5)
    monkeypatch.setattr("tether.cli.backend.GENERATE_TIMEOUT_S", 0.5)
    server = f"http://127.0.0.1:{silent_port}"
    result = CliRunner().invoke(cli, [*args, "--server", server, "--token", "t"])
    assert result.exit_code == EXIT_UNAVAILABLE, result.output
    assert f"the server at {server} took the connection but said nothing for 0.5 s" in (
        result.output
    )
    assert "restart it" in result.output


@pytest.mark.parametrize(
    "args",
    [["chat", "-m", "hi"], ["suggest", "a.py", "-i", "add types"]],  # streamed; one JSON answer
)
def test_a_silent_server_is_noted_once_then_named_silent(
    run_dir: Path, silent_port: int, monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> None:
    monkeypatch.setattr("tether.cli.backend.WAIT_NOTICE_S", 0.2)
    monkeypatch.setattr("tether.cli.backend.GENERATE_TIMEOUT_S", 1.0)
    monkeypatch.setattr("tether.cli.backend.READ_TIMEOUT_S", 1.0)  # a chat asks /v1/models
    Path("a.py").write_text("def f(x):\n    return x\n")
    server = f"http://127.0.0.1:{silent_port}"
    result = CliRunner().invoke(cli, [*args, "--server", server, "--token", "t"])
    assert result.exit_code == EXIT_UNAVAILABLE, result.output
    note = f"note: no answer yet from the server at {server} after 0.2 s"
    assert result.stderr.count(note) == 1, result.stderr
    assert "waiting up to 1 s for it" in result.stderr
    assert result.stderr.index(note) < result.stderr.index("said nothing for 1 s")


def test_many_requests_waiting_on_one_server_are_noted_once(
    tmp_path: Path,
    silent_port: int,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An evaluation sends its samples at once: one note says the server is slow, not one
    per sample."""
    monkeypatch.setattr("tether.cli.backend.WAIT_NOTICE_S", 0.2)
    monkeypatch.setattr("tether.cli.backend.GENERATE_TIMEOUT_S", 0.6)
    monkeypatch.setattr("tether.cli.backend.READ_TIMEOUT_S", 0.6)
    task = ChatTask(SamplingParams(max_tokens=4), [{"role": "user", "content": "hi"}])

    async def ask_three() -> list[object]:
        url = f"http://127.0.0.1:{silent_port}"
        async with HttpBackend(make_settings(tmp_path), url, "t") as backend:
            return await asyncio.gather(
                *(backend.run(task) for _ in range(3)), return_exceptions=True
            )

    failures = asyncio.run(ask_three())
    assert all(isinstance(failure, EngineUnavailableError) for failure in failures), failures
    assert capsys.readouterr().err.count("note: no answer yet") == 1


_ANSWER = (
    b'data: {"choices": [{"index": 0, "delta": {"content": "Hello"}, "finish_reason": "stop"}]}'
    b"\n\ndata: [DONE]\n\n"
)


class _Slow(BaseHTTPRequestHandler):
    """Answers a chat completion, or any other POST with plain JSON, after ``delay``
    seconds."""

    delay = 0.0

    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/v1/models" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(_TETHER_MODELS)))
        self.end_headers()
        self.wfile.write(_TETHER_MODELS)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        time.sleep(self.delay)
        streamed = self.path == "/v1/chat/completions"
        data = _ANSWER if streamed else b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream" if streamed else "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize(("delay", "noted"), [(0.0, False), (0.8, True)])
def test_a_slow_answer_is_noted_only_when_it_is_slow(
    run_dir: Path, monkeypatch: pytest.MonkeyPatch, delay: float, noted: bool
) -> None:
    monkeypatch.setattr("tether.cli.backend.WAIT_NOTICE_S", 0.3)
    handler = type("_Delayed", (_Slow,), {"delay": delay})
    for port in _serving(handler):
        server = f"http://127.0.0.1:{port}"
        result = CliRunner().invoke(cli, ["chat", "-m", "hi", "--server", server, "--token", "t"])
        assert result.exit_code == 0, result.output
        assert result.stdout == "Hello\n"
        assert ("no answer yet" in result.stderr) is noted, result.stderr


@pytest.mark.parametrize(("delay", "noted"), [(0.0, False), (0.8, True)])
def test_a_slow_json_answer_is_noted_only_when_it_is_slow(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    delay: float,
    noted: bool,
) -> None:
    """A suggestion comes as one JSON answer once the whole rewrite is made."""
    monkeypatch.setattr("tether.cli.backend.WAIT_NOTICE_S", 0.3)
    handler = type("_Delayed", (_Slow,), {"delay": delay})

    async def suggest(port: int) -> object:
        url = f"http://127.0.0.1:{port}"
        async with HttpBackend(make_settings(tmp_path), url, "t") as backend:
            return await backend.call("POST", "/v1/suggestions", {"path": "a.py"})

    for port in _serving(handler):
        assert asyncio.run(suggest(port)) == {"ok": True}
        assert ("no answer yet" in capsys.readouterr().err) is noted


@pytest.mark.parametrize("base", ["/empty", "/cut"])
def test_an_answer_cut_before_its_finish_reason_is_unavailable_not_an_answer(
    run_dir: Path, other_port: int, base: str
) -> None:
    server = f"http://127.0.0.1:{other_port}{base}"
    result = CliRunner().invoke(cli, ["chat", "-m", "hi", "--server", server, "--token", "t"])
    assert result.exit_code == EXIT_UNAVAILABLE, result.output
    assert "ended its answer to /v1/chat/completions before finishing it" in result.output
    assert "no finish reason" in result.output


@pytest.mark.parametrize(
    ("code", "says"),
    [
        ("rate_limit_exceeded", "the server refused it for now: "),
        ("queue_full", "the server is busy: "),
    ],
)
def test_a_429_says_whether_the_token_or_the_server_is_held_back(code: str, says: str) -> None:
    import httpx

    from tether.cli.backend import _raise_for_error
    from tether.errors import OverloadedError

    body = {"error": {"message": "over its limit", "type": "rate_limit_error", "code": code}}
    with pytest.raises(OverloadedError) as refused:
        _raise_for_error(httpx.Response(429, json=body))
    assert refused.value.message == f"{says}over its limit"


class _OpenAICompatible(BaseHTTPRequestHandler):
    """vLLM or Ollama: models without tether's description, and chat answers to anyone."""

    prompts: ClassVar[list[bytes]] = []

    def _send(self, kind: str, data: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._send("application/json", b'{"object": "list", "data": [{"id": "fake"}]}')

    def do_POST(self) -> None:
        self.prompts.append(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        self._send("text/event-stream", _ANSWER)

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize("args", [["chat", "-m", "my password is hunter2"], ["models"]])
def test_an_openai_compatible_server_is_refused_before_a_prompt_reaches_it(
    run_dir: Path, args: list[str]
) -> None:
    """It would answer a chat with no policy on the prompt and no audit record."""
    prompts: list[bytes] = []
    handler = type("_Recording", (_OpenAICompatible,), {"prompts": prompts})
    for port in _serving(handler):
        server = f"http://127.0.0.1:{port}"
        result = CliRunner().invoke(cli, [*args, "--server", server, "--token", "t"])
        assert result.exit_code == EXIT_USAGE, result.output
        assert f"the server at {server} is not a tether server" in result.stderr
        assert "without tether's description" in result.stderr
        assert prompts == []
