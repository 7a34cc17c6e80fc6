"""Small audit logs for the tests, written by the real writer."""

from __future__ import annotations

from pathlib import Path

from tether.audit.checkpoint import Verifier, parse_verifier_key
from tether.audit.log import AuditLog
from tether.settings import Settings


def filled(settings: Settings, count: int = 20) -> Path:
    """The audit folder of ``settings`` after ``count`` records, a checkpoint every five."""
    log = AuditLog.open(settings)
    for i in range(count):
        log.append({"request_id": f"r{i}", "prompt": f"p{i}", "completion": "c"})
        if i % 5 == 4:
            log.flush()
    log.close()
    return settings.data.home / "audit"


def verifier(folder: Path) -> Verifier:
    return parse_verifier_key((folder / "verifier.key").read_text())
