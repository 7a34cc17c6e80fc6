"""What a third-party plugin prints goes to standard error, never into tether's output.

Standard output carries what machines read: ``--json`` answers, ``tether mcp``'s JSON-RPC
stream. A plugin's ``print()`` as it is imported or in a hook would corrupt it, so while
plugin code runs, its thread's writes to ``sys.stdout`` are sent to ``sys.stderr``.

``contextlib.redirect_stdout`` would not do: it swaps ``sys.stdout`` for the whole
process, so tether's own output written meanwhile in another thread (a server's other
requests, a command's main thread) would go astray, and two hooks ending out of order,
or one that never ends, would leave it swapped for good. Here ``sys.stdout`` is wrapped
once, and the wrapper asks, on each write, whether its thread runs plugin code.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Iterator
from typing import Any, TextIO

_in_plugin = threading.local()


def _plugin_writing() -> bool:
    return getattr(_in_plugin, "active", False)


class _PluginsToStderr:
    """``sys.stdout``, less what threads running plugin code write: that goes to stderr."""

    def __init__(self, out: TextIO) -> None:
        self._out = out

    def _target(self) -> TextIO:
        return sys.stderr if _plugin_writing() else self._out

    def write(self, text: str) -> int:
        return self._target().write(text)

    def writelines(self, lines: Any) -> None:
        self._target().writelines(lines)

    def flush(self) -> None:
        self._target().flush()

    def __getattr__(self, name: str) -> Any:  # the rest (encoding, isatty, buffer) as is
        return getattr(self._out, name)


def own_stdout() -> Any:
    """``sys.stdout`` as tether set it, without the wrapper (to ask what it is)."""
    out = sys.stdout
    return out._out if isinstance(out, _PluginsToStderr) else out


@contextlib.contextmanager
def plugin_output() -> Iterator[None]:
    """Within, what this thread writes to ``sys.stdout`` goes to ``sys.stderr``."""
    if not isinstance(sys.stdout, _PluginsToStderr) and sys.stdout is not None:
        sys.stdout = _PluginsToStderr(sys.stdout)
    was = _plugin_writing()
    _in_plugin.active = True
    try:
        yield
    finally:
        _in_plugin.active = was
