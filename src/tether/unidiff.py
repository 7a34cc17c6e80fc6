"""Unified diffs: writing them, and reading their hunk headers (patch application and
``git diff`` parsing)."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

NO_NEWLINE = "\\ No newline at end of file"
# Digits 0-9 only (re.ASCII), as diff and git write them: \d alone takes any script's.
_HUNK_HEADER = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@", re.ASCII)


@dataclass(frozen=True)
class HunkHeader:
    old_start: int
    old_count: int
    new_start: int
    new_count: int


def parse_hunk_header(line: str) -> HunkHeader | None:
    """The numbers of an ``@@ -a,b +c,d @@`` line (a missing count is 1), or None."""
    match = _HUNK_HEADER.match(line)
    if match is None:
        return None
    old_start, old_count, new_start, new_count = match.groups()
    return HunkHeader(int(old_start), int(old_count or 1), int(new_start), int(new_count or 1))


def unified_diff(old: list[str], new: list[str], fromfile: str, tofile: str, n: int = 3) -> str:
    """The unified diff of two lists of lines (each with its ending), with git's marker
    after a last line that has none, so that every line of the diff ends."""
    out = []
    for line in difflib.unified_diff(old, new, fromfile=fromfile, tofile=tofile, n=n):
        out.append(line)
        if not line.endswith("\n"):
            out.append("\n" + NO_NEWLINE + "\n")
    return "".join(out)
