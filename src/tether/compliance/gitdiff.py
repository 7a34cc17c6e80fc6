"""What changed since a git revision: files and the line numbers added or modified.

The working tree (staged or not) is compared with the revision; files git does not track
yet count as changed in full. Deleted files are left out, as there is nothing to check.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from tether.errors import ToolError
from tether.unidiff import parse_hunk_header

# None: every line of the file is new.
ChangedLines = dict[Path, set[int] | None]


def _git(args: list[str], cwd: Path) -> str:
    try:
        done = subprocess.run(
            ["git", "-c", "core.quotePath=false", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            encoding="utf-8",
            errors="surrogateescape",
            check=False,
        )
    except OSError as exc:
        raise ToolError(f"cannot run git ({exc}); install git to use --diff") from exc
    if done.returncode != 0:
        raise ToolError(
            f"`git {' '.join(args[:3])}` failed: {done.stderr.strip()}; run inside a git "
            "work tree and name a revision that exists (write --diff=REV before the paths)"
        )
    return done.stdout


def parse_diff(diff: str, top: Path) -> ChangedLines:
    """Added line numbers per file from ``git diff --unified=0`` output."""
    changed: ChangedLines = {}
    current: set[int] | None = None
    for line in diff.splitlines():
        if line.startswith("+++ "):
            name = line[4:]
            current = None
            if name != "/dev/null":
                current = changed.setdefault(top / name.removeprefix("b/"), set())
        elif current is not None and (hunk := parse_hunk_header(line)):
            current.update(range(hunk.new_start, hunk.new_start + hunk.new_count))
    return changed


def changed_lines(revision: str, cwd: Path) -> ChangedLines:
    """Changed files (absolute) and their changed lines, against ``revision``."""
    top = Path(_git(["rev-parse", "--show-toplevel"], cwd).strip())
    diff = _git(
        [
            "diff",
            "--unified=0",
            "--no-color",
            "--no-ext-diff",
            "--diff-filter=ACMR",
            revision,
            "--",
        ],
        top,
    )
    changed = parse_diff(diff, top)
    untracked = _git(["ls-files", "-z", "--others", "--exclude-standard"], top)
    for name in filter(None, untracked.split("\0")):
        changed[top / name] = None
    return {path: lines for path, lines in changed.items() if lines is None or lines}
