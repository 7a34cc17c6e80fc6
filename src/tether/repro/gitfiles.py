"""Generated files kept in git: a file's blob at a revision, and its manifest beside it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tether.errors import ConfigError

MANIFEST_SUFFIX = ".repro.json"


def _git(args: list[str], cwd: Path, data: bytes | None = None) -> bytes:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, input=data, capture_output=True, check=False)
    except OSError as exc:
        raise ConfigError(f"cannot run git ({exc}); install git to use --git") from exc
    if done.returncode != 0:
        raise ConfigError(
            f"`git {' '.join(args)}` failed: {done.stderr.decode(errors='replace').strip()}"
        )
    return done.stdout


def show(revision: str, path: str, cwd: Path) -> str:
    """The text of ``path`` at ``revision``."""
    return _git(["show", f"{revision}:{path}"], cwd).decode()


def blob_id(revision: str, path: str, cwd: Path) -> str:
    return _git(["rev-parse", f"{revision}:{path}"], cwd).decode().strip()


def hash_of(text: str, cwd: Path) -> str:
    """The blob id git gives these bytes."""
    return _git(["hash-object", "--stdin"], cwd, text.encode()).decode().strip()


def in_repository(path: str, cwd: Path) -> str:
    """``path`` (relative to ``cwd``, or absolute) relative to the repository's top, as git
    names it."""
    top = Path(os.fsdecode(_git(["rev-parse", "--show-toplevel"], cwd).strip())).resolve()
    full = Path(os.path.normpath(cwd / path))
    # The folder resolved as git resolves the top; the file itself may be a link git keeps.
    full = full.parent.resolve() / full.name
    try:
        return full.relative_to(top).as_posix()
    except ValueError:
        raise ConfigError(
            f"{path} is outside the git repository at {top}; give a file inside it"
        ) from None
