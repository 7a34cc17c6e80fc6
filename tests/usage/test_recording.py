"""Every API request leaves a ledger row and counters; `tether usage report` reads them."""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from tests.conftest import TOKEN, make_settings
from tests.helpers import ScriptedEngine, audit_records
from tether.cli.main import cli
from tether.server.app import build_app
from tether.usage.reader import LedgerReader

ADMIN = {"Authorization": f"Bearer {TOKEN}"}


def test_metrics_name_so_many_principals_then_count_the_rest_together(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("tether.server.metrics.MAX_PRINCIPAL_LABELS", 2)
    settings = make_settings(tmp_path)
    app = build_app(settings, TOKEN, lambda: ScriptedEngine("return 1", model_id="tiny"))
    with TestClient(app) as client:
        for job in ("job-1", "job-2", "job-3", "job-1"):
            made = client.post(
                "/v1/tokens", headers=ADMIN, json={"principal": job, "scopes": ["completions"]}
            ).json()
            headers = {"Authorization": f"Bearer {made['token']}"}
            body = {"prompt": "def f():", "max_tokens": 4}
            assert client.post("/v1/completions", headers=headers, json=body).status_code == 200
        metrics = client.get("/metrics").text
    # The admin's own requests took the first label; then job-1; the rest are "(other)".
    requests = [line for line in metrics.splitlines() if line.startswith("tether_usage_requests")]
    named = {line.split('principal="')[1].split('"')[0] for line in requests}
    assert named == {"admin", "job-1", "(other)"}, named
    assert 'tether_principal_tokens_total{principal="job-1"}' in metrics
    assert 'principal="job-3"' not in metrics and 'principal="job-2"' not in metrics
    with LedgerReader(settings.data.home / "usage.sqlite") as reader:
        kept = {t.key for t in reader.totals(0, 4e9, "principal")}
    assert {"job-1", "job-2", "job-3"} <= kept  # the ledger keeps each apart


def test_the_api_documents_are_not_usage_as_they_are_not_audited(tmp_path: Path) -> None:
    # GET /openapi.json, fetched by a client's code generator or a browser, was a row of
    # 110 KB out under the endpoint "unmatched", while the audit log, rightly, left it out.
    settings = make_settings(tmp_path)
    app = build_app(settings, TOKEN, lambda: ScriptedEngine("x", model_id="tiny"))
    with TestClient(app) as client:
        for path in ("/openapi.json", "/docs", "/docs/oauth2-redirect"):
            assert client.get(path).status_code == 200, path
        assert client.get("/v1/models", headers=ADMIN).status_code == 200
    with LedgerReader(settings.data.home / "usage.sqlite") as reader:
        by_endpoint = {t.key: t.requests for t in reader.totals(0, 4e9, "endpoint")}
    assert by_endpoint == {"/v1/models": 1}


@pytest.mark.parametrize(
    "path",
    ["/ui/nothing", "/uix", "/healthcheck", "/health/live", "/metricsx", "/readyz/", "/docsx"],
)
def test_a_request_is_usage_exactly_where_it_is_audited(tmp_path: Path, path: str) -> None:
    # The two kept separate lists: a path under /ui that no page serves was audited but
    # not counted, a monitor's /healthcheck counted but not audited, and the request
    # counts of the usage report and the audit log did not agree.
    settings = make_settings(tmp_path)
    app = build_app(settings, TOKEN, lambda: ScriptedEngine("x", model_id="tiny"))
    with TestClient(app) as client:
        before = len(audit_records(client.app))
        client.get(path)
        audited = len(audit_records(client.app)) - before
    with LedgerReader(settings.data.home / "usage.sqlite") as reader:
        counted = sum(t.requests for t in reader.totals(0, 4e9, "endpoint"))
    assert counted == audited


def test_requests_are_recorded_with_who_what_and_how_much(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(tmp_path)
    app = build_app(settings, TOKEN, lambda: ScriptedEngine("return 1", model_id="tiny"))
    with TestClient(app) as client:
        made = client.post(
            "/v1/tokens", headers=ADMIN, json={"principal": "carol", "scopes": ["completions"]}
        ).json()
        carol = {"Authorization": f"Bearer {made['token']}"}
        body = {"prompt": "def f():", "max_tokens": 4}
        assert client.post("/v1/completions", headers=carol, json=body).status_code == 200
        streamed = client.post("/v1/completions", headers=carol, json={**body, "stream": True})
        assert streamed.status_code == 200
        assert client.post("/v1/completions", json=body).status_code == 401
        client.get("/healthz")  # not usage
        metrics = client.get("/metrics").text
    assert (
        'tether_usage_requests_total{endpoint="/v1/completions",model="tiny",principal="carol"} '
        "2.0" in metrics
    )
    assert 'tether_usage_tokens_total{kind="prompt",model="tiny",principal="carol"} 6.0' in metrics

    with LedgerReader(settings.data.home / "usage.sqlite") as reader:
        by_who = {t.key: t for t in reader.totals(0, 4e9, "principal")}
        by_endpoint = {t.key: t for t in reader.totals(0, 4e9, "endpoint")}
    assert by_who["carol"].requests == 2 and by_who["carol"].prompt_tokens == 6
    compact = len(json.dumps(body, separators=(",", ":")))  # as httpx sends it
    assert by_who["carol"].bytes_in == 2 * compact + len(',"stream":true')
    assert by_who["carol"].bytes_out > 0 and by_who["carol"].ttft_ms_avg is not None
    assert by_who["(anonymous)"].errors == 1  # the refused request counts, as nobody's
    assert "/healthz" not in by_endpoint and "/v1/tokens" in by_endpoint

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TETHER_HOME", str(settings.data.home))
    runner = CliRunner()
    shown = runner.invoke(cli, ["usage", "report", "--since", "1d", "--by", "model",
                                "--format", "json", "--compare", "gpt-4o-mini"])  # fmt: skip
    assert shown.exit_code == 0, shown.output
    report = json.loads(shown.output)
    tiny = next(r for r in report["rows"] if r["key"] == "tiny")
    assert tiny["requests"] == 2 and tiny["prompt_tokens"] == 6
    assert tiny["cloud_usd"]["gpt-4o-mini"] > 0
    table = runner.invoke(cli, ["usage", "report", "--by", "principal"])
    assert table.exit_code == 0 and "carol" in table.output
    bad = runner.invoke(cli, ["usage", "report", "--since", "last tuesday"])
    assert bad.exit_code == 2 and "30d, 12h" in bad.output
    unknown = runner.invoke(cli, ["usage", "report", "--compare", "gpt-9"])
    assert unknown.exit_code == 2 and "no price for 'gpt-9'" in unknown.output
    prices = runner.invoke(cli, ["usage", "prices"])
    assert prices.exit_code == 0 and "2025-06-01" in prices.output and "gpt-4o" in prices.output
    rows = [line for line in prices.output.splitlines() if line.startswith("  ")]
    ends = {re.search(r" \d+\.\d{3} ", line).end() for line in rows}  # type: ignore[union-attr]
    assert len(ends) == 1  # one column of input prices, beside the longest name too
    assert "usage.enabled is false" not in table.stderr
    monkeypatch.setenv("TETHER_USAGE_ENABLED", "false")
    switched_off = runner.invoke(cli, ["usage", "report"])
    assert switched_off.exit_code == 0 and "usage.enabled is false" in switched_off.stderr


def test_a_disabled_ledger_writes_nothing(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, TETHER_USAGE_ENABLED="false")
    with TestClient(build_app(settings, TOKEN, lambda: ScriptedEngine("x"))) as client:
        client.post("/v1/completions", headers=ADMIN, json={"prompt": "a", "max_tokens": 2})
        assert "tether_usage_requests_total{" in client.get("/metrics").text
    assert not (settings.data.home / "usage.sqlite").exists()


@pytest.mark.parametrize(
    ("database", "path"),
    [
        ("usage.sqlite", "/v1/dashboard/usage?since=1d"),
        ("traces.sqlite", "/v1/traces"),
        ("traces.sqlite", "/v1/dashboard/traces"),
    ],
)
def test_a_read_that_waits_for_a_locked_database_stalls_no_other_request(
    tmp_path: Path, database: str, path: str
) -> None:
    settings = make_settings(tmp_path)
    with TestClient(build_app(settings, TOKEN, lambda: ScriptedEngine("return 1"))) as client:
        other = sqlite3.connect(
            settings.data.home / database, isolation_level=None, check_same_thread=False
        )
        other.execute("BEGIN IMMEDIATE")  # as a sqlite3 shell in a write transaction
        body = {"prompt": "def f():", "max_tokens": 4}
        assert client.post("/v1/completions", headers=ADMIN, json=body).status_code == 200
        threading.Timer(3.0, lambda: other.execute("COMMIT")).start()
        with ThreadPoolExecutor(1) as pool:
            read = pool.submit(client.get, path, headers=ADMIN)  # waits for the row or trace
            time.sleep(0.3)
            started = time.perf_counter()
            assert client.get("/healthz").status_code == 200
            assert time.perf_counter() - started < 1.5
            assert read.result().status_code == 200
        other.close()
    answer = read.result().json()
    counted = answer["total"]["requests"] if "total" in answer else len(answer["data"])
    assert counted >= 1  # what was queued before the read is in it
