"""The plugin manager: default plugins always, third-party ones only when enabled by name.

Third-party plugins are entry points of the ``tether`` group; nothing is imported unless
``plugins.enabled`` names it, so installing a package never changes behaviour by itself.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Iterable
from functools import lru_cache

import pluggy

from tether import hookspecs
from tether.errors import ConfigError

ENTRY_POINT_GROUP = "tether"
DEFAULT_PLUGINS = (
    "tether.default_plugins.engines",
    "tether.default_plugins.context",
)


def build_manager(enabled: Iterable[str] = ()) -> pluggy.PluginManager:
    manager = pluggy.PluginManager("tether")
    manager.add_hookspecs(hookspecs)
    for name in DEFAULT_PLUGINS:
        manager.register(importlib.import_module(name), name=name)
    wanted = list(enabled)
    available = {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}
    for name in wanted:
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


@lru_cache(maxsize=16)
def _cached(enabled: tuple[str, ...]) -> pluggy.PluginManager:
    return build_manager(enabled)


def plugin_manager(enabled: Iterable[str] = ()) -> pluggy.PluginManager:
    """The manager for this set of enabled plugins, built once per process."""
    return _cached(tuple(enabled))


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
