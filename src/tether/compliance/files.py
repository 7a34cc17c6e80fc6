"""Which files ``tether check`` and ``tether corpus index`` read, and how they are shown.

A folder expands to the files git would track (tracked or untracked, not ignored) when it
lies in a git work tree, else to every file under it outside hidden folders and
``node_modules``. A file named explicitly is always read.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Collection, Iterable, Iterator
from pathlib import Path

MAX_FILE_BYTES = 1 << 20  # larger files are generated or minified, not worth checking
_SKIPPED_DIRS = {"node_modules", "__pycache__"}


def walk(root: Path) -> Iterator[Path]:
    """Files under ``root`` in a stable order, skipping hidden folders and node_modules."""
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in _SKIPPED_DIRS)
        for name in sorted(files):
            yield Path(folder) / name


def read_source(path: Path) -> str | None:
    """The file's text, or None for one too large, unreadable or not UTF-8."""
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            return None
        return path.read_text(encoding="utf-8-sig")  # a BOM is not code
    except (OSError, UnicodeDecodeError):
        return None


def _git_files(root: Path) -> list[Path] | None:
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=root,
            capture_output=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    names = listed.stdout.decode("utf-8", errors="surrogateescape").split("\0")
    return sorted(root / name for name in names if name and (root / name).is_file())


def expand(paths: Iterable[Path], suffixes: Collection[str] | None) -> list[Path]:
    """Files named in ``paths``, folders expanded to their files with one of ``suffixes``
    (all files when None). A path that does not exist raises FileNotFoundError."""
    found: dict[Path, None] = {}
    for path in paths:
        if path.is_dir():
            listed = _git_files(path)
            for file in listed if listed is not None else walk(path):
                if suffixes is None or file.suffix.lower() in suffixes:
                    found[file] = None
        elif path.is_file():
            found[path] = None
        else:
            raise FileNotFoundError(path)
    return list(found)


def display_path(path: Path, base: Path | None = None) -> str:
    """``path`` relative to ``base`` (the working directory) when inside it, POSIX style."""
    base = (base or Path.cwd()).resolve()
    resolved = path.resolve()
    try:
        return resolved.relative_to(base).as_posix()
    except ValueError:
        return resolved.as_posix()
