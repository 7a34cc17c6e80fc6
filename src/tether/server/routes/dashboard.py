"""The web dashboard: its page at /ui and the /v1/dashboard API behind it.

Every API route needs the ``dashboard`` scope; a trace's prompt and answer also need
``audit:read``, a snippet's code ``store:read``, and vetting goes through
/v1/snippets/{id}/vet with ``store:vet``. The page is static files from the package, sent
with a strict Content-Security-Policy: it loads nothing from anywhere else and runs no
inline script.
"""

from __future__ import annotations

import asyncio
import time
import unicodedata
from importlib import resources
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, Response

from tether import __version__
from tether.compliance import Checker
from tether.dashboard import queries
from tether.errors import ForbiddenError, NotFoundError, RequestError
from tether.evals.store import EvalStore
from tether.server.auth import require
from tether.server.openapi import AUTHENTICATED, errors
from tether.server.routes.audit import audit_log
from tether.server.routes.snippets import function_store
from tether.server.routes.traces import trace_store
from tether.server.routing import ApiRoute, known_query_only
from tether.server.serving import state_of
from tether.tokens import Principal
from tether.usage.ledger import ledger_path
from tether.usage.prices import price_table
from tether.usage.reader import LedgerReader
from tether.usage.report import as_csv, build_report, future_start, parse_when


def _no_store(response: Response) -> None:
    """Prompts, answers and audit records must not stay in the browser's disk cache after
    the viewer logs out: no dashboard answer is stored."""
    response.headers["Cache-Control"] = "no-store"


router = APIRouter(
    route_class=ApiRoute,
    prefix="/v1/dashboard",
    tags=["dashboard"],
    responses=errors(*AUTHENTICATED, 400, 404),
    dependencies=[Depends(known_query_only), Depends(_no_store)],
)
Viewer = Annotated[Principal, Depends(require("dashboard"))]
# A span before now (30d, 12h, 90m, 2w), a date or a date-time, as `tether usage report`;
# parse_when refuses anything else with a message that lists these forms.
When = Annotated[str, Query(max_length=40, description="30d, 12h, 2026-11-01, 2026-11-01T09:30Z")]
Period = Literal["24h", "7d", "30d", "365d"]
_PERIODS = {"24h": (86_400, 3600), "7d": (7 * 86_400, 3600), "30d": (30 * 86_400, 86_400),
            "365d": (365 * 86_400, 86_400)}  # fmt: skip

STATIC = resources.files("tether.dashboard").joinpath("static")
_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html"}
_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self' "
    "'unsafe-inline'; img-src 'self' data: blob:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
pages = APIRouter(route_class=ApiRoute, include_in_schema=False)


@pages.get("/ui")
@pages.get("/ui/")
async def page(request: Request) -> HTMLResponse:
    """The page names its files relative to where it is (``static/app.js`` from /ui/,
    ``ui/static/app.js`` from /ui), never from "/": behind a proxy that serves tether under
    a path (``location /tether/``), "/ui/static/app.js" would be the proxy's, and the page
    blank."""
    html = STATIC.joinpath("index.html").read_text()
    if not request.url.path.endswith("/"):
        html = html.replace('="static/', '="ui/static/')
    return HTMLResponse(html, headers=_HEADERS)


@pages.get("/ui/static/{name}")
async def asset(name: str) -> Response:
    suffix = "." + name.rpartition(".")[2]
    if "/" in name or suffix not in _TYPES or not STATIC.joinpath(name).is_file():
        raise NotFoundError(f"no dashboard file {name!r}")
    return Response(STATIC.joinpath(name).read_bytes(), media_type=_TYPES[suffix], headers=_HEADERS)


async def _reader(request: Request) -> LedgerReader:
    """The ledger, once the rows queued so far are written: off the event loop, as the
    wait can be long (a ledger another process holds locked)."""
    writer = getattr(request.app.state, "usage_ledger", None)
    path = ledger_path(state_of(request).settings)

    def opened() -> LedgerReader:
        if writer is not None:
            writer.flush()  # a report asked for right after a request counts it
        return LedgerReader(path)

    return await asyncio.to_thread(opened)


