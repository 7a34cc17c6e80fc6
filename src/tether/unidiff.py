"""Reading unified diffs: hunk headers, shared by patch application and ``git diff`` parsing."""

from __future__ import annotations

import re
from dataclasses import dataclass

_HUNK_HEADER = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


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
