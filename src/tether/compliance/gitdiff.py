"""What changed since a git revision: files and the line numbers added or modified.

The working tree (staged or not) is compared with the revision; files git does not track
yet, and before the first commit every file, count as changed in full. Deleted files are
left out, as there is nothing to check. Files that ``.gitattributes`` marks ``binary`` or
``-diff`` (lock files, generated code) are compared as text, as a secret in them matters
as much; a file whose content is binary (a NUL byte early on, as git decides) is left out.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from tether.compliance.files import is_binary
from tether.errors import ToolError
from tether.unidiff import parse_hunk_header

# None: every line of the file is new.
ChangedLines = dict[Path, set[int] | None]
EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"  # git's tree with nothing in it


def _run_git(
    args: list[str], cwd: Path, given: str | None = None
) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            ["git", "-c", "core.quotePath=false", "-c", "diff.relative=false", *args],
            cwd=cwd,
            input=given,
            capture_output=True,
            text=True,
            encoding="utf-8",
            errors="surrogateescape",
            check=False,
        )
    except OSError as exc:
        raise ToolError(f"cannot run git ({exc}); install git to use --diff") from exc


def _git(args: list[str], cwd: Path, given: str | None = None) -> str:
    done = _run_git(args, cwd, given)
    if done.returncode != 0:
        raise ToolError(f"`git {' '.join(args[:3])}` failed: {done.stderr.strip()}")
    return done.stdout


def top_level(cwd: Path, flag: str = "--diff") -> Path:
    """The top of the git work tree ``cwd`` is in, which ``flag`` needs."""
    done = _run_git(["rev-parse", "--show-toplevel"], cwd)
    if done.returncode != 0:
        raise ToolError(
            f"{flag} reads git, and {cwd} is not inside a git work tree "
            f"({done.stderr.strip()}); run it in a repository, or drop {flag}"
        )
    return Path(system_name(done.stdout.strip()))


def system_name(name: str) -> str:
    """A name git printed (read as UTF-8, each byte that is not kept as a surrogate) as
    the system spells it: under a Latin-1 or EUC-JP locale the two differ beyond ASCII,
    and the UTF-8 reading leads to no file."""
    return os.fsdecode(name.encode("utf-8", "surrogateescape"))


def _tree(revision: str, top: Path) -> str:
    """The tree of ``revision``, so that git never reads the user's word as an option."""
    done = _run_git(
        ["rev-parse", "--verify", "--quiet", "--end-of-options", f"{revision}^{{tree}}"], top
    )
    if done.returncode == 0:
        return done.stdout.strip()
    if revision == "HEAD":  # HEAD names no commit only before the first one: all is new
        return EMPTY_TREE
    hint = (
        f"; --diff takes the next word as REV: to check {revision} against HEAD, write "
        f"`tether check {revision} --diff`"
        if Path(revision).exists()
        else ""
    )
    raise ToolError(
        f"--diff={revision}: no commit, branch or tag {revision} in this repository; name "
        f"one that exists (`git log --oneline` lists commits; a shallow clone may need "
        f"`git fetch`){hint}"
    )


_ESCAPES = {"a": 7, "b": 8, "t": 9, "n": 10, "v": 11, "f": 12, "r": 13, '"': 34, "\\": 92}


def unquote_path(name: str) -> str:
    """A path as git prints it in a diff header: wrapped in double quotes with C escapes
    (octal for bytes) when it holds a quote, a backslash or a control character, or
    non-ASCII bytes unless core.quotePath is false; followed by a tab when it holds a space.
    """
    if not name.startswith('"'):
        return name.removesuffix("\t")
    raw = bytearray()
    i, end = 1, name.rfind('"')
    while i < end:
        char = name[i]
        if char != "\\":
            raw += char.encode("utf-8", "surrogateescape")
            i += 1
        elif name[i + 1] in _ESCAPES:
            raw.append(_ESCAPES[name[i + 1]])
            i += 2
        else:
            raw.append(int(name[i + 1 : i + 4], 8))
            i += 4
    return raw.decode("utf-8", "surrogateescape")


def parse_diff(diff: str, top: Path) -> ChangedLines:
    """Added line numbers per file from ``git diff --unified=0`` output (with the default
    ``a/`` and ``b/`` prefixes)."""
    changed: ChangedLines = {}
    current: set[int] | None = None
    in_header = False  # between "diff --git" and the first hunk: "+++ " names the file
    for line in diff.split("\n"):
        if line.startswith("diff --git "):
            in_header, current = True, None
        elif in_header and line.startswith("+++ "):
            name = unquote_path(line[4:])
            if name != "/dev/null":
                name = system_name(name.removeprefix("b/"))
                current = changed.setdefault(top / name, set())
        elif hunk := parse_hunk_header(line):
            in_header = False
            if current is not None:
                current.update(range(hunk.new_start, hunk.new_start + hunk.new_count))
    return changed


def changed_lines(revision: str, cwd: Path) -> ChangedLines:
    """Changed files (absolute) and their changed lines, against ``revision``."""
    top = top_level(cwd)
    diff = _diff(revision, top)
    changed = {path: lines for path, lines in parse_diff(diff, top).items() if not is_binary(path)}
    untracked = _git(["ls-files", "-z", "--others", "--exclude-standard"], top)
    for name in map(system_name, filter(None, untracked.split("\0"))):
        if not is_binary(top / name):  # new files as changed ones: binary ones left out
            changed[top / name] = None
    return {path: lines for path, lines in changed.items() if lines is None or lines}


