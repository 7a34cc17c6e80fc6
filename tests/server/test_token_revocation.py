"""Revoking a token over HTTP and with `tether token revoke`: the same answer for an expired
token whether or not it was presented after it expired."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.conftest import TOKEN, make_settings
from tests.helpers import ScriptedEngine, audit_records, wait_until
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


def test_revoking_a_token_ends_its_answers_in_flight(tmp_path: Path) -> None:
    """A leaked token's streams ran on to their ends after it was revoked. They end at
    once now, saying why, as do those of the tokens issued through it; another token's
    go on."""
    slow = ScriptedEngine("x = 1\n" * 40, delay_s=0.1)  # about 5 s an answer
    app = build_app(make_settings(tmp_path), TOKEN, lambda: slow)
    with TestClient(app) as client, ThreadPoolExecutor(3) as pool:
        body = {"principal": "ci", "scopes": ["completions", "tokens:admin"]}
        leaked = client.post("/v1/tokens", headers=ADMIN, json=body).json()
        as_leaked = {"Authorization": f"Bearer {leaked['token']}"}
        child = client.post(
            "/v1/tokens", headers=as_leaked, json={"principal": "job", "scopes": ["completions"]}
        ).json()
        other = client.post("/v1/tokens", headers=ADMIN, json=body).json()

        def stream(token: str) -> list[str]:
            request = {"prompt": "def f():", "max_tokens": 200, "stream": True}
            headers = {"Authorization": f"Bearer {token}"}
            with client.stream("POST", "/v1/completions", json=request, headers=headers) as got:
                return [line for line in got.iter_lines() if line]

        def plain(token: str) -> tuple[int, str]:
            headers = {"Authorization": f"Bearer {token}"}
            answer = client.post("/v1/completions", json={"prompt": "x"}, headers=headers)
            return answer.status_code, answer.text

        streamed = pool.submit(stream, child["token"])
        waited = pool.submit(plain, leaked["token"])
        untouched = pool.submit(stream, other["token"])
        wait_until(lambda: len(slow.requests) == 3)
        time.sleep(0.5)  # the streams have begun (before, the answer is a plain 401)
        revoked = client.delete(f"/v1/tokens/{leaked['id']}", headers=ADMIN)
        assert revoked.status_code == 200 and child["id"] in revoked.json()["revoked"]
        ended = streamed.result(timeout=3)  # not the whole answer's 5 s
        status, text = waited.result(timeout=3)
        kept = untouched.result(timeout=30)
        finishes = [r["params"].get("finish_reason") for r in audit_records(app)]
        metrics = client.get("/metrics").text
    error = json.loads(ended[-2].removeprefix("data: "))["error"]
    assert "revoked while this request ran" in error["message"] and ended[-1] == "data: [DONE]"
    assert status == 401 and "revoked while this request ran" in text
    assert json.loads(kept[-2].removeprefix("data: "))["choices"][0]["finish_reason"] == "stop"
    assert finishes.count("cancelled") == 2  # each recorded as far as it went
    # An operator can alert on streams cut short (a grace too short for a rollout, too).
    assert 'tether_stream_errors_total{route="/v1/completions"} 1.0' in metrics
