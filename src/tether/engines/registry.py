"""Build the configured engine from the kinds that plugins register."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tether.engines.base import Engine
from tether.errors import ConfigError
from tether.plugins import build_manager
from tether.settings import Settings


def engine_kinds(settings: Settings) -> dict[str, Callable[..., Any]]:
    kinds: dict[str, Callable[..., Any]] = {}
    build_manager(settings, configured=False).hook.register_engines(
        register=lambda name, factory: kinds.setdefault(name, factory)
    )
    return kinds


def build_engine(settings: Settings) -> Engine:
    kinds = engine_kinds(settings)
    kind = settings.engine.kind
    if kind not in kinds:
        raise ConfigError(f"unknown engine.kind {kind!r}; available: {', '.join(sorted(kinds))}")
    engine: Engine = kinds[kind](settings)
    return engine
