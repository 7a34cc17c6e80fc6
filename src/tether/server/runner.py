"""Run the server: bind, load the engine, announce the address and token, serve."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
from collections.abc import Callable, Generator

import uvicorn

from tether.engines.registry import build_engine
from tether.errors import ConfigError
from tether.plugins import build_manager
from tether.server.app import build_app
from tether.server.runtime import (
    RuntimeRecord,
    default_runtime_dir,
    remove_runtime_file,
    write_runtime_file,
)
from tether.settings import Settings
from tether.tokens import new_token

log = logging.getLogger("tether.server")


def bind_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio turns on TCP_NODELAY only for sockets that say so,
    # and without it Nagle's algorithm holds streamed tokens back ~40 ms.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"cannot listen on {host}:{port} ({exc.strerror}); stop the other server or "
            "choose another port with --port / server.port"
        ) from exc
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def serve(settings: Settings, *, log_level: str = "info") -> None:
    sock = bind_socket(settings.server.host, settings.server.port)
    host, port = sock.getsockname()[:2]
    shown_host = f"[{host}]" if ":" in host else host
    url = f"http://{shown_host}:{port}"
    token = settings.server.token or new_token()
    runtime_dir = settings.server.runtime_dir or default_runtime_dir()
    plugins = build_manager(settings)
    engine = build_engine(settings, plugins)  # load before serving: a bad model fails here
    app = build_app(settings, token, lambda: engine, plugins)
    config = uvicorn.Config(
        app,
        log_level=log_level,
        access_log=False,
        timeout_graceful_shutdown=5,
        lifespan="on",
    )
    _log_requests(settings.server.access_log, log_level)
    pid = os.getpid()
    server = _Server(config, lambda: remove_runtime_file(runtime_dir, port, pid))
    path = write_runtime_file(runtime_dir, port, RuntimeRecord(url=url, token=token, pid=pid))
    print(f"tether serving on {url} (admin token in {path})", flush=True)
    try:
        server.run(sockets=[sock])
    finally:
        remove_runtime_file(runtime_dir, port, pid)
    if not server.started:
        raise SystemExit(1)


def _log_requests(enabled: bool, log_level: str) -> None:
    """The access log: its own lines, as the middleware formats them, on stderr."""
    logger = logging.getLogger("tether.access")
    logger.propagate = False
    logger.setLevel(logging.getLevelName(log_level.upper()) if enabled else logging.CRITICAL)
    if enabled and not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)


class _Server(uvicorn.Server):
    """uvicorn's server, with ``on_exit`` run on every way out that can run code.

    After a graceful shutdown uvicorn raises the signal that asked for it again, so a
    SIGTERM ends the process before any ``finally`` of ours: the cleanup runs first.
    """

    def __init__(self, config: uvicorn.Config, on_exit: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_exit = on_exit

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        with super().capture_signals():
            try:
                yield
            finally:
                self._on_exit()
