"""Unified diffs that tether writes itself and applies only when they still fit exactly.

The model returns code; the diff is built here with difflib, so a patch always applies to
the file it was made from, however the model phrased its answer. Applying checks every
context and removed line, so a file that changed since the review is refused, not mangled.
"""

from __future__ import annotations

import difflib

from tether.errors import PatchError
from tether.unidiff import parse_hunk_header

_NO_NEWLINE = "\\ No newline at end of file"


def make_patch(old: str, new: str, path: str) -> str:
    lines = difflib.unified_diff(
        old.splitlines(keepends=True),
        new.splitlines(keepends=True),
        fromfile=f"a/{path}",
        tofile=f"b/{path}",
    )
    out = []
    for line in lines:
        out.append(line)
        if not line.endswith("\n"):
            out.append("\n" + _NO_NEWLINE + "\n")
    return "".join(out)


def patch_target(patch: str) -> str:
    for line in patch.splitlines():
        if line.startswith("+++ "):
            target = line[4:].split("\t")[0].strip()
            return target[2:] if target.startswith("b/") else target
    raise PatchError("not a unified diff: no '+++' line; pass a file written by `tether suggest`")


def apply_patch(old: str, patch: str) -> str:
    source = old.splitlines(keepends=True)
    lines = patch.splitlines(keepends=True)
    result: list[str] = []
    cursor = 0  # index into source of the next line not yet copied
    i = 0
    while i < len(lines) and not lines[i].startswith("@@"):
        i += 1
    if i == len(lines):
        raise PatchError("the patch has no hunks")
    while i < len(lines):
        header = parse_hunk_header(lines[i])
        if header is None:
            raise PatchError(f"line {i + 1} of the patch is not a hunk header: {lines[i]!r}")
        start = header.old_start
        old_start = start - 1 if start > 0 else 0
        if old_start < cursor:
            raise PatchError(f"hunk at line {i + 1} overlaps the previous one")
        result.extend(source[cursor:old_start])
        cursor = old_start
        i += 1
        while i < len(lines) and not lines[i].startswith("@@"):
            line = lines[i]
            tag, text = line[:1], line[1:]
            if i + 1 < len(lines) and lines[i + 1].rstrip("\n") == _NO_NEWLINE:
                text = text.removesuffix("\n")
            if tag in (" ", "-"):
                if cursor >= len(source) or source[cursor] != text:
                    raise PatchError(
                        f"the file no longer matches the patch at its line {cursor + 1}; "
                        "make a new suggestion for the current file"
                    )
                cursor += 1
                if tag == " ":
                    result.append(text)
            elif tag == "+":
                result.append(text)
            elif line.rstrip("\n") != _NO_NEWLINE:
                raise PatchError(f"unexpected line {i + 1} in the patch: {line!r}")
            i += 1
    result.extend(source[cursor:])
    return "".join(result)