@router.get("/session")
async def session(request: Request, viewer: Viewer) -> dict[str, Any]:
    """Who is looking, and what their token lets the page show."""
    info = state_of(request).pipeline.engine.info()
    return {
        "principal": viewer.name,
        "scopes": sorted(viewer.scopes),
        "can": {
            "content": viewer.allows("audit:read"),
            "code": viewer.allows("store:read"),
            "vet": viewer.allows("store:vet"),
        },
        "model": info.model_id,
        "version": __version__,
        "usage_recorded": state_of(request).settings.usage.enabled,
        "traces_recorded": state_of(request).settings.traces.enabled,
    }


@router.get("/overview")
async def overview(request: Request, _: Viewer, period: Period = "24h") -> dict[str, Any]:
    """Requests, tokens, errors and latency percentiles over time, and the engine now."""
    span, bucket = _PERIODS[period]
    with await _reader(request) as reader:
        now = time.time()
        series = await asyncio.to_thread(reader.series, now - span, now, bucket)
    engine = state_of(request).pipeline.engine
    stats, info = engine.stats(), engine.info()
    upstreams: list[dict[str, Any]] = getattr(engine, "upstream_status", list)()
    return {
        "period": period,
        **series,
        "live": {
            "queue_depth": stats.queue_depth,
            "in_flight": stats.in_flight,
            "engine": {
                "engine": info.engine,
                "model": info.model_id,
                "ready": await engine.health(),
            },
            "upstreams": upstreams,
        },
    }


@router.get(
    "/usage",
    responses={200: {"content": {"application/json": {}, "text/csv": {}}}},
)
async def usage(
    request: Request,
    _: Viewer,
    since: When = "30d",
    until: When | None = None,
    by: Literal["principal", "model", "day", "endpoint"] = "principal",
    format: Literal["json", "csv"] = "json",
) -> Any:
    """The usage and cost report (tether usage report) as JSON or CSV."""
    settings = state_of(request).settings
    now = time.time()
    start = parse_when(since, now=now, option="since")
    end = parse_when(until, now=now, option="until") if until else now
    if not until:
        future_start(since, start, now, option="since")
    elif start >= end and "since" not in request.query_params:
        raise RequestError(
            f"the period is empty: without since it starts {since} before now, which is not "
            f"before until {until}; give since as well",
            param="since",
        )
    with await _reader(request) as reader:
        report = await asyncio.to_thread(
            build_report, reader, settings, price_table(settings), since=start, until=end, by=by
        )
    if format == "csv":
        return PlainTextResponse(
            as_csv(report),
            media_type="text/csv",
            headers={
                "Content-Disposition": f'attachment; filename="tether-usage-{by}.csv"',
                "Cache-Control": "no-store",  # a Response returned whole skips _no_store
            },
        )
    return report.as_json()


@router.get("/funnel")
async def funnel(
    request: Request,
    _: Viewer,
    period: Period = "30d",
    by: Literal["language", "principal", "model"] = "language",
) -> dict[str, Any]:
    """Completions served and what editors did with them (Tabby's view/select/dismiss)."""
    with await _reader(request) as reader:
        now = time.time()
        return await asyncio.to_thread(reader.funnel, now - _PERIODS[period][0], by, now)


@router.get("/traces")
async def traces(
    request: Request,
    _: Viewer,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    before: Annotated[str | None, Query(max_length=300)] = None,
    since: When | None = None,
    principal: Annotated[str | None, Query(max_length=200)] = None,
    endpoint: Annotated[str | None, Query(max_length=200)] = None,
    finding: Annotated[str | None, Query(max_length=200)] = None,
) -> dict[str, Any]:
    """Trace summaries, newest first; ``next`` is the ``before`` of the following page."""
    start = parse_when(since, now=time.time(), option="since") if since else None
    store = await asyncio.to_thread(trace_store, request)
    found = await asyncio.to_thread(
        store.search,
        limit=limit + 1,
        before=queries.parse_cursor(before),
        since=start,
        # As principals are kept: composed, so a name pasted from macOS finds its traces.
        principal=unicodedata.normalize("NFC", principal) if principal else None,
        endpoint=endpoint,
        rule=finding,
    )
    more = len(found) > limit
    found = found[:limit]
    return {"data": found, "next": queries.cursor_of(found[-1]) if more and found else None}


@router.get("/traces/facets")
async def trace_facets(request: Request, _: Viewer) -> dict[str, list[str]]:
    store = await asyncio.to_thread(trace_store, request)
    return await asyncio.to_thread(store.facets)


