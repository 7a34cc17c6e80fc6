"""The built-in engines: embedded llama.cpp and OpenAI-compatible upstreams."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tether.engines.base import Engine
from tether.errors import ConfigError
from tether.hookspecs import hookimpl
from tether.models import resolve_model_path
from tether.settings import Settings


def _llamacpp(settings: Settings) -> Engine:
    from tether.engines.llamacpp import LlamaCppEngine

    model_path = resolve_model_path(settings.engine.model_path)
    return LlamaCppEngine(settings.engine, model_path, settings.data.home / "cache")


def _openai(settings: Settings) -> Engine:
    from tether.engines.openai import OpenAIEngine

    if not settings.upstream.base_urls:
        raise ConfigError(
            "engine.kind = 'openai' needs upstream.base_urls, e.g. "
            "TETHER_UPSTREAM_BASE_URLS=http://127.0.0.1:8000/v1"
        )
    return OpenAIEngine(settings.upstream, settings.engine)


@hookimpl
def register_engines(register: Callable[[str, Callable[..., Any]], None]) -> None:
    register("llamacpp", _llamacpp)
    register("openai", _openai)
