"""Audit records made by a command while a server keeps the log, sent to that server.

The log has one writer. A command that answers in process while the server that writes
its data directory is running hands each record to that server (``POST
/v1/audit/records``, with the admin token from the runtime file), which salts, chains and
signs it as its own and answers once it is on disk (201), or says that its disk refused
it and the record waits in its memory (202).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from tether import direct
from tether.errors import AuditError
from tether.server.runtime import RuntimeRecord, trust_for

# What a command's record says; the server adds who sent it, the endpoint and the chain.
RELAYED_FIELDS = (
    "request_id",
    "model_sha256",
    "params",
    "policy",
    "findings",
    "prompt",
    "completion",
    "completion_redacted",
)
RELAY_TIMEOUT_S = 30.0  # the server answers after a checkpoint's fsync, even when busy


def post_to_server(server: RuntimeRecord, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """POST ``body`` to the running ``server`` as its admin; AuditError, saying why, if it
    is not taken."""
    try:
        response = direct.request(
            "POST",
            f"{server.url}{path}",
            json=body,
            headers={"Authorization": f"Bearer {server.token}"},
            verify=trust_for(server),
            timeout=RELAY_TIMEOUT_S,
        )
    except httpx.HTTPError as exc:
        raise AuditError(f"the server at {server.url} did not answer: {exc}") from exc
    if response.status_code not in (201, 202):  # 202: taken, but not yet on disk
        raise AuditError(f"the server at {server.url} refused it: {response.text[:300]}")
    answer: dict[str, Any] = response.json()
    return answer


class ServerRelay:
    """Stands in for the audit log in a command while ``server`` keeps it.

    A record the server does not take is reported to ``on_failure`` rather than raised:
    the answer it belongs to has been made, and the command still gives it.
    """

    def __init__(self, server: RuntimeRecord, on_failure: Callable[[str], None]) -> None:
        self.server = server
        self._on_failure = on_failure

    def append(self, record_fields: dict[str, Any]) -> int:
        """Send one record; its seq in the server's log, or -1 if it was not taken."""
        body = {name: record_fields[name] for name in RELAYED_FIELDS if name in record_fields}
        try:
            answer = post_to_server(self.server, "/v1/audit/records", body)
        except AuditError as exc:
            self._on_failure(str(exc))
            return -1
        if answer.get("written") is False:
            self._on_failure(
                f"the server at {self.server.url} holds it in memory until its disk takes "
                f"it, and loses it if it stops first ({answer.get('problem')})"
            )
        return int(answer["seq"])

    def close(self) -> None:
        """Nothing to write: the server checkpointed each record before it answered."""
