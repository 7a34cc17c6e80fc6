"""OpenAI-compatible API: models, completions (``suffix`` means FIM), chat completions,
responses."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from tether.errors import NotFoundError, TetherError, UnknownModelError
from tether.server.auth import require
from tether.server.openapi import AUTHENTICATED, GENERATING, errors
from tether.server.responses import ResponsesRequest, in_responses_terms
from tether.server.routes.formats import (
    ChatCompletionFormat,
    ResponsesFormat,
    TextCompletionFormat,
)
from tether.server.routing import ApiRoute
from tether.server.schemas import ChatRequest, CompletionRequest
from tether.server.serving import serve_task, state_of

router = APIRouter(
    route_class=ApiRoute, prefix="/v1", tags=["openai"], responses=errors(*AUTHENTICATED)
)


@router.get("/models", dependencies=[Depends(require(None, counted=False))])
async def list_models(request: Request) -> dict[str, Any]:
    return {"object": "list", "data": [_model(request)]}


@router.get(
    "/models/{model_id:path}",
    dependencies=[Depends(require(None, counted=False))],
    responses=errors(404),
)
async def retrieve_model(request: Request, model_id: str) -> dict[str, Any]:
    """One model, as the OpenAI SDKs' ``models.retrieve`` asks for it."""
    pipeline = state_of(request).pipeline
    if not model_id:
        raise UnknownModelError(
            f"give the model's id: GET /v1/models/{pipeline.model_id}", param="model"
        )
    pipeline.check_model(model_id)  # 404 model_not_found, with the id to use
    return _model(request)


def _model(request: Request) -> dict[str, Any]:
    identity = state_of(request).pipeline.describe()
    meta = {
        **identity,
        "sha256": identity["model_sha256"],  # the names clients already read
        "fim": identity["fim_template"],
    }
    return {
        "id": identity["model"],
        "object": "model",
        "created": 0,
        "owned_by": "tether",
        "meta": meta,
    }


@router.post(
    "/completions",
    dependencies=[Depends(require("completions"))],
    responses=errors(*GENERATING),
)
async def completions(request: Request, body: CompletionRequest) -> Response:
    settings = state_of(request).settings
    task = body.to_task(settings.generation.max_tokens, settings.generation.seed)
    return await serve_task(
        request, task, TextCompletionFormat(), stream=body.streams, include_usage=body.include_usage
    )


@router.post(
    "/chat/completions", dependencies=[Depends(require("chat"))], responses=errors(*GENERATING)
)
async def chat_completions(request: Request, body: ChatRequest) -> Response:
    settings = state_of(request).settings
    task = body.to_task(settings.generation.max_tokens, settings.generation.seed)
    return await serve_task(
        request, task, ChatCompletionFormat(), stream=body.streams, include_usage=body.include_usage
    )


@router.post("/responses", dependencies=[Depends(require("chat"))], responses=errors(*GENERATING))
async def responses(request: Request, body: ResponsesRequest) -> Response:
    """The Responses API, answered as chat completions are: the same scope, policy,
    checks, records and limits. No response is kept for a later request to name."""
    settings = state_of(request).settings
    task = body.to_task(settings.generation.max_tokens, settings.generation.seed)
    try:
        return await serve_task(request, task, ResponsesFormat(body), stream=body.streams)
    except TetherError as exc:
        in_responses_terms(exc, body)
        raise


async def stored_response(response_id: str) -> None:
    """What the SDKs ask of a stored response: tether keeps none, and says so."""
    raise NotFoundError(
        f"no response {response_id!r}: tether keeps no responses (whatever store says), so "
        "none can be fetched, listed, cancelled or deleted, nor continued with "
        "previous_response_id; send the whole conversation in input with each request",
        param="response_id",
    )


# Every route the SDKs have for a stored response, each answered by the one above.
for method, tail in (("GET", ""), ("DELETE", ""), ("GET", "/input_items"), ("POST", "/cancel")):
    router.add_api_route(
        f"/responses/{{response_id}}{tail}",
        stored_response,
        methods=[method],
        dependencies=[Depends(require("chat", counted=False))],
        responses=errors(404),
    )
