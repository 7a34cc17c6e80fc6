"""A failure nobody foresaw: the client gets a 500 in words with the request's id, which
the server's log line carries too, so the two can be matched."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import TOKEN, make_settings
from tests.helpers import ScriptedEngine
from tether.server.app import build_app


def test_an_unexpected_error_names_its_request_for_the_client_and_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken(ScriptedEngine):
        async def generate(self, request: Any) -> Any:
            raise RuntimeError("a bug")
            yield  # an async generator, as engines are

    app = build_app(make_settings(tmp_path), TOKEN, lambda: Broken("x"))
    client: TestClient
    with (
        TestClient(app, raise_server_exceptions=False) as client,
        caplog.at_level(logging.ERROR, logger="tether.server"),
    ):
        response = client.post(
            "/v1/completions",
            json={"prompt": "x", "max_tokens": 2},
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
    assert response.status_code == 500
    request_id = response.headers["X-Request-Id"]
    assert f"request id {request_id}" in response.json()["error"]["message"]
    assert f"unhandled error in request {request_id}" in caplog.text