def staged_lines(revision: str, top: Path) -> dict[str, set[int]]:
    """The files the index (what the next commit holds) adds or changes against
    ``revision``, by their names from ``top``, and the lines it adds or changes in each
    (none where it only removes lines, renames the file or changes its mode).

    A file renamed or given another mode, its text as it was, is listed too, by its new
    name, as pre-commit and lint-staged list it: the diff of its lines holds no ``+++``
    line to name it, and it was left unchecked, though its new place may bring other
    rules (a folder of ruff's ``per-file-ignores``, a language of another suffix) and
    its mode ruff's EXE rules."""
    changed = parse_diff(_diff(revision, top, "--cached"), Path())
    lines = {path.as_posix(): found or set() for path, found in changed.items()}
    listed = _git(
        ["diff", "--cached", "--name-only", "-z", _FILTER, _tree(revision, top), "--"], top
    )
    for name in map(system_name, filter(None, listed.split("\0"))):
        lines.setdefault(name, set())
    return lines


def staged_named(names: Sequence[str], top: Path) -> list[str]:
    """The files of the index named ``names`` in any folder, by their names from ``top``."""
    listed = _git(["ls-files", "-z", "--cached", "--", *(f":(glob)**/{n}" for n in names)], top)
    return [system_name(name) for name in listed.split("\0") if name]


def index_names(top: Path) -> list[str]:
    """Every file of the index, by its name from ``top``."""
    listed = _git(["ls-files", "-z", "--cached"], top)
    return [system_name(name) for name in listed.split("\0") if name]


def write_staged(names: Sequence[str], top: Path, folder: Path) -> None:
    """The index's copy of each of ``names`` (from ``top``), as the commit will hold it,
    written under ``folder``, laid out as in the work tree, executable where the index
    says so; links and submodules are not.

    Their blobs are written as they are, not as ``git checkout-index`` would write them:
    it runs the smudge filters and end-of-line conversion ``.gitattributes`` asks for,
    which may put back what the clean filter keeps out of the commit (a key), and it
    refuses an entry a sparse checkout leaves out of the work tree.
    """
    blobs: dict[str, list[str]] = {}  # object id: the names that hold it
    executable: list[str] = []
    for at in range(0, len(names), _NAMES_AT_ONCE):
        # Given as the system spells them: the command line is written in its encoding.
        chunk = [f":(literal){name}" for name in names[at : at + _NAMES_AT_ONCE]]
        listed = _git(["ls-files", "-z", "--stage", "--", *chunk], top)
        for entry in filter(None, listed.split("\0")):
            mode, blob, stage = entry.split("\t", 1)[0].split()
            if stage == "0" and mode in _FILE_MODES:
                name = system_name(entry.split("\t", 1)[1])
                blobs.setdefault(blob, []).append(name)
                if mode == _EXECUTABLE:
                    executable.append(name)
    if blobs:
        _write_blobs(blobs, top, folder)
    for name in executable:  # as the commit holds it: ruff's EXE rules read the mode
        written = folder / name
        written.chmod(written.stat().st_mode | 0o111)


_NAMES_AT_ONCE = 1000  # well within any system's limit on a command line
_EXECUTABLE = "100755"
_FILE_MODES = ("100644", _EXECUTABLE)  # not a link (120000) or a submodule (160000)


def _write_blobs(blobs: dict[str, list[str]], top: Path, folder: Path) -> None:
    """Each blob of ``blobs`` written to its names under ``folder``, read from one
    ``git cat-file --batch``; the object ids are given from a file, so that git never
    waits on a full pipe while they are written."""
    with tempfile.TemporaryFile() as wanted:
        wanted.write("".join(f"{blob}\n" for blob in blobs).encode("ascii"))
        wanted.seek(0)
        try:
            reader = subprocess.Popen(
                ["git", "cat-file", "--batch"],
                cwd=top,
                stdin=wanted,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
            )
        except OSError as exc:
            raise ToolError(f"cannot run git ({exc}); install git to use --staged") from exc
        with reader:
            assert reader.stdout is not None
            for blob, held_by in blobs.items():
                header = reader.stdout.readline().split()
                if len(header) != 3 or header[0].decode("ascii", "replace") != blob:
                    reader.kill()
                    raise ToolError(f"`git cat-file --batch` could not read the blob {blob}")
                first = folder / held_by[0]
                first.parent.mkdir(parents=True, exist_ok=True)
                with first.open("wb") as out:
                    _copy(reader.stdout, out, int(header[2]))
                reader.stdout.read(1)  # the newline after each blob
                for name in held_by[1:]:
                    (folder / name).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(first, folder / name)


def _copy(source: IO[bytes], target: IO[bytes], size: int) -> None:
    while size > 0:
        piece = source.read(min(size, 1 << 20))
        if not piece:
            raise ToolError("`git cat-file --batch` ended inside a blob")
        target.write(piece)
        size -= len(piece)


# Added, copied, modified, renamed, or of another type (a link become a file): deleted
# files are left out, as there is nothing to check.
_FILTER = "--diff-filter=ACMRT"


def _diff(revision: str, top: Path, *against: str) -> str:
    return _git(
        [
            "diff",
            *against,
            "--unified=0",
            "--no-color",
            "--no-ext-diff",
            "--no-textconv",
            "--text",
            "--src-prefix=a/",
            "--dst-prefix=b/",
            _FILTER,
            _tree(revision, top),
            "--",
        ],
        top,
    )
