"""Run the server: bind, load the engine, announce the address and token, serve."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import errno
import gc
import logging
import os
import resource
import signal
import socket
import ssl
import sys
import threading
from collections.abc import Callable, Generator
from pathlib import Path
from types import FrameType
from typing import IO, Any

import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.config import LOGGING_CONFIG

from tether.audit.handover import take_over
from tether.cpus import usable_cores
from tether.engines.base import Queueing
from tether.engines.registry import build_engine
from tether.errors import ConfigError, TetherError
from tether.plugins import build_manager
from tether.server.app import build_app
from tether.server.draining import Drain
from tether.server.http_protocol import BoundedHttpToolsProtocol
from tether.server.jsonlog import json_line, log_as_json_lines
from tether.server.runtime import (
    RuntimeRecord,
    default_runtime_dir,
    private_runtime_dir,
    remove_runtime_file,
    sharing_cores,
    write_runtime_file,
)
from tether.server.sdnotify import Notifier
from tether.settings import Settings
from tether.tokens import new_token

log = logging.getLogger("tether.server")
_BACKSTOP_S = 3
_SPARE_FILES = 32  # databases and their journals, the audit log, sandboxes' pipes


def _bind_advice(exc: OSError) -> str:
    if isinstance(exc, socket.gaierror) or exc.errno == errno.EADDRNOTAVAIL:
        return (
            "give an address of this machine with --host / server.host (127.0.0.1 for "
            "this machine only, 0.0.0.0 for every interface)"
        )
    if exc.errno == errno.EACCES:
        return "ports below 1024 need privileges; choose another with --port / server.port"
    return "stop the other server or choose another port with --port / server.port"


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
            f"cannot listen on {host}:{port} ({exc.strerror}); {_bind_advice(exc)}"
        ) from exc
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def serve(settings: Settings, *, log_level: str = "info") -> None:
    notifier = Notifier.from_environment()  # first: no child may inherit the variables
    json_lines = settings.server.log_format == "json"
    if json_lines:  # first: the warnings of the start are lines of the log too
        log_as_json_lines()
    runtime_dir = settings.server.runtime_dir or default_runtime_dir()
    private_runtime_dir(runtime_dir)  # before the model loads: a folder to fix fails now
    sock = bind_socket(settings.server.host, settings.server.port)
    # Now, while a refusal can still be one line: the app opens the log later, with this
    # lock, held meanwhile. A command that keeps it (an `eval run`) hands it over, so
    # only once the port is this server's: one that cannot listen takes nothing from it.
    try:
        claim = take_over(settings) if settings.audit.enabled else None
    except BaseException:
        sock.close()
        raise
    try:
        _serve(settings, log_level, json_lines, runtime_dir, sock, claim, notifier)
    finally:
        if claim is not None:
            claim.close()  # the log's by then, or the start failed before it opened


def _serve(
    settings: Settings,
    log_level: str,
    json_lines: bool,
    runtime_dir: Path,
    sock: socket.socket,
    claim: IO[bytes] | None,
    notifier: Notifier | None,
) -> None:
    host, port = sock.getsockname()[:2]
    shown_host = f"[{host}]" if ":" in host else host
    tls = tls_files(settings)
    url = f"{'https' if tls else 'http'}://{shown_host}:{port}"
    token = settings.server.fixed_token() or new_token()
    plugins = build_manager(settings)
    engine = build_engine(settings, plugins)  # load before serving: a bad model fails here
    app = build_app(settings, token, lambda: engine, plugins, audit_lock=claim)
    starting = _StartupInWords(app)
    config = uvicorn_config(starting, settings, tls, log_level, json_lines)
    _log_requests(settings.server.access_log, log_level)
    pid = os.getpid()
    server = _Server(
        config,
        lambda: remove_runtime_file(runtime_dir, port, pid),
        app.state.drain,
        settings.server.shutdown_grace_s,
    )
    cores = _model_cores(settings)
    threads = settings.engine.n_threads or usable_cores()
    record = RuntimeRecord(
        url,
        token,
        pid,
        str(tls[0].resolve()) if tls else None,
        str(settings.data.home.resolve()),
        cores,
        threads if cores else None,
    )
    if cores:
        _warn_of_shared_cores(runtime_dir, cores, threads, pid)
    _make_room_for_clients(settings)
    path = write_runtime_file(runtime_dir, port, record)
    started = f"tether serving on {url} (admin token in {path})"

    def announce() -> None:  # as it serves: a JSON line's time is then
        line = json_line("info", "tether.server", started, url=url, token_file=str(path))
        # Where standard output is closed (a daemon's), the server serves all the same:
        # the runtime file says where.
        with contextlib.suppress(OSError):
            print(line if json_lines else started, flush=True)
        if notifier is not None:
            notifier.ready(f"serving on {url}")

    def stopping() -> None:
        if notifier is not None:
            notifier.stopping()
        if isinstance(engine, Queueing):
            engine.stop_queueing()

    server.on_started = announce
    server.on_stopping = stopping
    try:
        server.run(sockets=[sock])
    except SystemExit:  # uvicorn's way out when the application did not start
        if starting.error is not None:
            raise starting.error from None  # said in one line, with its kind's exit status
        raise
    finally:
        remove_runtime_file(runtime_dir, port, pid)
    if not server.started:
        raise SystemExit(1)


def uvicorn_config(
    app: ASGIApp,
    settings: Settings,
    tls: tuple[Path, Path] | None,
    log_level: str,
    json_lines: bool,
) -> uvicorn.Config:
    """How uvicorn serves ``app``."""
    # A terminal that takes no colours says so (NO_COLOR: https://no-color.org).
    plain = bool(os.environ.get("NO_COLOR")) or os.environ.get("TERM") == "dumb"
    return uvicorn.Config(
        app,
        ssl_certfile=str(tls[0]) if tls else None,
        ssl_keyfile=str(tls[1]) if tls else None,
        log_level=log_level,
        # JSON lines are set up above; otherwise uvicorn's own text lines, on a copy of
        # its settings: it sets use_colors in the dict it is given, and its own is shared.
        log_config=None if json_lines else copy.deepcopy(LOGGING_CONFIG),
        use_colors=False if plain else None,  # None: coloured only at a terminal
        access_log=False,
        # uvicorn's default, 5 s, is below every load balancer's idle timeout: one reusing
        # a connection as tether closed it answered its client 502.
        timeout_keep_alive=settings.server.keep_alive_s,
        # A backstop: the drain ends generation at the grace; other work gets a little more.
        timeout_graceful_shutdown=int(settings.server.shutdown_grace_s) + _BACKSTOP_S,
        lifespan="on",
        http=BoundedHttpToolsProtocol,
        # X-Forwarded-For and -Proto are believed from no one: uvicorn would by default
        # take them from any process of this machine (and from every address where
        # FORWARDED_ALLOW_IPS=* is in the environment), so that a request's client and
        # scheme, as a plugin's route reads them, were whatever a local user wrote. tether
        # keeps no client address: a request is its token's; the proxy logs addresses.
        proxy_headers=False,
    )


class _StartupInWords:
    """The app, whose start failing for a reason tether names (a damaged audit log, a
    signing key that is not the log's, a template that does not compile) is that reason,
    raised again once uvicorn has stopped, not a traceback of the lifespan in the log."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.error: TetherError | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        failed: Message | None = None

        async def held(message: Message) -> None:
            nonlocal failed
            if message["type"] == "lifespan.startup.failed":
                failed = message  # what was raised decides what is said
                return
            await send(message)

        try:
            await self.app(scope, receive, held)
        except TetherError as exc:
            if failed is None:
                raise
            self.error = exc
            _quiet_failed_startup()
            await send({"type": "lifespan.startup.failed", "message": ""})
            return
        except BaseException:
            if failed is not None:
                await send(failed)
            raise
        if failed is not None:
            await send(failed)


def _quiet_failed_startup() -> None:
    """Leave out uvicorn's own line for a failed start: the reason, said after, is enough."""
    logging.getLogger("uvicorn.error").addFilter(
        lambda record: record.getMessage() != "Application startup failed. Exiting."
    )


def _model_cores(settings: Settings) -> list[int] | None:
    """The cores the embedded model's threads may run on; None for another engine."""
    if settings.engine.kind != "llamacpp":
        return None
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # macOS: no CPU sets
        return list(range(os.cpu_count() or 1))


def _make_room_for_clients(settings: Settings) -> None:
    """Each client connected holds a file descriptor. Where the open-file limit leaves too
    few for the clients the server takes in (those generating and those queued), the ones
    past it had their connections reset unanswered, and nothing said why (`ulimit -n 64`:
    15 of 50 clients sent at once). The soft limit is raised to the hard one, as far as
    the system lets a process; one still too low is warned of."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):  # macOS refuses an infinite one
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    try:
        in_use = len(os.listdir("/dev/fd"))
    except OSError:
        return
    clients = settings.engine.max_queue + settings.engine.n_parallel
    if soft == resource.RLIM_INFINITY or soft - in_use - _SPARE_FILES >= clients:
        return
    log.warning(
        "the open-file limit is %d, which leaves room for about %d clients connected at "
        "once, where this server takes in %d (engine.max_queue + engine.n_parallel): the "
        "connections of clients past it are reset unanswered; raise it to %d or more "
        "(ulimit -n, LimitNOFILE= under systemd, docker run --ulimit nofile=), or lower "
        "engine.max_queue",
        soft,
        max(0, soft - in_use - _SPARE_FILES),
        clients,
        clients + in_use + _SPARE_FILES,
    )


def _warn_of_shared_cores(runtime_dir: Path, cores: list[int], threads: int, pid: int) -> None:
    """Two embedded models on the same cores each decode several times slower: llama.cpp's
    threads wait for each other at every step, and the other server's take their turns."""
    for other in sharing_cores(runtime_dir, cores, threads, pid):
        log.warning(
            "another tether server (pid %d, %s) runs a model on the same cores: both will "
            "generate several times slower; give each its own cores (taskset -c, a "
            "container's cpuset), or fewer threads each (engine.n_threads)",
            other.pid,
            other.url,
        )


def tls_files(settings: Settings) -> tuple[Path, Path] | None:
    """The certificate and key to serve HTTPS with, checked now: a bad pair fails here."""
    cert, key = settings.server.tls_cert, settings.server.tls_key
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise ConfigError("set both server.tls_cert and server.tls_key to serve HTTPS, or neither")

    def encrypted() -> bytes:
        # Else OpenSSL asks for the passphrase on the terminal: a server in a container
        # (or `tether doctor`) would wait there for ever.
        raise ConfigError(
            f"server.tls_key {key} is encrypted with a passphrase, which tether cannot be "
            "given; decrypt it (`openssl pkey -in KEY -out PLAIN`), keep the plain key "
            "readable only by the server (chmod 600, or a secret mount), and name that one"
        )

    try:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key, password=encrypted)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"cannot use server.tls_cert {cert} with server.tls_key {key} ({exc}); give a PEM "
            "certificate and its private key"
        ) from exc
    exposure = _key_exposure(key.stat())
    if exposure:
        log.warning("the TLS key %s is %s; chmod 600 it", key, exposure)
    return cert, key


