"""OpenAI-compatible API: models, completions (``suffix`` means FIM), chat completions,
responses."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from starlette.routing import Match
from starlette.types import Scope

from tether.errors import NotFoundError, TetherError, UnknownModelError
from tether.server.auth import require
from tether.server.openapi import AUTHENTICATED, GENERATING, errors
from tether.server.responses import (
    PATH,
    InputTokenCount,
    InputTokensRequest,
    ResponsesRequest,
    in_responses_terms,
)
from tether.server.routes.formats import (
    ChatCompletionFormat,
    ResponsesFormat,
    TextCompletionFormat,
)
from tether.server.routing import ApiRoute
from tether.server.schemas import ChatRequest, CompletionRequest
from tether.server.serving import prompt_tokens, serve_task, state_of
from tether.server.tool_calls import in_tool_terms, ready_to_check

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
    offer = body.offer
    await ready_to_check(offer)
    try:
        return await serve_task(
            request,
            task,
            ChatCompletionFormat(offer),
            stream=body.streams,
            include_usage=body.include_usage,
        )
    except TetherError as exc:
        if offer is not None:
            in_tool_terms(exc, offer)
        raise


@router.post("/responses", dependencies=[Depends(require("chat"))], responses=errors(*GENERATING))
async def responses(request: Request, body: ResponsesRequest) -> Response:
    """The Responses API, answered as chat completions are: the same scope, policy,
    checks, records and limits. No response is kept for a later request to name."""
    settings = state_of(request).settings
    task = body.to_task(settings.generation.max_tokens, settings.generation.seed)
    offer = body.offer
    await ready_to_check(offer)
    try:
        return await serve_task(request, task, ResponsesFormat(body, offer), stream=body.streams)
    except TetherError as exc:
        if offer is not None:
            in_tool_terms(exc, offer)
        in_responses_terms(exc, body)
        raise


@router.post(
    "/responses/input_tokens",
    dependencies=[Depends(require("chat"))],
    responses=errors(404, 429, 504),
)
async def count_input_tokens(request: Request, body: InputTokensRequest) -> InputTokenCount:
    """The SDKs' ``responses.input_tokens.count``: the tokens of the prompt the same body
    would be answered from on ``POST /v1/responses`` (its ``usage.input_tokens``), made
    as that request's is (the policy, the store's snippets, the template) and counted by
    the model's own tokenizer; nothing is generated. A prompt over the context window is
    counted, so a client learns how far over it is (that request would refuse it). Like
    ``/tokenize``, it spends a request of the token's rpm and none of its tokens. A
    gateway, whose upstream's tokenizer is not at hand, says so (400), as its
    ``/tokenize`` does."""
    settings = state_of(request).settings
    task = body.to_task(settings.generation.max_tokens, settings.generation.seed)
    try:
        counted = await prompt_tokens(request, task)
    except TetherError as exc:
        if body.offer is not None:
            in_tool_terms(exc, body.offer)
        in_responses_terms(exc, body)
        raise
    return InputTokenCount(object="response.input_tokens", input_tokens=counted)


async def stored_response(response_id: str) -> None:
    """What the SDKs ask of a stored response: tether keeps none, and says so."""
    raise NotFoundError(
        f"no response {response_id!r}: tether keeps no responses (whatever store says), so "
        "none can be fetched, listed, cancelled or deleted, nor continued with "
        "previous_response_id; send the whole conversation in input with each request",
        param="response_id",
    )


class StoredResponseRoute(ApiRoute):
    """A stored response's route, whose id is never the name of a route beside it:
    ``/v1/responses/input_tokens`` is the count's, so another method than its POST there
    is a 405 that names POST, as the API's document has it, not a search for a response.
    Below it (``/input_items``, ``/cancel``) no route is the count's, and these answer."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child = super().matches(scope)
        named = child.get("path_params", {}).get("response_id")
        if named == "input_tokens" and self.path == f"{PATH}/{{response_id}}":
            return Match.NONE, {}
        return match, child


# Every route the SDKs have for a stored response, each answered by the one above.
for method, tail in (("GET", ""), ("DELETE", ""), ("GET", "/input_items"), ("POST", "/cancel")):
    router.add_api_route(
        f"/responses/{{response_id}}{tail}",
        stored_response,
        methods=[method],
        dependencies=[Depends(require("chat", counted=False))],
        responses=errors(404),
        route_class_override=StoredResponseRoute,
    )
