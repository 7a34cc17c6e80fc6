"""What the licence tests share."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "data"
    for name in ("TETHER_SERVER", "TETHER_TOKEN", "TETHER_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TETHER_HOME", str(home))
    monkeypatch.chdir(tmp_path)
    return home
