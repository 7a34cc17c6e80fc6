"""Nothing leaves the server unless tether's settings say so: not FastAPI's telemetry."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.conftest import TOKEN, make_settings
from tests.helpers import ScriptedEngine
from tether.server.app import build_app


def test_fastapi_exports_nothing_whatever_the_environment_asks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """FastAPI's own OpenTelemetry set itself up from the environment: with an OTLP
    endpoint there, every request's span would leave the perimeter."""
    monkeypatch.setenv("FASTAPI_OTEL_AUTO_CONFIGURE", "true")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    app = build_app(make_settings(tmp_path), TOKEN, lambda: ScriptedEngine("x = 1\n"))
    with caplog.at_level("INFO"), TestClient(app) as client:
        assert client.get("/healthz").status_code == 200
    assert "telemetry" not in caplog.text.lower(), caplog.text
