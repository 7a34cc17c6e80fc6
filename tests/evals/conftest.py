"""What the evaluation tests share: a copy of the small project `eval project` runs on."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

FIXTURE = Path(__file__).with_name("fixtures") / "arith"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the arith project, with a data directory of its own and no TETHER_*
    setting from outside."""
    for name in [n for n in os.environ if n.startswith("TETHER_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("TETHER_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    return Path(shutil.copytree(FIXTURE, tmp_path / "arith"))
