"""Snippets from files: one function (``FILE::NAME``), every function of a file, a folder.

Each file's functions come from tree-sitter (``split``); the licence from the file's SPDX
line or its project's licence file; the repository, commit and path from git when the
file is in a work tree. A whole import is one transaction, so a folder goes in whole or
not at all, and importing it again changes nothing.
"""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from tether.errors import NotFoundError, RequestError
from tether.languages import canonical, suffixes_of
from tether.store.db import SnippetStore
from tether.store.licences import expression, licence_of
from tether.store.model import Added, Draft, Origin
from tether.store.split import SPLIT_LANGUAGES, Function, functions, has_syntax_errors
from tether.textfile import read_text

SKIPPED_FOLDERS = frozenset(
    {".git", ".hg", ".venv", "venv", "node_modules", "__pycache__", "build", "dist", ".tox"}
)
MAX_FILE_BYTES = 2 * 1024 * 1024  # larger files are generated or vendored, not vetted code


@dataclass
class ImportReport:
    files: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (what, why)
    results: list[Added] = field(default_factory=list)  # each draft's, in order

    def _counted(self, outcome: str) -> int:
        return sum(result.outcome == outcome for result in self.results)

    @property
    def added(self) -> int:
        return self._counted("added")

    @property
    def new_versions(self) -> int:
        return self._counted("new version")

    @property
    def unchanged(self) -> int:
        return self._counted("unchanged")

    @property
    def duplicates(self) -> int:
        return self._counted("duplicate")

    @property
    def withdrawn(self) -> int:
        """Edits waiting for review whose code went back to the served one."""
        return self._counted("withdrawn")

    def as_record(self) -> dict[str, object]:
        return {
            "files": self.files,
            "added": self.added,
            "new_versions": self.new_versions,
            "unchanged": self.unchanged,
            "duplicates": self.duplicates,
            "withdrawn": self.withdrawn,
            "skipped": [{"what": what, "why": why} for what, why in self.skipped],
        }


def split_target(target: str) -> tuple[Path, str | None]:
    """``FILE::NAME`` → (FILE, NAME); a plain path → (path, None)."""
    path, separator, name = target.partition("::")
    if separator and not name.strip():
        raise RequestError(f"{target}: name a function after '::', or drop '::' to add them all")
    if not path.strip():
        raise RequestError(f"{target}: name the file before '::', as in src/util.py::{name}")
    return Path(path), (name or None)


def language_of(path: Path) -> str:
    language = canonical("", path)
    if language not in SPLIT_LANGUAGES:
        raise RequestError(
            f"{path}: tether stores functions of {', '.join(SPLIT_LANGUAGES)} files, "
            f"not {path.suffix or 'files without a suffix'}"
        )
    return language


def read_source(path: Path) -> str:
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode) and not stat.S_ISDIR(info.st_mode):
            # A FIFO waits for a writer that may never come, a device never ends.
            raise RequestError(f"{path} is not a regular file; name a source file")
        if info.st_size > MAX_FILE_BYTES:
            raise RequestError(f"{path} is over {MAX_FILE_BYTES // 1024 // 1024} MiB")
        return read_text(path)
    except FileNotFoundError as exc:
        raise NotFoundError(f"no file {path}") from exc
    except IsADirectoryError as exc:
        raise RequestError(f"{path} is a folder; use tether store import") from exc


def draft_of(
    function: Function,
    language: str,
    origin: Origin,
    licence: str,
    tags: Sequence[str] | None = None,
    test: str | None = None,
    make_callable: bool = False,
) -> Draft:
    return Draft(
        name=function.name,
        language=language,
        code=function.code,
        body_hash=function.body_hash,
        signature=function.signature,
        docstring=function.docstring,
        tags=None if tags is None else tuple(tags),
        origin=origin,
        licence=licence,
        test=test,
        callable=make_callable,
    )


def draft_from_code(
    code: str,
    language: str,
    *,
    name: str | None = None,
    licence: str = "",
    tags: Sequence[str] | None = None,
    test: str | None = None,
    make_callable: bool = False,
    origin: Origin | None = None,
) -> Draft:
    """The one function in ``code`` (or the one called ``name``), as sent over HTTP."""
    if language not in SPLIT_LANGUAGES:
        raise RequestError(
            f"language {language!r} is not supported; one of {', '.join(SPLIT_LANGUAGES)}",
            param="language",
        )
    if has_syntax_errors(code, language):
        raise RequestError(f"the {language} code does not parse; send valid code", param="code")
    found = functions(code, language)
    chosen = _choose(found, name, "the code")
    licence = expression(licence)
    if len(found) > 1 and name is None:
        raise RequestError(
            f"the code holds {len(found)} functions ({', '.join(f.name for f in found)}); "
            "send one, or name it",
            param="name",
        )
    return draft_of(chosen, language, origin or Origin(), licence, tags, test, make_callable)


