"""Build the FastAPI application around one engine, which the lifespan always closes."""

from __future__ import annotations

import inspect
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import IO, Any

from fastapi import APIRouter, FastAPI

from tether import __version__
from tether.audit import AuditLog
from tether.audit.sinks import sinks_from_settings
from tether.audit.webhook import WebhookSink
from tether.background import WRITES_CLOSE_WAIT_S
from tether.engines.base import Engine, EngineStats
from tether.limits import SpendRecorder
from tether.pipeline import Pipeline
from tether.pipeline.recording import AuditRecorder, TraceRecorder
from tether.plugins import PluginManager, build_manager
from tether.policy.scanner import prepare_folding
from tether.server.access import AccessLogMiddleware
from tether.server.audit_middleware import AuditMiddleware
from tether.server.draining import Drain
from tether.server.errors import install_error_handlers
from tether.server.mcp_mount import JsonRpcRefusals, McpGate, mcp_route
from tether.server.metrics import Metrics, MetricsMiddleware
from tether.server.middleware import AssumeJsonBody, BodyCheck
from tether.server.openapi import build_openapi
from tether.server.paths import RouteTable
from tether.server.plugin_routes import add_plugin_routes
from tether.server.routes import (
    apidocs,
    audit,
    check,
    dashboard,
    embeddings,
    fim,
    llamacpp,
    openai,
    ops,
    snippets,
    suggestions,
    tabby,
    tokens,
    traces,
)
from tether.server.serving import ServerState
from tether.server.usage_middleware import UsageMiddleware
from tether.settings import Settings
from tether.store import FunctionStore
from tether.tokens import TokenStore
from tether.traces import TraceStore
from tether.usage.energy import EnergyMeter
from tether.usage.ledger import LedgerWriter, UsageLedger

# How long a write to the function store waits for another process's (a sqlite3 shell, a
# command) before it is answered 503: store reads wait for it meanwhile.
STORE_WRITE_WAIT_MS = 1000


# FastAPI's own OpenTelemetry (0.165 and later) stays off: with FASTAPI_OTEL_AUTO_CONFIGURE
# and an OTLP endpoint in the environment, it would export every request's span out of
# the perimeter, which nothing in tether's settings asks for.
_WITHOUT_TELEMETRY: dict[str, Any] = (
    {"telemetry": {"tracing": False, "metrics": False, "logs": False, "auto_configure": False}}
    if "telemetry" in inspect.signature(FastAPI.__init__).parameters
    else {}
)


