"""Reading a text file someone named: an error that names it when it is not UTF-8."""

from __future__ import annotations

from pathlib import Path

from tether.errors import RequestError


def read_text(path: Path, *, exact: bool = False) -> str:
    """The UTF-8 text of ``path``, with its line endings as Python reads them (``\\n``),
    or exactly as stored when ``exact`` (a file to patch keeps its ``\\r\\n``)."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RequestError(
            f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start}); "
            "pass a text file, or save it as UTF-8"
        ) from None
    return text if exact else text.replace("\r\n", "\n").replace("\r", "\n")
