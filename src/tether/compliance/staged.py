"""What the next commit holds: the files the index changes, written out to be checked.

A git hook that checks the working tree checks what is not staged too, and misses what
is staged and changed again since. ``tether check --staged`` checks the index instead:
its changed files, as staged, are written into a folder of their own, laid out as in the
work tree, with the tools' settings files (also as staged), so that ruff reads the
settings the commit will have; a settings file outside the work tree that they extend, or
that ruff finds above it, is read where it is, as ruff reads it there. Findings name the
files as in the work tree.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import os
import posixpath
import re
import shlex
import shutil
import tempfile
import tomllib
from collections.abc import Collection, Iterable, Iterator, Sequence
from pathlib import Path

from tether.compliance.check import MAX_PARSED_CHARS
from tether.compliance.files import Skipped, is_binary, read_source
from tether.compliance.gitdiff import (
    ChangedLines,
    index_names,
    staged_lines,
    staged_named,
    top_level,
    write_staged,
)
from tether.compliance.report import Named
from tether.compliance.syntax import parse_python
from tether.errors import RequestError, ToolError

# Read by ruff from each checked file's folder up, with any file they extend; bandit and
# semgrep are given theirs.
_TOOL_SETTINGS = ("pyproject.toml", "ruff.toml", ".ruff.toml")


@dataclasses.dataclass(frozen=True)
class StagedFiles:
    """The index's changed files, written under ``root``; ``here`` is the working folder's
    place there, from which files are named."""

    top: Path  # of the work tree
    root: Path
    here: Path
    changed: ChangedLines  # by their paths under root
    notes: tuple[str, ...] = ()  # what the user should know of the settings ruff read

    def origin(self, copy: Path) -> Path:
        """The work tree's file that ``copy``, written under ``root``, stands for."""
        return self.top / copy.relative_to(self.root)

    def as_in_the_work_tree(self, found: Sequence[Named]) -> list[Named]:
        """Findings (or files a tool left out) in files outside the working folder (named
        by an absolute path) named by their place in the work tree, not in the folder they
        were written to."""
        return [
            dataclasses.replace(f, path=str(self.origin(Path(f.path))))
            if Path(f.path).is_relative_to(self.root)
            else f
            for f in found
        ]


@contextlib.contextmanager
def staged_files(
    revision: str, cwd: Path, within: Sequence[Path], every_line: bool, for_ruff: bool = False
) -> Iterator[tuple[StagedFiles, list[Skipped]]]:
    """The files the index adds or changes against ``revision`` inside ``within`` (folders
    or files of the work tree), written out, with the lines it changes in each (every one
    where ``every_line``), and those left out (links, submodules, binary files). ``for_ruff``
    lays the index's Python modules out beside them, as ruff reads them."""
    top = top_level(cwd, "--staged")
    places = [path.resolve() for path in within]
    lines = {
        name: changed
        for name, changed in staged_lines(revision, top).items()
        # Whole, a file whose change only removes lines (a suppression comment, say).
        if (changed or every_line) and any(_inside(top / name, place) for place in places)
    }
    with tempfile.TemporaryDirectory(prefix="tether-staged-") as folder:
        # The work tree is written at its own path under ``mirror``, so that a settings file
        # outside it, which one of its own extends (`extend = "../base.toml"`), can be
        # written at its own path too, where ruff, reading the copies, looks for it.
        mirror = Path(folder).resolve() / "tree"
        root = mirror / top.relative_to(top.anchor)
        settings = staged_named(_TOOL_SETTINGS, top)
        write_staged([*lines, *settings], top, root)
        notes: list[str] = []
        written = [root / name for name in settings]
        if for_ruff:
            written += _settings_above(top, mirror)
        while written:  # and those they extend, whatever their names
            extended = {
                copy: _named(by, top, mirror) for copy, by in _extended(written, mirror).items()
            }
            inside = {
                copy.relative_to(root).as_posix(): by
                for copy, by in extended.items()
                if copy.is_relative_to(root)
            }
            write_staged(list(inside), top, root)
            if for_ruff:
                notes += _unstaged_settings(inside, top, root)
                outside = {c: by for c, by in extended.items() if not c.is_relative_to(root)}
                _outside_settings(outside, top, mirror)
            written = list(extended)
        if for_ruff:
            _lay_out_python(index_names(top), set(lines), root)
        # Outside the work tree (GIT_WORK_TREE names it), files are named by absolute paths.
        inside_top = cwd.resolve().is_relative_to(top)
        here = root / cwd.resolve().relative_to(top) if inside_top else mirror.parent / "outside"
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
        try:
            yield StagedFiles(top, root, here, changed, tuple(notes)), skipped
        except ToolError as exc:
            # Ruff stopped, naming the copies it read (the work tree's own path under
            # ``mirror``): by their own names, which outlive the check.
            said = exc.message.replace(str(mirror) + os.sep, os.sep)
            if said == exc.message:
                raise
            raise ToolError(
                f"{said}\n(ruff read the files it names as staged, which `git diff --cached` shows)"
            ) from exc