def build_app(
    settings: Settings,
    token: str,
    engine_factory: Callable[[], Engine],
    plugins: PluginManager | None = None,
    audit_lock: IO[bytes] | None = None,
) -> FastAPI:
    """The app; the engine is made by ``engine_factory`` at startup and closed at shutdown.

    ``token`` is the admin token (every scope); others are issued through /v1/tokens.
    ``plugins`` is the manager the engine was built with; one is made when none is given.
    ``audit_lock``: the audit log's lock, taken before the model loaded (``take_over``),
    which the log opens with at startup.
    """
    token_store = TokenStore()
    token_store.add_admin(token)
    plugins = plugins or build_manager(settings)  # one set for the routes and the pipeline
    engine_ref: list[Engine] = []  # filled at startup; metrics read it at scrape time

    def engine_stats() -> EngineStats:
        return engine_ref[0].stats() if engine_ref else EngineStats()

    metrics = Metrics(engine_stats, plugins.failures)
    store_ref: list[FunctionStore] = []  # opened at startup; the MCP tools read it
    mcp_gate = McpGate(lambda: store_ref[0])
    token_store.limiter.on_refused = lambda limit: metrics.rate_limited.labels(limit).inc()
    claims = [audit_lock] if audit_lock is not None else []

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        prepare_folding()
        engine = engine_factory()
        engine_ref.append(engine)
        trace_store = TraceStore.from_settings(settings)
        function_store = FunctionStore.open(settings, write_wait_ms=STORE_WRITE_WAIT_MS)
        store_ref.append(function_store)
        ledger = UsageLedger.from_settings(settings) if settings.usage.enabled else None
        meter = (
            EnergyMeter(settings.usage.powercap_dir, ledger.record_energy)
            if ledger is not None
            else None
        )
        sinks = sinks_from_settings(settings) if settings.audit.enabled else []
        metrics.webhook.backlog = next(
            (sink.backlog for sink in sinks if isinstance(sink, WebhookSink)), None
        )
        claim = claims.pop() if claims else None  # one start's: the log then closes it
        audit_log = AuditLog.open(settings, sinks, lock=claim) if settings.audit.enabled else None
        try:
            pipeline = Pipeline(engine, settings, plugins, retriever=function_store.retriever)
            if audit_log is not None:
                recorder = AuditRecorder(audit_log, engine.info())
                pipeline.recorders.append(recorder)
                app.state.audit_recorder = recorder
            pipeline.recorders.append(metrics)
            pipeline.recorders.append(
                SpendRecorder(token_store.limiter, metrics.count_principal_tokens)
            )
            tracer = TraceRecorder(trace_store, engine.info(), pipeline.templates)
            pipeline.recorders.append(tracer)
            app.state.trace_recorder = tracer
            app.state.audit = audit_log
            app.state.traces = trace_store
            app.state.store = function_store
            app.state.usage_ledger = LedgerWriter(ledger) if ledger is not None else None
            app.state.tether = ServerState(settings, pipeline, metrics)
            yield
        finally:
            await mcp_gate.close()
            metrics.webhook.backlog = None
            app.state.audit_recorder = None
            if audit_log is not None:
                audit_log.close()  # a last checkpoint, which the sinks still ship
            for sink in sinks:
                sink.close()
            # Writes waiting for a database another process holds locked wait this long in
            # all, so that the server still ends within its orchestrator's grace period.
            give_up_at = time.monotonic() + WRITES_CLOSE_WAIT_S
            if getattr(app.state, "trace_recorder", None) is not None:
                app.state.trace_recorder.close(give_up_at)
            trace_store.close()
            function_store.close()
            if meter is not None:
                meter.close()
            writer, app.state.usage_ledger = getattr(app.state, "usage_ledger", None), None
            if writer is not None:
                writer.close(give_up_at)  # writes the rows still queued, closes the ledger
            elif ledger is not None:
                ledger.close()
            await engine.close()

    app = FastAPI(
        title="tether",
        version=__version__,
        description="Self-hosted AI coding assistant: OpenAI-compatible, FIM, Tabby and "
        "llama.cpp APIs over a local model.",
        lifespan=lifespan,
        docs_url=None,  # served from the package by routes.apidocs
        redoc_url=None,  # ReDoc loads its script and fonts from the internet
        # A path with a trailing slash is an unknown route, as on OpenAI's API: the 307
        # Starlette answers with instead has no body, needs no token, and points at
        # http:// on whatever host the request named, behind a TLS proxy too.
        redirect_slashes=False,
        **_WITHOUT_TELEMETRY,
    )
    app.openapi = lambda: build_openapi(app)  # type: ignore[method-assign]
    app.state.tokens = token_store
    app.state.drain = Drain()  # the server's shutdown ends what is left through it
    install_error_handlers(app)
    # The routers' routes go into the app's own list, not through include_router: each
    # router included is a level that every request walks through to find its route.
    own = [route for router in own_routers() for route in router.routes]
    own += [mcp_route(mcp_gate), ops.ServerOptions()]
    app.router.routes += own
    app.state.route_table = RouteTable(own)
    add_plugin_routes(app, plugins, own)
    app.add_middleware(AssumeJsonBody)
    app.add_middleware(BodyCheck, max_bytes=int(settings.server.max_body_mb * 2**20))
    app.add_middleware(JsonRpcRefusals)  # around what refuses a body, /mcp's included
    app.add_middleware(AuditMiddleware, refuse_unrecorded=settings.audit.unwritable == "refuse")
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_middleware(UsageMiddleware, metrics=metrics)
    app.add_middleware(AccessLogMiddleware, log_format=settings.server.log_format)
    return app


def own_routers() -> list[APIRouter]:
    """Every router of tether's own, in the order they take requests."""
    return [
        *(
            module.router
            for module in (
                ops,
                openai,
                embeddings,
                fim,
                llamacpp,
                tabby,
                suggestions,
                check,
                tokens,
                traces,
                audit,
                snippets,
            )
        ),
        llamacpp.about,
        llamacpp.status,
        tabby.status,
        llamacpp.slot_actions,
        dashboard.router,
        dashboard.pages,
        apidocs.pages,
    ]
