"""The one place where exceptions become HTTP responses, in the OpenAI error shape.

{"error": {"message": ..., "type": ..., "param": ..., "code": ...}}
"""

from __future__ import annotations

import difflib
import json
import logging
from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import BaseRoute, Match

from tether import errors
from tether.databases import damage_message, is_damage
from tether.server.jsonbody import not_json
from tether.server.paths import has_encoded_slash, path_as_sent
from tether.server.responses import COUNT_PATH, RESPONSES_HINTS
from tether.server.responses import PATH as RESPONSES_PATH
from tether.server.schemas import FIELD_HINTS

log = logging.getLogger("tether.server")

# (status, OpenAI error type, code) per exception class; the first match wins.
_STATUS: list[tuple[type[errors.TetherError], int, str, str | None]] = [
    (errors.ContextLengthError, 400, "invalid_request_error", "context_length_exceeded"),
    (errors.PolicyBlockedError, 400, "invalid_request_error", "policy_blocked"),
    (errors.UnknownModelError, 404, "invalid_request_error", "model_not_found"),
    (errors.NotFoundError, 404, "invalid_request_error", "not_found"),
    (errors.RequestError, 400, "invalid_request_error", None),
    (errors.NotSupportedError, 501, "not_supported_error", "not_supported"),
    (errors.AuthError, 401, "invalid_request_error", "invalid_api_key"),
    (errors.ForbiddenError, 403, "permission_error", "insufficient_scope"),
    (errors.OverloadedError, 429, "rate_limit_error", "queue_full"),
    (errors.RateLimitedError, 429, "rate_limit_error", "rate_limit_exceeded"),
    (errors.UpstreamTimeoutError, 504, "server_error", "upstream_timeout"),
    (errors.NoFreeSequenceError, 503, "server_error", "no_slot_available"),
    (errors.ShuttingDownError, 503, "server_error", "server_shutting_down"),
    (errors.AuditUnwritableError, 503, "server_error", "audit_unavailable"),
    (errors.EngineUnavailableError, 503, "server_error", "engine_unavailable"),
    (errors.DatabaseLockedError, 503, "server_error", "database_locked"),
    (errors.FunctionCallError, 422, "invalid_request_error", "function_failed"),
    (errors.CancelledGeneration, 499, "invalid_request_error", "client_closed_request"),
    (errors.PluginTimeoutError, 504, "server_error", "plugin_timeout"),
    (errors.PluginFailedError, 500, "server_error", "plugin_failed"),
    (errors.ConfigError, 500, "server_error", "config_error"),
    (errors.ModelError, 503, "server_error", "model_error"),
]


