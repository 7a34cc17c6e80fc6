"""The plugin manager: default plugins always, third-party ones only when enabled by name.

Third-party plugins are entry points of the ``tether`` group; nothing is imported unless
``plugins.enabled`` names it, so installing a package never changes behaviour by itself.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from collections.abc import Callable
from typing import Any

import pluggy

from tether import hookspecs
from tether.errors import ConfigError
from tether.settings import Settings

ENTRY_POINT_GROUP = "tether"
DEFAULT_PLUGINS = (
    "tether.default_plugins.engines",
    "tether.default_plugins.context",
)
# Built-ins that need settings: each module's ``plugin_for(settings)`` returns the plugin
# object, or None when the settings switch it off.
CONFIGURED_PLUGINS: tuple[str, ...] = (
    "tether.default_plugins.policy",
    "tether.default_plugins.compliance",
)


def build_manager(settings: Settings, *, configured: bool = True) -> pluggy.PluginManager:
    """Default plugins, the configured built-ins, then the third-party ones enabled by name.

    ``configured=False`` leaves out the built-ins that compile rules and open indexes, for
    callers that only collect engines or commands.
    """
    manager = pluggy.PluginManager("tether")
    manager.add_hookspecs(hookspecs)
    for name in DEFAULT_PLUGINS:
        manager.register(importlib.import_module(name), name=name)
    for name in CONFIGURED_PLUGINS if configured else ():
        factory: Callable[[Settings], Any] = importlib.import_module(name).plugin_for
        plugin = factory(settings)
        if plugin is not None:
            manager.register(plugin, name=name)
    available = {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}
    for name in settings.plugins.enabled:
        if name not in available:
            raise ConfigError(
                f"plugin {name!r} is enabled but not installed; installed tether plugins: "
                f"{', '.join(sorted(available)) or 'none'}"
            )
        try:
            plugin = available[name].load()
        except Exception as exc:  # a broken plugin must say which one it is
            raise ConfigError(f"plugin {name!r} failed to load: {exc}") from exc
        manager.register(plugin, name=name)
    return manager


def hooks_reference() -> str:
    """Markdown list of the hooks, generated from hookspecs.py (docs/plugins.md)."""
    import inspect

    lines = [
        "# Plugin hooks",
        "",
        "Generated from `src/tether/hookspecs.py` by `python -m tether.plugins`; a test keeps",
        "it in step. Plugins are entry points of the `tether` group, loaded only when",
        "`plugins.enabled` names them; `examples/tether-example-plugin` is a working one.",
        "",
    ]
    for name, function in inspect.getmembers(hookspecs, inspect.isfunction):
        if not hasattr(function, "tether_spec"):
            continue
        signature = str(inspect.signature(function)).replace("'", "")
        doc = (inspect.getdoc(function) or "").splitlines()[0]
        lines += [f"## `{name}{signature}`", "", doc, ""]
    return "\n".join(lines)


if __name__ == "__main__":
    print(hooks_reference(), end="")
