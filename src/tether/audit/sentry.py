"""Report checkpoints and blocked requests to Sentry; never prompt or completion content."""

from __future__ import annotations

import importlib
import json
from types import ModuleType
from typing import Any

from tether.errors import ConfigError


def _sentry_sdk() -> ModuleType:
    try:
        return importlib.import_module("sentry_sdk")
    except ImportError as exc:
        raise ConfigError(
            "audit.sentry_dsn is set but sentry-sdk is not installed; "
            "run `pip install 'tether[sentry]'` or unset audit.sentry_dsn"
        ) from exc


class SentrySink:
    def __init__(self, dsn: str) -> None:
        self._sdk = _sentry_sdk()
        self._sdk.init(dsn=dsn)

    def ship(self, lines: list[bytes], checkpoint: str) -> None:
        for line in lines:
            record = json.loads(line)
            blocks = [p for p in record.get("policy") or [] if _action(p) == "block"]
            if blocks:
                # Only identifiers: the record's content fields stay out of Sentry.
                self._sdk.capture_message(
                    f"tether blocked request {record.get('request_id')}",
                    level="warning",
                    extras={
                        "seq": record["seq"],
                        "request_id": record.get("request_id"),
                        "principal": record.get("principal"),
                        "endpoint": record.get("endpoint"),
                        "rules": sorted({_rule(p) for p in blocks}),
                    },
                )
        self._sdk.capture_message(
            f"tether audit checkpoint {checkpoint.splitlines()[1]}",
            level="info",
            extras={"checkpoint": checkpoint},
        )

    def close(self) -> None:
        self._sdk.flush(timeout=2.0)


def _action(decision: Any) -> str | None:
    return decision.get("action") if isinstance(decision, dict) else None


def _rule(decision: dict[str, Any]) -> str:
    return str(decision.get("rule_id") or decision.get("rule") or "?")
