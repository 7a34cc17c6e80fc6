"""Who calls the store's MCP tools over HTTP, for the tools to check scopes and audit.

Apart from ``tether.store.mcp`` so the HTTP server can set it without importing the
``mcp`` package before anyone uses ``/mcp``.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tether.tokens import Principal


@dataclass(frozen=True)
class Caller:
    """Who is calling over HTTP, and how to audit it; None on stdio (the local user)."""

    principal: Principal
    request_id: str
    audit: Callable[[str, dict[str, Any]], None]


CALLER: contextvars.ContextVar[Caller | None] = contextvars.ContextVar("tether_mcp_caller")