@router.get("/traces/{trace_id}")
async def trace(
    request: Request, viewer: Viewer, trace_id: Annotated[str, Path(max_length=200)]
) -> dict[str, Any]:
    """One trace: timeline, policy decisions, findings, snippets, whether it still matches
    its audit record; the text with audit:read."""
    log = getattr(request.app.state, "audit", None)
    return await asyncio.to_thread(
        queries.trace_detail,
        await asyncio.to_thread(trace_store, request),
        trace_id,
        viewer.allows("audit:read"),
        log,
    )


@router.get("/audit")
async def audit(request: Request, _: Viewer) -> dict[str, Any]:
    """Checkpoints over time and the verifier key the server offers."""
    return await asyncio.to_thread(queries.audit_overview, audit_log(request).folder)


@router.get("/audit/proof/{seq}")
async def audit_proof(
    request: Request, viewer: Viewer, seq: Annotated[int, Path(ge=0, le=2**62)]
) -> dict[str, Any]:
    """A record's bytes and its inclusion proof against the latest signed checkpoint."""
    log = audit_log(request)
    content = state_of(request).settings.audit.content
    if content != "commitment" and not viewer.allows("audit:read"):
        raise ForbiddenError(
            f"audit records here hold {content} prompts and answers (audit.content), so "
            "reading one needs the 'audit:read' scope too"
        )
    proof = log.inclusion_proof(seq)
    record = await asyncio.to_thread(queries.record_bytes, log.folder, seq)
    if not viewer.allows("audit:read") and queries.holds_fingerprints(record):
        raise ForbiddenError(
            f"audit record {seq} holds fingerprints of values the policy matched, which a "
            "list of guesses turns back into the values, so reading it needs the "
            "'audit:read' scope too"
        )
    return queries.audit_proof(proof, record)


@router.get("/store")
async def store(
    request: Request,
    _: Viewer,
    status: Literal["candidate", "vetted", "rejected", "retired", "all"] = "candidate",
    q: Annotated[str, Query(max_length=200)] = "",
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0,
) -> dict[str, Any]:
    """The vetting queue (or another state) with each snippet's quick gates, a page at a
    time: ``total`` says how many there are, ``next_offset`` where the next page starts."""
    settings = state_of(request).settings

    def listed() -> tuple[list[dict[str, Any]], int]:
        with Checker.from_settings(settings) as checker:
            return queries.store_list(
                function_store(request),
                checker,
                settings.store.licences,
                status,
                q.strip(),
                limit,
                offset,
            )

    rows, total = await asyncio.to_thread(listed)
    more = offset + len(rows) < total
    return {"data": rows, "total": total, "offset": offset,
            "next_offset": offset + len(rows) if more else None}  # fmt: skip


@router.get("/store/{snippet_id}")
async def snippet(
    request: Request, viewer: Viewer, snippet_id: Annotated[int, Path(ge=1, le=2**63 - 1)]
) -> dict[str, Any]:
    """A snippet's gates, decisions and the diff from its previous version; its code and
    the diff with store:read."""
    settings = state_of(request).settings

    def detail() -> dict[str, Any]:
        with Checker.from_settings(settings) as checker:
            return queries.store_detail(
                function_store(request),
                checker,
                settings.store.licences,
                snippet_id,
                viewer.allows("store:read"),
            )

    return await asyncio.to_thread(detail)


def _evals(request: Request) -> EvalStore:
    return EvalStore.from_settings(state_of(request).settings)


@router.get("/evals")
async def evals(request: Request, _: Viewer) -> dict[str, Any]:
    """Evaluation runs, newest first, with pass@1."""
    with _evals(request) as store:
        return {"runs": queries.eval_runs(store)}


@router.get("/evals/compare")
async def evals_compare(
    request: Request,
    _: Viewer,
    a: Annotated[str, Query(min_length=1, max_length=100)],
    b: Annotated[str, Query(min_length=1, max_length=100)],
) -> dict[str, Any]:
    """B against A on the tasks both ran, and the tasks whose outcome changed."""
    with _evals(request) as store:
        return queries.eval_compare(store, a, b)


@router.get("/evals/{run_id}")
async def eval_run(
    request: Request, _: Viewer, run_id: Annotated[str, Path(min_length=1, max_length=100)]
) -> dict[str, Any]:
    """A run's outcome per task."""
    with _evals(request) as store:
        return queries.eval_run(store, run_id)
