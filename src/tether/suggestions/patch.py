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


def _header_path(line: str, prefix: str) -> str:
    name = line[4:].split("\t")[0].strip()
    return name.removeprefix(prefix)


def patch_target(patch: str) -> str:
    """The one file ``patch`` changes, as its headers name it (``a/``, ``b/`` dropped).

    tether's patches change one existing file in place: a patch that names two files,
    names different ones in ``---`` and ``+++``, or creates or deletes a file is refused.
    """
    lines = patch.splitlines()
    old = [_header_path(x, "a/") for x in lines if x.startswith("--- ")]
    new = [_header_path(x, "b/") for x in lines if x.startswith("+++ ")]
    if not new:
        raise PatchError(
            "not a unified diff: no '+++' line; pass a file written by `tether suggest`"
        )
    if len(new) > 1 or len(old) > 1:
        raise PatchError(
            f"the patch changes {len(new)} files ({', '.join(new)}); tether applies one "
            "file's patch at a time"
        )
    if old and old[0] != new[0]:
        raise PatchError(
            f"the patch names {old[0]!r} before and {new[0]!r} after; tether changes a "
            "file in place and does not create, delete or rename files"
        )
    return new[0]


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
