"""Tabby's completion API, mounted at ``/tabby`` so Tabby's editor agents can use tether."""

from __future__ import annotations

import asyncio
import logging
import os
import platform
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import Field

from tether import __version__
from tether.server.auth import require
from tether.server.openapi import AUTHENTICATED, errors
from tether.server.routes.formats import TabbyFormat
from tether.server.routes.ops import not_ready, readiness
from tether.server.routing import ApiRoute
from tether.server.schemas import Index, TabbyCompletionRequest, WireModel
from tether.server.serving import answer_task, state_of

router = APIRouter(
    route_class=ApiRoute,
    prefix="/tabby",
    tags=["tabby"],
    dependencies=[Depends(require("completions"))],
    responses=errors(*AUTHENTICATED),
)

# The server's state and settings, which Tabby's agents ask for every few seconds: not
# counted against a token's rpm, which its completions would then share.
status = APIRouter(
    route_class=ApiRoute,
    prefix="/tabby",
    tags=["tabby"],
    dependencies=[Depends(require("completions", counted=False))],
    responses=errors(*AUTHENTICATED),
)

# The Tabby API version whose endpoints tether serves. Tabby's agents read it from
# ``version.git_describe`` (with semver) and only from 0.9 on ask this server whether to
# switch their own telemetry off; a lower or unreadable version means they never ask.
TABBY_API_VERSION = "0.11.0"
# Tabby's requests name no length: its own server decodes at most 64 tokens for one
# (``max_decoding_tokens``), which an editor's inline completion fits in; the whole
# default budget per keystroke would keep a small machine busy for seconds.
TABBY_MAX_TOKENS = 64
log = logging.getLogger("tether.tabby")


@router.post("/v1/completions", responses=errors(404, 429, 503))
async def tabby_completions(request: Request, body: TabbyCompletionRequest) -> Response:
    settings = state_of(request).settings
    max_tokens = min(settings.generation.max_tokens, TABBY_MAX_TOKENS)
    task = body.to_task(max_tokens, settings.generation.seed)
    return await answer_task(request, task, TabbyFormat())


@status.post("/v1/health", operation_id="tabby_health_post", responses=errors(503))
@status.get("/v1/health", operation_id="tabby_health_get", responses=errors(503))
async def tabby_health(request: Request) -> Any:
    """Tabby's server description; a 503 while the engine cannot answer, so that an editor
    says the server is unavailable instead of failing on each completion."""
    ready, body = await readiness(request)
    if not ready:
        return not_ready(body)
    info = state_of(request).pipeline.engine.info()
    return {
        "model": info.model_id,
        "chat_model": info.model_id,
        "device": "cpu",
        "arch": platform.machine(),
        "cpu_info": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count() or 1,
        "cuda_devices": [],
        "version": {
            "build_date": "",
            "git_describe": f"v{TABBY_API_VERSION} (tether {__version__})",
            "git_sha": "",
        },
    }


class TabbyEvent(WireModel):
    """What an editor did with a completion; Tabby's agents send these."""

    type: str = Field(description="view, select or dismiss.")
    completion_id: str
    choice_index: Index


@router.post(
    "/v1/events",
    response_class=Response,
    responses={200: {"description": "Recorded; the body is empty.", "content": {}}},
)
async def tabby_events(request: Request, event: TabbyEvent) -> Response:
    # Editor telemetry stays on this machine: counted in the completion funnel of the
    # usage ledger (view, select, dismiss), never shipped anywhere.
    log.debug("tabby event %s on %s", event.type, event.completion_id)
    ledger = getattr(request.app.state, "usage_ledger", None)
    if ledger is not None:
        # Only the principal a completion was served to can count an event on it.
        # Off the event loop: it waits for the rows queued before it to be written.
        await asyncio.to_thread(
            ledger.record_event, event.completion_id, event.type, request.state.principal.name
        )
    return Response(status_code=200)


@status.get("/v1beta/server_setting")
async def tabby_server_setting() -> dict[str, Any]:
    return {"disable_client_side_telemetry": True}