def _inside(path: Path, place: Path) -> bool:
    return path == place or place in path.parents


def _lay_out_python(names: Sequence[str], written: Collection[str], root: Path) -> None:
    """The index's Python modules that ruff may look for, laid out under ``root`` beside
    the files ``written`` there (the staged ones), as empty files: ruff tells the
    project's own imports from others' by the modules and folders of its source roots (the
    import order, I001), and a package by its ``__init__.py`` (INP001); it reads their
    names only, and looks only for what the checked code imports and for the
    ``__init__.py`` above a checked file. So only the modules and folders named by a part
    of what the staged Python files import are written, and the ``__init__.py`` of the
    folders above those files: writing every module of an index of thousands took
    seconds. The files ``written`` are left as they are: a staged link is named as one,
    not checked empty."""
    # Ruff is given a staged module whatever the case of its suffix (APP.PY).
    imported = _imported([root / name for name in written if name.lower().endswith(_PYTHON)])
    # The top too: an __init__.py there makes the work tree the package a file lies in.
    above = {"", *(folder for name in written for folder in _folders_above(name))}
    for name in names:
        folder, file = posixpath.split(name)
        stem = file.rpartition(".")[0]
        if not name.endswith(_PYTHON) or name in written:
            continue
        if stem == "__init__":  # a package's: above a staged file, or imported by name
            wanted = folder in above or posixpath.basename(folder) in imported
        else:
            wanted = stem in imported
        if wanted:
            with contextlib.suppress(OSError):  # a folder or file written in its place
                (root / folder).mkdir(parents=True, exist_ok=True)
                (root / name).touch(exist_ok=True)
    folders = {folder for name in names for folder in _folders_above(name)}
    for folder in folders:  # which `import name` finds as a package, __init__.py or not
        if posixpath.basename(folder) in imported:
            with contextlib.suppress(OSError):  # a file written in its place
                (root / folder).mkdir(parents=True, exist_ok=True)


_PYTHON = (".py", ".pyi")
_WORD = re.compile(r"\w+")


def _imported(files: Iterable[Path]) -> set[str]:
    """Each part of the names of the modules ``files`` import absolutely (``a``, ``b`` and
    ``c`` of ``from a.b import c``): those ruff looks for in the source roots. Of a file
    that does not parse (or is too large to), every word of its text, a superset of what
    ruff reads there."""
    names: set[str] = set()
    for file in files:
        try:
            text = read_source(file).text
        except (OSError, RequestError):  # a link, not written: named as not checked
            continue
        # Not parsed past the checks' limit either; a broken file is read by ruff in part.
        module = parse_python(text) if len(text) <= MAX_PARSED_CHARS else None
        if not isinstance(module, ast.Module):
            names.update(_WORD.findall(text))
            continue
        for node in ast.walk(module):
            if isinstance(node, ast.Import):
                names.update(part for alias in node.names for part in alias.name.split("."))
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names.update(node.module.split("."))
                names.update(alias.name for alias in node.names)
    return names


def _folders_above(name: str) -> Iterator[str]:
    """The folders ``name`` (a path from the top of the work tree) lies in, innermost
    first, without the top itself."""
    folder = posixpath.dirname(name)
    while folder:
        yield folder
        folder = posixpath.dirname(folder)


def _extended(copies: Sequence[Path], mirror: Path) -> dict[Path, Path]:
    """The settings files that ruff's settings files ``copies`` (written under ``mirror``)
    extend by a relative path, where ruff reading the copies looks for them (under
    ``mirror`` too), not written yet, each with the copy that extends it."""
    found: dict[Path, Path] = {}
    for copy in copies:
        target = _extends(copy)
        if target is None or target.startswith(("~", "$")) or Path(target).is_absolute():
            continue  # read where it is, outside the work tree as a rule
        path = Path(os.path.normpath(copy.parent / target))
        if path.is_relative_to(mirror) and not path.exists():
            found.setdefault(path, copy)
    return dict(sorted(found.items()))


