"""Start real tether servers and upstreams for the end-to-end tests."""

from __future__ import annotations

import asyncio
import datetime
import errno
import http.server
import ipaddress
import json
import os
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import AsyncGenerator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
from bench._processes import free_port as free_port
from bench._processes import stop_process
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tether.audit import segments
from tether.engines.base import (
    EngineInfo,
    EngineStats,
    FinishReason,
    GenerationChunk,
    GenerationRequest,
)
from tether.models import default_model_path
from tether.server.runtime import find_runtime_record, trust_for
from tether.traces import Trace
from tether.usage.reader import GroupBy, LedgerReader, UsageTotals


def python_under_the_c_locale(code: str, cwd: Path | None = None) -> tuple[int, str, str]:
    """Run ``code`` in a new Python where names and files are read as ASCII (the C
    locale with UTF-8 mode off); its exit status, standard output and error."""
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "LC_ALL": "C", "PYTHONUTF8": "0"},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.returncode, done.stdout, done.stderr


def wait_until(check: Callable[[], object], timeout: float = 60.0, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except httpx.HTTPError:
            pass
        time.sleep(interval)
    raise TimeoutError("condition not met in time")


@dataclass
class RunningServer:
    url: str
    token: str
    process: subprocess.Popen[bytes]
    env: dict[str, str]
    verify: ssl.SSLContext | bool = True

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self.headers, timeout=60, verify=self.verify)


# systemd's, where the tests run under a service: a test server is no service's main process.
_SERVICE_VARIABLES = {"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"}


def tether_env(home: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("TETHER_") and k not in _SERVICE_VARIABLES
    }
    env.update(
        {
            "TETHER_HOME": str(home / "data"),
            "TETHER_SERVER_RUNTIME_DIR": str(home / "run"),
            "TETHER_ENGINE_N_CTX": "2048",
            **extra,
        }
    )
    return env


@contextmanager
def tether_server(
    home: Path,
    *args: str,
    log: Path | None = None,
    log_level: str = "warning",
    preexec_fn: Callable[[], object] | None = None,
    **env_extra: str,
) -> Iterator[RunningServer]:
    """A `tether serve` process; its output goes to ``log`` when given; ``preexec_fn``
    runs in the child before it starts (to set its limits)."""
    port = free_port()
    env = tether_env(home, **env_extra)
    output = log.open("ab") if log else None
    command = [sys.executable, "-m", "tether", "serve", "--port", str(port)]
    process = subprocess.Popen(
        [*command, "--log-level", log_level, *args],
        env=env,
        stdout=output,
        stderr=subprocess.STDOUT if output else None,
        preexec_fn=preexec_fn,
    )
    runtime_file = home / "run" / f"server-{port}.json"
    try:
        # The runtime file comes first; it says where (http or https) and how to trust it.
        wait_until(lambda: process.poll() is None and runtime_file.is_file())
        record = json.loads(runtime_file.read_text())
        url = record["url"]
        verify = trust_for(find_runtime_record(home / "run", url))
        wait_until(
            lambda: (
                process.poll() is None
                and httpx.get(f"{url}/healthz", verify=verify).status_code == 200
            )
        )
        yield RunningServer(url, record["token"], process, env, verify)
    finally:
        stop_process(process)
        if output:
            output.close()


@contextmanager
def llama_upstream(port: int | None = None) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """llama-cpp-python's own OpenAI-compatible server on loopback, a real upstream."""
    port = port or free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(default_model_path()),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            "2048",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}/v1"
    try:
        wait_until(lambda: httpx.get(f"{base}/models").status_code == 200)
        yield base, process
    finally:
        stop_process(process)


def sse_events(text: str) -> list[str]:
    """The data of each server-sent event in a response body."""
    return [line[6:] for line in text.splitlines() if line.startswith("data: ")]


class ScriptedEngine:
    """An engine that answers every request with the same text, a few characters a chunk.

    The model's words cannot be chosen, so tests of what the pipeline does with an answer
    (findings, redaction, blocking) use this real implementation of the Engine protocol.
    """

    def __init__(
        self,
        answer: str,
        model_id: str = "scripted",
        delay_s: float = 0.0,
        finish_reason: FinishReason = "stop",
    ) -> None:
        self.answer = answer
        self.delay_s = delay_s  # before each chunk, as a model takes time per token
        self.finish_reason = finish_reason  # "length": as if cut off by max_tokens
        self.requests: list[GenerationRequest] = []
        self.stopped_early = 0  # generations closed before their last chunk
        self._info = EngineInfo(
            engine="scripted", engine_version="1", model_id=model_id, n_ctx=4096
        )

    def info(self) -> EngineInfo:
        return self._info

    async def generate(self, request: GenerationRequest) -> AsyncGenerator[GenerationChunk, None]:
        self.requests.append(request)
        pieces = [self.answer[i : i + 5] for i in range(0, len(self.answer), 5)] or [""]
        finished = False
        try:
            for piece in pieces[:-1]:
                await asyncio.sleep(self.delay_s)
                yield GenerationChunk(text=piece)
            finished = True
            yield GenerationChunk(
                text=pieces[-1],
                finish_reason=self.finish_reason,
                prompt_tokens=3,
                completion_tokens=len(pieces),
            )
        finally:
            self.stopped_early += not finished

    def count_tokens(self, text: str) -> int:
        return len(text) // 4

    async def health(self) -> bool:
        return True

    def stats(self) -> EngineStats:
        return EngineStats()

    async def close(self) -> None:
        return None


