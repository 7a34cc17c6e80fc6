"""Routes that third-party plugins add, kept off the paths of tether's own.

Starlette takes a request by the first route that matches it. A plugin's route on one of
tether's paths is either never called (appended after tether's) or takes tether's place
(put before it), and with it the token check, policy and audit that the path promised.
Neither is what anyone meant, so the server refuses to start and says which route.

A plugin's routes read an encoded slash (``%2F``) as tether's own do: as no step of their
path, but where it falls in a parameter that takes slashes (``tether.server.paths``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import pluggy
from fastapi import FastAPI
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Route, WebSocketRoute
from starlette.types import Scope

from tether.errors import ConfigError
from tether.hookcalls import call_each
from tether.server.mcp_mount import PATH as MCP_PATH
from tether.server.paths import steps_through_encoded_slash

_PARAMETER = re.compile(r"\{[^}]*\}")
_ANY_METHOD = ("GET", "POST")  # what a route that takes every method is tried with
_WEBSOCKET = "WEBSOCKET"  # the method a websocket's request is named with


# /mcp takes every method (each but POST to answer 405), whether the app has it yet or not
# (`tether doctor`'s has not). Its stand-in, only ever matched, is an ASGI app (a response),
# not a function, or Starlette would take GET alone.
_MCP = Route(MCP_PATH, endpoint=Response(status_code=404), methods=None)


def add_plugin_routes(
    app: FastAPI, plugins: pluggy.PluginManager, included: Sequence[BaseRoute]
) -> None:
    """Call ``register_routes`` on ``app``; a ConfigError when a route it adds takes a
    request that one of tether's takes, or the reverse: ``app``'s own routes, those of
    the routers it ``included``, and ``/mcp``."""
    before = {id(route) for route in app.router.routes}
    own = [*included, *(r for r in app.router.routes if getattr(r, "path", None)), _MCP]
    call_each(plugins.hook.register_routes, "add its routes", app=app)
    added = [route for route in app.router.routes if id(route) not in before]
    own_requests = list(_requests(own))
    clashes = []
    for route in added:
        taken = [(p, m) for p, m in own_requests if _takes(route, p, m)]
        taken += [(p, m) for p, m in _requests([route]) if any(_takes(o, p, m) for o in own)]
        if taken:
            where = getattr(getattr(route, "endpoint", None), "__module__", None)
            path, method = taken[0]
            path = getattr(route, "path", None) or path  # as the plugin wrote it
            clashes.append(f"{method} {path}" + (f" (from {where})" if where else ""))
    if clashes:
        raise ConfigError(
            f"a plugin adds routes on tether's own paths: {'; '.join(clashes)}; each would "
            "either never be called or replace tether's (its token check, policy and audit "
            "with it): give the plugin's routes paths of their own, e.g. under /plugins/"
        )
    for route in added:
        _keep_encoded_slashes(route)


def _keep_encoded_slashes(route: BaseRoute) -> None:
    """Have ``route`` take no path that it reads a step of from an encoded slash: a
    proxy's rule on /plugins/acme/admin does not take /plugins%2Facme%2Fadmin for it."""
    matches = route.matches

    def refusing(scope: Scope) -> tuple[Match, Scope]:
        match, child = matches(scope)
        if match is not Match.NONE and steps_through_encoded_slash(route, scope):
            return Match.NONE, {}
        return match, child

    route.matches = refusing  # type: ignore[method-assign]


def _requests(routes: Iterable[BaseRoute]) -> Iterable[tuple[str, str]]:
    """A request each route takes for each of its methods: its path, parameters filled;
    a websocket's method is WEBSOCKET."""
    for route in routes:
        path = getattr(route, "path", None)
        if not isinstance(path, str) or not path:
            continue
        filled = _PARAMETER.sub("x", path)
        if isinstance(route, WebSocketRoute):
            yield filled, _WEBSOCKET
            continue
        for method in sorted(getattr(route, "methods", None) or _ANY_METHOD):
            yield filled, method


def _takes(route: BaseRoute, path: str, method: str) -> bool:
    scope: dict[str, object] = {"path": path, "root_path": "", "headers": []}
    # A websocket and an HTTP request to one path are taken by different routes.
    scope.update(
        {"type": "websocket"} if method == _WEBSOCKET else {"type": "http", "method": method}
    )
    return route.matches(scope)[0] is Match.FULL
