"""Fixtures shared by the server's tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.conftest import TOKEN, make_settings
from tests.stub_upstream import MODEL, StubUpstream, stub_upstream
from tether.engines.openai import OpenAIEngine
from tether.server.app import build_app


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[tuple[TestClient, StubUpstream]]:
    """tether's gateway in front of an upstream whose answers a test chooses."""
    with stub_upstream("ok") as stub:
        settings = make_settings(
            tmp_path,
            TETHER_ENGINE_KIND="openai",
            TETHER_UPSTREAM_BASE_URLS=f'["{stub.base_url}"]',
            TETHER_UPSTREAM_MODEL=MODEL,
            TETHER_UPSTREAM_HEALTH_INTERVAL_S="60",
        )
        app = build_app(settings, TOKEN, lambda: OpenAIEngine(settings.upstream, settings.engine))
        with TestClient(app) as client:
            yield client, stub
