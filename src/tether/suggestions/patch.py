"""Unified diffs that tether writes itself and applies only where their lines still fit.

The model returns code; the diff is built here with difflib, so a patch always applies to
the file it was made from, however the model phrased its answer. Applying reads every hunk
against the line counts of its header, so a patch cut short or edited out of shape is
refused, and checks every context and removed line, so a file whose changed lines changed
again since the review is refused, not mangled. A file changed elsewhere (an import added
above a hunk) takes each hunk to the one place where its lines now stand whole, where
``git apply`` puts it too; lines that stand in two places are refused, where git takes
the nearer, which need not be the one the patch was made for. A hunk with less context
after its change than the patch shows elsewhere stops at the file's end, as git applies
them: so a patch that adds at the end, applied twice, is refused instead of adding again.

A patch with no context at all (``diff -U0``, ``git diff -U0``) places its hunks by their
line numbers alone, as ``patch`` and ``git apply --unidiff-zero`` do: a hunk with no old
lines goes after the line its header names, so "@@ -0,0 +1,N @@" puts N lines at the top
of the file. The same header is how a diff adds to an empty file; such a patch alone is
refused where the file already holds exactly its lines, which is what applying it a second
time would find. Where the patch shows context elsewhere, "@@ -0,0" can only mean an empty
file, and a file no longer empty is refused. Lines are cut after "\\n" only: a "\\r\\n"
ending, a lone "\\r" or a form feed stays part of its line, byte for byte.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass

from tether.errors import PatchError
from tether.unidiff import NO_NEWLINE, HunkHeader, parse_hunk_header, unified_diff

_REMAKE = "the patch is cut short or was edited by hand; make a new suggestion"


def split_lines(text: str) -> list[str]:
    """``text`` cut after each "\\n", endings kept; the last line may lack one."""
    lines = text.split("\n")
    last = lines.pop()
    return [line + "\n" for line in lines] + ([last] if last else [])


def make_patch(old: str, new: str, path: str) -> str:
    # A name with a space ends with a tab, as git writes it: GNU patch reads a header's
    # name up to the first blank otherwise, and finds no file.
    end = "\t" if " " in path else ""
    return unified_diff(split_lines(old), split_lines(new), f"a/{path}{end}", f"b/{path}{end}")


@dataclass(frozen=True)
class Hunk:
    at: int  # line of its header in the patch, for errors
    header: HunkHeader
    old: list[str]  # its context and removed lines, as the file has them
    new: list[str]  # its context and added lines, as the file will have them
    lead: int  # context lines before its first change
    trail: int  # context lines after its last change


@dataclass(frozen=True)
class Patch:
    old_names: list[str]  # the files its "---" headers name, "a/" dropped
    new_names: list[str]  # the files its "+++" headers name, "b/" dropped
    hunks: list[Hunk]


def _header_path(line: str, prefix: str) -> str:
    name = line[4:].split("\t")[0].strip()
    return name.removeprefix(prefix)


def _counts(header: HunkHeader) -> str:
    return f"-{header.old_start},{header.old_count} +{header.new_start},{header.new_count}"


def _read_hunk(lines: list[str], i: int) -> tuple[Hunk, int]:
    """The hunk whose header is ``lines[i]``, and the index of the line after it."""
    at = i + 1
    header = parse_hunk_header(lines[i])
    if header is None:
        raise PatchError(f"line {at} of the patch is not a hunk header: {lines[i]!r}; {_REMAKE}")
    if (
        (header.old_start == 0 and header.old_count > 0)
        or (header.new_start == 0 and header.new_count > 0)
        or header.old_count == header.new_count == 0
    ):
        raise PatchError(f"the hunk header at line {at} of the patch is impossible: {lines[i]!r}")
    old: list[str] = []
    new: list[str] = []
    tags = ""  # the tag of each of its lines, in order
    last = ""  # the tag of the hunk's previous line
    ended = ""  # the sides ("-", "+") whose last line has no newline
    i += 1
    while i < len(lines):
        line = lines[i]
        tag, text = line[:1], line[1:]
        if tag == "\\":  # "\ No newline at end of file", of the line before
            if not last or last in ended or (last == " " and ended):
                raise PatchError(f"line {i + 1} of the patch marks no line; {_REMAKE}")
            if last in " -":
                old[-1] = old[-1].removesuffix("\n")
            if last in " +":
                new[-1] = new[-1].removesuffix("\n")
            ended += "-+" if last == " " else last
        elif len(old) == header.old_count and len(new) == header.new_count:
            break
        elif line.startswith("@@"):
            break  # the next hunk, before this one is whole: reported below
        elif tag not in (" ", "-", "+"):
            raise PatchError(
                f"line {i + 1} of the patch is not a line of the hunk at line {at} "
                f"(' ', '-' or '+' first): {line!r}; {_REMAKE}"
            )
        elif not line.endswith("\n"):
            raise PatchError(f"the patch stops in the middle of its line {i + 1}; {_REMAKE}")
        else:
            if (tag in " -" and len(old) == header.old_count) or (
                tag in " +" and len(new) == header.new_count
            ):
                raise PatchError(
                    f"the hunk at line {at} of the patch has more lines than its header "
                    f"{_counts(header)} says; {_REMAKE}"
                )
            if (tag in " -" and "-" in ended) or (tag in " +" and "+" in ended):
                raise PatchError(
                    f"line {i + 1} of the patch follows a line marked {NO_NEWLINE!r}, "
                    f"which must be the file's last; {_REMAKE}"
                )
            if tag in " -":
                old.append(text)
            if tag in " +":
                new.append(text)
            tags += tag
            last = tag
        i += 1
    if len(old) < header.old_count or len(new) < header.new_count:
        raise PatchError(
            f"the hunk at line {at} of the patch ends after {len(old)} old and {len(new)} "
            f"new lines, but its header {_counts(header)} promises {header.old_count} and "
            f"{header.new_count}; {_REMAKE}"
        )
    lead = len(tags) - len(tags.lstrip(" "))
    return Hunk(at, header, old, new, lead, len(tags) - len(tags.rstrip(" "))), i


def parse_patch(patch: str) -> Patch:
    """``patch`` read into its file headers and hunks, each hunk checked against its header.

    Lines before the first header (git's ``diff --git``, ``index``) are skipped; a line
    between hunks that looks like a hunk's line means a hunk is longer than its header.
    """
    lines = split_lines(patch)
    old_names: list[str] = []
    new_names: list[str] = []
    hunks: list[Hunk] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("@@"):
            if not new_names:
                break  # a hunk before any "+++" line: reported as no diff below
            hunk, i = _read_hunk(lines, i)
            hunks.append(hunk)
            continue
        if line.startswith("--- "):
            old_names.append(_header_path(line, "a/"))
        elif line.startswith("+++ "):
            new_names.append(_header_path(line, "b/"))
        elif hunks and line[:1] in (" ", "-", "+", "\\"):
            raise PatchError(
                f"the hunk at line {hunks[-1].at} of the patch has more lines than its "
                f"header {_counts(hunks[-1].header)} says; line {i + 1} is {line!r}; {_REMAKE}"
            )
        i += 1
    if not new_names:
        raise PatchError(
            "not a unified diff: no '+++' line; pass a file written by `tether suggest`"
        )
    return Patch(old_names, new_names, hunks)


def patch_target(patch: str) -> str:
    """The one file ``patch`` changes, as its headers name it (``a/``, ``b/`` dropped).

    tether's patches change one existing file in place: a patch that names two files,
    names different ones in ``---`` and ``+++``, or creates or deletes a file is refused.
    """
    parsed = parse_patch(patch)
    old, new = parsed.old_names, parsed.new_names
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


@dataclass(frozen=True)
class Move:
    """A hunk placed away from the line its header names, its lines found whole there."""

    hunk: int  # line of its header in the patch
    by: int  # lines lower in the file (negative: higher)


@dataclass(frozen=True)
class Placed:
    text: str
    moves: tuple[Move, ...] = ()


def apply_patch(old: str, patch: str) -> str:
    """``old`` with ``patch`` applied: as ``place_patch``, the text alone."""
    return place_patch(old, patch).text


def place_patch(old: str, patch: str) -> Placed:
    """``old`` with ``patch`` applied; a PatchError, and nothing half done, unless every
    hunk is whole, in order, and finds its lines where its header says, or, where the file
    changed elsewhere since, at the one other place that holds them whole (``moves``),
    where ``git apply`` puts them too. Lines that stand in two places are refused, not
    guessed at. A hunk that begins the file stays there, one that ends it must still end
    it, and one with no context is placed by its line numbers alone."""
    hunks = parse_patch(patch).hunks
    if not hunks:
        raise PatchError("the patch has no hunks")
    source = split_lines(old)
    # The context the patch shows around a change: 0 for `git diff -U0`, whose hunks
    # place by their line numbers alone; less than that after a change means the file ends.
    context = max(max(hunk.lead, hunk.trail) for hunk in hunks)
    if hunks[0].header.old_start == 0 and source:
        if context:
            raise PatchError(
                "the file no longer matches the patch: the patch was made for an empty file, "
                "and the file is no longer empty; make a new suggestion for the current file"
            )
        if len(hunks) == 1 and source == hunks[0].new:
            raise PatchError(
                "the file no longer matches the patch: it already holds exactly the lines "
                "the patch adds at its top, as after applying it once (a patch made for an "
                "empty file reads the same); make a new suggestion for the current file"
            )
    try:
        return Placed("".join(_applied(source, hunks)))
    except PatchError:
        pass
    undo = [_reversed(hunk) for hunk in hunks]
    if not isinstance(_attempt(source, undo, moving=False), PatchError):
        raise PatchError(_ALREADY)
    # The file changed elsewhere since (an import added above a change): the patch's lines
    # may stand moved as they were, or, applied already, as it leaves them.
    forward, backward = _attempt(source, hunks, moving=True), _attempt(source, undo, moving=True)
    if isinstance(forward, PatchError):
        if not isinstance(backward, PatchError):
            raise PatchError(_ALREADY)
        raise forward
    if isinstance(backward, PatchError):
        return forward
    # Both: a patch that removes one of two copies of some lines reads so before it is
    # applied, one that adds a copy after. The nearer reading wins; a tie is not guessed.
    ahead, behind = (sum(abs(move.by) for move in way.moves) for way in (forward, backward))
    if behind < ahead:
        raise PatchError(_ALREADY)
    if ahead == behind:
        raise PatchError(
            "the file changed since the patch was made, and it now holds the patch's lines "
            "both as they were and as the patch leaves them: it cannot tell whether the "
            "patch is applied; the file was left as it is; make a new suggestion for the "
            "current file"
        )
    return forward


_ALREADY = (
    "the patch is already applied: the file holds every change it makes, as after applying "
    "it once; the file was left as it is"
)


def _attempt(source: list[str], hunks: list[Hunk], *, moving: bool) -> Placed | PatchError:
    moves: list[Move] | None = [] if moving else None
    try:
        text = "".join(_applied(source, hunks, moves))
    except PatchError as refusal:
        return refusal
    return Placed(text, tuple(moves or ()))


def _reversed(hunk: Hunk) -> Hunk:
    """The hunk that undoes ``hunk``: what applies to a file it was applied to."""
    h = hunk.header
    header = HunkHeader(h.new_start, h.new_count, h.old_start, h.old_count)
    return Hunk(hunk.at, header, hunk.new, hunk.old, hunk.lead, hunk.trail)


def _applied(source: list[str], hunks: list[Hunk], moves: list[Move] | None = None) -> list[str]:
    """The lines of ``source`` with ``hunks`` applied, or a PatchError saying where they
    do not fit; with ``moves``, a hunk whose lines are not where its header says goes to
    the one place that holds them whole, and is added to ``moves``."""
    context = max(max(hunk.lead, hunk.trail) for hunk in hunks)
    lines = _Lines(source)
    result: list[str] = []
    cursor = 0  # index into source of the next line not yet copied
    shift = 0  # how far the hunk before was moved
    for hunk in hunks:
        header = hunk.header
        # With no old lines, the start names the line the hunk goes after.
        start = header.old_start if header.old_count == 0 else header.old_start - 1
        offset = 0
        # One that begins the file, or shows no context to find it by, stays put.
        if moves is not None and context and header.old_start > 1 and hunk.lead >= context:
            place = _place(lines, hunk, start, cursor, shift, at_end=hunk.trail < context)
            offset = shift = place - start
            if offset:
                moves.append(Move(hunk.at, offset))
                start += offset
        if start < cursor:
            raise PatchError(
                f"the hunk at line {hunk.at} of the patch overlaps or comes before the one "
                f"above it; {_REMAKE}"
            )
        result.extend(source[cursor:start])
        lands = len(result) + (1 if header.new_count else 0)
        if header.new_start + offset != lands:
            raise PatchError(
                f"the hunk at line {hunk.at} of the patch says it starts at line "
                f"{header.new_start} of the changed file, but it lands at line {lands}; "
                f"{_REMAKE}"
            )
        found = source[start : start + len(hunk.old)]
        if found != hunk.old:
            gone = next(
                (n for n, (a, b) in enumerate(zip(found, hunk.old, strict=False)) if a != b),
                len(found),
            )
            raise PatchError(
                f"the file no longer matches the patch at its line {start + gone + 1}"
                f"{_line_ends_differ(found, hunk.old)}make a new suggestion for the "
                "current file"
            )
        result.extend(hunk.new)
        cursor = start + len(hunk.old)
        if hunk.trail < context and cursor < len(source):
            raise PatchError(
                f"the file no longer matches the patch: the hunk at line {hunk.at} of the "
                f"patch ends at the end of the file, but the file goes on after its line "
                f"{cursor}; make a new suggestion for the current file"
            )
    result.extend(source[cursor:])
    if any(not line.endswith("\n") for line in result[:-1]):
        raise PatchError(
            f"the patch marks a line {NO_NEWLINE!r} that is not the file's last; {_REMAKE}"
        )
    return result


def _line_ends_differ(found: list[str], wanted: list[str]) -> str:
    """Why lines that differ only in how they end do not match, or "; ": a patch saved by
    an editor or checked out by git with ``core.autocrlf`` has "\\r\\n" where the file
    has "\\n" (or the file was converted since), and "no longer matches" named no cause."""
    if len(found) != len(wanted) or found == wanted:
        return "; "
    if [line.rstrip("\r\n") for line in found] != [line.rstrip("\r\n") for line in wanted]:
        return "; "
    return (
        ": its lines differ from the patch's only in their line ends (CRLF against LF), "
        "as when an editor or git's core.autocrlf converted the patch or the file; give "
        "both the same line ends and apply it again, or "
    )


def _place(lines: _Lines, hunk: Hunk, start: int, cursor: int, shift: int, *, at_end: bool) -> int:
    """Where ``hunk``'s lines stand, at ``cursor`` or later: where its header says while
    nothing before it moved, else the one place that holds them (at the file's end, for a
    hunk that ends it); ``start`` where none does, for the caller to say what differs."""
    source, old = lines.source, hunk.old
    if at_end:
        end = len(source) - len(old)
        return end if end >= cursor and _holds(source, end, old) else start
    if not shift and start >= cursor and _holds(source, start, old):
        return start
    places = lines.places(old, cursor, most=2)
    if len(places) > 1:
        raise PatchError(
            f"the file changed since the patch was made, and the lines of the hunk at line "
            f"{hunk.at} of the patch now stand at its lines {places[0] + 1} and "
            f"{places[1] + 1}: it cannot tell which to change; make a new suggestion for "
            "the current file"
        )
    return places[0] if places else start


class _Lines:
    """A file's lines, and where each stands: built on the first search, once per file."""

    def __init__(self, source: list[str]) -> None:
        self.source = source
        self._at: dict[str, list[int]] | None = None

    def places(self, lines: list[str], lowest: int, most: int) -> list[int]:
        """Up to ``most`` places, from ``lowest`` on, that hold ``lines`` whole."""
        if self._at is None:
            self._at = {}
            for number, line in enumerate(self.source):
                self._at.setdefault(line, []).append(number)
        at = self._at
        # Looked for by its rarest line: blank ones stand everywhere.
        index, rarest = min(enumerate(lines), key=lambda item: len(at.get(item[1], ())))
        found: list[int] = []
        where = at.get(rarest, [])
        for number in where[bisect_left(where, lowest + index) :]:
            if _holds(self.source, number - index, lines):
                found.append(number - index)
                if len(found) == most:
                    break
        return found


def _holds(source: list[str], place: int, lines: list[str]) -> bool:
    return source[place : place + len(lines)] == lines
