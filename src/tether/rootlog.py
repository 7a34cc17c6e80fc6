"""Keep libraries from setting up the root logger as they load.

Some set it up on import or construction (wordllama calls ``logging.basicConfig(level=INFO)``
when imported, the MCP SDK when it builds a server), which would print every library's
INFO lines (httpx's requests among them) on a command's stderr and a second copy of the
server's own log lines. tether's logging is its own (``tether.server.runner``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def root_logger_kept() -> Iterator[None]:
    """Undo, on leaving, what the code inside did to the root logger's handlers and level."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        for handler in [h for h in root.handlers if h not in handlers]:
            root.removeHandler(handler)
        root.setLevel(level)
