"""The route class of every API router: strict JSON bodies, the token checked first, and
no step of a path read from an encoded slash (``steps_through_encoded_slash``)."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from types import UnionType
from typing import Any, Union, get_args, get_origin

from fastapi import Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.routing import Match
from starlette.types import Receive, Scope, Send

from tether.errors import AuthError, ForbiddenError, RequestError
from tether.server.auth import TokenCheck, checked
from tether.server.errors import error_response
from tether.server.paths import steps_through_encoded_slash
from tether.strictjson import parse_json


class StrictJsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = parse_json(await self.body())
        return self._json


class ApiRoute(APIRoute):
    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child = super().matches(_head_as_get(scope, self.methods))
        if match is not Match.NONE and steps_through_encoded_slash(self, scope):
            return Match.NONE, {}
        return match, child

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        await super().handle(_head_as_get(scope, self.methods), receive, send)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()
        token_checks = [
            d.call for d in self.dependant.dependencies if isinstance(d.call, TokenCheck)
        ]

        async def handler(request: Request) -> Response:
            if token_checks and _expects_continue(request):
                # The server answers "100 Continue" when the body is first read, which
                # FastAPI does before it checks the token: a refused caller would be asked
                # for a body it is then refused. It is refused before that, and the
                # connection closed, since the body it holds back will not follow.
                try:
                    for check in token_checks:
                        check.refuse(request)
                except (AuthError, ForbiddenError) as exc:
                    response = error_response(exc)
                    response.headers["Connection"] = "close"
                    return response
            try:
                return await handle(StrictJsonRequest(request.scope, request.receive))
            except Exception:
                # FastAPI reads the body before it solves dependencies: a caller without a
                # valid token must hear 401, not what is wrong with the body it sent.
                if not checked(request):
                    for check in token_checks:
                        await check(request)
                raise

        return handler


def _head_as_get(scope: Scope, methods: set[str] | None) -> Scope:
    """HEAD where GET is served, as HTTP asks of a server (monitors, link checkers and
    ``curl -I`` use it): answered as GET, whose body the server then leaves unsent, as the
    request it read was HEAD."""
    if scope["type"] == "http" and scope["method"] == "HEAD" and methods and "GET" in methods:
        return {**scope, "method": "GET"}
    return scope


def _expects_continue(request: Request) -> bool:
    return request.headers.get("expect", "").lower() == "100-continue"


def known_query_only(request: Request) -> None:
    """Refuse a query parameter the route does not take, or one given twice that takes one
    value: a misspelt filter would be ignored, and of ``since=30d&since=1d`` only the last
    would count; either way the answer would pass for the one asked for."""
    fields = _query_fields(request.scope["route"].dependant)
    unknown = sorted(set(request.query_params) - fields.keys())
    if unknown:
        takes = ", ".join(sorted(fields)) or "no query parameters"
        raise RequestError(
            f"unknown query parameter {unknown[0]!r}; {request.url.path} takes: {takes}",
            param=unknown[0],
        )
    for name, many in fields.items():
        values = request.query_params.getlist(name)
        if len(values) > 1 and not many:
            raise RequestError(
                f"query parameter {name!r} is given {len(values)} times "
                f"({', '.join(map(repr, values[:3]))}); it takes one value: give it once",
                param=name,
            )


def _query_fields(dependant: Dependant) -> dict[str, bool]:
    """Each query parameter of a route and its dependencies, by name: whether it takes
    several values (a list)."""
    fields = {
        field.alias: _takes_many(field.field_info.annotation) for field in dependant.query_params
    }
    for dependency in dependant.dependencies:
        fields |= _query_fields(dependency)
    return fields


def _takes_many(annotation: Any) -> bool:
    if get_origin(annotation) in (Union, UnionType):
        return any(_takes_many(arg) for arg in get_args(annotation))
    return get_origin(annotation) in (list, tuple, set, frozenset)
