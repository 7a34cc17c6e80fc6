"""Request bodies over server.max_body_mb get a 413 in the OpenAI shape, before they are
read whole, token or not."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from tests.conftest import TOKEN, make_settings
from tests.helpers import ScriptedEngine
from tether.server.app import build_app

ADMIN = {"Authorization": f"Bearer {TOKEN}"}
LIMIT = 4096  # bytes: server.max_body_mb = 4096 / 2**20


@pytest.fixture
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = make_settings(
        tmp_path_factory.mktemp("body"), TETHER_SERVER_MAX_BODY_MB=str(LIMIT / 2**20)
    )
    with TestClient(build_app(settings, TOKEN, lambda: ScriptedEngine("return 1"))) as client:
        yield client


def _refused(response: object) -> None:
    assert getattr(response, "status_code", None) == 413
    error = response.json()["error"]  # type: ignore[attr-defined]
    assert error["code"] == "request_too_large" and "server.max_body_mb" in error["message"]


def test_a_body_within_the_limit_is_served(client: TestClient) -> None:
    body = {"prompt": "x" * (LIMIT - 100), "max_tokens": 2}
    assert client.post("/v1/completions", headers=ADMIN, json=body).status_code == 200


def test_a_declared_length_over_the_limit_is_refused_before_anything_else(
    client: TestClient,
) -> None:
    body = {"prompt": "x" * LIMIT}
    _refused(client.post("/v1/completions", headers=ADMIN, json=body))
    _refused(client.post("/v1/completions", json=body))  # no token: still not read


def test_a_chunked_body_is_refused_when_it_passes_the_limit(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:  # no Content-Length: sent chunked
        yield b'{"prompt": "'
        for _ in range(LIMIT // 1024 + 1):
            yield b"x" * 1024
        yield b'"}'

    _refused(client.post("/v1/completions", headers=ADMIN, content=chunks()))
