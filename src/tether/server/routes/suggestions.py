"""Suggested changes to a file, returned as a unified diff (scope ``suggest``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import Field

from tether.server.auth import require
from tether.server.routes.formats import tether_fields
from tether.server.schemas import SamplingFields
from tether.server.serving import cancel_on_disconnect, state_of
from tether.suggestions.service import suggestion_from, suggestion_task
from tether.tokens import Principal

router = APIRouter(prefix="/v1/suggestions", tags=["suggestions"])


class SuggestionRequest(SamplingFields):
    path: str = Field(min_length=1, description="File name as the patch should show it.")
    source: str = Field(description="The file's current content.")
    instruction: str = Field(min_length=1, description="What to change.")
    max_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(0.2, ge=0.0, le=2.0)


@router.post("", dependencies=[Depends(require("suggest"))])
async def create_suggestion(request: Request, body: SuggestionRequest) -> dict[str, Any]:
    state = state_of(request)
    params = body.sampling(
        body.max_tokens, state.settings.generation.max_tokens, state.settings.generation.seed
    )
    task = suggestion_task(
        body.path,
        body.source,
        body.instruction,
        params,
        state.pipeline.templates,
        state.pipeline.engine.info().n_ctx,
    )
    principal: Principal = request.state.principal
    prepared = state.pipeline.prepare(
        task, stream=False, principal=principal, endpoint="/v1/suggestions"
    )
    completion = await cancel_on_disconnect(request, state.pipeline.collect(prepared))
    suggestion = suggestion_from(body.path, body.source, completion)
    return {
        "id": completion.id,
        "object": "suggestion",
        "model": completion.model,
        "system_fingerprint": completion.system_fingerprint,
        "patch": suggestion.patch or None,
        "truncated": suggestion.truncated,
        "usage": {
            "prompt_tokens": completion.prompt_tokens,
            "completion_tokens": completion.completion_tokens,
        },
        "tether": tether_fields(prepared, completion.findings),
    }
