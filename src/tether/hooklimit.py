"""A third-party plugin's request hook, called with a time limit.

Python cannot stop a thread. So each call runs in a daemon thread of its own, which the
caller waits on for at most ``plugins.hook_timeout_s``: past it the request fails, naming
the plugin and hook, and the call runs on in the background, counted here as stuck. No
thread of tether's own (the server's plugin pool, the command line's main thread) is
ever held longer than that. A plugin with STUCK_CALLS_MAX calls still stuck is not
called again until some end: each call would leave one more thread behind for good.
"""

from __future__ import annotations

import contextvars
import logging
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tether.errors import PluginTimeoutError
from tether.plugin_output import plugin_output

# The hooks a request calls; those that run as tether starts are not limited.
REQUEST_HOOKS = frozenset({"govern_prompt", "compress_context", "check_completion"})
# As many as the server's plugin pool has threads: what one plugin may leave behind.
STUCK_CALLS_MAX = 32

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StuckCall:
    """A hook call that ran past its time and has not ended yet."""

    plugin: str
    hook: str
    started: float  # time.monotonic() when it was called
    thread: threading.Thread


_stuck: list[StuckCall] = []
_lock = threading.Lock()


def stuck_calls() -> list[StuckCall]:
    """The calls still running past their time, oldest first, in this process."""
    with _lock:
        _stuck[:] = [call for call in _stuck if call.thread.is_alive()]
        return list(_stuck)


def call_within(
    function: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    plugin: str,
    hook: str,
    timeout_s: float,
) -> Any:
    """``function(*args, **kwargs)``, its result or its exception; a PluginTimeoutError
    if it takes longer than ``timeout_s`` or ``plugin`` has too many calls stuck."""
    held = [call for call in stuck_calls() if call.plugin == plugin]
    if len(held) >= STUCK_CALLS_MAX:
        oldest = held[0]
        raise PluginTimeoutError(
            f"plugin {plugin!r} is not called ({hook}): {len(held)} of its calls still run "
            f"past plugins.hook_timeout_s ({timeout_s:g} s), the oldest in {oldest.hook} "
            f"for {time.monotonic() - oldest.started:.0f} s, and Python cannot stop them; "
            "fix or disable it (plugins.enabled), then restart the server"
        )
    outcome: list[tuple[bool, Any]] = []

    def run() -> None:
        try:
            with plugin_output():
                outcome.append((True, function(*args, **kwargs)))
        except BaseException as exc:  # any, raised again in the caller's thread
            outcome.append((False, exc))

    context = contextvars.copy_context()  # what the caller's thread sees, as to_thread
    thread = threading.Thread(
        target=context.run, args=(run,), name=f"tether-hook-{plugin}", daemon=True
    )
    started = time.monotonic()
    thread.start()
    thread.join(timeout_s)
    if not outcome:
        with _lock:
            _stuck.append(StuckCall(plugin, hook, started, thread))
        frame = sys._current_frames().get(thread.ident or 0)
        where = "".join(traceback.format_stack(frame)[-3:]) if frame is not None else ""
        log.error(
            "plugin %r ran past plugins.hook_timeout_s (%g s) in %s; it runs on, at:\n%s",
            plugin,
            timeout_s,
            hook,
            where,
        )
        raise PluginTimeoutError(
            f"plugin {plugin!r} did not finish {hook} within plugins.hook_timeout_s "
            f"({timeout_s:g} s); Python cannot stop it, so it runs on in the background: "
            "fix or disable it (plugins.enabled), or raise the limit if it is only slow"
        )
    ok, value = outcome[0]
    if ok:
        return value
    raise value
