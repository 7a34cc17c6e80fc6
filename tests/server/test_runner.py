"""The runner's server: what it does once it has started."""

from __future__ import annotations

import asyncio
import copy
import gc
import json
import os
import stat
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from tests.conftest import make_settings
from tether.audit import AuditLog, handover
from tether.errors import AuditError
from tether.server.draining import Drain
from tether.server.runner import _key_exposure, _Server, bind_socket, serve, uvicorn_config


class _MadeAtStart:
    """An object the collector tracks."""


async def _app(scope: object, receive: object, send: object) -> None:
    raise AssertionError("no request is made")


def test_what_starting_made_is_out_of_the_collectors_sight() -> None:
    sock = bind_socket("127.0.0.1", 0)
    server = _Server(uvicorn.Config(_app, lifespan="off"), lambda: None, Drain(), 1.0)
    gc.unfreeze()
    made_at_start = _MadeAtStart()
    try:

        async def start_and_stop() -> None:
            server.config.load()
            server.lifespan = server.config.lifespan_class(server.config)
            await server.startup(sockets=[sock])
            await server.shutdown(sockets=[sock])

        asyncio.run(start_and_stop())
        assert gc.get_freeze_count() > 0
        assert not any(obj is made_at_start for obj in gc.get_objects())
    finally:
        gc.unfreeze()
        sock.close()


def test_a_second_server_on_the_same_audit_log_is_one_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(handover, "WAIT_S", 0.3)  # a server does not hand its log over
    settings = make_settings(tmp_path, TETHER_SERVER_PORT="0")
    log = AuditLog.open(settings)  # the first server's
    try:
        with pytest.raises(AuditError, match=r"open in another process.*did not hand it over"):
            serve(settings)
    finally:
        log.close()
    assert "serving" not in capsys.readouterr().out  # refused before it announced itself


def _stat(mode: int, uid: int, gid: int) -> os.stat_result:
    return os.stat_result((stat.S_IFREG | mode, 0, 0, 1, uid, gid, 0, 0, 0, 0))


def test_a_tls_key_others_can_read_is_warned_of_but_not_a_secret_shared_with_our_group() -> None:
    me, my_group = os.geteuid(), os.getegid()
    stranger_group = max({my_group, *os.getgroups()}) + 1
    assert _key_exposure(_stat(0o600, me, my_group)) is None
    assert _key_exposure(_stat(0o644, me, my_group)) == "readable by every user"
    assert _key_exposure(_stat(0o640, me, my_group)) == "readable by other users in its group"
    # Kubernetes mounts a secret under fsGroup as another user's (root's), mode 0440, in
    # the pod's group.
    someone_else = me + 1
    assert _key_exposure(_stat(0o440, someone_else, my_group)) is None
    assert _key_exposure(_stat(0o440, someone_else, stranger_group)) is not None


async def _echo_peer(scope: Any, receive: Any, send: Any) -> None:
    """An app that answers with the client and scheme the server gave its request."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    body = json.dumps({"client": scope["client"][0], "scheme": scope["scheme"]}).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


@pytest.mark.parametrize(
    ("environ", "colours"),
    [({}, None), ({"NO_COLOR": "1"}, False), ({"TERM": "dumb"}, False), ({"NO_COLOR": ""}, None)],
)
def test_the_log_takes_no_colours_where_the_terminal_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, environ: dict[str, str], colours: bool | None
) -> None:
    """uvicorn's log lines were coloured at any terminal, whatever NO_COLOR or TERM=dumb
    said; None leaves it to uvicorn, which colours only a terminal."""
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    config = uvicorn_config(_echo_peer, make_settings(tmp_path), None, "info", json_lines=False)
    assert config.use_colors is colours


def test_the_colours_are_set_on_a_copy_of_uvicorns_logging_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """uvicorn sets use_colors in the dict it is given: given its own module-level one, a
    server made without colours left every later one in this process without them too."""
    from uvicorn.config import LOGGING_CONFIG

    monkeypatch.setenv("NO_COLOR", "1")
    before = copy.deepcopy(LOGGING_CONFIG)
    config = uvicorn_config(_echo_peer, make_settings(tmp_path), None, "info", json_lines=False)
    assert isinstance(config.log_config, dict)
    assert config.log_config["formatters"]["default"]["use_colors"] is False
    assert before == LOGGING_CONFIG


@pytest.mark.parametrize("allowed", [None, "*"])
def test_forwarded_headers_are_believed_from_no_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, allowed: str | None
) -> None:
    """uvicorn took X-Forwarded-For and -Proto from any process of this machine, and from
    everyone with FORWARDED_ALLOW_IPS=* in the environment."""
    if allowed is not None:
        monkeypatch.setenv("FORWARDED_ALLOW_IPS", allowed)
    settings = make_settings(tmp_path)
    config = uvicorn_config(_echo_peer, settings, None, "warning", json_lines=False)
    server = uvicorn.Server(config)
    sock = bind_socket("127.0.0.1", 0)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/"
        forged = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"}
        seen = None
        for _ in range(100):
            try:
                seen = httpx.get(url, headers=forged).json()
                break
            except httpx.ConnectError:
                threading.Event().wait(0.05)
        assert seen == {"client": "127.0.0.1", "scheme": "http"}
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def test_a_connection_idle_between_requests_outlasts_a_load_balancers_idle_timeout(
    tmp_path: Path,
) -> None:
    """uvicorn closed it after 5 s: a balancer that reuses connections for 60 s (AWS's
    ALB) sent requests on connections tether was closing, and answered them 502."""
    config = uvicorn_config(_echo_peer, make_settings(tmp_path), None, "info", json_lines=False)
    assert config.timeout_keep_alive > 60
    settings = make_settings(tmp_path, TETHER_SERVER_KEEP_ALIVE_S="620")
    config = uvicorn_config(_echo_peer, settings, None, "info", json_lines=False)
    assert config.timeout_keep_alive == 620
