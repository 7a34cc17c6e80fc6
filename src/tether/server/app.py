"""Build the FastAPI application around one engine, which the lifespan always closes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI

from tether import __version__
from tether.engines.base import Engine, EngineStats
from tether.pipeline import Pipeline
from tether.plugins import build_manager
from tether.server.errors import install_error_handlers
from tether.server.metrics import Metrics, MetricsMiddleware
from tether.server.middleware import AssumeJsonBody
from tether.server.routes import check, fim, openai, ops, suggestions, tabby, tokens
from tether.server.serving import ServerState
from tether.settings import Settings
from tether.tokens import TokenStore


def build_app(settings: Settings, token: str, engine_factory: Callable[[], Engine]) -> FastAPI:
    """The app; the engine is made by ``engine_factory`` at startup and closed at shutdown.

    ``token`` is the admin token (every scope); others are issued through /v1/tokens.
    """
    token_store = TokenStore()
    token_store.add_admin(token)
    engine_ref: list[Engine] = []  # filled at startup; metrics read it at scrape time

    def engine_stats() -> EngineStats:
        return engine_ref[0].stats() if engine_ref else EngineStats()

    metrics = Metrics(engine_stats)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = engine_factory()
        engine_ref.append(engine)
        try:
            app.state.tether = ServerState(settings, Pipeline(engine, settings), metrics)
            yield
        finally:
            await engine.close()

    app = FastAPI(
        title="tether",
        version=__version__,
        description="Self-hosted AI coding assistant: OpenAI-compatible, FIM, Tabby and "
        "llama.cpp APIs over a local model.",
        lifespan=lifespan,
    )
    app.state.tokens = token_store
    install_error_handlers(app)
    for module in (ops, openai, fim, tabby, suggestions, check, tokens):
        app.include_router(module.router)
    build_manager(settings).hook.register_routes(app=app)
    app.add_middleware(AssumeJsonBody)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app
