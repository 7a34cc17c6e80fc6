from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tether.engines.llamacpp import LlamaCppEngine
from tether.models import default_model_path
from tether.server.app import build_app
from tether.settings import Settings, load_settings

# A suite started in the background by a shell without job control (`make test &`, nohup)
# inherits SIGINT ignored, and so would every command it starts: the tests that press
# Ctrl-C could not. The commands started here get Python's own handling of it back.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

TOKEN = "tth_test-token"


def _own_cores_per_worker() -> None:
    """Each test worker (pytest-xdist) runs on its own share of the cores, and so do the
    servers it starts: llama.cpp's threads spin while they wait for each other, and two
    models each running as many threads as there are cores slowed one another threefold
    here, enough for a 32-token request to outlast a client's 60 s timeout."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if not worker.startswith("gw") or workers < 2:
        return
    cores = sorted(os.sched_getaffinity(0))
    share = cores[int(worker.removeprefix("gw")) :: workers]
    os.sched_setaffinity(0, share or cores)


_own_cores_per_worker()


def make_settings(tmp: Path, **env: str) -> Settings:
    environ = {"TETHER_HOME": str(tmp / "data"), "TETHER_ENGINE_N_CTX": "2048", **env}
    return load_settings(cwd=tmp, environ=environ)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


def _real_app(tmp: Path, **env: str) -> Iterator[TestClient]:
    settings = make_settings(tmp, **env)

    def engine() -> LlamaCppEngine:
        return LlamaCppEngine(settings.engine, default_model_path(), settings.data.home / "cache")

    with TestClient(build_app(settings, TOKEN, engine)) as client:
        client.headers["Authorization"] = f"Bearer {TOKEN}"
        yield client


@pytest.fixture(scope="module")
def app_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """The real app over the real default model, in process."""
    yield from _real_app(tmp_path_factory.mktemp("app"))


SMALL_WINDOW = 512


@pytest.fixture(scope="module")
def small_window_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """The same with a context window of ``SMALL_WINDOW`` tokens, for tests that fill one:
    reading a full window of 2,048 tokens takes this CPU seconds, 512 a fraction."""
    yield from _real_app(tmp_path_factory.mktemp("app"), TETHER_ENGINE_N_CTX=str(SMALL_WINDOW))
