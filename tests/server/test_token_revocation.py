"""Revoking a token over HTTP and with `tether token revoke`: the same answer for an expired
token whether or not it was presented after it expired."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.conftest import TOKEN, make_settings
from tests.helpers import ScriptedEngine
from tether.server.app import build_app

ADMIN = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def app(tmp_path: Path) -> FastAPI:
    return build_app(make_settings(tmp_path), TOKEN, lambda: ScriptedEngine("x"))


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as client:
        yield client


@pytest.mark.parametrize("presented_after_expiry", [False, True])
def test_revoking_an_expired_token_succeeds_and_says_it_had_expired(
    app: FastAPI, client: TestClient, monkeypatch: pytest.MonkeyPatch, presented_after_expiry: bool
) -> None:
    body = {"principal": "ci", "scopes": ["chat"], "ttl_s": 60}
    made = client.post("/v1/tokens", headers=ADMIN, json=body).json()
    later = time.time() + 120
    monkeypatch.setattr(app.state.tokens, "_clock", lambda: later)
    if presented_after_expiry:
        used = client.get("/v1/models", headers={"Authorization": f"Bearer {made['token']}"})
        assert used.status_code == 401 and "expired" in used.json()["error"]["message"]
    answer = client.delete(f"/v1/tokens/{made['id']}", headers=ADMIN)
    assert answer.status_code == 200, answer.text
    assert answer.json()["revoked"] == [made["id"]] and answer.json()["expired"] is True
    again = client.delete(f"/v1/tokens/{made['id']}", headers=ADMIN)
    assert again.status_code == 404 and "revoked already" in again.json()["error"]["message"]


def test_revoking_a_live_token_says_it_had_not_expired(client: TestClient) -> None:
    body = {"principal": "ci", "scopes": ["chat"], "ttl_s": 60}
    made = client.post("/v1/tokens", headers=ADMIN, json=body).json()
    answer = client.delete(f"/v1/tokens/{made['id']}", headers=ADMIN).json()
    assert answer["revoked"] == [made["id"]] and answer["expired"] is False
