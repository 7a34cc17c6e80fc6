from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tether.audit.log import AuditLog
from tether.settings import Settings, load_settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(
        {"data.home": str(tmp_path / "home"), "audit.origin": "tether/test"}, environ={}
    )


@pytest.fixture
def audit(settings: Settings) -> Iterator[AuditLog]:
    log = AuditLog.open(settings)
    yield log
    log.close()
