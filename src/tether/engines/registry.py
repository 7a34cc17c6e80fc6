"""Build the configured engine from the kinds that plugins register."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

from tether.engines.base import Engine
from tether.errors import ConfigError
from tether.settings import Settings


def engine_kinds(plugins: pluggy.PluginManager) -> dict[str, Callable[[Settings], Engine]]:
    kinds: dict[str, Callable[[Settings], Engine]] = {}

    def register(name: str, factory: Callable[[Settings], Any]) -> None:
        kinds.setdefault(name, factory)

    plugins.hook.register_engines(register=register)
    return kinds


def build_engine(settings: Settings, plugins: pluggy.PluginManager) -> Engine:
    kinds = engine_kinds(plugins)
    kind = settings.engine.kind
    if kind not in kinds:
        raise ConfigError(f"unknown engine.kind {kind!r}; available: {', '.join(sorted(kinds))}")
    return kinds[kind](settings)
