"""The runtime file that lets the CLI find a running server and its admin token.

The admin token lives only in the server's memory and in this file (mode 0600, outside
the data directory); a configured ``server.token`` replaces the generated one.
"""

from __future__ import annotations

import json
import os
import re
import ssl
import stat
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from tether.errors import ConfigError


def default_runtime_dir() -> Path:
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        return Path(xdg) / "tether"
    return Path.home() / ".cache" / "tether" / "run"


@dataclass(frozen=True)
class RuntimeRecord:
    url: str
    token: str
    pid: int
    tls_cert: str | None = None  # the server's certificate, which local clients trust
    data_home: str | None = None  # whose audit log and traces this server writes
    model_cores: list[int] | None = None  # the cores its embedded model computes on
    model_threads: int | None = None  # and with how many threads


def _record_path(runtime_dir: Path, port: int) -> Path:
    return runtime_dir / f"server-{port}.json"


def private_runtime_dir(runtime_dir: Path) -> None:
    """Make ``runtime_dir`` a folder only this user can enter (0700), as the admin token is
    written there: made so when missing, tightened when it is this user's and looser (a
    ``mkdir -p`` leaves 0755). ConfigError, saying what to do, when it is another user's
    or cannot be made private."""
    where = "set server.runtime_dir (TETHER_SERVER_RUNTIME_DIR) to a folder of your own"
    try:
        runtime_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        found = runtime_dir.stat()
    except OSError as exc:
        raise ConfigError(
            f"cannot make the runtime folder {runtime_dir} ({exc.strerror}); {where}"
        ) from exc
    if not stat.S_ISDIR(found.st_mode):
        raise ConfigError(f"the runtime folder {runtime_dir} is not a folder; {where}")
    if found.st_uid != os.geteuid():
        raise ConfigError(
            f"the runtime folder {runtime_dir} belongs to another user (uid {found.st_uid}), "
            f"who could read the admin token written there; {where}"
        )
    if stat.S_IMODE(found.st_mode) != 0o700:
        try:
            runtime_dir.chmod(0o700)
        except OSError as exc:
            raise ConfigError(
                f"cannot make the runtime folder {runtime_dir} private (0700): {exc.strerror}; "
                f"run chmod 700 {runtime_dir}, or {where}"
            ) from exc


def write_runtime_file(runtime_dir: Path, port: int, record: RuntimeRecord) -> Path:
    private_runtime_dir(runtime_dir)
    path = _record_path(runtime_dir, port)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(asdict(record), handle)
    os.replace(tmp, path)
    return path


def remove_runtime_file(runtime_dir: Path, port: int, pid: int) -> None:
    path = _record_path(runtime_dir, port)
    try:
        if json.loads(path.read_text()).get("pid") == pid:
            path.unlink()
    except (OSError, ValueError):
        pass  # already gone or replaced by another server: nothing of ours to remove


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process: alive, just not ours to signal
    return True


def _age(path: Path) -> float:
    """Newest first; a file removed while we look sorts last and is skipped."""
    try:
        return -path.stat().st_mtime
    except OSError:
        return 0.0


def live_records(
    runtime_dir: Path, gone: list[RuntimeRecord] | None = None
) -> Iterator[RuntimeRecord]:
    """Records of servers whose process is alive, newest first.

    A record whose process is gone (a server killed before it could clean up) is removed,
    and added to ``gone`` when given. The process may be alive yet not (or no longer)
    answer: ask it before trusting it.
    """
    for path in sorted(runtime_dir.glob("server-*.json"), key=_age):
        try:
            data = json.loads(path.read_text())
            record = RuntimeRecord(
                str(data["url"]),
                str(data["token"]),
                int(data["pid"]),
                data.get("tls_cert"),
                data.get("data_home"),
                _cores(data.get("model_cores")),
                data.get("model_threads") if isinstance(data.get("model_threads"), int) else None,
            )
        except (OSError, ValueError, KeyError):
            continue
        if not _alive(record.pid):
            remove_runtime_file(runtime_dir, int(path.stem.split("-")[1]), record.pid)
            if gone is not None:
                gone.append(record)
            continue
        yield record


def remove_stale_records(runtime_dir: Path) -> list[RuntimeRecord]:
    """Remove the record of every server whose process is gone; those removed."""
    gone: list[RuntimeRecord] = []
    for _ in live_records(runtime_dir, gone):
        pass
    return gone


def _cores(value: object) -> list[int] | None:
    if isinstance(value, list) and all(isinstance(core, int) for core in value):
        return value
    return None


def sharing_cores(
    runtime_dir: Path, cores: list[int], threads: int, pid: int
) -> list[RuntimeRecord]:
    """The other running servers whose embedded model computes on some of ``cores``, with
    more threads between the two than the cores they share."""
    found = []
    for other in live_records(runtime_dir):
        if other.pid == pid or not other.model_cores or not set(other.model_cores) & set(cores):
            continue
        theirs = other.model_threads or len(other.model_cores)
        if threads + theirs > len(set(other.model_cores) | set(cores)):
            found.append(other)
    return found


def find_runtime_record(runtime_dir: Path, url: str | None) -> RuntimeRecord | None:
    """The record of the server at ``url``, or of the newest running server when None."""
    for record in live_records(runtime_dir):
        if url is None or record.url.rstrip("/") == url.rstrip("/"):
            return record
    return None


def find_server_of(runtime_dir: Path, data_home: Path) -> RuntimeRecord | None:
    """The running server that writes ``data_home`` (its audit log, its traces)."""
    wanted = str(data_home.resolve())
    return next((r for r in live_records(runtime_dir) if r.data_home == wanted), None)


def local_server(runtime_dir: Path, data_home: Path) -> RuntimeRecord | None:
    """The server a command without --server means: the one that writes its data home,
    else the newest running (a gateway beside it has a home of its own)."""
    return find_server_of(runtime_dir, data_home) or find_runtime_record(runtime_dir, None)


def trust_for(record: RuntimeRecord | None) -> ssl.SSLContext | bool:
    """How to check a server's certificate: the one its runtime file names (a local server
    with its own certificate), else the system's CAs (and SSL_CERT_FILE, if set).

    The runtime file's certificate is pinned: the server must show that very certificate,
    whatever names it holds. The file names the server by the address it listens on
    (127.0.0.1, 0.0.0.0), which a certificate made for a host name (a Service's, as the
    chart's) does not hold, so checking the name refused every local command. Only the
    file's first certificate is trusted: its chain's CAs, trusted without a name to check,
    would pass any certificate they issued."""
    if record is not None and record.tls_cert and record.url.startswith("https:"):
        try:
            # Latin-1 reads any byte: a PEM may carry comments or attributes in UTF-8.
            leaf = _first_certificate(Path(record.tls_cert).read_text("latin-1"))
        except (OSError, ValueError):
            return ssl.create_default_context(cafile=record.tls_cert)  # fails as it did
        context = ssl.create_default_context(cadata=leaf)
        context.check_hostname = False
        context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN  # the leaf is the anchor
        return context
    return True


_PEM_CERTIFICATE = re.compile(
    r"-----BEGIN CERTIFICATE-----\s.*?-----END CERTIFICATE-----", re.DOTALL
)


def _first_certificate(pem: str) -> str:
    """The first certificate of a PEM file (the server's own, before its chain)."""
    found = _PEM_CERTIFICATE.search(pem)
    if found is None:
        raise ValueError("no PEM certificate")
    return found.group(0)
