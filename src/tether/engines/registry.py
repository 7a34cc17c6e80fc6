"""Build the configured engine."""

from __future__ import annotations

from tether.engines.base import Engine
from tether.errors import ConfigError
from tether.models import resolve_model_path
from tether.settings import Settings


def build_engine(settings: Settings) -> Engine:
    kind = settings.engine.kind
    if kind == "llamacpp":
        from tether.engines.llamacpp import LlamaCppEngine

        model_path = resolve_model_path(settings.engine.model_path)
        return LlamaCppEngine(settings.engine, model_path, settings.data.home / "cache")
    if kind == "openai":
        from tether.engines.openai import OpenAIEngine

        if not settings.upstream.base_urls:
            raise ConfigError(
                "engine.kind = 'openai' needs upstream.base_urls, e.g. "
                "TETHER_UPSTREAM_BASE_URLS=http://127.0.0.1:8000/v1"
            )
        return OpenAIEngine(settings.upstream, settings.engine)
    raise ConfigError(f"unknown engine.kind {kind!r}")  # pragma: no cover - Literal-checked
