"""Every hook a tether plugin can implement, one line each (docs/plugins.md lists them).

Built-in behaviour is registered through these same hooks by ``tether.default_plugins``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import click
    from fastapi import FastAPI

    from tether.pipeline.fim import ContextSnippet
    from tether.pipeline.reviews import CompletionReview, PromptReview

hookspec = pluggy.HookspecMarker("tether")
hookimpl = pluggy.HookimplMarker("tether")


@hookspec
def register_engines(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Add engine kinds: ``register(kind, factory)``, where ``factory(settings)`` is an Engine.
    A plugin's kind of a built-in's name (``llamacpp``, ``openai``) replaces it, with a
    warning."""


@hookspec
def govern_prompt(review: PromptReview) -> None:
    """Before tokenization: rewrite the texts of ``review.parts`` in place (each name kept,
    none added) and add ``tether.Finding`` objects to ``review.findings``; a block ends the
    request. tether's own policy (``policy.enabled``) runs before every plugin, so the texts
    come with the values it finds already redacted or pseudonymized, and a prompt it blocks
    never reaches a plugin; it runs again after them on the parts they changed."""


@hookspec(firstresult=True)
def compress_context(
    snippets: list[ContextSnippet], budget_tokens: int, count_tokens: Callable[[str], int]
) -> list[ContextSnippet] | None:
    """Fit context snippets to ``budget_tokens``; the first plugin that answers wins."""


@hookspec
def check_completion(review: CompletionReview) -> None:
    """After generation: add findings on the generated code to ``review.findings``; one
    whose action is ``block`` withholds the answer (``review.cut_short``: it ended at its
    token limit, so it may stop mid-statement). A stream is held back until checked only
    for rules that ``compliance.actions`` sets to ``block``: for others its text has gone
    out by then, and its end says ``content_filter``. ``tether check`` and ``POST
    /v1/check`` call it on whole files too, as answers of ``review.kind`` ``file``."""


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add commands to the ``tether`` command line."""


@hookspec
def register_routes(app: FastAPI) -> None:
    """Add HTTP routes to the server. They are served as written, with no token asked:
    give a route ``dependencies=[Depends(tether.require("SCOPE"))]`` (or ``require(None)``
    for any valid token) unless it is meant for anyone who can reach the server. A route
    on a path and method of tether's own is refused as the server starts."""