def _key_exposure(stat: os.stat_result) -> str | None:
    """Who else can read the key, where that is worth a warning. A key that another user
    owns and shares with this process's group is how Kubernetes mounts a secret under
    ``fsGroup`` (mode 0440, group fsGroup): that is the deployment's choice, not a leak."""
    if stat.st_mode & 0o007:
        return "readable by every user"
    if stat.st_mode & 0o070:
        ours = stat.st_uid == os.geteuid()
        if ours or stat.st_gid not in {os.getegid(), *os.getgroups()}:
            return "readable by other users in its group"
    return None


def _log_requests(enabled: bool, log_level: str) -> None:
    """The access log: its own lines, as the middleware formats them, on stderr."""
    logger = logging.getLogger("tether.access")
    logger.propagate = False
    logger.setLevel(logging.getLevelName(log_level.upper()) if enabled else logging.CRITICAL)
    if enabled and not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)


def _catch(
    sig: signal.Signals, handler: Callable[[int, FrameType | None], None]
) -> Callable[[int, FrameType | None], Any] | int | None:
    """Handle ``sig`` with ``handler`` (from the main thread only, as signals can be); the
    handler it had, to put back. SIGHUP (a closed terminal or SSH session, some
    supervisors) stops the server as SIGTERM does: by default it ended the process at
    once, without the grace, the last checkpoint, or removing the runtime file."""
    if threading.current_thread() is not threading.main_thread():
        return None
    if signal.getsignal(sig) is signal.SIG_IGN:  # `nohup tether serve`: asked to ignore it
        return None
    previous = signal.signal(sig, handler)
    return signal.SIG_DFL if previous is None else previous


