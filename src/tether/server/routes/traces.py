"""Local traces over HTTP, for ``tether explain --server`` and ``tether repro record
--server`` (scope audit:read)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fastapi import APIRouter, Depends, Query, Request

from tether.audit.witness import witness_served
from tether.errors import ConfigError, NotFoundError
from tether.server.auth import require
from tether.server.openapi import AUTHENTICATED, errors
from tether.server.routing import ApiRoute, known_query_only
from tether.traces import TraceStore
from tether.traces.missing import why_no_trace

log = logging.getLogger("tether.server")

router = APIRouter(
    route_class=ApiRoute,
    prefix="/v1/traces",
    tags=["traces"],
    dependencies=[Depends(require("audit:read")), Depends(known_query_only)],
    responses=errors(*AUTHENTICATED, 404),
)


def trace_store(request: Request) -> TraceStore:
    """The store, once the traces queued so far are written (call it off the event loop:
    the wait can be long)."""
    recorder = getattr(request.app.state, "trace_recorder", None)
    if recorder is not None:
        recorder.flush()  # a trace asked for right after its answer is written by now
    store: TraceStore = request.app.state.traces
    return store


@router.get("")
async def list_traces(request: Request, limit: int = Query(20, ge=1, le=1000)) -> dict[str, Any]:
    traces = await asyncio.to_thread(lambda: trace_store(request).recent(limit))
    return {"object": "list", "data": [t.summary() for t in traces]}


@router.get("/{trace_id}")
async def get_trace(request: Request, trace_id: str) -> dict[str, Any]:
    store = await asyncio.to_thread(trace_store, request)
    try:
        trace = await asyncio.to_thread(store.get, trace_id)
    except ConfigError as exc:  # a damaged trace: where it lies is the operator's to know
        log.error("%s", exc.message)
        raise ConfigError(
            f"the trace of {trace_id} is damaged: it was changed after it was written and "
            "cannot be explained (the audit record still holds what was sent); the server's "
            "log says where"
        ) from exc
    if trace is None and not store.enabled:
        raise NotFoundError(
            f"no trace {trace_id!r}: traces are off on this server (traces.enabled = false), "
            "so it records none; only traces kept from before are found"
        )
    audit = getattr(request.app.state, "audit", None)
    if trace is None:
        # The log may know the id: a request that generated nothing, or a deleted trace.
        why = ""
        if audit is not None:
            kept_days = store.max_age_days
            why = await asyncio.to_thread(
                why_no_trace, audit.folder, trace_id, kept_days, read_days=kept_days
            )
        raise NotFoundError(
            why
            or f"no trace {trace_id!r}; traces are kept {store.max_age_days:g} days "
            "(GET /v1/traces lists recent ids)"
        )
    # Whether the trace still holds what its audit record committed to (no text): a trace
    # changed since must not be explained or pinned by `tether repro` as the answer given.
    seen = await asyncio.to_thread(witness_served, trace, audit) if audit is not None else None
    return {**trace.to_dict(), "audit": seen.as_dict() if seen is not None else None}