def error_body(
    message: str, type_: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def error_response(exc: errors.TetherError) -> JSONResponse:
    status, type_, code = next(
        ((s, t, c) for cls, s, t, c in _STATUS if isinstance(exc, cls)),
        (500, "server_error", None),
    )
    if isinstance(exc, errors.FunctionCallError) and exc.timed_out:
        status, type_, code = 504, "server_error", "function_timeout"
    headers = {}
    retry_after = getattr(exc, "retry_after_s", None)
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    if isinstance(exc, errors.AuthError):
        headers["WWW-Authenticate"] = "Bearer"
    unmended = isinstance(exc, errors.EngineUnavailableError) and not exc.passes
    if unmended or isinstance(exc, errors.PluginFailedError):
        # The OpenAI SDKs retry every 5xx unless told not to: asking again would not help
        # (a plugin fails the same request the same way, and each try is audited).
        headers["x-should-retry"] = "false"
    return JSONResponse(error_body(exc.message, type_, exc.param, code), status, headers=headers)


def status_of(exc: BaseException) -> int:
    """The HTTP status ``exc`` is answered with: for the records of a stream it ended
    before its first event, whose 200 was sent while it waited."""
    return error_response(exc).status_code if isinstance(exc, errors.TetherError) else 500


def stream_error(exc: BaseException) -> dict[str, Any]:
    """The error body of a failure after a stream started, when no status can say it."""
    if isinstance(exc, errors.TetherError):
        body: dict[str, Any] = json.loads(bytes(error_response(exc).body))
        return body
    log.exception("error while streaming", exc_info=exc)
    return error_body("internal error while generating; see the server log", "server_error")


def sse_error(exc: BaseException) -> bytes:
    """An error after the stream started: one event with the error, then the stream ends."""
    return f"data: {json.dumps(stream_error(exc))}\n\n".encode()


# Hints of one route's fields, where a field of the same name means another thing there
# (the Responses API's ``input`` is a conversation, the embeddings' are texts).
ROUTE_HINTS = {RESPONSES_PATH: RESPONSES_HINTS, COUNT_PATH: RESPONSES_HINTS}

# pydantic names the member of a union that failed ("str", "list[str]",
# "function-after[...]"); the field's own name says where, the message says what.
_TYPE_TAGS = frozenset({"str", "int", "float", "bool", "list", "dict", "none", "bytes"})


def _member_tag(part: object) -> bool:
    return isinstance(part, str) and (part in _TYPE_TAGS or any(c in part for c in "[(-'"))


def _problem(kind: str | None, message: str, of_a_field: bool, meant: str | None = None) -> str:
    """What is wrong with one part of a request, in words its sender can act on; ``meant``
    is the field an unknown one is close to."""
    if kind == "string_pattern_mismatch":  # a pattern is for machines; a hint says more
        return "does not have the required form"
    if kind == "extra_forbidden":
        if meant is not None:
            return f"is not a field of this request; did you mean {meant}?"
        return "is not a field of this request (the schema at GET /openapi.json lists them)"
    if kind == "missing" and not of_a_field:  # the body itself
        return "missing: send the request's fields as a JSON object"
    return message.removeprefix("Value error, ")  # pydantic's prefix, not ours


Located = tuple[Any, list[str], str]  # an error, its field's path, that path written


def _branch_taken(located: list[Located]) -> list[Located]:
    """The errors, less those of a union's branches whose type the value is not: "stop: 17
    strings" said first that it "should be a valid string". Where every branch is of
    another type, each says so."""

    def another_went_further(error: Any, where: str) -> bool:
        return any(
            other is not error
            and (
                place.startswith(where + ".")
                or (place == where and not str(other.get("type")).endswith("_type"))
            )
            for other, _, place in located
        )

    return [
        (error, loc, where)
        for error, loc, where in located
        if not (str(error.get("type")).endswith("_type") and another_went_further(error, where))
    ]


def _describe_validation(
    exc: RequestValidationError, route_hints: dict[str, str], fields: list[str] | None = None
) -> tuple[str, str | None]:
    """The 400's message and ``param``; ``fields``: the body's own, by which a misspelt one
    (``ttl`` for ``ttl_s``) is told the one it is close to."""
    problems: list[str] = []
    hints: dict[str, str] = {}  # each hint, by the field it is about
    param = None
    located = []
    for error in exc.errors():
        if error.get("type") == "json_invalid":
            return not_json((error.get("ctx") or {}).get("error")), None
        placed = list(error.get("loc", ()))
        if placed[:1] == ["body"]:  # where the field is; a field may be called "body" too
            placed = placed[1:]
        loc = [str(p) for p in placed if not _member_tag(p)]
        located.append((error, loc, ".".join(loc) or "body"))
    for error, loc, where in _branch_taken(located):
        param = param or where
        close = difflib.get_close_matches(loc[0], fields or [], n=1, cutoff=0.7) if loc else []
        meant = close[0] if close and len(loc) == 1 else None
        what = _problem(error.get("type"), str(error.get("msg")), bool(loc), meant)
        problems.append(f"{where}: {what}")
        # A query, path or header parameter is named after its place; a body field (which
        # may be called "path") is not.
        origin = next(iter(error.get("loc", ())), "body")
        named = loc[1:] if origin in ("query", "path", "header") else loc
        # Too long says itself what to do ("at most 200 characters"); a field's hint is
        # about what it holds, which another route's field of that name may not share.
        # (A field that must be empty, as a grammar, is told why by its hint.)
        limit = (error.get("ctx") or {}).get("max_length")
        too_long = error.get("type") == "string_too_long" and bool(limit)
        hints_here = {**FIELD_HINTS, **route_hints}
        hint = hints_here.get(named[0]) if named and not too_long else None
        if hint and hint not in hints:
            hints[hint] = named[0]
    message = "invalid request: " + "; ".join(dict.fromkeys(problems))
    if len(hints) == 1:
        return message + f". To fix: {next(iter(hints))}", param
    # Several fields' hints each say which field they are about.
    return message + "".join(f". To fix {field}: {hint}" for hint, field in hints.items()), param


def _body_fields(route: object) -> list[str]:
    """The fields a route's body takes, by the names it is sent with; none where its body
    is not one model."""
    body = getattr(route, "body_field", None)
    model = getattr(getattr(body, "field_info", None), "annotation", None)
    fields = getattr(model, "model_fields", None)
    if not isinstance(fields, dict):
        return []
    return [field.alias or name for name, field in fields.items()]


def _leaf_routes(routes: list[BaseRoute]) -> Iterator[BaseRoute]:
    """Every route, inside included routers too (FastAPI keeps those as one entry each)."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from _leaf_routes(inner.routes)
        else:
            yield route


def _allowed_methods(request: Request, named: str) -> list[str]:
    """The methods of every route on this path, with those Starlette ``named``."""
    methods = {m.strip() for m in named.split(",") if m.strip()}
    for route in _leaf_routes(request.app.router.routes):
        if route.matches(request.scope)[0] != Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    return sorted(methods)


def _v1_hint(request: Request, sent: str) -> str:
    """Where a path that left out ``/v1``, or wrote it twice, has the route it meant
    (relative to ``sent``, as the docs are named): an OpenAI client given the server's
    root as its base URL (aider with http://127.0.0.1:8421) asks for /chat/completions.
    One sent with a trailing slash too is named without it: the path without the slash
    alone would be another 404."""
    root, path = request.scope.get("root_path", ""), request.scope["path"]
    if root and path.startswith(root):  # routes match the path after the root path
        path = path[len(root) :]
    else:
        root = ""
    slash = path.endswith("/") and bool(path.strip("/"))
    path = path.rstrip("/") if slash else path
    twice = path.startswith("/v1/v1/")
    meant = path.removeprefix("/v1") if twice else "/v1" + path
    scope = {**request.scope, "path": root + meant}
    if not any(
        route.matches(scope)[0] == Match.FULL for route in _leaf_routes(request.app.router.routes)
    ):
        return ""
    relative = "../" * max(sent.count("/") - 1, 0) + meant.lstrip("/")
    unslashed = " and without the trailing slash" if slash else ""
    if twice:
        return f" (with /v1 once{unslashed}: {relative})"
    return f" (with /v1{unslashed}: {relative}; an OpenAI client's base URL ends in /v1)"


def _preflight(request: Request) -> bool:
    """Whether ``request`` is a browser's CORS preflight."""
    headers = request.headers
    return (
        request.method == "OPTIONS"
        and "origin" in headers
        and "access-control-request-method" in headers
    )


def cors_refusal(request: Request) -> JSONResponse | None:
    """The answer to a browser's CORS preflight, or None for any other request.

    A browser asks before a page of another origin may call with a token. It was told
    that OPTIONS is not allowed and to "use POST", which it was about to do."""
    if not _preflight(request):
        return None
    message = (
        f"cross-origin requests from web pages are not served (no CORS): tether "
        f"sends no Access-Control-Allow-Origin, so a page from "
        f"{request.headers['origin']} cannot call it; call it from the editor's "
        "extension host or another program, or put in front a proxy that answers "
        "CORS for the origins you trust"
    )
    return JSONResponse(error_body(message, "invalid_request_error", code="cors_not_served"), 403)


def _sent_path(request: Request) -> str:
    """The request's path as the client sent it, its escapes kept: the URL a relative hint
    is resolved from. The decoded path reads "/a%2Fb" as two steps, "/a/b"."""
    raw = request.scope.get("raw_path")
    return raw.decode("latin-1") if isinstance(raw, bytes) else request.url.path


def _docs_from(path: str) -> str:
    """Where the API's page is from ``path`` (as sent), relative, as the dashboard names
    its files: behind a proxy that serves tether under a path (``location /tether/``),
    "/docs" would be the proxy's page, at the host's root."""
    up = max(path.count("/") - 1, 0)  # "*" (OPTIONS's asterisk) has no slash
    return "../" * up + "docs" if up else "./docs"


def _without_trailing_slash(path: str) -> str:
    """``path`` (as sent, ending in "/") without its trailing slashes, relative to itself,
    as the docs are named: its last name, one "../" up for each slash."""
    name = path.rstrip("/")
    return "../" * (len(path) - len(name)) + name.rsplit("/", 1)[-1]


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(errors.TetherError)
    async def _tether(_: Request, exc: errors.TetherError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        route = request.scope.get("route")
        hints = ROUTE_HINTS.get(getattr(route, "path", None) or "", {})
        message, param = _describe_validation(exc, hints, _body_fields(route))
        return JSONResponse(error_body(message, "invalid_request_error", param), 400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if isinstance(exc.__cause__, ClientDisconnect):
            # FastAPI reads a body its client left before sending whole as one it could
            # not parse (400): the request was not wrong, its client went away.
            gone = "the client closed the connection before the request's body arrived"
            return error_response(errors.CancelledGeneration(gone))
        headers = dict(exc.headers or {})
        sent = _sent_path(request)
        if exc.status_code == 404:
            path = path_as_sent(request.scope)
            message = f"no route {request.method} {path}; see {_docs_from(sent)} for the API"
            if has_encoded_slash(request.scope):
                message += " (an encoded slash, %2F, is part of a name, not a step of the path)"
            meant = _v1_hint(request, sent)
            if not meant and sent.endswith("/") and sent.strip("/"):
                meant = f" (without the trailing slash: {_without_trailing_slash(sent)})"
            message += meant
        elif exc.status_code == 405 and (refusal := cors_refusal(request)) is not None:
            return refusal
        elif exc.status_code == 405:
            # Starlette names the methods of the first route on this path; there may be more.
            allowed = _allowed_methods(request, headers.get("Allow", ""))
            headers["Allow"] = ", ".join(allowed)
            message = (
                f"{request.method} is not allowed on {request.url.path}; use "
                f"{' or '.join(allowed)} (see {_docs_from(sent)})"
            )
        else:
            message = str(exc.detail)
        code = "request_too_large" if exc.status_code == 413 else None
        return JSONResponse(
            error_body(message, "invalid_request_error", code=code),
            exc.status_code,
            headers=headers,
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Answered outside every middleware, so the request id is added here: it is how
        # the client and the operator find the same failure in the server's log.
        request_id = str(getattr(request.state, "request_id", "") or "-")
        headers = {"X-Request-Id": request_id}
        if is_damage(exc):  # the operator's to mend, and the log says how
            log.error("request %s: %s", request_id, damage_message(exc))
            message = "a database of the server is damaged; its operator is told how to mend it"
            body = error_body(message, "server_error", code="database_damaged")
            return JSONResponse(body, 500, headers=headers)
        log.exception("unhandled error in request %s", request_id, exc_info=exc)
        message = f"internal error; the server log has it under request id {request_id}"
        return JSONResponse(error_body(message, "server_error"), 500, headers=headers)
