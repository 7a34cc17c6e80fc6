"""Where record batches go besides the log files."""

from __future__ import annotations

from typing import Protocol

from tether.settings import Settings


class Sink(Protocol):
    def ship(self, lines: list[bytes], checkpoint: str) -> None:
        """Take record lines written since the last call, with the checkpoint covering them."""

    def close(self) -> None:
        """Stop, delivering what can be delivered in a short time."""


def sinks_from_settings(settings: Settings) -> list[Sink]:
    """The sinks ``audit.webhook_url`` and ``audit.sentry_dsn`` ask for; the caller closes them."""
    audit = settings.audit
    sinks: list[Sink] = []
    if audit.webhook_url:
        from tether.audit.webhook import WebhookSink

        spool = settings.data.home / "audit" / "spool"
        sinks.append(WebhookSink(audit.webhook_url, spool, batch=audit.webhook_batch))
    if audit.sentry_dsn:
        from tether.audit.sentry import SentrySink

        sinks.append(SentrySink(audit.sentry_dsn))
    return sinks
