"""Suggested changes to a file, returned as a unified diff (scope ``suggest``)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import ConfigDict, Field, field_validator

from tether.errors import ContextLengthError, PatchError
from tether.server.auth import require
from tether.server.openapi import GENERATING, errors
from tether.server.routes.formats import SuggestionFormat
from tether.server.routing import ApiRoute
from tether.server.schemas import Limit, SamplingFields
from tether.server.serving import answer_task, state_of
from tether.suggestions.paths import SAFE_PATH, check_relative
from tether.suggestions.service import file_too_long, suggestion_task

router = APIRouter(
    route_class=ApiRoute,
    prefix="/v1/suggestions",
    tags=["suggestions"],
    responses=errors(*GENERATING),
)


class SuggestionRequest(SamplingFields):
    # tether's own route, which no other client's extras reach: a field sent under another
    # name (``content`` for ``source``) is named as unknown, not dropped unseen.
    model_config = ConfigDict(extra="forbid", strict=True)

    path: str = Field(
        pattern=SAFE_PATH,
        description="The file's path inside its project, as the patch should name it: "
        "relative, without '..', '.' or empty parts or ':', not inside .git, no part named "
        "as a Windows device (CON, nul.txt).",
    )
    source: str = Field(description="The file's current content.")
    instruction: str = Field(min_length=1, description="What to change.")
    max_tokens: Limit | None = None
    temperature: float = Field(0.2, ge=0.0, le=2.0)
    stream: bool | None = Field(False, description="A suggestion is one JSON object: false.")

    @field_validator("path")
    @classmethod
    def _inside_the_project(cls, path: str) -> str:
        # What the pattern cannot say: the names Windows reads as .git (".git.", "GIT~1")
        # or as a device ("nul.txt").
        try:
            return check_relative(path)
        except PatchError as exc:
            raise ValueError(exc.message) from exc

    @field_validator("stream")
    @classmethod
    def _one_object(cls, stream: bool | None) -> bool | None:
        if stream:
            raise ValueError(
                "a suggestion comes as one JSON object (its patch); send stream false or omit it"
            )
        return stream


@router.post("", dependencies=[Depends(require("suggest"))])
async def create_suggestion(request: Request, body: SuggestionRequest) -> JSONResponse:
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
        body.snippets,
    )
    try:
        return await answer_task(
            request, task, SuggestionFormat(body.path, body.source, state.settings.policy)
        )
    except ContextLengthError as exc:
        raise file_too_long(body.path, exc) from exc
