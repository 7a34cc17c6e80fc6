"""Recording an event done outside a request (an evaluation run) in the audit log.

The log has one writer. When no server holds it, the event is appended directly; when the
server that writes this data directory is running, it is asked to append the event
(``POST /v1/audit/events``) with its admin token from the runtime file.
"""

from __future__ import annotations

from typing import Any

from tether.audit.log import AuditLog
from tether.audit.relay import post_to_server
from tether.errors import AuditError, AuditLogHeldError
from tether.server.runtime import default_runtime_dir, find_server_of
from tether.settings import Settings


def record_event(settings: Settings, event: str, details: dict[str, Any]) -> str:
    """Append the event; returns where it went: the log itself, or the server's URL."""
    if not settings.audit.enabled:
        return "nowhere (audit.enabled = false)"
    try:
        log = AuditLog.open(settings)
    except AuditLogHeldError:
        return _through_server(settings, event, details)
    try:
        log.append({"request_id": f"evt-{event}", "endpoint": f"event {event}", "params": details})
    finally:
        log.close()
    return str(log.folder)


def _through_server(settings: Settings, event: str, details: dict[str, Any]) -> str:
    runtime_dir = settings.server.runtime_dir or default_runtime_dir()
    server = find_server_of(runtime_dir, settings.data.home)
    if server is None:
        raise AuditError(
            "the audit log is held by another process that is not a tether server here; "
            "record the event later"
        )
    post_to_server(server, "/v1/audit/events", {"event": event, "details": details})
    return server.url
