"""``tether check`` over files: the inline rules and the tools, then suppressions and --diff.

The tools run in threads while the inline rules check each file in this one, so a check
takes about as long as its slowest part. Where bandit or ruff's flake8-bandit rules repeat
an inline finding on the same line (a hard-coded password, any inline secret rule's),
only the inline one is kept.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from tether.compliance.check import Checker
from tether.compliance.files import DisplayPaths, GivenNames, read_source
from tether.compliance.gitdiff import ChangedLines
from tether.compliance.languages import language_for
from tether.compliance.report import FileFinding, NotChecked, name_bytes
from tether.compliance.rules import make_finding
from tether.compliance.source import Source, lone_cr_as_lf
from tether.compliance.suppress import Suppressions, rule_matches
from tether.compliance.tools import Exclusions, Tool, ToolRuns, left_out, run_tool, tool_runs
from tether.cpus import usable_cores
from tether.findings import Finding, fingerprint
from tether.languages import canonical

# bandit test id / ruff code -> the inline rule that reports the same thing.
_TWINS = {
    "102": "security/eval",
    "307": "security/eval",
    "602": "security/shell-true",
    "604": "security/shell-true",
    "605": "security/shell-true",
    "301": "security/unsafe-deserialization",
    "302": "security/unsafe-deserialization",
    "506": "security/yaml-load",
    "608": "security/sql-injection",
    "303": "security/weak-hash",
    "324": "security/weak-hash",
    "323": "security/tls-verify",
    "501": "security/tls-verify",
}
TOOL_TWINS = {f"bandit/B{code}": rule for code, rule in _TWINS.items()} | {
    f"ruff/S{code}": rule for code, rule in _TWINS.items()
}
# Hard-coded passwords (in an assignment, a call's argument, a parameter's default): the
# twins of every inline secret rule.
_SECRET_TWINS = frozenset(
    f"{tool}{code}" for tool in ("bandit/B", "ruff/S") for code in (105, 106, 107)
)


_NOT_TEXT = (
    "the file is not valid UTF-8 (nor the encoding it declares), so its undecodable bytes "
    "were checked as U+FFFD; save it as UTF-8"
)


@dataclasses.dataclass(frozen=True)
class _Checked:
    path: Path
    source: Source
    # Where git's lines (cut at "\n" alone) begin among the checked ones, which a lone
    # "\r" also ends; None where the two agree.
    git_lines: list[int] | None = None


def check_files(
    files: Sequence[Path],
    *,
    checker: Checker,
    tools: Sequence[Tool] = (),
    changed: ChangedLines | None = None,
    ignored: Sequence[str] = (),
    secrets_only: bool = False,
    cwd: Path | None = None,
    plugin_check: Callable[[str, str], list[Finding]] | None = None,
    origin: Callable[[Path], Path] | None = None,
    removed: list[Path] | None = None,
    not_checked: list[NotChecked] | None = None,
) -> list[FileFinding]:
    """Findings in ``files``, in path and line order.

    Every file is read whole; one that cannot be read raises OSError (RequestError when it
    is not a regular file), and one whose bytes do not all decode is checked with U+FFFD
    in their place and, unless ``secrets_only``, reported under ``encoding``. ``changed``
    (from --diff) keeps only findings on changed lines; ``ignored`` drops rules by id,
    family or tool code. ``plugin_check`` (a file's text and language) adds the enabled
    plugins' findings, but for ``secrets_only``. ``origin`` gives the work tree's file a
    copy of it stands for (a staged one), which the corpus knows by that name. A file
    removed since it was listed (an editor's swap file, a build's temporary one) is put in
    ``removed`` and left out, where one is given. The files a tool was given but left
    out (ruff, those its settings exclude) are put in ``not_checked``, where one is given.
    """
    cwd = cwd or Path.cwd()
    checked: dict[str, _Checked] = {}  # by the names the files were given
    found: list[FileFinding] = []
    # The names the files were given, by those the tools give them (where they lie, a
    # linked folder followed).
    own_names: dict[str, str] = {}

    def check_inline(path: str, item: _Checked) -> list[FileFinding]:
        text, name = item.source.text, str(origin(item.path) if origin else item.path)
        inline = (
            checker.check_secrets(text) if secrets_only else checker.check_code(text, "", path=name)
        )
        if plugin_check is not None and not secrets_only:
            inline += plugin_check(text, canonical("", name))
        return [FileFinding(path, finding) for finding in inline]

    reading = _read(files, cwd, own_names, removed, encoding=not secrets_only)
    if not tools:
        # Nothing waits for every file to be read: each is checked and let go, but those
        # with findings, whose suppressions and lines are read later. Held all at once, the
        # text of a whole repository took as much memory as its size on disk.
        for path, item, bad_encoding in reading:
            here = check_inline(path, item) + bad_encoding
            if here:
                checked[path] = item
                found += here
        return _keep(found, checked, changed, ignored)
    for path, item, bad_encoding in reading:
        checked[path] = item
        found += bad_encoding
    readable = [c.path for c in checked.values()]
    runs = ToolRuns()
    cores = usable_cores()
    parts = [(tool, part) for tool in tools for part in tool_runs(tool, readable, cores)]
    # Each tool at once, and a tool that uses one core (bandit) on each core the inline rules
    # leave it: over a whole repository it took most of the time.
    # Which files a tool leaves out, where asked.
    listed = [(tool, part) for tool, part in parts if tool.listing and not_checked is not None]
    with ThreadPoolExecutor(max_workers=max(len(tools), cores, 1)) as pool:
        running: list[Future[list[FileFinding]]] = [
            pool.submit(run_tool, tool, part, cwd, runs) for tool, part in parts
        ]
        # Why a tool left each out, read once for all its runs.
        why = {tool.name: Exclusions(tool, cwd, runs) for tool, _ in listed}
        listing = [
            (tool, pool.submit(left_out, tool, part, cwd, runs, why[tool.name]))
            for tool, part in listed
        ]
        try:
            for path, item in checked.items():
                found += check_inline(path, item)
            by_lossy_name = _by_lossy_name(own_names)
            from_tools = [
                _place(_own_name(f, checked, own_names, by_lossy_name), checked)
                for future in running
                for f in future.result()
            ]
            # By the names they were given, as their findings are.
            given = {item.path: name for name, item in checked.items()}
            left = [
                NotChecked(given[item.path], tool.name, item.reason)
                for tool, future in listing
                for item in future.result()
            ]
        except BaseException:  # interrupted (Ctrl-C, SIGTERM), or a tool failed: the rest end now
            runs.stop()
            raise
    if not_checked is not None:
        not_checked += sorted(left, key=lambda item: (item.tool, item.path))
    found += _without_twins(from_tools, found)
    return _keep(found, checked, changed, ignored)


def _read(
    files: Iterable[Path],
    cwd: Path,
    own_names: dict[str, str],
    removed: list[Path] | None,
    encoding: bool,
) -> Iterator[tuple[str, _Checked, list[FileFinding]]]:
    """Each of ``files`` read, by the name it was given (from ``cwd``), with its
    ``encoding`` finding (where asked for and its bytes do not all decode). A file named
    twice (``a.py`` and ``sub/../a.py``, or through a linked folder and where it lies) is
    read once, by the first name. The name of each where it lies, as the tools name it, is
    put in ``own_names``, with the one it was given. One removed since it was listed is
    put in ``removed``, where one is given; without, FileNotFoundError is raised."""
    display_path, given_name = DisplayPaths(cwd), GivenNames(cwd)
    seen: set[str] = set()
    for file in files:
        own = display_path(file)
        if own in seen:
            continue
        try:
            read = read_source(file)
        except FileNotFoundError:
            if removed is None:
                raise
            removed.append(file)
            continue
        seen.add(own)
        path = own_names[own] = given_name(file)
        source = Source(lone_cr_as_lf(read.text))
        bad = (
            [FileFinding(path, make_finding("encoding", _NOT_TEXT, source, read.bad_at))]
            if read.bad_at is not None and encoding
            else []
        )
        yield path, _Checked(file, source, _git_lines(read.text)), bad


def _git_lines(text: str) -> list[int] | None:
    """The checked line each of git's lines begins on, where a lone "\\r" ends lines
    inside git's (``lone_cr_as_lf``): --diff names changed lines as git counts them."""
    if "\r" not in text:
        return None
    starts, line = [], 1
    pieces = text.split("\n")
    for number, piece in enumerate(pieces, 1):
        starts.append(line)
        line += piece.count("\r") - (piece.endswith("\r") and number < len(pieces)) + 1
    return None if line == len(starts) + 1 else starts  # no lone "\r": the same lines


def _lossy(name: str) -> str:
    """``name`` as a tool that replaces what is not UTF-8 with U+FFFD prints it (ruff)."""
    return name_bytes(name).decode("utf-8", errors="replace")


def _by_lossy_name(names: Iterable[str]) -> dict[str, str | None]:
    """The ``names`` that are not UTF-8, by their lossy spelling (None: two share it)."""
    found: dict[str, str | None] = {}
    for name in names:
        lossy = _lossy(name)
        if lossy != name:
            found[lossy] = None if lossy in found else name
    return found


def _own_name(
    item: FileFinding,
    checked: dict[str, _Checked],
    own_names: dict[str, str],
    by_lossy_name: dict[str, str | None],
) -> FileFinding:
    """A tool's finding on the checked file it names, by the name the file was given: the
    tool names it where it lies (a linked folder followed), and may print its name with
    U+FFFD in place of the bytes that are not UTF-8."""
    given = own_names.get(item.path)
    if given is None and item.path not in checked:
        own = by_lossy_name.get(item.path)
        given = own_names.get(own) if own is not None else None
    return item if given is None else dataclasses.replace(item, path=given)


def _place(item: FileFinding, checked: dict[str, _Checked]) -> FileFinding:
    """A tool finding with character offsets and the line fingerprint baselines need."""
    entry = checked.get(item.path)
    finding = item.finding
    if entry is None or finding.line < 1:
        return item
    source = entry.source
    line_start = source.line_start(finding.line)
    if item.tool == "bandit":  # Python's ast counts a line's UTF-8 bytes, not its characters
        start = source.offset_of_utf8_column(finding.line, max(finding.column - 1, 0))
    else:
        start = line_start + max(finding.column - 1, 0)
    start = min(start, source.line_end(finding.line))
    placed = dataclasses.replace(
        finding,
        column=start - line_start + 1,
        start=start,
        end=start,
        fingerprint=fingerprint(source.line_text(finding.line).strip()),
    )
    return dataclasses.replace(item, finding=placed)


def _without_twins(from_tools: list[FileFinding], inline: list[FileFinding]) -> list[FileFinding]:
    reported = {(f.path, f.finding.line, f.finding.rule_id) for f in inline}
    secret_lines = {
        (f.path, f.finding.line) for f in inline if f.finding.rule_id.startswith("secrets/")
    }
    return [
        f
        for f in from_tools
        if (f.path, f.finding.line, TOOL_TWINS.get(f.finding.rule_id)) not in reported
        and not (f.finding.rule_id in _SECRET_TWINS and (f.path, f.finding.line) in secret_lines)
    ]


def _keep(
    found: list[FileFinding],
    checked: dict[str, _Checked],
    changed: ChangedLines | None,
    ignored: Sequence[str],
) -> list[FileFinding]:
    suppressions = {
        path: Suppressions(item.source.text, language_for("", str(item.path)))
        for path, item in checked.items()
    }
    changed_here = (
        {path: changed.get(item.path.resolve(), set()) for path, item in checked.items()}
        if changed is not None
        else None
    )
    kept = []
    for item in found:
        rule, line = item.finding.rule_id, item.finding.line
        if any(rule_matches(rule, pattern) for pattern in ignored):
            continue
        if item.path in suppressions and suppressions[item.path].covers(rule, line):
            continue
        if changed_here is not None:
            lines = changed_here.get(item.path, set())
            starts = checked[item.path].git_lines if item.path in checked else None
            if lines is not None and starts is not None:
                line = bisect.bisect_right(starts, line)  # the git line that holds it
            if lines is not None and line not in lines:
                continue
        kept.append(item)
    return sorted(kept, key=lambda f: (f.path, f.finding.line, f.finding.column, f.finding.rule_id))
