"""``tether check`` and ``tether corpus``: compliance checks on files, for pre-commit and CI.

Exit status of ``tether check``: 0 when no finding reaches ``--fail-on`` (default
``warning``), 1 when one does, 2 for a usage, configuration or tool error.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import NoReturn, Protocol

import click

from tether.cli.common import (
    EXIT_NO,
    EXIT_USAGE,
    OUTPUT_FILE,
    STDOUT,
    settings_from_flags,
    terminated_as_interrupted,
    write_output,
)
from tether.compliance.baseline import load_baseline, save_baseline, without_baseline
from tether.compliance.check import Checker
from tether.compliance.corpus import CorpusIndex
from tether.compliance.files import (
    MAX_FILE_BYTES,
    DisplayPaths,
    GivenNames,
    Skipped,
    expand,
    git_top,
    select,
)
from tether.compliance.gitdiff import ChangedLines, changed_lines
from tether.compliance.languages import SUFFIXES
from tether.compliance.project import check_files
from tether.compliance.report import (
    SEVERITY_RANK,
    FileFinding,
    Named,
    NotChecked,
    render_github,
    render_json,
    render_text,
    shown_path,
    written_by_check,
)
from tether.compliance.sarif import render_sarif
from tether.compliance.staged import staged_files
from tether.compliance.tools import select_tools
from tether.errors import TetherError
from tether.pipeline.governance import file_checker
from tether.plugins import bare_manager, enabled_plugins, register_plugins


class _Renderer(Protocol):
    def __call__(
        self, findings: Sequence[FileFinding], *, not_checked: Sequence[NotChecked] = ()
    ) -> str: ...


RENDERERS: dict[str, _Renderer] = {
    "text": render_text,
    "json": render_json,
    "sarif": render_sarif,
    "github": render_github,
}
# Read by code scanning and GitHub Actions, which place files from the repository's top.
_FROM_ROOT = {"sarif", "github"}


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(EXIT_USAGE)


def _files(
    paths: tuple[Path, ...], diff_rev: str | None, secrets_only: bool
) -> tuple[list[Path], list[Skipped], ChangedLines | None]:
    """The files to check and those of folders that were skipped; with --diff, only changed
    ones (whatever their size), and their changed lines."""
    suffixes = None if secrets_only else set(SUFFIXES)
    changed = changed_lines(diff_rev, Path.cwd()) if diff_rev is not None else None
    max_bytes = MAX_FILE_BYTES if changed is None else None
    if changed is not None and not paths:
        # The current folder, as PATHS' default says: in a subfolder, its changed files.
        here = Path.cwd().resolve()
        changed = {path: lines for path, lines in changed.items() if path.is_relative_to(here)}
    if paths or changed is None:
        try:
            files, skipped = expand(paths or (Path("."),), suffixes, max_bytes=max_bytes)
        except FileNotFoundError as exc:
            raise click.BadParameter(f"{exc.args[0]} does not exist", param_hint="PATHS") from exc
        if changed is not None:
            files = [f for f in files if f.resolve() in changed]
            skipped = [s for s in skipped if s.path.resolve() in changed]
        return files, skipped, changed
    files, skipped = _of_kind(changed, secrets_only)
    return files, skipped, changed


def _of_kind(changed: ChangedLines, secrets_only: bool) -> tuple[list[Path], list[Skipped]]:
    """The changed files a check reads: source files, or every text file for secrets."""
    suffixes = None if secrets_only else set(SUFFIXES)
    candidates = (p for p in sorted(changed) if suffixes is None or p.suffix.lower() in suffixes)
    return select(candidates, max_bytes=None, text_only=suffixes is None)


def _from_root(found: Sequence[Named], root: Path) -> list[Named]:
    from_root = DisplayPaths(root)
    return [dataclasses.replace(f, path=from_root(Path(f.path))) for f in found]


def _note_not_checked(not_checked: Sequence[NotChecked]) -> None:
    """One line per tool and reason, naming the first few files."""
    for tool in dict.fromkeys(item.tool for item in not_checked):
        left = [Skipped(Path(item.path), item.why) for item in not_checked if item.tool == tool]
        _note_skipped(left, left=f"checked by {tool}")


def _note(message: str) -> None:
    click.echo(f"note: {message}", err=True)


def _note_skipped(skipped: Sequence[Skipped], shown: int = 10, left: str = "checked") -> None:
    """One line per reason, naming the first few files."""
    by_reason: dict[str, list[str]] = {}
    given_name = GivenNames()  # as the findings name them
    for item in skipped:
        by_reason.setdefault(item.reason, []).append(shown_path(given_name(item.path)))
    for reason, names in by_reason.items():
        listed = ", ".join(names[:shown])
        if len(names) > shown:
            listed += f" and {len(names) - shown} more"
        count = f"{len(names)} file{'s' if len(names) != 1 else ''}"
        _note(f"{count} not {left}, {reason}: {listed}")


class _CheckCommand(click.Command):
    """Refuses ``--diff=-…``, which click would split into ``--diff`` and another option."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        for arg in args:
            if arg == "--":
                break
            if arg.startswith("--diff=-"):
                raise click.BadParameter(
                    f"{arg[len('--diff=') :]!r}: a revision cannot start with '-'; name a "
                    "commit, branch or tag, e.g. --diff=origin/main",
                    param_hint="--diff",
                )
        return super().parse_args(ctx, args)


