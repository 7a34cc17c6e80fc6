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
from dataclasses import replace

from starlette.types import Scope

from tether.policy import Scanner
from tether.policy.govern import govern

KEPT_CHARS = 256  # of a path no route takes: more than any route of ours


def recorded_path(scope: Scope) -> str:
    """The path of ``scope`` as logs keep it: its route's template, else redacted."""
    template = getattr(scope.get("route"), "path", None)
    if isinstance(template, str) and template:
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
