"""HTTPS on the server itself, with a certificate the test makes; the CLI trusts it."""

from __future__ import annotations

import json
import ssl
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_cli import tether
from tests.helpers import make_certificate, tether_server

pytestmark = pytest.mark.e2e


def test_https_server_and_cli(tmp_path: Path) -> None:
    cert, key = make_certificate(tmp_path)
    with tether_server(
        tmp_path, TETHER_SERVER_TLS_CERT=str(cert), TETHER_SERVER_TLS_KEY=str(key)
    ) as srv:
        assert srv.url.startswith("https://127.0.0.1:")
        record = json.loads(next((tmp_path / "run").glob("server-*.json")).read_text())
        assert record["url"] == srv.url and record["tls_cert"] == str(cert.resolve())
        trusted = ssl.create_default_context(cafile=str(cert))
        models = httpx.get(f"{srv.url}/v1/models", headers=srv.headers, verify=trusted)
        assert models.status_code == 200
        with pytest.raises(httpx.ConnectError):  # not trusted without the certificate
            httpx.get(f"{srv.url}/healthz")
        plain = srv.url.replace("https://", "http://")
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"{plain}/healthz")  # no plain HTTP on the same port
        # The CLI finds the server, its token and its certificate in the runtime file.
        chat = tether(tmp_path, "chat", "-m", "hi", "--max-tokens", "2", "--server", srv.url)
        assert chat.returncode == 0, chat.stderr
        listed = tether(tmp_path, "token", "list", "--json")
        assert listed.returncode == 0, listed.stderr
        doctor = tether(tmp_path, "doctor", "--json")
        server = next(c for c in json.loads(doctor.stdout) if c["check"] == "server")
        assert server["ok"] and server["detail"].startswith("https://")


def test_local_commands_trust_a_certificate_made_for_a_host_name(tmp_path: Path) -> None:
    """The runtime file names the server by the address it listens on, which a certificate
    made for a Service's name does not hold: every local command failed on the name, and
    doctor said to restart the server. The certificate itself is pinned instead."""
    cert, key = make_certificate(tmp_path, host="tether.internal")
    other, _ = make_certificate(tmp_path, host="tether.internal", stem="other")
    with tether_server(
        tmp_path, TETHER_SERVER_TLS_CERT=str(cert), TETHER_SERVER_TLS_KEY=str(key)
    ) as srv:
        listed = tether(tmp_path, "token", "list", "--json")
        assert listed.returncode == 0, listed.stderr
        doctor = tether(tmp_path, "doctor", "--json")
        server = next(c for c in json.loads(doctor.stdout) if c["check"] == "server")
        assert server["ok"], server
        # Another certificate of the same name is not the server's: refused, and said so.
        runtime_file = next((tmp_path / "run").glob("server-*.json"))
        record = json.loads(runtime_file.read_text())
        runtime_file.write_text(json.dumps({**record, "tls_cert": str(other)}))
        refused = tether(tmp_path, "token", "list", "--server", srv.url)
        assert refused.returncode == 3, refused.stderr
        assert "answers, but its certificate did not verify" in refused.stderr
        doctor = tether(tmp_path, "doctor", "--json")
        server = next(c for c in json.loads(doctor.stdout) if c["check"] == "server")
        assert not server["ok"] and "certificate did not verify" in server["detail"], server
        assert "SSL_CERT_FILE" in server["fix"]


def test_half_a_tls_configuration_is_refused(tmp_path: Path) -> None:
    cert, _ = make_certificate(tmp_path)
    result = tether(tmp_path, "serve", "--port", "0", TETHER_SERVER_TLS_CERT=str(cert))
    assert result.returncode == 2 and "set both server.tls_cert and server.tls_key" in result.stderr
    (tmp_path / "bad.key").write_text("not a key")
    result = tether(
        tmp_path,
        "serve",
        "--port",
        "0",
        TETHER_SERVER_TLS_CERT=str(cert),
        TETHER_SERVER_TLS_KEY=str(tmp_path / "bad.key"),
    )
    assert result.returncode == 2 and "cannot use server.tls_cert" in result.stderr


def test_an_encrypted_key_is_refused_without_asking_for_its_passphrase(tmp_path: Path) -> None:
    """OpenSSL asked on the terminal: `serve` in a container and `doctor` waited there."""
    cert, key = make_certificate(tmp_path, passphrase=b"hunter22")
    tls = {"TETHER_SERVER_TLS_CERT": str(cert), "TETHER_SERVER_TLS_KEY": str(key)}
    served = tether(tmp_path, "serve", "--port", "0", cwd=None, stdin=None, **tls)
    assert served.returncode == 2, served.stderr
    assert f"server.tls_key {key} is encrypted with a passphrase" in served.stderr
    doctor = tether(tmp_path, "doctor", "--json", cwd=None, stdin=None, **tls)
    (check,) = [c for c in json.loads(doctor.stdout) if c["check"] == "serve settings"]
    assert not check["ok"] and "is encrypted with a passphrase" in check["fix"], check
