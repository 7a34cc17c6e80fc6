"""What the next commit holds: the files the index changes, written out to be checked.

A git hook that checks the working tree checks what is not staged too, and misses what
is staged and changed again since. ``tether check --staged`` checks the index instead:
its changed files, as staged, are written into a folder of their own, laid out as in the
work tree, with the tools' settings files (also as staged), so that ruff reads the
settings the commit will have. Findings name the files as in the work tree.
"""

from __future__ import annotations

import contextlib
import dataclasses
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from tether.compliance.files import Skipped, is_binary
from tether.compliance.gitdiff import (
    ChangedLines,
    staged_lines,
    staged_named,
    top_level,
    write_staged,
)
from tether.compliance.report import FileFinding

# Read by ruff from each checked file's folder up; bandit and semgrep are given theirs.
_TOOL_SETTINGS = ("pyproject.toml", "ruff.toml", ".ruff.toml")


@dataclasses.dataclass(frozen=True)
class StagedFiles:
    """The index's changed files, written under ``root``; ``here`` is the working folder's
    place there, from which files are named."""

    top: Path  # of the work tree
    root: Path
    here: Path
    changed: ChangedLines  # by their paths under root

    def origin(self, copy: Path) -> Path:
        """The work tree's file that ``copy``, written under ``root``, stands for."""
        return self.top / copy.relative_to(self.root)

    def as_in_the_work_tree(self, found: Sequence[FileFinding]) -> list[FileFinding]:
        """Findings in files outside the working folder (named by an absolute path) named
        by their place in the work tree, not in the folder they were written to."""
        return [
            dataclasses.replace(f, path=str(self.origin(Path(f.path))))
            if Path(f.path).is_relative_to(self.root)
            else f
            for f in found
        ]


@contextlib.contextmanager
def staged_files(
    revision: str, cwd: Path, within: Sequence[Path], every_line: bool
) -> Iterator[tuple[StagedFiles, list[Skipped]]]:
    """The files the index adds or changes against ``revision`` inside ``within`` (folders
    or files of the work tree), written out, with the lines it changes in each (every one
    where ``every_line``), and those left out (links, submodules, binary files)."""
    top = top_level(cwd, "--staged")
    places = [path.resolve() for path in within]
    lines = {
        name: changed
        for name, changed in staged_lines(revision, top).items()
        # Whole, a file whose change only removes lines (a suppression comment, say).
        if (changed or every_line) and any(_inside(top / name, place) for place in places)
    }
    with tempfile.TemporaryDirectory(prefix="tether-staged-") as folder:
        root = Path(folder).resolve()
        write_staged([*lines, *staged_named(_TOOL_SETTINGS, top)], top, root)
        here = root / cwd.resolve().relative_to(top)
        here.mkdir(parents=True, exist_ok=True)
        changed: ChangedLines = {}
        skipped: list[Skipped] = []
        for name, changed_lines in lines.items():
            copy = root / name
            if copy.is_symlink() or not copy.is_file():
                skipped.append(Skipped(top / name, "not a file in the index (a link or submodule)"))
            elif is_binary(copy):
                skipped.append(Skipped(top / name, "binary"))
            else:
                changed[copy] = None if every_line else changed_lines
        yield StagedFiles(top, root, here, changed), skipped


def _inside(path: Path, place: Path) -> bool:
    return path == place or place in path.parents
