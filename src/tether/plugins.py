"""The plugin manager: built-in plugins always, third-party ones only when enabled by name.

Third-party plugins are entry points of the ``tether`` group; nothing is imported unless
``plugins.enabled`` names it, so installing a package never changes behaviour by itself.
Only the top level (the server app, a CLI command) builds a manager; library code is
handed the one it needs.
"""

from __future__ import annotations

import functools
import importlib.metadata
import inspect
import logging
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import pluggy

from tether import hookspecs
from tether.default_plugins import compliance, context, engines, policy
from tether.errors import ConfigError, PluginFailedError, PluginTimeoutError, TetherError
from tether.hooklimit import REQUEST_HOOKS, STUCK_CALLS_MAX, call_within
from tether.pipeline.fim import ContextSnippet
from tether.pipeline.reviews import CompletionReview, PromptReview
from tether.plugin_output import plugin_output
from tether.settings import PluginSettings, Settings

ENTRY_POINT_GROUP = "tether"
log = logging.getLogger(__name__)


def build_manager(settings: Settings) -> PluginManager:
    """The built-ins (policy and compliance as the settings configure them), then the
    third-party plugins that ``plugins.enabled`` names."""
    manager = bare_manager(settings.plugins.hook_timeout_s)
    manager.register(engines, name="tether.engines")
    manager.register(
        context.ContextCompressor(settings.generation.compress_context), name="tether.context"
    )
    if settings.policy.enabled:
        manager.register(policy.PolicyPlugin.from_settings(settings), name=policy.NAME)
    if settings.compliance.enabled:
        manager.register(compliance.CompliancePlugin.from_settings(settings), name=compliance.NAME)
    register_plugins(manager, enabled_plugins(settings))
    return manager


class PluginManager(pluggy.PluginManager):
    """pluggy's manager, knowing tether's hooks, how long a request's hook may take, and
    how many calls of each third-party hook failed (for /metrics)."""

    def __init__(self, hook_timeout_s: float) -> None:
        super().__init__("tether")
        self.add_hookspecs(hookspecs)
        self.hook_timeout_s = hook_timeout_s  # plugins.hook_timeout_s
        self._failures: Counter[tuple[str, str, str]] = Counter()
        self._lock = threading.Lock()  # hooks fail in the plugin pool's threads at once

    def count_failure(self, plugin: str, hook: str, kind: str) -> None:
        """One more call of ``plugin``'s ``hook`` failed: ``kind`` error or timeout."""
        with self._lock:
            self._failures[plugin, hook, kind] += 1

    def failures(self) -> dict[tuple[str, str, str], int]:
        """(plugin, hook, kind) -> calls that failed so, since the manager was built."""
        with self._lock:
            return dict(self._failures)


def bare_manager(
    hook_timeout_s: float = PluginSettings.model_fields["hook_timeout_s"].default,
) -> PluginManager:
    """A manager that knows the hooks and holds no plugin yet."""
    return PluginManager(hook_timeout_s)


def register_plugins(manager: PluginManager, plugins: list[tuple[str, Any]]) -> None:
    """Register the third-party ``plugins``; a ConfigError naming the plugin for one that
    cannot be: a name or module registered already, a hook whose arguments tether does
    not pass, or a hook tether does not have (a misspelt ``govern_promt`` would otherwise
    never run, and a policy plugin would quietly do nothing)."""
    fix = "fix or uninstall it, or remove it from plugins.enabled"
    for name, plugin in plugins:
        if name.startswith("tether."):  # the built-ins' names: they are trusted as such
            raise ConfigError(
                f"plugin {name!r} is named as a built-in (tether.*); give its entry point "
                "another name"
            )
        try:
            manager.register(plugin, name=name)
        except pluggy.PluginValidationError as exc:
            raise ConfigError(f"plugin {name!r} does not fit tether's hooks: {exc}; {fix}") from exc
        except ValueError as exc:  # the name, or the module under another name
            raise ConfigError(
                f"plugin {name!r} cannot be registered ({exc}); name each plugin once in "
                "plugins.enabled, and not as a built-in (tether.*)"
            ) from exc
        _name_failures(manager, name, plugin)
        try:
            manager.check_pending()
        except pluggy.PluginValidationError as exc:
            known = ", ".join(sorted(h for h in dir(manager.hook) if not h.startswith("_")))
            raise ConfigError(
                f"plugin {name!r} implements a hook tether does not have ({exc}); tether's "
                f"hooks: {known}; {fix}"
            ) from exc


