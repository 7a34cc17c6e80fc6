"""How a request's path is written down, in the access log and the audit log.

A path's segments hold whatever a client put there: a token given where its id was
wanted (``DELETE /v1/tokens/tth_…``), a secret, an e-mail address. Where a route took the
request, its template (``/v1/tokens/{token_id}``) is written; a path no route takes is
kept, for whoever looks into it, with every value the built-in policy rules find
redacted, and cut to ``KEPT_CHARS``: anyone who can connect, with no token, chooses it,
and each such request adds a signed record that is kept for good.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import replace

from starlette.routing import BaseRoute, Match
from starlette.types import Scope

from tether.policy import Scanner
from tether.policy.govern import govern

KEPT_CHARS = 256  # of a path no route takes: more than any route of ours


class RouteTable:
    """The app's routes, to name the one a request was refused before routing took it
    (a body too large, compressed): FastAPI's own list holds included routers, which
    say nothing of the routes they hold."""

    def __init__(self, routes: Sequence[BaseRoute]) -> None:
        self._routes = routes

    def template_for(self, scope: Scope) -> str | None:
        for route in self._routes:
            if route.matches(scope)[0] is Match.FULL:
                path = getattr(route, "path", None)
                return path if isinstance(path, str) and path else None
        return None


def route_template(scope: Scope) -> str | None:
    """The template of the route that takes ``scope``'s request, if any: the one that
    took it, else the one that would have."""
    template = getattr(scope.get("route"), "path", None)
    if isinstance(template, str) and template:
        return template
    table = getattr(getattr(scope.get("app"), "state", None), "route_table", None)
    return table.template_for(scope) if isinstance(table, RouteTable) else None


def recorded_path(scope: Scope) -> str:
    """The path of ``scope`` as logs keep it: its route's template, else redacted."""
    template = route_template(scope)
    if template is not None:
        return template
    path: str = scope["path"]
    found = _scanner().scan(path)
    if found:
        path = govern(path, [replace(f, action="redact") for f in found]).text
    if len(path) > KEPT_CHARS:
        return f"{path[:KEPT_CHARS]}…(+{len(path) - KEPT_CHARS} characters)"
    return path


@functools.cache
def _scanner() -> Scanner:
    return Scanner()