def _settings_above(top: Path, mirror: Path) -> list[Path]:
    """The settings files of the folders above the work tree, written at their places under
    ``mirror`` from where they are: ruff reads the nearest of them for a file whose folders
    in the work tree hold none of its settings, and so for the copies, which lie under
    ``mirror`` alike. No commit holds them."""
    copies = []
    for folder in top.parents:
        for name in _TOOL_SETTINGS:
            original = folder / name
            copy = mirror / original.relative_to(original.anchor)
            try:
                if original.is_file():
                    copy.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(original, copy)
                    copies.append(copy)
            except OSError:  # closed to this user (ruff stops on it there): left out
                continue
    return copies


def _original(copy: Path, top: Path, mirror: Path) -> Path:
    """The file that ``copy``, written under ``mirror``, stands for."""
    return Path(top.anchor) / copy.relative_to(mirror)


def _named(copy: Path, top: Path, mirror: Path) -> str:
    """How a note names the settings file ``copy`` stands for: by its name from the top of
    the work tree, or its full path where it lies outside."""
    original = _original(copy, top, mirror)
    return original.relative_to(top).as_posix() if original.is_relative_to(top) else str(original)


def _outside_settings(extended: dict[Path, str], top: Path, mirror: Path) -> None:
    """The settings files outside the work tree that ruff's settings extend (by the one that
    extends each), written at their places under ``mirror`` from where they are, as ruff
    reads them in the work tree: no commit holds them. One that is not there stops the
    check, saying what to do, where ruff stopped naming a temporary folder."""
    for copy, by in extended.items():
        original = _original(copy, top, mirror)
        if not original.is_file():
            raise ToolError(
                f"{by} extends {original} (ruff's `extend`), which is not a file: ruff cannot "
                f"read its settings; put the file there, or mend `extend` in {by}"
            )
        _copy_settings(original, copy, f"{original}, which {by} extends")


def _copy_settings(original: Path, copy: Path, which: str) -> None:
    """Write the settings file ``original`` at ``copy``, where ruff reads it; ``which``
    names it in the error when it cannot be read."""
    try:
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(original, copy)
    except OSError as exc:
        raise ToolError(f"cannot read {which}: {exc}") from exc


def _unstaged_settings(extended: dict[str, str], top: Path, root: Path) -> list[str]:
    """Of the settings files ``extended`` (by the one that extends each), those the index
    does not hold, which ruff cannot do without: each is written from the work tree, as
    ruff reads it there (and pre-commit, which sets aside only unstaged changes), and a
    note says to stage it. Ruff stopped on it, naming a temporary folder. One the work
    tree lacks too stops the check, saying what to do."""
    notes = []
    for name, by in extended.items():
        copy = root / name
        if copy.is_file():
            continue
        original = top / name
        stage = f"`git add {_from_here(original)}`"
        if not original.is_file():
            raise ToolError(
                f"{by} extends {name} (ruff's `extend`), which neither the index nor the "
                f"work tree holds: ruff cannot read its settings; add {name} and stage it "
                f"({stage}), or mend `extend` in {by}"
            )
        _copy_settings(original, copy, f"{name}, which {by} extends")
        notes.append(
            f"{name}, which {by} extends, is not staged: ruff read the work tree's copy; "
            f"stage it ({stage}) so that the commit holds the settings it was "
            "checked with"
        )
    return notes


def _from_here(path: Path) -> str:
    """``path`` as a shell command run in the current folder names it."""
    return shlex.quote(os.path.relpath(path))


def _extends(settings: Path) -> str | None:
    """The file a ruff settings file names as the one it extends, if any."""
    try:
        with settings.open("rb") as file:
            held = tomllib.load(file)
    except (OSError, tomllib.TOMLDecodeError):
        return None  # ruff says what is wrong with it
    if settings.name == "pyproject.toml":
        held = held.get("tool", {}).get("ruff", {})
    extends = held.get("extend") if isinstance(held, dict) else None
    return extends if isinstance(extends, str) else None