def drafts_from_file(
    path: Path,
    *,
    name: str | None = None,
    licence: str | None = None,
    tags: Sequence[str] | None = None,
    test: str | None = None,
    make_callable: bool = False,
    skipped: list[tuple[str, str]] | None = None,
) -> list[Draft]:
    """Drafts of the functions of ``path`` (or the one called ``name``); a function that
    does not parse is left out, and named in ``skipped`` (what, why) when given."""
    language = language_of(path)
    code = read_source(path)
    left_out: list[tuple[Function, str]] = []
    found = functions(code, language, left_out)
    if name is not None:
        found = [_choose(found, name, str(path))]
        if found[0].broken:
            raise RequestError(f"{path}::{name} does not parse; fix it before storing it")
    origin = _origin(path)
    chosen_licence = expression(licence or "") or licence_of(
        path, code, _repository_root(path.parent)
    )
    if skipped is not None:
        skipped += [(f"{path}::{f.name}", "does not parse") for f in found if f.broken]
        if name is None:
            skipped += [(f"{path}:{f.line}::{f.name}", why) for f, why in left_out]
    return [
        draft_of(f, language, _at(origin, f), chosen_licence, tags, test, make_callable)
        for f in found
        if not f.broken
    ]


def import_folder(
    store: SnippetStore,
    folder: Path,
    author: str,
    *,
    licence: str | None = None,
    tags: Sequence[str] = (),
) -> ImportReport:
    if not folder.is_dir():
        raise NotFoundError(f"no folder {folder}")
    licence = expression(licence or "")
    report = ImportReport()
    drafts: list[Draft] = []
    for path in _source_files(folder):
        try:
            origin = _origin(path)
            language = language_of(path)
            code = read_source(path)
        except RequestError as exc:
            report.skipped.append((_shown(path), str(exc)))
            continue
        except OSError as exc:  # another user's file: named, as one not UTF-8 is
            report.skipped.append((_shown(path), f"cannot be read ({exc.strerror or exc})"))
            continue
        report.files += 1
        chosen = licence or licence_of(path, code, _repository_root(path.parent) or folder)
        left_out: list[tuple[Function, str]] = []
        found = functions(code, language, left_out)
        report.skipped += [(f"{path}:{f.line}::{f.name}", why) for f, why in left_out]
        for function in found:
            if function.broken:
                report.skipped.append((f"{path}::{function.name}", "does not parse"))
                continue
            if len(function.code) > store.max_code_chars:  # one giant leaves the rest in
                size = f"{len(function.code) // 1024} KiB"
                report.skipped.append(
                    (f"{path}::{function.name}", f"{size}, over store.max_code_kb")
                )
                continue
            offered = _at(origin, function)
            drafts.append(draft_of(function, language, offered, chosen, tags or None))
    report.results = store.add_many(drafts, author)
    return report


def _choose(found: list[Function], name: str | None, where: str) -> Function:
    if not found:
        raise RequestError(f"{where} holds no top-level function")
    if name is None:
        return found[0]
    for function in found:
        if function.name == name:
            return function
    names = ", ".join(f.name for f in found)
    raise NotFoundError(f"{where} has no top-level function {name!r}; it has: {names}")


def _source_files(folder: Path) -> Iterator[Path]:
    suffixes = suffixes_of(frozenset(SPLIT_LANGUAGES))
    for root, folders, files in os.walk(folder):
        folders[:] = sorted(
            f for f in folders if f not in SKIPPED_FOLDERS and not f.startswith(".")
        )
        for name in sorted(files):
            if Path(name).suffix in suffixes:
                yield Path(root) / name


def _at(origin: Origin, function: Function) -> Origin:
    return Origin(origin.path, origin.repository, origin.commit, function.line)


def _shown(path: Path | str) -> str:
    """``path`` as text, with the bytes of a name that is not UTF-8 as ``\\xe9``."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _text(path: Path | str) -> str:
    """``path`` (or a remote's URL) as the UTF-8 text its bytes spell, whatever the locale
    read them as: the C locale with PYTHONUTF8=0 reads a folder named `prøj` as ASCII,
    with the bytes beyond it as lone surrogates, which no JSON, prompt or audit record
    can hold."""
    try:
        return os.fsencode(path).decode("utf-8")
    except UnicodeDecodeError:
        raise RequestError(
            f"the path {_shown(path)} is not UTF-8 text; rename it (convmv does) "
            "to store its functions"
        ) from None


def _origin(path: Path) -> Origin:
    root = _repository_root(path.parent)
    resolved = path.resolve()
    if root is None:
        return Origin(path=_text(resolved))
    remote, commit = _repository(root)
    return Origin(
        path=_text(resolved.relative_to(root)), repository=_text(remote or root), commit=commit
    )


@cache
def _repository_root(folder: Path) -> Path | None:
    found = _git(folder, "rev-parse", "--show-toplevel")
    return Path(found).resolve() if found else None


@cache
def _repository(root: Path) -> tuple[str, str]:
    return _git(root, "config", "--get", "remote.origin.url"), _git(root, "rev-parse", "HEAD")


def _git(folder: Path, *args: str) -> str:
    """What git prints, read as file names are (git prints a work tree's name as bytes)."""
    try:
        done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return os.fsdecode(done.stdout).strip() if done.returncode == 0 else ""
