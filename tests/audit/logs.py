"""Small audit logs for the tests, written by the real writer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tether.audit import segments
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


def all_records(folder: Path) -> list[dict[str, Any]]:
    """Every record of the log in ``folder``, in order, across its segments."""
    lines = segments.iter_records(folder)
    return [json.loads(line.data) for line in lines if isinstance(line, segments.Line)]
