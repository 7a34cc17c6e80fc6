"""Calling a hook as tether starts, one plugin at a time, so a failure names its plugin."""

from __future__ import annotations

from typing import Any

import pluggy

from tether.errors import ConfigError, PluginFailedError


def call_each(hook: pluggy.HookCaller, what: str, **kwargs: Any) -> None:
    """Call each plugin's ``hook`` in turn, as the hook itself would: a plugin's exception
    is a ConfigError naming it, for hooks that run as tether starts (``what`` it failed
    to do), not an internal error of tether's."""
    impls = hook.get_hookimpls()
    if any(impl.hookwrapper or impl.wrapper for impl in impls):
        # A wrapper runs around the others, as only pluggy can call it: the hook is called
        # whole, and a failure named as the hook's.
        try:
            hook(**kwargs)
        except ConfigError:
            raise
        except Exception as exc:
            raise ConfigError(
                f"a plugin failed to {what}: {type(exc).__name__}: {exc}; fix or uninstall "
                "it, or remove it from plugins.enabled"
            ) from exc
        return
    for impl in reversed(impls):  # pluggy calls the last registered first
        try:
            impl.function(*(kwargs[arg] for arg in impl.argnames))
        except PluginFailedError as failed:  # as a request would see it: here, say more
            cause = failed.__cause__ or failed
            raise ConfigError(
                f"plugin {impl.plugin_name!r} failed to {what}: {type(cause).__name__}: "
                f"{cause}; fix or uninstall it, or remove it from plugins.enabled"
            ) from cause
        except ConfigError:
            raise
        except Exception as exc:
            raise ConfigError(
                f"plugin {impl.plugin_name!r} failed to {what}: {type(exc).__name__}: {exc}; "
                "fix or uninstall it, or remove it from plugins.enabled"
            ) from exc
