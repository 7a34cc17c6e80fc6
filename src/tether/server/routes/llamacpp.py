"""llama.cpp server's own API: ``/completion`` and ``/infill``, for its editor plugins and
the clients that speak it (llama.vim, llama.vscode, Continue's llama.cpp provider)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from tether.server.auth import require
from tether.server.openapi import GENERATING, errors
from tether.server.routes.formats import InfillFormat
from tether.server.schemas import InfillRequest, LlamaCompletionRequest
from tether.server.serving import serve_task, state_of

router = APIRouter(
    tags=["llama.cpp"],
    dependencies=[Depends(require("completions"))],
    responses=errors(*GENERATING),
)


@router.post("/completion")
async def completion(request: Request, body: LlamaCompletionRequest) -> Response:
    return await _serve(request, body)


@router.post("/infill")
async def infill(request: Request, body: InfillRequest) -> Response:
    return await _serve(request, body)


async def _serve(request: Request, body: LlamaCompletionRequest | InfillRequest) -> Response:
    settings = state_of(request).settings
    task = body.to_task(settings.generation.max_tokens, settings.generation.seed)
    answer = InfillFormat(tuple(body.response_fields))
    return await serve_task(request, task, answer, stream=body.stream)