def _name_failures(manager: PluginManager, name: str, plugin: Any) -> None:
    """Make each hook of ``plugin`` raise, for any error of its own, a PluginFailedError
    that names it (its traceback logged), rather than an internal error of tether's; and
    a request's hook, a PluginTimeoutError past ``plugins.hook_timeout_s``."""
    for caller in manager.get_hookcallers(plugin) or []:
        timeout_s = manager.hook_timeout_s if caller.name in REQUEST_HOOKS else None
        for impl in caller.get_hookimpls():
            if impl.plugin is plugin and timeout_s and (impl.hookwrapper or impl.wrapper):
                # It would run around tether's own policy and past any time limit.
                raise ConfigError(
                    f"plugin {name!r} wraps the request hook {caller.name}; a request's hooks "
                    "are called one plugin at a time, after tether's policy: make it a plain "
                    "@hookimpl (tryfirst or trylast to choose its place), or disable it "
                    "(plugins.enabled)"
                )
            if impl.plugin is plugin and not (impl.hookwrapper or impl.wrapper):
                impl.function = _naming(  # type: ignore[misc]
                    impl.function, name, caller.name, timeout_s, manager.count_failure
                )


def _naming(
    function: Callable[..., Any],
    plugin: str,
    hook: str,
    timeout_s: float | None,
    on_failure: Callable[[str, str, str], None],
) -> Callable[..., Any]:
    @functools.wraps(function)
    def named(*args: Any, **kwargs: Any) -> Any:
        try:
            return checked(*args, **kwargs)
        except PluginFailedError as failed:  # counted wherever a plugin is named as failed
            timed_out = isinstance(failed, PluginTimeoutError)
            on_failure(plugin, hook, "timeout" if timed_out else "error")
            raise

    def failed(exc: BaseException) -> PluginFailedError:
        log.error("plugin %r failed in %s", plugin, hook, exc_info=exc)
        return PluginFailedError(
            f"plugin {plugin!r} failed in {hook} ({type(exc).__name__}); its traceback is "
            "logged (a server's log, a command's standard error): fix or disable it "
            "(plugins.enabled)"
        )

    def in_its_thread(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except KeyboardInterrupt as exc:  # no Ctrl-C is delivered here: it is the plugin's
            raise failed(exc) from exc

    def checked(*args: Any, **kwargs: Any) -> Any:
        prompt = next((a for a in args if isinstance(a, PromptReview)), None)
        names = tuple(prompt.parts) if prompt is not None else ()
        try:
            if timeout_s is None:  # a hook as tether starts, in the caller's thread
                with plugin_output():
                    result = function(*args, **kwargs)
            else:  # in a thread of its own, from the main thread too (`tether check`)
                result = call_within(
                    in_its_thread, args, kwargs, plugin=plugin, hook=hook, timeout_s=timeout_s
                )
        except TetherError:  # the plugin's own word to the client (a refusal, a block)
            raise
        # sys.exit() in a hook ends no server. Python delivers Ctrl-C to the main thread
        # only: a KeyboardInterrupt elsewhere (a server's plugin pool) is the plugin's own.
        except (Exception, SystemExit, KeyboardInterrupt) as exc:
            if (
                isinstance(exc, KeyboardInterrupt)
                and threading.current_thread() is threading.main_thread()
            ):
                raise
            raise failed(exc) from exc
        # What it changed is read by tether's code next, which would fail on it unnamed.
        damage = next(
            (
                a.damage(names) if isinstance(a, PromptReview) else a.damage()
                for a in args
                if isinstance(a, PromptReview | CompletionReview)
            ),
            None,
        )
        if damage is not None:
            log.error("plugin %r broke its review in %s: %s", plugin, hook, damage)
            raise PluginFailedError(
                f"plugin {plugin!r} broke its review in {hook}: {damage}; fix or disable it "
                "(plugins.enabled)"
            )
        if hook == "compress_context" and not _snippets_or_none(result):
            log.error("plugin %r returned %r from compress_context", plugin, result)
            raise PluginFailedError(
                f"the compress_context plugin returned {type(result).__name__}, not a list of "
                f"ContextSnippet (or None, to leave it to the next): plugin {plugin!r}; fix or "
                "disable it (plugins.enabled)"
            )
        return result

    return named


def _snippets_or_none(result: object) -> bool:
    return result is None or (
        isinstance(result, list) and all(isinstance(s, ContextSnippet) for s in result)
    )


def enabled_plugins(settings: Settings) -> list[tuple[str, Any]]:
    """The third-party plugins named by ``plugins.enabled``, loaded; a ConfigError naming
    the plugin when one is missing or fails to import."""
    if not settings.plugins.enabled:
        return []
    offers: dict[str, dict[str, importlib.metadata.EntryPoint]] = {}
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        offers.setdefault(ep.name, {})[_origin(ep)] = ep
    loaded = []
    for name in dict.fromkeys(settings.plugins.enabled):  # a name given twice, once
        if name not in offers:
            raise ConfigError(
                f"plugin {name!r} is enabled but not installed; installed tether plugins: "
                f"{', '.join(sorted(offers)) or 'none'} (fix plugins.enabled)"
            )
        if len(offers[name]) > 1:  # which one loaded would hang on the order of sys.path
            raise ConfigError(
                f"plugin {name!r} is offered by {len(offers[name])} installed packages: "
                f"{'; '.join(sorted(offers[name]))}; uninstall all but the one you mean"
            )
        (entry,) = offers[name].values()
        try:
            with plugin_output():  # what it prints as it is imported
                loaded.append((name, entry.load()))
        except (Exception, SystemExit) as exc:  # any error in its import is the plugin's
            raise ConfigError(
                f"plugin {name!r} ({entry.value}) failed to load: "
                f"{type(exc).__name__}: {exc}; fix or uninstall it, or remove it from "
                "plugins.enabled"
            ) from exc
    return loaded


def _origin(entry: importlib.metadata.EntryPoint) -> str:
    """Where an entry point comes from: its package, where known, and what it loads."""
    dist = entry.dist
    return f"{dist.name} ({entry.value})" if dist is not None else entry.value


def hooks_reference() -> str:
    """Markdown list of the hooks, generated from hookspecs.py (docs/plugins.md)."""
    from tether.pipeline.service import PLUGIN_THREADS  # the pool's size, said as it is

    lines = [
        "# Plugin hooks",
        "",
        "Generated from `src/tether/hookspecs.py` and `src/tether/engines/base.py` by",
        "`python -m tether.plugins`; a test keeps it in step. Plugins are entry points of",
        "the `tether` group, loaded only when",
        "`plugins.enabled` names them; `examples/tether-example-plugin` is a working one.",
        "",
        "What a plugin may import is exported by the `tether` package itself:",
        "`from tether import hookimpl, Finding, PromptReview, CompletionReview, ...`.",
        "",
        "A server calls a third-party plugin's `govern_prompt`, `check_completion` and (as a",
        "request is prepared) `compress_context` in a pool of "
        f"{PLUGIN_THREADS} threads of their own, off",
        "its event loop, so that a slow one holds up only the requests that wait for that",
        "pool, not health checks, the dashboard or the audit log: they must be safe to call",
        "from several threads at once.",
        "",
        "Each call of those three hooks runs in a thread of its own (so thread-local state",
        "does not last from one call to the next) and may take at most",
        "`plugins.hook_timeout_s` (30 s unless set): past it the request fails with HTTP",
        "504 `plugin_timeout`, naming the plugin and hook, and a command fails the same way.",
        "Python cannot stop a thread, so the call runs on in the background, holding",
        f"whatever it holds; a plugin with {STUCK_CALLS_MAX} calls still running so is not",
        "called again until some of them end (its requests fail at once, with the same",
        "error): only a restart of the server is rid of them.",
        "",
        "What a plugin prints, as it is imported or in a hook, goes to standard error:",
        "standard output carries what machines read (`--json`, `tether mcp`'s JSON-RPC).",
        "",
        "A server's `/metrics` counts the calls of each plugin's hooks that failed their",
        "request, by `kind` (`error` or `timeout`), in",
        "`tether_plugin_failures_total{plugin,hook,kind}`, and those still running past",
        "their time in `tether_plugin_calls_stuck{plugin,hook}`.",
        "",
    ]
    for name, function in inspect.getmembers(hookspecs, inspect.isfunction):
        if not hasattr(function, "tether_spec"):
            continue
        signature = str(inspect.signature(function)).replace("'", "")
        doc = inspect.getdoc(function) or ""
        lines += [f"## `{name}{signature}`", "", doc, ""]
    return "\n".join(lines + _engines_reference())


def _engines_reference() -> list[str]:
    """What an engine that ``register_engines`` adds implements (``tether.engines.base``)."""
    from tether.engines import base

    lines = [
        "# Engines",
        "",
        "An engine kind's factory is called with the settings and returns an object with",
        "the methods of `tether.engines.base.Engine`; the types it takes and gives are in",
        "that module. It runs on the server's event loop: what blocks there (a network",
        "call without `await`, a long computation) holds up every request, so do that work",
        "in a thread. Its `print()` is not sent to standard error as a hook's is: write to",
        "a logger.",
        "",
    ]
    optional = [  # getmembers gives them by name
        (name, cls)
        for name, cls in inspect.getmembers(base, inspect.isclass)
        if getattr(cls, "_is_runtime_protocol", False) and cls.__module__ == base.__name__
    ]
    for name, protocol in [("Engine", base.Engine), *optional]:
        title = f"`{name}`" + (" (optional)" if protocol is not base.Engine else "")
        lines += [f"## {title}", "", inspect.getdoc(protocol) or "", ""]
        for name, function in vars(protocol).items():
            if name.startswith("_") or not inspect.isfunction(function):
                continue
            signature = str(inspect.signature(function)).replace("'", "").replace("self, ", "")
            prefix = "async " if inspect.iscoroutinefunction(function) else ""
            lines += [f"- `{prefix}{name}{signature.replace('(self)', '()')}`"]
            doc = inspect.getdoc(function)
            lines += [f"  {line}".rstrip() for line in (doc or "").splitlines()]
        lines += [""]
    return lines


if __name__ == "__main__":
    print(hooks_reference(), end="")