def answer_trace(app: Any, answer: dict[str, Any]) -> Trace:
    """The trace of an answer an app gave (its ``tether.trace_id``), once the traces
    queued so far are written."""
    app.state.trace_recorder.flush()
    trace: Trace | None = app.state.traces.get(str(answer["tether"]["trace_id"]))
    assert trace is not None
    return trace


def audit_records(app: Any) -> list[dict[str, Any]]:
    """Every record an app's audit log has written, once what is queued is flushed."""
    log = app.state.audit
    log.flush()
    return [
        json.loads(item.data)
        for item in segments.iter_records(log.folder)
        if isinstance(item, segments.Line)
    ]


def ledger_totals(app: Any, by: GroupBy) -> list[UsageTotals]:
    """An app's usage ledger totals of all time, ``by`` principal, model, ..., once what
    is queued is written."""

    ledger = app.state.usage_ledger
    ledger.flush()
    with LedgerReader(ledger.ledger.path) as reader:
        return list(reader.totals(0, 4e9, by))


def record_of_request(app: Any, response: Any) -> dict[str, Any]:
    """The audit record of a request that made no generation (a refusal, /tokenize), which
    the server writes under ``req-`` and the response's request id."""
    wanted = f"req-{response.headers['x-request-id']}"
    (record,) = [r for r in audit_records(app) if r["request_id"] == wanted]
    return record


def project_with(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str, text: str) -> Path:
    """A project folder holding one file, made the working directory, with tether isolated."""
    isolate_tether(monkeypatch, tmp_path)
    root = tmp_path / "project"
    root.mkdir()
    (root / name).write_text(text)
    monkeypatch.chdir(root)
    return root


def isolate_tether(monkeypatch: pytest.MonkeyPatch, root: Path) -> None:
    """tether in this process reads no TETHER_ variable of the machine running the tests,
    and keeps its data and runtime files under ``root``."""
    for name in [n for n in os.environ if n.startswith("TETHER_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("TETHER_HOME", str(root / "home"))
    monkeypatch.setenv("TETHER_SERVER_RUNTIME_DIR", str(root / "run"))
    monkeypatch.setenv("TETHER_ENGINE_N_CTX", "2048")


def cgroup_tree(tmp_path: Path, files: dict[str, str], membership: str) -> tuple[Path, Path]:
    """A cgroup folder holding ``files``, and a /proc/self/cgroup reading ``membership``."""
    root = tmp_path / "cgroup"
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    (tmp_path / "cgroup.txt").write_text(membership)
    return root, tmp_path / "cgroup.txt"


def make_certificate(
    folder: Path, passphrase: bytes | None = None, host: str | None = None, stem: str = "server"
) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost (or only for the name
    ``host``), and its key (mode 0600), encrypted with ``passphrase`` if given."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tether test")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(host)]
                if host
                else [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / f"{stem}.pem", folder / f"{stem}.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(passphrase)
            if passphrase
            else serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


def segmented_log(home: Path, records: int, prompt_chars: int) -> Path:
    """The folder of an audit log in ``home`` holding ``records`` records, each with a
    prompt of ``prompt_chars`` characters, in segments of 4 KiB: several segments."""
    from tether.audit.log import AuditLog
    from tether.settings import load_settings

    settings = load_settings(
        {"data.home": str(home), "audit.segment_bytes": 4096, "audit.origin": "tether/test"},
        environ={},
    )
    log = AuditLog.open(settings)
    for i in range(records):
        log.append({"request_id": f"r{i}", "prompt": "p" * prompt_chars})
    log.close()
    return home / "audit"


@contextmanager
def read_only(folder: Path) -> Iterator[Path]:
    """``folder`` and all in it read-only (as an auditor's copy is), writable again after."""
    paths = [folder, *folder.rglob("*")]
    for path in paths:
        path.chmod(path.stat().st_mode & ~0o222)
    try:
        yield folder
    finally:
        for path in paths:
            path.chmod(path.stat().st_mode | 0o200)


def bound_by_permissions(command: list[str]) -> list[str]:
    """``command`` run so that file permission bits bind it: root (as in CI) overrides
    them with its capabilities, so it runs with every capability dropped."""
    if os.geteuid() != 0:
        return command
    return ["setpriv", "--inh-caps=-all", "--bounding-set=-all", "--", *command]


def run_bound(code: str, *args: str) -> str:
    """What Python ``code`` (given ``args`` as sys.argv[1:]) prints, run as a process
    that file permission bits bind; it must end well."""
    command = bound_by_permissions([sys.executable, "-c", code, *args])
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


class DiskThatFills:
    """A file on a disk that refuses every write while ``full`` (ENOSPC), the rest of it
    the real file's."""

    def __init__(self, real: Any, *, full: bool = True) -> None:
        self.real, self.full = real, full

    def write(self, data: bytes) -> int:
        if self.full:
            raise OSError(errno.ENOSPC, "No space left on device")
        return int(self.real.write(data))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


class _RefusingProxy(http.server.BaseHTTPRequestHandler):
    seen: ClassVar[list[str]] = []

    def _refuse(self) -> None:
        self.seen.append(self.path)
        body = b"<html><body>Access denied by policy</body></html>"
        self.send_response(403)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_CONNECT = _refuse

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def refusing_proxy() -> Iterator[tuple[dict[str, str], list[str]]]:
    """A proxy for the internet, as a company names in HTTP_PROXY, that refuses everything
    with a web page: the variables that name it, and the URLs it was asked for."""
    seen: list[str] = []
    handler = type("Refusing", (_RefusingProxy,), {"seen": seen})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    url = f"http://127.0.0.1:{server.server_address[1]}"
    names = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield dict.fromkeys(names, url) | {"NO_PROXY": "", "no_proxy": ""}, seen
    finally:
        server.shutdown()
        server.server_close()