def _outputs_left_out(
    files: list[Path], skipped: list[Skipped], output: Path | None, baseline: Path | None
) -> tuple[list[Path], list[Skipped]]:
    """``files`` and ``skipped`` without the report and baseline this run writes: a report
    left in the checked folder by the last run (read as text by --secrets-only) is
    written again, not checked. Any other file there, source code or not, is the
    project's: the run stops before it would be replaced."""
    for flag, target in (("--output", output), ("--write-baseline", baseline)):
        if target in (None, STDOUT) or not target.is_file():
            continue
        ours = [f for f in [*files, *(s.path for s in skipped)] if _same_file(target, f)]
        if not ours:
            continue
        if not _a_report(target):
            _fail(
                f"{flag} {target} is a file being checked, not a report of tether check's; "
                "write the report somewhere else"
            )
        files = [f for f in files if f not in ours]
        skipped = [s for s in skipped if s.path not in ours]
    return files, skipped


def _not_over_staged(originals: Iterable[Path], output: Path | None, baseline: Path | None) -> None:
    """Stops before the report or baseline would be written over the work tree's file a
    staged copy being checked stands for, but where it holds a report of tether check's:
    the copy, what the commit holds, is checked all the same."""
    given = (("--output", output), ("--write-baseline", baseline))
    targets = [(flag, t) for flag, t in given if t is not None and t != STDOUT and t.is_file()]
    for original in originals if targets else ():
        for flag, target in targets:
            if _same_file(target, original) and not _a_report(target):
                _fail(
                    f"{flag} {target} is a file being checked, not a report of tether "
                    "check's; write the report somewhere else"
                )


# A report or baseline worth writing again in place is never this large.
_MOST_REPORT_BYTES = 64 * 1024 * 1024


def _a_report(path: Path) -> bool:
    """Whether ``path`` (wherever a link leads) holds a report or baseline as this
    command writes them, and is not named as source code."""
    if path.resolve().suffix.lower() in SUFFIXES:
        return False
    try:
        if path.stat().st_size > _MOST_REPORT_BYTES:
            return False
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    return written_by_check(text)


