"""What an operator sees: a server that stops cleans up after itself, and `tether doctor`
asks the server before believing the runtime file."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_cli import tether
from tests.helpers import free_port, tether_env, tether_server, wait_until
from tether.server.runtime import RuntimeRecord, write_runtime_file

pytestmark = pytest.mark.e2e


def _runtime_files(home: Path) -> list[Path]:
    return sorted((home / "run").glob("server-*.json"))


@pytest.mark.parametrize(
    ("sig", "status"),
    [(signal.SIGTERM, -signal.SIGTERM), (signal.SIGINT, 130)],
    ids=["TERM", "INT"],
)
def test_a_stopped_server_removes_its_runtime_file(
    tmp_path: Path, sig: signal.Signals, status: int
) -> None:
    with tether_server(tmp_path) as srv:
        assert len(_runtime_files(tmp_path)) == 1
        srv.process.send_signal(sig)
        assert srv.process.wait(30) == status
    assert _runtime_files(tmp_path) == []  # the admin token is not left behind


def _serve_detached(home: Path, preexec: Callable[[], object]) -> subprocess.Popen[bytes]:
    """`tether serve` started as a daemon or `nohup` starts it (``preexec`` in the child),
    once it answers."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tether", "serve", "--port", str(port)],
        env=tether_env(home),
        stderr=subprocess.PIPE,
        preexec_fn=preexec,
    )
    url = f"http://127.0.0.1:{port}/healthz"

    def answers() -> bool:
        assert process.poll() is None, process.communicate()[1].decode()[-2000:]
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(url).status_code == 200
        return False

    wait_until(answers)
    return process


def test_a_server_started_without_an_output_serves(tmp_path: Path) -> None:
    """With its standard output closed (a daemon's), the banner it prints ended the
    server in a traceback once it had started."""
    process = _serve_detached(tmp_path, lambda: os.close(1))
    time.sleep(1)  # the banner comes just after it first answers
    assert process.poll() is None, process.communicate()[1].decode()[-2000:]
    # Not the listening socket, which a child process would take for its output.
    assert os.readlink(f"/proc/{process.pid}/fd/1") == os.devnull
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=30)
    assert process.returncode == -signal.SIGTERM and b"Traceback" not in err, err


def test_a_hang_up_stops_the_server_as_sigterm_does(tmp_path: Path) -> None:
    """SIGHUP (a closed terminal or SSH session) ended the server at once, its runtime
    file, with its admin token, left behind."""
    process = _serve_detached(tmp_path, lambda: signal.signal(signal.SIGHUP, signal.SIG_DFL))
    assert len(_runtime_files(tmp_path)) == 1
    process.send_signal(signal.SIGHUP)
    process.communicate(timeout=30)
    assert process.returncode == -signal.SIGHUP
    assert _runtime_files(tmp_path) == []


def test_a_hang_up_is_ignored_under_nohup(tmp_path: Path) -> None:
    """SIGHUP drains the server, unless it was started to ignore it (`nohup`)."""
    process = _serve_detached(tmp_path, lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))
    process.send_signal(signal.SIGHUP)
    time.sleep(1)
    assert process.poll() is None  # still serving
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=30)


def test_doctor_does_not_trust_a_dead_servers_file(tmp_path: Path) -> None:
    with tether_server(tmp_path) as srv:
        srv.process.send_signal(signal.SIGKILL)  # no chance to clean up
        srv.process.wait(30)
        assert len(_runtime_files(tmp_path)) == 1
        doctor = tether(tmp_path, "doctor", "--json")
    checks = {c["check"]: c for c in json.loads(doctor.stdout)}
    assert checks["server"]["ok"] and checks["server"]["detail"].startswith("none running; ")
    assert _runtime_files(tmp_path) == []  # the dead server's file, with its token, is gone
    listed = tether(tmp_path, "token", "list")
    assert listed.returncode == 3 and "start `tether serve`" in listed.stderr


def test_doctor_reports_a_server_that_does_not_answer(tmp_path: Path) -> None:
    # A live process (this one) named in a runtime file, at an address nothing serves.
    record = RuntimeRecord("http://127.0.0.1:9", "tth_x", os.getpid())
    write_runtime_file(tmp_path / "run", 9, record)
    doctor = tether(tmp_path, "doctor")
    assert doctor.returncode == 1
    line = next(x for x in doctor.stdout.splitlines() if "] server:" in x)
    assert line.startswith("[FIX]") and "does not answer" in line and str(os.getpid()) in line


