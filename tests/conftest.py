from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tether.engines.llamacpp import LlamaCppEngine
from tether.models import default_model_path
from tether.server.app import build_app
from tether.settings import Settings, load_settings

TOKEN = "tth_test-token"


def make_settings(tmp: Path, **env: str) -> Settings:
    environ = {"TETHER_HOME": str(tmp / "data"), "TETHER_ENGINE_N_CTX": "2048", **env}
    return load_settings(cwd=tmp, environ=environ)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture(scope="module")
def app_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """The real app over the real default model, in process."""
    tmp = tmp_path_factory.mktemp("app")
    settings = make_settings(tmp)

    def engine() -> LlamaCppEngine:
        return LlamaCppEngine(settings.engine, default_model_path(), settings.data.home / "cache")

    with TestClient(build_app(settings, TOKEN, engine)) as client:
        client.headers["Authorization"] = f"Bearer {TOKEN}"
        yield client
