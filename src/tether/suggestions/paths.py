"""Where a patch may write: inside the project, never through ``..``, a symlink or ``.git``,
nor to a name Windows reads as a device or a file's stream.

A patch names its file in its header; a crafted patch (or a prompt-injected workflow that
makes one) could name ``../outside.py`` or ``/etc/profile``. The same rule holds for the
``path`` a client sends to ``POST /v1/suggestions``, so a server never writes such a
header in the first place.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path, PurePosixPath

from tether.errors import PatchError

# A relative path of segments that are none of "", ".", "..", ".git" (in any case: the
# same folder on macOS and Windows), with no backslash, control character or line break
# (it is written into a patch's header lines), written without look-arounds so it can stand
# in the OpenAPI document as is. ``check_relative`` also refuses what Windows reads as
# .git (".git.", "GIT~1") or as a device ("nul.txt"), which a pattern without look-arounds
# cannot say.
# C0 and C1 controls, line and paragraph separators, zero-width and bidi controls (which
# make a name read as another), the byte-order mark, and ":" (on Windows, "a.py:x" is a
# hidden stream of a.py, and "c:x" a path on drive C).
_NOT = r"/\\\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff:"
_SEGMENT = (
    rf"(?:[^{_NOT}.][^{_NOT}]*"  # not starting with "."
    rf"|\.[^{_NOT}.gG][^{_NOT}]*"  # ".x…"
    rf"|\.\.[^{_NOT}]+"  # "..x…"
    # ".g…", but not ".git"
    rf"|\.[gG](?:[^{_NOT}iI][^{_NOT}]*|[iI](?:[^{_NOT}tT][^{_NOT}]*|[tT][^{_NOT}]+)?)?)"
)
SAFE_PATH = rf"^{_SEGMENT}(?:/{_SEGMENT})*$"
_SAFE = re.compile(SAFE_PATH)


# The names Windows keeps for devices, in any case and whatever follows a dot ("nul.txt",
# "con.tar.gz"): a file so named there opens the device instead.
_DEVICES = frozenset(
    {"con", "prn", "aux", "nul", "conin$", "conout$"}
    | {f"{port}{n}" for port in ("com", "lpt") for n in "0123456789\u00b9\u00b2\u00b3"}
)


def windows_device(name: str) -> str | None:
    """The device that ``name``, one part of a path, opens on Windows; None for a file."""
    stem = name.split(".", 1)[0].rstrip(" ")  # Windows drops a name's last spaces too
    return stem.upper() if stem.lower() in _DEVICES else None


def check_relative(path: str) -> str:
    """``path`` when it is a plain relative path inside a project, else a PatchError."""
    parts = PurePosixPath(path).parts
    if _SAFE.fullmatch(path) and not _in_git(parts) and not any(map(windows_device, parts)):
        return path  # (fullmatch, not match: "$" passes a last "\n")
    device = next(filter(None, map(windows_device, parts)), None)
    if path.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", path):
        why = "it is absolute"
    elif ".." in PurePosixPath(path.replace("\\", "/")).parts:
        why = "it climbs out with '..'"
    elif _in_git(PurePosixPath(path.replace("\\", "/")).parts):
        why = "it is inside .git"
    elif ":" in path:
        raise PatchError(
            f"refusing path {path!r}: on Windows a ':' in a name makes a write go to a hidden "
            "stream of a file, or to a drive; rename the file"
        )
    elif device is not None:
        raise PatchError(
            f"refusing path {path!r}: on Windows it names the device {device}, whatever its "
            "extension, and a write would go to the device; rename the file"
        )
    else:
        why = (
            "use a plain relative path: no empty or '.' parts, backslashes, control or "
            "invisible characters, or line breaks"
        )
    raise PatchError(f"refusing path {path!r}: {why}; tether writes only inside the project")


def project_root(start: Path) -> Path:
    """The git work tree around ``start``, else ``start`` itself."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--show-toplevel"], cwd=start, capture_output=True, check=False
        )
    except OSError:
        return start.resolve()  # no git here: the folder itself is the project
    # As the system spells names: the locale's text (ASCII in the C locale with UTF-8 mode
    # off) took a folder named beyond it for a file that is not UTF-8.
    top = os.fsdecode(done.stdout.rstrip(b"\n"))
    return Path(top).resolve() if done.returncode == 0 and top else start.resolve()


def inside(root: Path, path: str) -> Path:
    """``root / path`` with every symlink followed, if that stays inside ``root`` and out
    of ``.git``; a PatchError naming ``path`` otherwise."""
    check_relative(path)
    root = root.resolve()
    target = (root / path).resolve()
    if not target.is_relative_to(root):
        raise PatchError(
            f"refusing path {path!r}: through a symlink it leads to {target}, outside the "
            f"project {root}; tether writes only inside the project"
        )
    if _in_git(target.relative_to(root).parts):
        raise PatchError(f"refusing path {path!r}: it leads into .git")
    return target


def _in_git(parts: tuple[str, ...]) -> bool:
    """Whether a part names .git as some file system reads it: in any case, with the dots
    and spaces Windows drops from a name's end, or as its short name GIT~1."""
    return any(part.rstrip(". ").lower() in (".git", "git~1") for part in parts)
