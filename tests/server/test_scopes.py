"""Every endpoint enforces its scope: the whole matrix of endpoints by scopes."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.conftest import TOKEN, make_settings
from tests.helpers import ScriptedEngine
from tether.server.app import build_app
from tether.tokens import SCOPES

# Every route that needs a token, and the scope it needs (None: any valid token). A new
# route missing here fails test_every_route_is_in_the_matrix.
EXPECTED: dict[tuple[str, str], str | None] = {
    ("GET", "/v1/models"): None,
    ("GET", "/v1/models/{model_id}"): None,
    ("POST", "/v1/completions"): "completions",
    ("POST", "/v1/chat/completions"): "chat",
    ("POST", "/v1/responses"): "chat",
    ("POST", "/v1/responses/input_tokens"): "chat",
    ("GET", "/v1/responses/{response_id}"): "chat",
    ("DELETE", "/v1/responses/{response_id}"): "chat",
    ("GET", "/v1/responses/{response_id}/input_items"): "chat",
    ("POST", "/v1/responses/{response_id}/cancel"): "chat",
    ("POST", "/v1/fim/completions"): "completions",
    ("POST", "/infill"): "completions",
    ("POST", "/completion"): "completions",
    ("POST", "/completions"): "completions",
    ("POST", "/v1/embeddings"): "completions",
    ("POST", "/tokenize"): "completions",
    ("POST", "/detokenize"): "completions",
    ("GET", "/props"): "completions",
    ("GET", "/slots"): "completions",
    ("POST", "/slots/{id_slot}"): "slots",
    ("POST", "/tabby/v1/completions"): "completions",
    ("GET", "/tabby/v1/health"): "completions",
    ("POST", "/tabby/v1/health"): "completions",
    ("POST", "/tabby/v1/events"): "completions",
    ("GET", "/tabby/v1beta/server_setting"): "completions",
    ("POST", "/v1/suggestions"): "suggest",
    ("POST", "/v1/check"): "check",
    ("GET", "/v1/traces"): "audit:read",
    ("GET", "/v1/traces/{trace_id}"): "audit:read",
    ("GET", "/v1/audit/checkpoint"): "audit:read",
    ("GET", "/v1/audit/proof/{seq}"): "audit:read",
    ("GET", "/v1/audit/consistency/{first_size}"): "audit:read",
    ("POST", "/v1/audit/events"): "audit:write",
    ("POST", "/v1/audit/records"): "audit:write",
    ("POST", "/v1/tokens"): "tokens:admin",
    ("GET", "/v1/tokens"): "tokens:admin",
    ("DELETE", "/v1/tokens/{token_id}"): "tokens:admin",
    ("POST", "/v1/snippets"): "store:write",
    ("GET", "/v1/snippets"): "store:read",
    ("GET", "/v1/snippets/search"): "store:read",
    ("GET", "/v1/snippets/{snippet_id}"): "store:read",
    ("POST", "/v1/snippets/{snippet_id}/vet"): "store:vet",
    ("POST", "/v1/snippets/{snippet_id}/retire"): "store:vet",
    ("POST", "/v1/functions/{name}/call"): "functions:call",
    ("GET", "/v1/dashboard/session"): "dashboard",
    ("GET", "/v1/dashboard/overview"): "dashboard",
    ("GET", "/v1/dashboard/usage"): "dashboard",
    ("GET", "/v1/dashboard/funnel"): "dashboard",
    ("GET", "/v1/dashboard/traces"): "dashboard",
    ("GET", "/v1/dashboard/traces/facets"): "dashboard",
    ("GET", "/v1/dashboard/traces/{trace_id}"): "dashboard",
    ("GET", "/v1/dashboard/audit"): "dashboard",
    ("GET", "/v1/dashboard/audit/proof/{seq}"): "dashboard",
    ("GET", "/v1/dashboard/store"): "dashboard",
    ("GET", "/v1/dashboard/store/{snippet_id}"): "dashboard",
    ("GET", "/v1/dashboard/evals"): "dashboard",
    ("GET", "/v1/dashboard/evals/compare"): "dashboard",
    ("GET", "/v1/dashboard/evals/{run_id}"): "dashboard",
}
OPEN = {
    "/healthz",
    "/health",
    "/v1/health",
    "/readyz",
    "/metrics",
    "/docs",
    "/docs/oauth2-redirect",
    "/openapi.json",
}


def _routes(client: TestClient) -> list[tuple[str, str]]:
    paths = client.app.openapi()["paths"]  # type: ignore[attr-defined]
    return sorted(
        (method.upper(), path)
        for path, methods in paths.items()
        if path not in OPEN
        for method in methods
    )


def test_every_route_is_in_the_matrix(app_client: TestClient) -> None:
    assert _routes(app_client) == sorted(EXPECTED)


@pytest.fixture(scope="module")
def scoped_tokens(app_client: TestClient) -> dict[str, str]:
    tokens: dict[str, str] = {}
    for scope in SCOPES:
        response = app_client.post(
            "/v1/tokens", json={"principal": f"only-{scope}", "scopes": [scope], "ttl_s": 600}
        )
        assert response.status_code == 201, response.text
        tokens[scope] = response.json()["token"]
    return tokens


@pytest.mark.parametrize("scope", sorted(SCOPES))
def test_scope_matrix(app_client: TestClient, scoped_tokens: dict[str, str], scope: str) -> None:
    client = TestClient(app_client.app)
    headers = {"Authorization": f"Bearer {scoped_tokens[scope]}"}
    for (method, path), needed in EXPECTED.items():
        url = (
            path.replace("{token_id}", "tid_nonexistent")
            .replace("{trace_id}", "cmpl-none")
            .replace("{seq}", "0")
            .replace("{snippet_id}", "1")
            .replace("{name}", "none")
            .replace("{id_slot}", "0")
            .replace("{model_id}", "none")
            .replace("{response_id}", "resp_none")
        )
        # A body that fails validation cheaply: a token with the scope gets past auth (4xx
        # other than 401/403); one without it is stopped before the body is looked at.
        response = client.request(method, url, headers=headers, json={"max_tokens": 0})
        allowed = needed is None or needed == scope
        if allowed:
            assert response.status_code not in (401, 403), (scope, method, path, response.text)
        else:
            assert response.status_code == 403, (scope, method, path, response.text)
            error = response.json()["error"]
            assert error["code"] == "insufficient_scope" and repr(needed) in error["message"]


def test_token_lifecycle_over_http(app_client: TestClient) -> None:
    created = app_client.post(
        "/v1/tokens", json={"principal": "ci", "scopes": ["completions"], "ttl_s": 60}
    ).json()
    token, token_id = created["token"], created["id"]
    listed = app_client.get("/v1/tokens").json()["data"]
    assert any(t["id"] == token_id and t["principal"] == "ci" for t in listed)
    assert all("token" not in t for t in listed)
    user = TestClient(app_client.app, headers={"Authorization": f"Bearer {token}"})
    assert user.get("/v1/models").status_code == 200
    assert user.post("/v1/tokens", json={"principal": "x", "scopes": ["chat"]}).status_code == 403
    assert app_client.delete(f"/v1/tokens/{token_id}").json()["revoked"] == [token_id]
    assert user.get("/v1/models").status_code == 401
    assert app_client.delete(f"/v1/tokens/{token_id}").status_code == 404


def test_expired_tokens_are_listed_on_request_so_that_they_can_be_revoked(
    app_client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    created = app_client.post(
        "/v1/tokens", json={"principal": "soon-over", "scopes": ["completions"], "ttl_s": 60}
    ).json()
    store = app_client.app.state.tokens  # type: ignore[attr-defined]
    later = time.time() + 120
    monkeypatch.setattr(store, "_clock", lambda: later)

    def listed(query: str = "") -> dict[str, bool]:
        data = app_client.get(f"/v1/tokens{query}").json()["data"]
        return {t["id"]: t["expired"] for t in data}

    assert created["id"] not in listed()
    assert listed("?expired=true")[created["id"]] is True
    assert not any(listed().values())  # the live ones, and only they, without it
    revoked = app_client.delete(f"/v1/tokens/{created['id']}").json()
    assert revoked["expired"] is True and created["id"] not in listed("?expired=true")


def test_a_token_issuer_gives_no_more_than_it_has_and_leaves_the_admin_token(
    app_client: TestClient,
) -> None:
    made = app_client.post(
        "/v1/tokens", json={"principal": "issuer", "scopes": ["tokens:admin"], "ttl_s": 600}
    ).json()
    issuer = TestClient(app_client.app, headers={"Authorization": f"Bearer {made['token']}"})
    admin_id = next(
        t["id"] for t in app_client.get("/v1/tokens").json()["data"] if t["principal"] == "admin"
    )
    # An issuer sees the tokens issued through it and itself, not the others.
    assert [t["id"] for t in issuer.get("/v1/tokens").json()["data"]] == [made["id"]]
    refused = issuer.delete(f"/v1/tokens/{admin_id}")
    assert refused.status_code == 403 and "cannot be revoked" in refused.json()["error"]["message"]
    assert app_client.get("/v1/models").status_code == 200  # the admin token still works
    wider = issuer.post("/v1/tokens", json={"principal": "x", "scopes": ["audit:read"]})
    assert wider.status_code == 403 and "lacks audit:read" in wider.json()["error"]["message"]
    longer = issuer.post(
        "/v1/tokens", json={"principal": "x", "scopes": ["tokens:admin"], "ttl_s": 86400}
    )
    assert longer.status_code == 400 and longer.json()["error"]["param"] == "ttl_s"
    assert issuer.delete(f"/v1/tokens/{made['id']}").status_code == 200  # itself: fine
    gone = issuer.get("/v1/tokens")
    assert gone.status_code == 401 and "revoked" in gone.json()["error"]["message"]


def test_bad_token_requests_are_explained(app_client: TestClient) -> None:
    response = app_client.post("/v1/tokens", json={"principal": "x", "scopes": ["root"]})
    message = response.json()["error"]["message"]
    assert response.status_code == 400 and "scopes.0: Input should be 'completions'" in message


@pytest.mark.parametrize("second", ["Bearer tth_not-a-token", "Basic dXNlcjpwYXNz"])
def test_a_request_with_two_authorization_headers_is_refused(tmp_path: Path, second: str) -> None:
    """The first one was taken: behind a proxy that adds its own header, or checks the
    last, the proxy and tether would each have read a different caller."""
    app = build_app(make_settings(tmp_path), TOKEN, lambda: ScriptedEngine("x"))
    with TestClient(app) as client:
        for headers in (
            [("Authorization", f"Bearer {TOKEN}"), ("Authorization", second)],
            [("Authorization", second), ("Authorization", f"Bearer {TOKEN}")],
        ):
            response = client.post("/v1/completions", headers=headers, json={"prompt": "x"})
            assert response.status_code == 401, response.text
            assert "one Authorization header" in response.json()["error"]["message"]
