"""Build the configured engine from the kinds that plugins register."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pluggy

from tether.engines.base import Engine
from tether.errors import ConfigError, TetherError
from tether.hookcalls import call_each
from tether.settings import Settings

log = logging.getLogger(__name__)


def engine_kinds(plugins: pluggy.PluginManager) -> dict[str, Callable[[Settings], Engine]]:
    """Each engine kind and its factory. Plugins are called last-registered first, and the
    first to register a kind has it: a third-party plugin may replace a built-in kind
    (``llamacpp``, ``openai``), which is announced as commands that replace ours are."""
    kinds: dict[str, Callable[[Settings], Engine]] = {}

    def register(name: str, factory: Callable[[Settings], Any]) -> None:
        if not isinstance(name, str) or not callable(factory):
            raise TypeError(f"register(kind, factory) takes a name and a callable, not {factory!r}")
        if name not in kinds:
            kinds[name] = factory
        elif kinds[name] is not factory:
            log.warning(
                "engine kind %r is registered twice: %s's is used, %s's is not",
                name,
                _module(kinds[name]),
                _module(factory),
            )

    call_each(plugins.hook.register_engines, "register its engines", register=register)
    return kinds


def _module(factory: Callable[..., Any]) -> str:
    return str(getattr(factory, "__module__", None) or repr(factory))


def engine_factory(
    settings: Settings, plugins: pluggy.PluginManager
) -> Callable[[Settings], Engine]:
    """What builds the configured ``engine.kind``; a ConfigError naming the kinds there
    are when no plugin registers it."""
    kinds = engine_kinds(plugins)
    kind = settings.engine.kind
    if kind not in kinds:
        raise ConfigError(f"unknown engine.kind {kind!r}; available: {', '.join(sorted(kinds))}")
    return kinds[kind]


def build_engine(settings: Settings, plugins: pluggy.PluginManager) -> Engine:
    factory = engine_factory(settings, plugins)
    kind = settings.engine.kind
    try:
        return factory(settings)
    except TetherError:  # the engine's own word on what is wrong (a model, a setting)
        raise
    except Exception as exc:
        fix = (
            "`tether doctor` checks the model and the engine's settings"
            if _module(factory).startswith("tether.")
            else "fix the plugin that registers it, or set another engine.kind"
        )
        raise ConfigError(
            f"the {kind!r} engine failed to start: {type(exc).__name__}: {exc}; {fix}"
        ) from exc
