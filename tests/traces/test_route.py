from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.traces.conftest import make_trace
from tether.cli import backend as cli_backend
from tether.cli.backend import HttpBackend
from tether.cli.main import cli
from tether.server.errors import install_error_handlers
from tether.server.routes.traces import router
from tether.settings import Settings
from tether.tokens import TokenStore
from tether.traces import TraceStore

ADMIN = "tth_x"


@pytest.fixture
def client(store: TraceStore) -> Iterator[TestClient]:
    app = FastAPI()
    app.state.traces = store
    app.state.tokens = TokenStore()
    app.state.tokens.add_admin(ADMIN)
    install_error_handlers(app)
    app.include_router(router)
    store.record(make_trace("cmpl-one", created=4_000_000_000.0))
    with TestClient(app) as client:
        yield client


def auth(token: str = ADMIN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_get_trace(client: TestClient) -> None:
    response = client.get("/v1/traces/cmpl-one", headers=auth())
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == "cmpl-one"
    assert body["policy"][0]["action"] == "redact"


def test_a_request_s_x_request_id_finds_its_answer_s_trace(client: TestClient) -> None:
    response = client.get("/v1/traces/one", headers=auth())
    assert response.status_code == 200 and response.json()["id"] == "cmpl-one"


def test_unknown_id_is_404_in_openai_shape(client: TestClient) -> None:
    response = client.get("/v1/traces/cmpl-nope", headers=auth())
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_list_recent(client: TestClient) -> None:
    response = client.get("/v1/traces?limit=5", headers=auth())
    assert response.status_code == 200
    assert [e["id"] for e in response.json()["data"]] == ["cmpl-one"]


def test_needs_a_token(client: TestClient) -> None:
    assert client.get("/v1/traces/cmpl-one").status_code == 401


def test_needs_audit_read_scope(client: TestClient) -> None:
    store: TokenStore = client.app.state.tokens  # type: ignore[attr-defined]
    token, _ = store.issue("bob", ["completions"], 60)
    response = client.get("/v1/traces/cmpl-one", headers=auth(token))
    assert response.status_code == 403


class _AsgiBackend(HttpBackend):
    """The real HttpBackend, its client wired to the app in process instead of a socket."""

    app: FastAPI

    def __init__(self, settings: Settings, url: str, token: str | None) -> None:
        super().__init__(settings, url, token)
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app),
            base_url=self.url,
            headers={"Authorization": f"Bearer {token}"},
        )


@pytest.fixture
def remote(client: TestClient, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(_AsgiBackend, "app", client.app, raising=False)
    monkeypatch.setattr(cli_backend, "HttpBackend", _AsgiBackend)
    monkeypatch.setenv("TETHER_HOME", str(tmp_path / "client-home"))
    monkeypatch.chdir(tmp_path)


def test_cli_server_fetches_the_trace(remote: None) -> None:
    args = ["--server", "http://tether.test", "--token", ADMIN]
    result = CliRunner().invoke(cli, ["explain", "cmpl-one", *args])
    assert result.exit_code == 0, result.output
    assert "secrets.aws-access-key" in result.output
    listed = CliRunner().invoke(cli, ["explain", "--recent", *args])
    assert listed.output.startswith("cmpl-one")
    missing = CliRunner().invoke(cli, ["explain", "cmpl-nope", *args])
    assert missing.exit_code == 2
    assert "tether explain --recent --server http://tether.test" in missing.output