def test_doctor_reports_a_server_that_is_not_ready(tmp_path: Path) -> None:
    # A gateway whose only upstream does not answer: alive, but it cannot serve.
    dead = "http://127.0.0.1:9/v1"
    gateway = ("--engine", "openai", "--upstream", dead)
    with tether_server(tmp_path, *gateway, TETHER_UPSTREAM_MODEL="coder") as srv:
        doctor = tether(tmp_path, "doctor", "--json")
        with srv.client() as http:
            tabby = http.get("/tabby/v1/health")
    checks = {c["check"]: c for c in json.loads(doctor.stdout)}
    assert doctor.returncode == 1 and not checks["server"]["ok"]
    # Which upstream is down, and why: a platform engineer need not search the log for it.
    # By its place in the settings, not its address, which anyone may ask for.
    detail = checks["server"]["detail"]
    expected = "the openai engine is not answering (upstream.base_urls[0]: cannot connect: "
    assert expected in detail and "127.0.0.1:9" not in detail, detail
    assert tabby.status_code == 503 and tabby.json()["error"]["code"] == "engine_unavailable"


def test_the_server_stops_on_ctrl_c_without_a_traceback(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    with tether_server(tmp_path, log=log, log_level="info") as srv:
        srv.process.send_signal(signal.SIGINT)
        srv.process.wait(30)
    wait_until(lambda: log.stat().st_size > 0, timeout=5)
    assert "Traceback" not in log.read_text()


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_one_access_line_per_request_without_content(tmp_path: Path, log_format: str) -> None:
    log = tmp_path / "server.log"
    secret_prompt = "def zebra_quokka_42():"
    with (
        tether_server(
            tmp_path, log=log, log_level="info", TETHER_SERVER_LOG_FORMAT=log_format
        ) as srv,
        srv.client() as http,
    ):
        answer = http.post("/v1/completions", json={"prompt": secret_prompt, "max_tokens": 3})
        assert answer.status_code == 200
        request_id = answer.headers["x-request-id"]
        wait_until(lambda: http.get(f"/v1/traces/{request_id}").status_code == 200)
        assert http.get(f"/v1/traces/{request_id}").json()["id"] == answer.json()["id"]
        assert http.get("/v1/models?x=hidden").status_code == 200
        assert httpx.post(srv.url + "/v1/completions", json={"prompt": "x"}).status_code == 401
        # Decoded, a path may hold line breaks and NULs: they must not forge or hide lines.
        forged = "/x%0a2026-01-01T00:00:00.000Z%20f00d%20admin%20%22DELETE%20/v1/tokens%22%20200"
        assert httpx.get(srv.url + forged).status_code == 404
        assert httpx.get(srv.url + "/v1/traces/%00%0d").status_code == 401
    text = log.read_text()
    assert "\x00" not in text and "\r" not in text
    assert not any(line.startswith("2026-01-01") for line in text.splitlines())
    assert sum("DELETE /v1/tokens" in line for line in text.splitlines()) == 1
    assert secret_prompt not in text and srv.token not in text and "hidden" not in text
    lines = [line for line in text.splitlines() if request_id in line and "traces" not in line]
    assert len(lines) == 1
    usage = answer.json()["usage"]
    if log_format == "json":
        entry = json.loads(lines[0])
        assert entry["method"] == "POST" and entry["path"] == "/v1/completions"
        assert (entry["status"], entry["principal"]) == (200, "admin")
        assert (entry["prompt_tokens"], entry["completion_tokens"]) == (
            usage["prompt_tokens"],
            usage["completion_tokens"],
        )
        assert entry["duration_ms"] > 0
        refused = [line for line in text.splitlines() if '"status":401' in line]
        assert sum('"path":"/v1/completions"' in line for line in refused) == 1
        # Every line, not only the access log's: a log pipeline parses each one.
        entries = [json.loads(line) for line in text.splitlines() if line]
        said = {(e.get("logger"), e.get("message")) for e in entries}
        assert ("uvicorn.error", "Application startup complete.") in said
        (started,) = [e for e in entries if str(e.get("message")).startswith("tether serving on")]
        assert started["url"] == srv.url and started["level"] == "info"
    else:
        assert '"POST /v1/completions" 200' in lines[0] and " admin " in lines[0]
        assert f"tokens={usage['prompt_tokens']}+{usage['completion_tokens']}" in lines[0]
        assert sum('"GET /v1/models" 200' in line for line in text.splitlines()) == 1


def test_with_json_lines_a_server_that_cannot_start_says_so_in_a_json_line(
    tmp_path: Path,
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = tether(tmp_path, "serve", "--port", str(port), TETHER_SERVER_LOG_FORMAT="json")
    assert result.returncode == 2
    (line,) = [line for line in result.stderr.splitlines() if line]
    said = json.loads(line)
    assert said["level"] == "error" and f"cannot listen on 127.0.0.1:{port}" in said["message"]
    assert said["exit_status"] == 2


def test_a_load_balancer_sees_a_busy_server_on_slots(tmp_path: Path) -> None:
    """llama.cpp's ``/slots?fail_on_no_slot=1``: 503 while every sequence generates, and
    what each generates, without its prompt or answer."""
    prompt = "Once upon a time, in a quiet village by the sea,"
    with (
        tether_server(tmp_path, TETHER_ENGINE_N_PARALLEL="1") as srv,
        srv.client() as http,
    ):
        body = {"prompt": prompt, "n_predict": 400, "temperature": 0, "seed": 3, "stream": True}
        with http.stream("POST", "/completion", json=body) as stream:
            lines = stream.iter_lines()  # held: a dropped iterator closes the connection
            assert next(lines).startswith("data: ")
            [slot] = http.get("/slots").json()
            busy = http.get("/slots", params={"fail_on_no_slot": 1})
        assert slot["is_processing"] is True and slot["id"] == 0
        assert slot["params"]["n_predict"] == 400 and slot["params"]["seed"] == 3
        assert slot["n_prompt_tokens"] >= 10 and slot["next_token"][0]["n_decoded"] >= 1
        assert prompt not in json.dumps(slot) and "prompt" not in slot
        assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
        error = busy.json()["error"]
        assert "every sequence is generating (1 of 1)" in error["message"]
        assert error["code"] == "no_slot_available"  # not engine_unavailable: it is up
        # The client went away: the sequence is free again within a step.
        wait_until(lambda: http.get("/slots", params={"fail_on_no_slot": 1}).status_code == 200)
        assert http.get("/slots").json() == [
            {"id": 0, "n_ctx": 2048, "speculative": False, "is_processing": False}
        ]


_LONG = {"prompt": "Once upon a time, in a quiet village by the sea,", "temperature": 0, "seed": 3}


def _audited_finishes(home: Path) -> list[str]:
    """The finish reason of each audited completion."""
    tail = tether(home, "audit", "tail", "-n", "20")
    records = [json.loads(line) for line in tail.stdout.splitlines() if line.startswith("{")]
    return [r["params"]["finish_reason"] for r in records if r["endpoint"] == "/v1/completions"]


def test_a_stopping_server_finishes_what_it_serves(tmp_path: Path) -> None:
    """SIGTERM: no new connections, but a stream in flight runs to its own end."""
    with tether_server(tmp_path) as srv, srv.client() as http:
        body = {**_LONG, "max_tokens": 40, "stream": True}
        with http.stream("POST", "/v1/completions", json=body) as stream:
            lines = stream.iter_lines()
            assert next(lines).startswith("data: ")
            srv.process.send_signal(signal.SIGTERM)
            rest = [line for line in lines if line]
        assert srv.process.wait(30) == -signal.SIGTERM
    assert rest[-1] == "data: [DONE]"
    last = json.loads(rest[-2].removeprefix("data: "))
    assert last["choices"][0]["finish_reason"] == "length"  # all 40 tokens, no error
    assert _audited_finishes(tmp_path) == ["length"]


def test_a_stopping_server_ends_what_outlasts_its_grace(tmp_path: Path) -> None:
    """Past ``server.shutdown_grace_s`` a stream gets an error event and [DONE], and is
    recorded; a queued request a 503 to retry elsewhere; the audit log still holds."""
    with (
        tether_server(
            tmp_path, TETHER_SERVER_SHUTDOWN_GRACE_S="1", TETHER_ENGINE_N_PARALLEL="1"
        ) as srv,
        srv.client() as http,
        ThreadPoolExecutor(1) as pool,
    ):
        body = {**_LONG, "max_tokens": 1000, "stream": True}
        with http.stream("POST", "/v1/completions", json=body) as stream:
            lines = stream.iter_lines()
            assert next(lines).startswith("data: ")
            queued = pool.submit(http.post, "/v1/completions", json={**_LONG, "max_tokens": 5})
            wait_until(lambda: http.get("/slots").json()[0]["is_processing"])
            time.sleep(0.3)  # the second request reaches the queue
            stopped = time.monotonic()
            srv.process.send_signal(signal.SIGTERM)
            rest = [line for line in lines if line]
            ended = time.monotonic() - stopped
        assert srv.process.wait(30) == -signal.SIGTERM
        refused = queued.result()
    assert 0.9 < ended < 5, ended  # the grace, not the 1000 tokens
    assert len(rest) > 3  # the stream went on during the grace
    assert rest[-1] == "data: [DONE]"
    error = json.loads(rest[-2].removeprefix("data: "))["error"]
    assert error["code"] == "server_shutting_down" and "send it again" in error["message"]
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
    assert refused.json()["error"]["code"] == "server_shutting_down"
    assert _audited_finishes(tmp_path) == ["cancelled"]  # the queued one generated nothing
    verified = tether(tmp_path, "audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_a_stopping_server_refuses_what_waits_for_a_sequence_at_once(tmp_path: Path) -> None:
    """A request still queued when the shutdown begins may not start before the grace ends:
    it is told to go elsewhere now, not after the grace, while the stream in flight goes on."""
    with (
        tether_server(tmp_path, TETHER_ENGINE_N_PARALLEL="1") as srv,  # a grace of 20 s
        srv.client() as http,
        ThreadPoolExecutor(1) as pool,
    ):
        body = {**_LONG, "max_tokens": 1000, "stream": True}
        with http.stream("POST", "/v1/completions", json=body) as stream:
            lines = stream.iter_lines()
            assert next(lines).startswith("data: ")
            queued = pool.submit(http.post, "/v1/completions", json={**_LONG, "max_tokens": 5})
            wait_until(lambda: "tether_queue_depth 1.0" in http.get("/metrics").text)
            srv.process.send_signal(signal.SIGTERM)
            refused = queued.result(timeout=15)
            assert next(line for line in lines if line).startswith("data: {")  # goes on
        assert srv.process.wait(30) == -signal.SIGTERM  # the client left: no grace to wait
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
    error = refused.json()["error"]
    assert error["code"] == "server_shutting_down" and "had not started" in error["message"]


def test_a_second_ctrl_c_ends_generation_now_and_loses_no_record(tmp_path: Path) -> None:
    """The first Ctrl-C drains; a second one ends what still generates at once, and the
    server still records it and writes its last checkpoint before it exits."""
    with tether_server(tmp_path) as srv, srv.client() as http:
        done = http.post("/v1/completions", json={**_LONG, "max_tokens": 3})
        assert done.status_code == 200
        body = {**_LONG, "max_tokens": 1000, "stream": True}
        with http.stream("POST", "/v1/completions", json=body) as stream:
            lines = stream.iter_lines()
            assert next(lines).startswith("data: ")
            srv.process.send_signal(signal.SIGINT)
            time.sleep(0.5)
            assert srv.process.poll() is None  # draining: the stream goes on
            stopped = time.monotonic()
            srv.process.send_signal(signal.SIGINT)
            rest = [line for line in lines if line]
            ended = time.monotonic() - stopped
        assert srv.process.wait(30) == 130
    assert ended < 3, ended  # not the 20 s grace, nor the 1000 tokens
    assert rest[-1] == "data: [DONE]"
    error = json.loads(rest[-2].removeprefix("data: "))["error"]
    assert error["code"] == "server_shutting_down"
    assert _audited_finishes(tmp_path) == ["length", "cancelled"]
    verified = tether(tmp_path, "audit", "verify", "--json")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    report = json.loads(verified.stdout)
    assert report["records"] == 2
    # The last checkpoint, written as the server closed, covers both records.
    assert not any("not yet covered" in w for w in report["warnings"]), report["warnings"]


def test_a_client_that_leaves_is_charged_the_tokens_it_was_sent(tmp_path: Path) -> None:
    """A stream cut after a few pieces counts exactly the tokens generated until then:
    asked again for that many tokens, the model writes the same text."""
    with tether_server(tmp_path) as srv, srv.client() as http:
        body = {**_LONG, "max_tokens": 40, "stream": True}
        with http.stream("POST", "/v1/completions", json=body) as stream:
            lines = stream.iter_lines()
            pieces = [next(line for line in lines if line.startswith("data: ")) for _ in range(3)]
        answer_id = json.loads(pieces[0].removeprefix("data: "))["id"]
        wait_until(lambda: http.get(f"/v1/traces/{answer_id}").status_code == 200)
        trace = http.get(f"/v1/traces/{answer_id}").json()
        assert trace["finish_reason"] == "cancelled" and trace["completion_tokens"] >= 3
        again = http.post(
            "/v1/completions", json={**_LONG, "max_tokens": trace["completion_tokens"]}
        )
    assert again.json()["choices"][0]["text"] == trace["output"]


def test_a_second_server_on_the_same_cores_is_warned_of_it(tmp_path: Path) -> None:
    log = tmp_path / "second.log"
    # One user's servers (one runtime folder), each with its own data.
    with (
        tether_server(tmp_path) as first,
        tether_server(tmp_path, log=log, TETHER_HOME=str(tmp_path / "second")),
    ):
        said = log.read_text()
    named = f"another tether server (pid {first.process.pid}, {first.url}) runs a model on "
    assert named in said
    assert "engine.n_threads" in said


def test_a_low_open_file_limit_is_raised_or_warned_of(tmp_path: Path) -> None:
    """Each client connected holds a file descriptor: under `ulimit -n 64`, 15 of 50
    clients sent at once had their connections reset, and the server's log said nothing."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard >= 1024:  # room to raise a low soft limit to

        def soft(limit: int) -> Callable[[], None]:
            return lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))

        raised = tmp_path / "raised.log"
        with tether_server(tmp_path / "a", log=raised, preexec_fn=soft(64)) as srv:
            assert resource.prlimit(srv.process.pid, resource.RLIMIT_NOFILE) == (hard, hard)
        assert "open-file limit" not in raised.read_text()
    low = tmp_path / "low.log"

    def hard_too() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))

    with tether_server(tmp_path / "b", log=low, preexec_fn=hard_too):
        said = low.read_text()
    assert "the open-file limit is 64, which leaves room for about " in said
    assert "where this server takes in 260 (engine.max_queue + engine.n_parallel)" in said
    assert "ulimit -n" in said


def test_a_start_the_application_refuses_is_one_line_and_no_address(tmp_path: Path) -> None:
    """A signing key that is not the log's, a template that does not compile: found as the
    application starts, each was the lifespan's traceback after 'tether serving on', as
    though the server had started."""
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "chat.j2").write_text("{% if %}\n")
    gateway = ("serve", "--port", "0", "--engine", "openai", "--upstream", "http://127.0.0.1:9/v1")
    refused = tether(
        tmp_path, *gateway, TETHER_UPSTREAM_MODEL="m", TETHER_TEMPLATES_DIR=str(templates)
    )
    assert refused.returncode == 2, refused.stderr
    assert "Traceback" not in refused.stderr and "serving on" not in refused.stdout
    (said,) = [line for line in refused.stderr.splitlines() if line.startswith("error:")]
    assert "prompt template" in said and "chat.j2 is broken at line 1" in said
    assert not list((tmp_path / "run").glob("server-*.json"))  # no runtime file left


def _exchange(url: str, request: bytes) -> bytes:
    """``request`` sent whole on a connection of its own; the answer, read to its length."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(request)
        answer = b""
        while b"\r\n\r\n" not in answer and (chunk := sock.recv(65536)):
            answer += chunk
        head, _, body = answer.partition(b"\r\n\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        while len(body) < length and (chunk := sock.recv(65536)):
            body += chunk
    return head + b"\r\n\r\n" + body


def test_a_request_head_past_its_bound_gets_431_and_a_body_is_no_part_of_it(
    tmp_path: Path,
) -> None:
    """httptools held a header of any length (20 MB) in memory, before any token check."""
    with tether_server(tmp_path) as server:
        huge = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 2_000_000 + b"\r\n\r\n"
        refused = _exchange(server.url, huge)
        usual = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Fine: " + b"a" * 16_000 + b"\r\n"
        served = _exchange(server.url, usual + b"Connection: close\r\n\r\n")
        # A body of a megabyte arrives with its headers in the same reads: not counted.
        body = json.dumps({"principal": "p", "scopes": ["chat"], "pad": "x" * 1_000_000})
        post = (
            f"POST /v1/tokens HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {server.token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n"
        ).encode() + body.encode()
        posted = _exchange(server.url, post)
    assert refused.startswith(b"HTTP/1.1 431 "), refused[:200]
    error = json.loads(refused.split(b"\r\n\r\n", 1)[1])["error"]
    assert error["code"] == "request_header_too_large" and "64 KiB" in error["message"]
    assert served.startswith(b"HTTP/1.1 200 "), served[:200]
    # Read whole and answered for what it holds, not for its head's size.
    assert posted.startswith(b"HTTP/1.1 400 "), posted[:300]
    assert b"pad: is not a field of this request" in posted
