"""The function store over HTTP: add, list, search, read, vet, retire, and call.

Reading needs ``store:read``, adding ``store:write``, decisions ``store:vet``, calls
``functions:call``. Decisions and calls are the request's audit record (one per request).
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import Field

from tether.compliance import Checker
from tether.errors import OverloadedError
from tether.server.auth import lacking, require
from tether.server.openapi import AUTHENTICATED, errors
from tether.server.routing import ApiRoute, known_query_only
from tether.server.schemas import Count, OwnModel
from tether.server.serving import cancel_on_disconnect
from tether.store import FunctionStore, Origin, Snippet, State
from tether.store.calls import CallResult, call_recorded
from tether.store.ingest import draft_from_code
from tether.store.search import MAX_QUERY_CHARS, search_listing
from tether.store.vetting import audit_details, retire, vet, withdrawals
from tether.tokens import Principal

router = APIRouter(
    route_class=ApiRoute,
    tags=["store"],
    responses=errors(*AUTHENTICATED),
    dependencies=[Depends(known_query_only)],
)
SnippetId = Annotated[int, Path(ge=1, le=2**63 - 1)]


class OriginBody(OwnModel):
    path: str = ""
    repository: str = ""
    commit: str = ""
    line: int = Field(0, ge=0, description="Where the function starts in the file; 0: unknown.")


class SnippetBody(OwnModel):
    code: str = Field(min_length=1, description="One function: Python, JavaScript or TypeScript.")
    language: Literal["python", "javascript", "typescript", "tsx"]
    name: str | None = Field(None, description="Which function, when the code holds several.")
    licence: str = Field(
        "", description="SPDX expression (`MIT OR Apache-2.0`); required before it can be vetted."
    )
    tags: list[str] | None = Field(
        None, max_length=32, description="Omitted: a new version keeps the current tags."
    )
    test: str | None = Field(
        None,
        description="Python code that exercises the function. Omitted: a new version keeps "
        'the current test; "" removes it.',
    )
    callable: bool = Field(False, description="Ask for it to be callable once vetted.")
    origin: OriginBody | None = None


class VetBody(OwnModel):
    approve: bool = Field(description="true approves (past every gate), false rejects.")
    reason: str = Field(min_length=1)
    callable: bool | None = Field(None, description="Whether it may be called.")
    version: Count | None = Field(None, description="Decide only if still this version.")
    state: State | None = Field(
        None, description="Decide only if still in this state (as the reviewer saw it)."
    )


class RetireBody(OwnModel):
    reason: str = Field(min_length=1)


class CallBody(OwnModel):
    arguments: dict[str, Any] = Field(
        default_factory=dict, description="The function's arguments by name."
    )


def function_store(request: Request) -> FunctionStore:
    store: FunctionStore = request.app.state.store
    return store


def _audit(request: Request, event: str, details: dict[str, Any]) -> None:
    recorder = getattr(request.app.state, "audit_recorder", None)
    if recorder is not None:
        recorder.record_event(request.state.request_id, request.state.principal, event, details)


def _detail(store: FunctionStore, snippet: Snippet) -> dict[str, Any]:
    versions = store.db.versions(snippet.id)
    decisions = store.db.decisions(snippet.id)
    return {
        "object": "snippet",
        **snippet.as_record(),
        "versions": [
            {"version": v.version, "hash": v.body_hash, "author": v.author, "created": v.created}
            for v in versions
        ],
        "decisions": [d.__dict__ for d in decisions],
    }


@router.post(
    "/v1/snippets", status_code=201, responses=errors(400), summary="Add a candidate snippet"
)
async def add_snippet(
    body: SnippetBody,
    request: Request,
    principal: Annotated[Principal, Depends(require("store:write"))],
) -> dict[str, Any]:
    """Adds one function as a candidate; the same code again changes nothing."""
    given = body.origin or OriginBody()
    origin = Origin(given.path, given.repository, given.commit, given.line)
    draft = draft_from_code(
        body.code,
        body.language,
        name=body.name,
        licence=body.licence,
        tags=body.tags,
        test=body.test,
        make_callable=body.callable,
        origin=origin,
    )
    store = function_store(request)
    added = await asyncio.to_thread(store.db.add, draft, principal.name)
    for details in withdrawals([added]):
        _audit(request, "store.vet", details)
    return {"object": "snippet", "outcome": added.outcome, **added.snippet.as_record()}


@router.get(
    "/v1/snippets",
    dependencies=[Depends(require("store:read"))],
    summary="List snippets",
)
async def list_snippets(
    request: Request,
    state: State | None = None,
    callable_only: Annotated[bool, Query(alias="callable")] = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**62)] = 0,
) -> dict[str, Any]:
    store = function_store(request)
    found = store.db.snippets(state, limit, offset, callable_only)
    return {
        "object": "list",
        "data": [s.as_record() for s in found],
        "counts": store.db.counts(),
    }


@router.get(
    "/v1/snippets/search",
    dependencies=[Depends(require("store:read"))],
    responses=errors(400),
    summary="Search vetted snippets",
)
async def search_snippets(
    request: Request,
    q: Annotated[
        str,
        Query(
            min_length=1,
            max_length=MAX_QUERY_CHARS,
            pattern=r"[^\W_]",  # a letter or digit of any script
            description="What you need: words or names (at least one letter or digit).",
        ),
    ],
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
) -> dict[str, Any]:
    """Vetted snippets, best first, each with every ranker's score and rank."""
    searcher = function_store(request).searcher
    hits = await asyncio.to_thread(searcher.search, q, limit)
    return search_listing(hits, searcher.hybrid)