def _same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` are one existing file, under any names."""
    return a.is_file() and b.is_file() and a.samefile(b)


@click.command(cls=_CheckCommand)
# Not `readable`: click's "Path 'x' is not readable" said nothing of what to do, where
# expand() does.
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path, readable=False))
@click.option(
    "--diff",
    "diff_rev",
    is_flag=False,
    flag_value="HEAD",
    default=None,
    metavar="REV",
    help="Check only files changed since REV (default HEAD), and report only findings on "
    "changed lines. Write --diff=REV, or put --diff after the paths.",
)
@click.option(
    "--staged",
    is_flag=True,
    help="Check what the next commit holds: the files the index changes, as staged, not "
    "as they are in the working tree (for a git pre-commit hook). With --diff, only the "
    "lines it changes.",
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(sorted(RENDERERS)),
    default="text",
    show_default=True,
    help="Report format; github prints workflow annotations.",
)
@click.option(
    "--output", "-o", type=OUTPUT_FILE, help="Write the report here ('-': standard output)."
)
@click.option(
    "--fail-on",
    type=click.Choice(["error", "warning", "note", "never"]),
    default="warning",
    show_default=True,
    help="Exit 1 when a finding has this severity or a higher one.",
)
# Not `exists`, `dir_okay` or `readable`: click's "File 'x' is not readable" said nothing of
# what to do, where load_baseline does.
@click.option(
    "--baseline",
    type=click.Path(path_type=Path, readable=False),
    metavar="FILE",
    help="Do not report findings recorded in this baseline file.",
)
@click.option(
    "--write-baseline",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Record every current finding in this file and exit 0.",
)
@click.option(
    "--tools",
    default="auto",
    show_default=True,
    help="External checkers: a comma list of ruff, bandit, semgrep; 'auto' (those "
    "installed) or 'none'.",
)
@click.option(
    "--ignore",
    "ignored",
    multiple=True,
    metavar="RULE",
    help="Skip a rule, a family (licence) or a tool code (E501); repeatable.",
)
@click.option(
    "--corpus",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Corpus index for duplication; default compliance.corpus_index.",
)
@click.option(
    "--secrets-only", is_flag=True, help="Run only the secret scanner, on every text file."
)
@terminated_as_interrupted()  # SIGTERM stops the tools as Ctrl-C does
def check(
    paths: tuple[Path, ...],
    diff_rev: str | None,
    output_format: str,
    output: Path | None,
    fail_on: str,
    baseline: Path | None,
    write_baseline: Path | None,
    tools: str,
    ignored: tuple[str, ...],
    corpus: Path | None,
    secrets_only: bool,
    staged: bool,
) -> None:
    """Check files with the inline compliance rules plus ruff, bandit and semgrep.

    PATHS are files or folders (default: the current folder). Findings can be silenced
    in place with a `# tether: ignore[RULE]` comment on the line or the line above.
    Exit status: 0 clean, 1 findings at or above --fail-on, 2 usage or tool error.
    """
    if secrets_only and tools != "auto":
        _fail("--secrets-only runs no tools; drop --tools, or drop --secrets-only")
    for flag, target in (("--output", output), ("--write-baseline", write_baseline)):
        if target not in (None, STDOUT) and not target.parent.is_dir():
            _fail(f"{flag} {target}: the folder {target.parent} does not exist; create it first")
        if target not in (None, STDOUT) and any(_same_file(target, path) for path in paths):
            _fail(f"{flag} {target} is a file being checked; write the report somewhere else")
    try:
        known = load_baseline(baseline) if baseline is not None else None
        settings = settings_from_flags()
        # The enabled plugins' check_completion too: the rules the server runs on answers.
        plugins = bare_manager(settings.plugins.hook_timeout_s)
        register_plugins(plugins, enabled_plugins(settings))
        with Checker.from_settings(settings, corpus_path=corpus) as checker:
            chosen, notes = ([], []) if secrets_only else select_tools(tools)
            for note in notes:
                _note(note)
            changed: ChangedLines | None
            origin: Callable[[Path], Path] | None
            with contextlib.ExitStack() as held:
                if staged:  # written out, for as long as they are checked
                    within = paths or (Path("."),)
                    snapshot, skipped = held.enter_context(
                        staged_files(
                            diff_rev or "HEAD",
                            Path.cwd(),
                            within,
                            every_line=diff_rev is None,
                            for_ruff=any(tool.name == "ruff" for tool in chosen),
                        )
                    )
                    for note in snapshot.notes:
                        _note(note)
                    files, left_out = _of_kind(snapshot.changed, secrets_only)
                    skipped += [
                        dataclasses.replace(s, path=snapshot.origin(s.path)) for s in left_out
                    ]
                    _not_over_staged(map(snapshot.origin, files), output, write_baseline)
                    changed, here, origin = snapshot.changed, snapshot.here, snapshot.origin
                else:
                    files, skipped, changed = _files(paths, diff_rev, secrets_only)
                    files, skipped = _outputs_left_out(files, skipped, output, write_baseline)
                    here, origin = Path.cwd(), None
                _note_skipped(skipped)
                removed: list[Path] = []
                not_checked: list[NotChecked] = []
                found = check_files(
                    files,
                    checker=checker,
                    tools=chosen,
                    changed=changed,
                    ignored=ignored,
                    secrets_only=secrets_only,
                    cwd=here,
                    plugin_check=file_checker(plugins),
                    origin=origin,
                    removed=removed,
                    not_checked=not_checked,
                )
                why = "removed while being checked"
                gone = [Skipped(origin(path) if origin else path, why) for path in removed]
                _note_skipped(gone)
                skipped += gone
                if staged:
                    found = snapshot.as_in_the_work_tree(found)
                    not_checked = snapshot.as_in_the_work_tree(not_checked)
                _note_not_checked(not_checked)
    except TetherError as exc:
        _fail(exc.message)
    top = git_top(Path.cwd())
    root = top or Path.cwd()
    # Outside git a baseline's paths are from its own folder, so it works from any below.
    kept = write_baseline or baseline
    baseline_root = top or (kept.resolve().parent if kept else root)
    if write_baseline is not None:
        count = save_baseline(write_baseline, found, baseline_root)
        click.echo(f"wrote {count} findings to {write_baseline}", err=True)
        return
    if known is not None:
        found = without_baseline(found, known, baseline_root)
    if output_format in _FROM_ROOT:
        found = _from_root(found, root)
        not_checked = _from_root(not_checked, root)
    if output_format == "json":  # the files of folders left out, as said on stderr
        given_name = GivenNames()
        shown = [(given_name(s.path), s.reason) for s in skipped]
        report = render_json(found, shown, not_checked=not_checked)
    else:
        report = RENDERERS[output_format](found, not_checked=not_checked)
    # A document read by another program (SARIF, JSON, GitHub's runner) is UTF-8 on
    # standard output too, whatever the locale; the text report is for the terminal.
    write_output(output, report, utf8=output_format != "text")
    threshold = SEVERITY_RANK.get(fail_on)
    if threshold is not None and any(SEVERITY_RANK[f.finding.severity] >= threshold for f in found):
        sys.exit(EXIT_NO)


@click.group()
def corpus() -> None:
    """The index of code that suggestions must not reproduce (docs/check.md)."""


@corpus.command("index")
@click.argument(
    "folders",
    nargs=-1,
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
)
@click.option(
    "--index",
    "index_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Index file; default compliance.corpus_index or <data.home>/corpus.sqlite.",
)
def corpus_index(folders: tuple[Path, ...], index_path: Path | None) -> None:
    """Fingerprint the source files under FOLDERS into the corpus index.

    Files already indexed with the same content are skipped, so running it again only
    adds what changed.
    """
    settings = settings_from_flags()
    path = index_path or settings.compliance.corpus_index or settings.data.home / "corpus.sqlite"
    with CorpusIndex(path) as index:
        for folder in folders:
            report = index.add_tree(folder)
            click.echo(
                f"{folder}: {report.indexed} files indexed, {report.unchanged} unchanged, "
                f"{len(report.skipped)} skipped, {report.fingerprints} fingerprints"
            )
            _note_skipped(report.skipped, left="indexed")
        stats = index.stats()
    click.echo(f"{path}: {stats['files']} files, {stats['fingerprints']} fingerprints")


COMMANDS = [check, corpus]
