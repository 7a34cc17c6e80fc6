"""Per-token limits over HTTP: 429 with Retry-After, visible in /v1/tokens and /metrics,
and one limited client never stops another."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import TOKEN, make_settings
from tests.helpers import ScriptedEngine, record_of_request
from tether.server.app import build_app

ADMIN = {"Authorization": f"Bearer {TOKEN}"}
PROMPT = {"prompt": "def f():", "max_tokens": 4}


@pytest.fixture
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = make_settings(tmp_path_factory.mktemp("limits"))
    with TestClient(build_app(settings, TOKEN, lambda: ScriptedEngine("return 1"))) as client:
        yield client


def _token(client: TestClient, principal: str, **limits: int) -> tuple[str, str]:
    body: dict[str, Any] = {"principal": principal, "scopes": ["completions"], **limits}
    created = client.post("/v1/tokens", headers=ADMIN, json=body)
    assert created.status_code == 201, created.text
    return created.json()["token"], created.json()["id"]


def _complete(client: TestClient, token: str) -> Any:
    return client.post("/v1/completions", headers={"Authorization": f"Bearer {token}"}, json=PROMPT)


def test_a_limited_client_never_stops_another(client: TestClient) -> None:
    greedy, greedy_id = _token(client, "greedy", rpm=3)
    polite, _ = _token(client, "polite", rpm=3)
    statuses = [_complete(client, greedy).status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 429]
    refused = _complete(client, greedy)
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert "3 requests a minute (rpm)" in refused.json()["error"]["message"]
    assert [_complete(client, polite).status_code for _ in range(3)] == [200, 200, 200]
    listed = {t["id"]: t for t in client.get("/v1/tokens", headers=ADMIN).json()["data"]}
    assert listed[greedy_id]["limits"] == {"rpm": 3, "tpm": None, "daily_tokens": None}
    assert listed[greedy_id]["usage"]["requests_last_minute"] == 3
    metrics = client.get("/metrics").text
    assert 'tether_rate_limited_requests_total{limit="rpm"} 3.0' in metrics
    assert 'tether_principal_tokens_total{principal="polite"}' in metrics


def test_refusals_and_tokens_are_counted_from_zero_before_the_first(client: TestClient) -> None:
    """rate() and increase() read a series that first appears at 1 as no increase: a
    server's first refusal for a limit, and its first answer's tokens, went unseen."""
    metrics = client.get("/metrics").text
    for limit in ("rpm", "tpm", "daily_tokens"):
        assert f'tether_rate_limited_requests_total{{limit="{limit}"}} 0.0' in metrics
    for kind in ("prompt", "completion"):
        assert f'tether_tokens_total{{kind="{kind}"}} 0.0' in metrics


def test_what_editors_poll_of_the_server_spends_none_of_a_tokens_rpm(client: TestClient) -> None:
    """A Tabby agent's health checks spent the rpm its completions needed, and then its
    health check itself answered 429: the editor said the server was down."""
    editor, _ = _token(client, "editor", rpm=2)
    headers = {"Authorization": f"Bearer {editor}"}
    paths = ["/v1/models", "/v1/models/x", "/tabby/v1/health", "/props", "/slots"]
    paths += ["/tabby/v1beta/server_setting", "/v1/models", "/tabby/v1/health"]
    polled = [client.get(path, headers=headers).status_code for path in paths]
    # /slots: a 400 from an engine without sequences of its own, not a 429
    assert polled == [200, 404, 200, 200, 400, 200, 200, 200], polled
    assert [_complete(client, editor).status_code for _ in range(3)] == [200, 200, 429]
    assert client.get("/tabby/v1/health", headers=headers).status_code == 200
    tokenized = client.post("/tokenize", headers=headers, json={"content": "x"})
    assert tokenized.status_code == 429  # work, counted as any request is


def test_tokens_per_minute_and_a_daily_budget(client: TestClient) -> None:
    minute, minute_id = _token(client, "minute", tpm=5)
    assert _complete(client, minute).status_code == 200  # spends 3 prompt + 2 answer tokens
    refused = _complete(client, minute)
    assert refused.status_code == 429 and "(tpm)" in refused.json()["error"]["message"]
    daily, _ = _token(client, "daily", daily_tokens=5)
    assert _complete(client, daily).status_code == 200
    refused = _complete(client, daily)
    assert refused.status_code == 429 and "(daily_tokens)" in refused.json()["error"]["message"]
    usage = {t["id"]: t["usage"] for t in client.get("/v1/tokens", headers=ADMIN).json()["data"]}
    assert usage[minute_id]["tokens_last_minute"] == 5


def test_tokens_a_limited_token_issues_draw_on_its_allowance(client: TestClient) -> None:
    body = {"principal": "ci", "scopes": ["tokens:admin", "completions"], "tpm": 5}
    created = client.post("/v1/tokens", headers=ADMIN, json=body).json()
    issuer = {"Authorization": f"Bearer {created['token']}"}
    children = [
        client.post(
            "/v1/tokens", headers=issuer, json={"principal": f"job{n}", "scopes": ["completions"]}
        ).json()["token"]
        for n in range(2)
    ]
    assert _complete(client, children[0]).status_code == 200  # 5 tokens: the issuer's tpm
    refused = _complete(client, children[1])  # a fresh child of a spent issuer
    assert refused.status_code == 429, refused.text
    assert f"token {created['id']}, which issued it," in refused.json()["error"]["message"]
    listed = {t["id"]: t for t in client.get("/v1/tokens", headers=ADMIN).json()["data"]}
    assert listed[created["id"]]["usage"]["tokens_last_minute"] == 5


@pytest.mark.parametrize("limit", [{"daily_tokens": 5}, {"rpm": 2}])
def test_an_issuer_whose_children_spent_its_allowance_can_still_revoke_them(
    client: TestClient, limit: dict[str, int]
) -> None:
    """A runaway child could otherwise keep its issuer from stopping it: the allowance
    they share was checked on /v1/tokens too (until midnight, for a daily budget)."""
    body = {"principal": "team", "scopes": ["tokens:admin", "completions"], **limit}
    issued = client.post("/v1/tokens", headers=ADMIN, json=body).json()
    issuer = {"Authorization": f"Bearer {issued['token']}"}
    child = client.post(
        "/v1/tokens", headers=issuer, json={"principal": "ci", "scopes": ["completions"]}
    )
    assert child.status_code == 201, child.text
    statuses = [_complete(client, child.json()["token"]).status_code for _ in range(3)]
    assert statuses[-1] == 429, statuses  # the shared allowance is spent
    assert client.get("/v1/tokens", headers=issuer).status_code == 200
    if "rpm" in limit:  # issuing counts against rpm: no minting tokens past it
        another = {"principal": "ci2", "scopes": ["completions"]}
        assert client.post("/v1/tokens", headers=issuer, json=another).status_code == 429
    revoked = client.delete(f"/v1/tokens/{child.json()['id']}", headers=issuer)
    assert revoked.status_code == 200, revoked.text
    assert _complete(client, child.json()["token"]).status_code == 401
    # Managing tokens spends none of the allowance: the issuer is where its child left it.
    assert _complete(client, issued["token"]).status_code == 429


def test_limits_must_be_positive_integers(client: TestClient) -> None:
    for bad in ({"rpm": 0}, {"tpm": -1}, {"daily_tokens": "many"}):
        body = {"principal": "x", "scopes": ["chat"], **bad}
        assert client.post("/v1/tokens", headers=ADMIN, json=body).status_code == 400


def test_a_rate_limit_on_mcp_is_a_json_rpc_error_with_retry_after(client: TestClient) -> None:
    body: dict[str, Any] = {"principal": "mcp", "scopes": ["store:read"], "rpm": 1}
    token = client.post("/v1/tokens", headers=ADMIN, json=body).json()["token"]
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json, text/event-stream"}
    ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    assert client.post("/mcp", headers=headers, json=ping).status_code == 200
    refused = client.post("/mcp", headers=headers, json=ping)
    assert refused.status_code == 429 and 1 <= int(refused.headers["Retry-After"]) <= 60
    answer = refused.json()
    assert answer["jsonrpc"] == "2.0" and answer["error"]["code"] == -32000
    assert "1 requests a minute (rpm)" in answer["error"]["message"]
    # Its audit record names whom it refused, as every route's does.
    record = record_of_request(client.app, refused)
    assert (record["principal"], record["params"]["status"]) == ("mcp", 429)
    body = {"principal": "caller", "scopes": ["functions:call"]}
    unscoped = client.post("/v1/tokens", headers=ADMIN, json=body).json()["token"]
    forbidden = client.post("/mcp", headers={**headers, "Authorization": f"Bearer {unscoped}"},
                            json=ping)  # fmt: skip
    assert forbidden.status_code == 403
    record = record_of_request(client.app, forbidden)
    assert (record["principal"], record["params"]["status"]) == ("caller", 403)


def test_requests_sent_at_once_pass_a_budget_by_one_answer_at_most(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    settings = make_settings(tmp_path_factory.mktemp("at-once"))
    slow = ScriptedEngine("return 1", delay_s=0.2)
    with TestClient(build_app(settings, TOKEN, lambda: slow)) as client:
        token, token_id = _token(client, "burst", daily_tokens=5)
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda _: _complete(client, token), range(8)))
        statuses = sorted(answer.status_code for answer in answers)
        # Each holds its prompt and max_tokens while it runs: the first holds the budget.
        assert statuses == [200] + [429] * 7
        refused = next(a for a in answers if a.status_code == 429)
        assert "(daily_tokens)" in refused.json()["error"]["message"]
        listed = client.get("/v1/tokens", headers=ADMIN).json()["data"]
        usage = {t["id"]: t["usage"] for t in listed}
        assert usage[token_id]["tokens_today"] == 5  # one answer counted, nothing held
        assert usage[token_id]["tokens_held"] == 0
