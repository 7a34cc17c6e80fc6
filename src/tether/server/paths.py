"""How a request's path is written down, in the access log and the audit log.

A path's segments hold whatever a client put there: a token given where its id was
wanted (``DELETE /v1/tokens/tth_…``), a secret, an e-mail address. Where a route took the
request, its template (``/v1/tokens/{token_id}``) is written; a path no route takes is
kept, for whoever looks into it, with every value the built-in policy rules find
redacted, and cut to ``KEPT_CHARS``: anyone who can connect, with no token, chooses it,
and each such request adds a signed record that is kept for good.

uvicorn decodes a path's escapes before routing, "%2F" too: ``/v1%2Fmodels`` was served
as ``/v1/models``, which a proxy in front, whose rules read the path as sent (one step,
``v1%2Fmodels``), does not take it for (path confusion: a rule on ``/v1/tokens`` let
``/v1%2Ftokens`` through). An encoded slash is a slash within a name: a route takes a
path with one only where it falls in a parameter that takes slashes (a model's id in
``/v1/models/{model_id:path}``, as the OpenAI SDKs send ``org/model``); elsewhere the
path is no route's (404), and is named with its encoded slashes kept.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import replace
from urllib.parse import unquote

from starlette.convertors import PathConvertor
from starlette.routing import BaseRoute, Match
from starlette.types import Scope

from tether.policy import Scanner
from tether.policy.govern import govern

KEPT_CHARS = 256  # of a path no route takes: more than any route of ours
_ENCODED_SLASH = re.compile("%2f", re.IGNORECASE)


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
    path = path_as_sent(scope)
    found = _scanner().scan(path)
    if found:
        path = govern(path, [replace(f, action="redact") for f in found]).text
    if len(path) > KEPT_CHARS:
        return f"{path[:KEPT_CHARS]}…(+{len(path) - KEPT_CHARS} characters)"
    return path


def steps_through_encoded_slash(route: BaseRoute, scope: Scope) -> bool:
    """Whether ``route`` takes ``scope``'s path only by reading an encoded slash in it
    (``%2F``) as a step of the path: one outside each parameter that takes slashes."""
    parts = _between_encoded_slashes(scope)
    if parts is None:
        return False
    path: str = scope["path"]
    if "/".join(parts) != path:
        return True  # decoded otherwise than here: where its slashes came from is unknown
    root = scope.get("root_path", "")
    start = len(root) if root and path.startswith(root) else 0
    regex, convertors = getattr(route, "path_regex", None), getattr(route, "param_convertors", {})
    found = regex.match(path[start:]) if isinstance(regex, re.Pattern) else None
    if found is None:
        return True  # a route that does not say where its parameters are
    spans = [
        found.span(name)
        for name, convertor in convertors.items()
        if isinstance(convertor, PathConvertor)
    ]
    at = -1
    for part in parts[:-1]:
        at += len(part) + 1  # where its encoded slash is in the decoded path
        step = at - start
        if step >= 0 and not any(begin <= step < end for begin, end in spans):
            return True
    return False


def path_as_sent(scope: Scope) -> str:
    """``scope``'s path decoded, but for its encoded slashes (``%2F``), which name no step
    of it: ``/v1%2Fmodels`` is one name, not ``/v1/models``."""
    parts = _between_encoded_slashes(scope)
    return scope["path"] if parts is None else "%2F".join(parts)


def has_encoded_slash(scope: Scope) -> bool:
    """Whether ``scope``'s path was sent with an encoded slash (``%2F``); not one with an
    encoded percent sign before "2F" (``%252F``), which names "%2F" itself."""
    return _between_encoded_slashes(scope) is not None


def _between_encoded_slashes(scope: Scope) -> list[str] | None:
    """The parts of ``scope``'s path between its encoded slashes, each decoded as the
    server decodes a path; None where it has none."""
    raw = scope.get("raw_path")
    if not isinstance(raw, bytes):
        return None
    sent = raw.decode("latin-1")
    if not _ENCODED_SLASH.search(sent):
        return None
    return [unquote(part) for part in _ENCODED_SLASH.split(sent)]


@functools.cache
def _scanner() -> Scanner:
    return Scanner()