@router.get(
    "/v1/snippets/{snippet_id}",
    dependencies=[Depends(require("store:read"))],
    responses=errors(404),
    summary="A snippet with its versions and decisions",
)
async def get_snippet(request: Request, snippet_id: SnippetId) -> dict[str, Any]:
    store = function_store(request)
    return _detail(store, store.db.get(snippet_id))


@router.post(
    "/v1/snippets/{snippet_id}/vet",
    responses=errors(400, 404),
    summary="Approve or reject a snippet",
)
async def vet_snippet(
    request: Request,
    snippet_id: SnippetId,
    body: VetBody,
    principal: Annotated[Principal, Depends(require("store:vet"))],
) -> dict[str, Any]:
    """Approval runs every automatic gate first and is refused, naming them, if any fails."""
    store = function_store(request)

    def decide() -> tuple[Snippet, Any]:
        with Checker.from_settings(store.settings) as checker:
            return vet(
                store.db,
                snippet_id,
                approve=body.approve,
                reason=body.reason,
                principal=principal.name,
                checker=checker,
                settings=store.settings.store,
                sandbox=store.sandbox,
                make_callable=body.callable,
                version=body.version,
                seen_state=body.state,
            )

    snippet, decision = await asyncio.to_thread(decide)
    _audit(request, "store.vet", audit_details(snippet, decision))
    return {**_detail(store, snippet), "decision": decision.__dict__}


@router.post(
    "/v1/snippets/{snippet_id}/retire",
    responses=errors(400, 404),
    summary="Retire a snippet",
)
async def retire_snippet(
    request: Request,
    snippet_id: SnippetId,
    body: RetireBody,
    principal: Annotated[Principal, Depends(require("store:vet"))],
) -> dict[str, Any]:
    store = function_store(request)
    decision = await asyncio.to_thread(
        retire, store.db, snippet_id, reason=body.reason, principal=principal.name
    )
    snippet = store.db.get(snippet_id)
    _audit(request, "store.retire", audit_details(snippet, decision))
    return {**_detail(store, snippet), "decision": decision.__dict__}


def _call_audit(request: Request) -> Callable[[dict[str, Any]], None]:
    return functools.partial(_audit, request, "store.call")


async def _may_call(
    request: Request, name: str, principal: Annotated[Principal, Depends(require(None))]
) -> None:
    """The ``functions:call`` scope, checked before the body is read as every scope is,
    with one thing more: a refused call is a store.call event, as over MCP and on the
    command line."""
    if not principal.allows("functions:call"):
        refusal = lacking("functions:call")
        call_recorded(function_store(request), name, None, _call_audit(request), refusal)


@router.post(
    "/v1/functions/{name}/call",
    dependencies=[Depends(_may_call)],
    responses=errors(400, 404, 422, 429, 504),
    summary="Call a vetted function in the sandbox",
)
async def call_stored_function(request: Request, name: str, body: CallBody) -> dict[str, Any]:
    """Runs the vetted callable function ``name`` with ``arguments`` in the sandbox (no
    network, limits, store.call_timeout_s); 422 when it raises, 504 when it hangs, 429
    (Retry-After) when so many calls run and wait that it would have to wait behind them."""
    store = function_store(request)
    audit = _call_audit(request)

    def work(stop: threading.Event) -> tuple[Snippet, CallResult]:
        return call_recorded(store, name, body.arguments, audit, stop=stop)

    try:
        # A caller that goes away stops its call: it holds a thread the next one waits for.
        running = store.calls.run(work, store.settings.store.call_timeout_s)
        snippet, result = await cancel_on_disconnect(request, running)
    except OverloadedError as exc:
        call_recorded(store, name, body.arguments, audit, exc)  # recorded, then raised: 429
        raise
    return {
        "object": "function.result",
        "name": name,
        "snippet": snippet.reference,
        "result": result.result,
        "duration_s": round(result.duration_s, 4),
    }