class _Server(uvicorn.Server):
    """uvicorn's server, with ``on_exit`` run on every way out that can run code, and
    generation still in flight ``grace_s`` after a shutdown began ended through ``drain``.

    After a graceful shutdown uvicorn raises the signal that asked for it again, so a
    SIGTERM ends the process before any ``finally`` of ours: the cleanup runs first.

    A second Ctrl-C ends the grace at once. uvicorn then skips the application's
    shutdown, which would lose the audit records still queued, the usage rows and the
    last checkpoint; here it still runs, once the ended requests have recorded theirs.
    """

    def __init__(
        self, config: uvicorn.Config, on_exit: Callable[[], None], drain: Drain, grace_s: float
    ) -> None:
        super().__init__(config)
        self._on_exit = on_exit
        self._drain = drain
        self._grace_s = grace_s
        self._loop: asyncio.AbstractEventLoop | None = None  # set once shutting down
        self.on_started: Callable[[], None] = lambda: None  # the application has started
        self.on_stopping: Callable[[], None] = lambda: None  # a shutdown has begun

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)  # exits when the application does not start
        if self.should_exit:
            return
        self.on_started()
        # What starting made (modules, the app, the stores) lives as long as the server:
        # out of the collector's sight, a full collection no longer walks it, holding the
        # GIL that the event loop and every engine step wait for (bench/gc_pauses.py).
        gc.collect()
        gc.freeze()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        timer = loop.call_later(self._grace_s, self._drain.expire)
        self.on_stopping()
        try:
            await super().shutdown(sockets)
            if self.force_exit:
                self._drain.expire()  # the second Ctrl-C may have come before the loop was known
                await self._drain.settled(_BACKSTOP_S)
                await self.lifespan.shutdown()
        finally:
            timer.cancel()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        if self.force_exit and self._loop is not None:
            # A signal handler runs between any two bytecodes; the loop runs the expiry.
            self._loop.call_soon_threadsafe(self._drain.expire)

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        with super().capture_signals():
            hangup = _catch(signal.SIGHUP, self.handle_exit)
            try:
                yield
            finally:
                try:
                    self._on_exit()
                finally:  # before uvicorn raises it again, to end the process as it asks
                    if hangup is not None:
                        signal.signal(signal.SIGHUP, hangup)
