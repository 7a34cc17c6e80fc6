"""Reading a file to change and writing a patch or a patched file, byte for byte.

A file is read as the UTF-8 text it holds, "\\r\\n" endings and all, so its diff and the
patched file keep them. A write goes to a temporary file beside the target, which then
replaces it in one step: an interrupted run leaves the old file or the new one, never
part of either, and the target keeps its permissions.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from tether import textfile


def read_text(path: Path) -> str:
    """The text of ``path`` exactly as it is stored; its line endings are not translated."""
    return textfile.read_text(path, exact=True)


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` (or make it) with ``text`` in one step, keeping its mode."""
    path = path.resolve()  # through a symlink to the file it names, not over the link
    try:
        mode: int | None = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        mode = None  # a new file: the umask decides, as for any new file
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(text.encode("utf-8"))
            out.flush()
            os.fsync(out.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
