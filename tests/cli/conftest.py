"""A command's data home, in process, with the gateway engine: tests point it at a stub
upstream whose answer they choose."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import isolate_tether


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    isolate_tether(monkeypatch, tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TETHER_ENGINE_KIND", "openai")
    return tmp_path / "home"
