"""/metrics of a gateway: each upstream's state and the outcome of what was sent to it,
failovers, and streams that broke after their 200 went out."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from tests.conftest import TOKEN, make_settings
from tests.engines.test_balance import upstreams
from tests.stub_upstream import MODEL, StubUpstream
from tether.engines.openai import OpenAIEngine
from tether.server.app import build_app

ADMIN = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def gateway(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[TestClient, list[StubUpstream], list[str]]]:
    with upstreams(2) as replicas:
        # The first with credentials in its URL: they must not show in what anyone sees.
        urls = [replicas[0].base_url.replace("://", "://user:hunter2@"), replicas[1].base_url]
        settings = make_settings(
            tmp_path_factory.mktemp("gateway"),
            TETHER_ENGINE_KIND="openai",
            TETHER_UPSTREAM_BASE_URLS=f'["{urls[0]}", "{urls[1]}"]',
            TETHER_UPSTREAM_BALANCE="in-order",
            TETHER_UPSTREAM_MODEL=MODEL,
            TETHER_UPSTREAM_HEALTH_INTERVAL_S="60",
        )
        app = build_app(settings, TOKEN, lambda: OpenAIEngine(settings.upstream, settings.engine))
        with TestClient(app) as client:
            yield client, replicas, [r.base_url for r in replicas]


def _samples(client: TestClient) -> dict[str, float]:
    text = client.get("/metrics").text
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(("tether_upstream", "tether_stream_errors"))
    }


def test_outcomes_failovers_and_state_of_each_upstream(
    gateway: tuple[TestClient, list[StubUpstream], list[str]],
) -> None:
    client, (first, second), (one, two) = gateway
    first.refuse = (503, {})
    body = {"prompt": "x", "max_tokens": 4}
    for _ in range(2):  # the first request fails over; the second goes where it is up
        assert client.post("/v1/completions", headers=ADMIN, json=body).status_code == 200
    samples = _samples(client)
    assert samples[f'tether_upstream_up{{upstream="{one}"}}'] == 0
    assert samples[f'tether_upstream_up{{upstream="{two}"}}'] == 1
    assert samples[f'tether_upstream_in_flight{{upstream="{two}"}}'] == 0
    # Busy, so the request goes on to the one that is down, which answers again.
    first.refuse, second.refuse = None, (429, {"Retry-After": "3"})
    assert client.post("/v1/completions", headers=ADMIN, json=body).status_code == 200

    samples = _samples(client)
    assert samples[f'tether_upstream_up{{upstream="{one}"}}'] == 1  # it answered: back
    assert samples[f'tether_upstream_requests_total{{outcome="failed",upstream="{one}"}}'] == 1
    assert samples[f'tether_upstream_requests_total{{outcome="answered",upstream="{one}"}}'] == 1
    assert samples[f'tether_upstream_requests_total{{outcome="answered",upstream="{two}"}}'] == 2
    assert samples[f'tether_upstream_requests_total{{outcome="busy",upstream="{two}"}}'] == 1
    assert samples["tether_upstream_failovers_total"] == 2
    assert "hunter2" not in client.get("/metrics").text
    overview = client.get("/v1/dashboard/overview", headers=ADMIN)
    assert overview.status_code == 200 and one in overview.text and "hunter2" not in overview.text


def test_a_stream_that_breaks_after_its_start_is_counted(
    gateway: tuple[TestClient, list[StubUpstream], list[str]],
) -> None:
    client, (first, second), (one, _) = gateway
    cut = b'data: {"choices": [{"index": 0, "text": "hi\\n", "finish_reason": null}]}\n\n'
    first.raw = ("text/event-stream", cut)  # no finish_reason: the upstream died mid-answer
    body = {"prompt": "x", "max_tokens": 4, "stream": True}
    response = client.post("/v1/completions", headers=ADMIN, json=body)
    assert response.status_code == 200 and '"error"' in response.text
    samples = _samples(client)
    assert samples['tether_stream_errors_total{route="/v1/completions"}'] == 1
    assert samples[f'tether_upstream_requests_total{{outcome="broken",upstream="{one}"}}'] == 1
    assert not second.requests
    assert re.search(r"tether_upstream_up\{[^}]*\} 1", client.get("/metrics").text)


def test_every_outcome_of_each_upstream_is_shown_before_it_happens(
    gateway: tuple[TestClient, list[StubUpstream], list[str]],
) -> None:
    """rate() and increase() read a series that first appears at 1 as no increase: an
    upstream's first failure, its first refusal, went unseen by an alert on them."""
    client, _, urls = gateway
    samples = _samples(client)
    outcomes = ["answered", "broken", "busy", "refused", "failed", "timed_out"]
    outcomes += ["rejected", "cancelled"]
    for url in urls:
        for outcome in outcomes:
            series = f'tether_upstream_requests_total{{outcome="{outcome}",upstream="{url}"}}'
            assert samples[series] == 0, series
