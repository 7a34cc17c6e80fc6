"""The OpenAPI document, made to tell the truth: every status an operation can answer, in
the OpenAI error shape, and server-sent events where a request may ask for a stream.

FastAPI documents a validation failure as 422 with its own body; tether answers 400 in
the OpenAI shape, so the 422s are replaced. Each router declares the errors it can give
with :func:`errors`; a schemathesis run in the tests holds the document to the server.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, Field

from tether import __version__


class ErrorDetail(BaseModel):
    message: str = Field(description="What went wrong, and what to do about it.")
    type: str = Field(description="invalid_request_error, permission_error, rate_limit_error…")
    param: str | None = Field(description="The request field at fault, when there is one.")
    code: str | None = Field(description="A stable code, e.g. context_length_exceeded.")


class ErrorResponse(BaseModel):
    """Every error tether answers, whatever the endpoint: the OpenAI error shape."""

    error: ErrorDetail


_ERROR = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}
_MEANING = {
    400: "The request is malformed or asks for something this server cannot serve.",
    401: "The bearer token is missing, wrong or expired.",
    403: "The token lacks the scope this endpoint needs.",
    404: "The model, trace, record, token or saved slot named is not here.",
    413: "The body is larger than server.max_body_mb; it is refused before it is read.",
    422: "A stored function raised, broke a sandbox rule or returned what JSON cannot hold.",
    429: "The queue is full, or the token is over a limit; retry after Retry-After seconds.",
    501: "The server is not set up for this: the message names the setting to change.",
    503: "The engine or every upstream is unavailable; retry later.",
    504: "A stored function ran past store.call_timeout_s, or an upstream sent nothing for "
    "upstream.read_timeout_s.",
}

# The errors of an endpoint that takes a token, and of one that also generates.
AUTHENTICATED = (400, 401, 403)
GENERATING = (*AUTHENTICATED, 404, 429, 503, 504)


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a router or route: these statuses, each an ``ErrorResponse``."""
    return {
        status: {"model": ErrorResponse, "description": _MEANING[status]} for status in statuses
    }


def _may_stream(operation: dict[str, Any], schemas: dict[str, Any]) -> bool:
    """Whether the operation's request body has a ``stream`` flag."""
    body = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
    name = body.get("schema", {}).get("$ref", "").rsplit("/", 1)[-1]
    return "stream" in schemas.get(name, {}).get("properties", {})


# How every operation that can answer 401 takes its token (bearer_token also reads
# ``x-api-key``).
_BEARER = {
    "type": "http",
    "scheme": "bearer",
    "description": "A tether token: the admin token from the runtime file, or one from "
    "`tether token create` / POST /v1/tokens.",
}

# With OpenAPI 3.1, the schema of an event stream describes each event.
_EVENTS = {
    "schema": {
        "type": "object",
        "description": "Sent when the request sets `stream`: one event per piece of the "
        "answer, its `data` a JSON object shaped like the whole answer's; the OpenAI "
        "families end with `data: [DONE]`.",
        "properties": {"data": {"type": "string"}, "event": {"type": "string"}},
        "required": ["data"],
    }
}


def build_openapi(app: FastAPI) -> dict[str, Any]:
    """The document FastAPI makes, with tether's error shape and streams put right."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    document = get_openapi(
        title=app.title,
        version=__version__,
        description=app.description,
        routes=app.routes,
    )
    schemas = document.get("components", {}).get("schemas", {})
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            responses = operation["responses"]
            if responses.pop("422", None) is not None:
                responses.setdefault("400", {"description": _MEANING[400]})
            if "requestBody" in operation:
                responses.setdefault("413", {"description": _MEANING[413]})
            for status, response in responses.items():
                if int(status) >= 400:  # always JSON, whatever the route's own media type
                    response["content"] = _ERROR
            if "200" in responses and _may_stream(operation, schemas):
                responses["200"].setdefault("content", {})["text/event-stream"] = _EVENTS
            if "401" in responses:
                operation["security"] = [{"HTTPBearer": []}]
    # Relative to where the document is read: behind a proxy that serves tether under a
    # path (/tether/openapi.json), the API is at /tether/, which a client (Swagger UI's "Try
    # it out") would otherwise look for at the host's root.
    document["servers"] = [{"url": "."}]
    document.setdefault("components", {})["securitySchemes"] = {"HTTPBearer": _BEARER}
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    app.openapi_schema = document
    return document
