"""Fill in the middle, Mistral and DeepSeek's way: ``/v1/fim/completions``.

llama.cpp's ``/infill`` is with the rest of its API, in ``llamacpp``.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from tether.server.auth import require
from tether.server.openapi import GENERATING, errors
from tether.server.routes.formats import ChatCompletionFormat
from tether.server.routing import ApiRoute
from tether.server.schemas import FimRequest
from tether.server.serving import serve_task, state_of

router = APIRouter(
    route_class=ApiRoute,
    tags=["fim"],
    dependencies=[Depends(require("completions"))],
    responses=errors(*GENERATING),
)


@router.post("/v1/fim/completions")
async def fim_completions(request: Request, body: FimRequest) -> Response:
    settings = state_of(request).settings
    task = body.to_task(settings.generation.max_tokens, settings.generation.seed)
    return await serve_task(
        request, task, ChatCompletionFormat(), stream=body.streams, include_usage=body.include_usage
    )
