"""The heavier checkers ``tether check`` runs beside the inline rules: ruff, bandit, semgrep.

Each runs as a subprocess with JSON output over the files it understands, and its results
become :class:`FileFinding` s with rule ids ``ruff/<code>``, ``bandit/<test id>`` and
``semgrep/<rule id>``. ruff and bandit come with ``pip install 'tether[check]'``; semgrep
is used when it is on PATH, with the rules shipped in ``semgrep.yml`` beside this module.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tether.compliance.files import DisplayPaths, Skipped, is_wide_text, read_source
from tether.compliance.report import FileFinding, name_bytes
from tether.errors import RequestError, ToolError
from tether.findings import Finding, Severity

SEMGREP_RULES = Path(__file__).with_name("semgrep.yml")
_FILES_PER_RUN = 200  # keeps each command line far below the OS limit
# A run of fewer files than this is not worth a core of its own: bandit takes about 0.2 s to
# start, and 40 ms a file.
_FILES_PER_CORE = 50
_PYTHON = frozenset({".py", ".pyi"})


@dataclass(frozen=True)
class Tool:
    name: str
    suffixes: frozenset[str]
    find: Callable[[], list[str] | None]  # the command's first words, None if not installed
    arguments: Callable[[], list[str]]
    parse: Callable[[str, Path], list[FileFinding]]
    ok_codes: frozenset[int]
    install_hint: str
    # Runs on one core (bandit): a check of many files runs it on each core at once.
    one_core: bool = False
    # The arguments that make it list the files it checks, of those it is given: ruff
    # leaves out, unsaid, those its settings exclude.
    listing: Callable[[], list[str]] | None = None
    # The arguments that make it print the settings it reads for the file it is given,
    # which say whose exclusion left a file out.
    showing_settings: Callable[[], list[str]] | None = None


def _module_command(module: str) -> Callable[[], list[str] | None]:
    def find() -> list[str] | None:
        if importlib.util.find_spec(module) is not None:
            # -P: the folder being checked must not come first on the import path, where
            # a copy.py of its own would be imported, and run, in place of the real one.
            return [sys.executable, "-P", "-m", module]
        found = shutil.which(module)
        return [found] if found else None

    return find


def _finding(
    tool: str, rule: str, message: str, severity: Severity, line: int, column: int
) -> Finding:
    return Finding(
        rule_id=f"{tool}/{rule}",
        message=message,
        stage="compliance",
        action="annotate",
        severity=severity,
        line=max(line, 0),
        column=max(column, 0),
    )


def _load(stdout: str, empty: Any) -> Any:
    return json.loads(stdout) if stdout.strip() else empty


def parse_ruff(stdout: str, cwd: Path) -> list[FileFinding]:
    display_path = DisplayPaths(cwd)
    found = []
    for item in _load(stdout, []):
        code = item.get("code") or "invalid-syntax"
        if code == "invalid-syntax":  # tether's own `syntax` rule reports these
            continue
        if code == "E902" and is_wide_text(cwd / item["filename"]):
            continue  # ruff reads UTF-8 only; tether's own rules read this UTF-16 text
        location = item.get("location") or {}
        finding = _finding(
            "ruff",
            code,
            item["message"],
            "warning",
            location.get("row", 0),
            location.get("column", 0),
        )
        path = display_path(cwd / item["filename"])
        found.append(FileFinding(path, finding, "ruff", item.get("url") or ""))
    return found


_BANDIT_SEVERITY: dict[str, Severity] = {"HIGH": "error", "MEDIUM": "warning", "LOW": "note"}


def parse_bandit(stdout: str, cwd: Path) -> list[FileFinding]:
    data = _load(stdout, {})
    for error in data.get("errors", []):
        if "syntax error" in str(error.get("reason", "")):
            continue  # tether's own `syntax` rule reports these
        if _misencoded(cwd / str(error.get("filename"))):
            continue  # bandit fails on it; tether's `encoding` rule reports it, then checks it
        raise ToolError(f"bandit could not check {error.get('filename')}: {error.get('reason')}")
    display_path = DisplayPaths(cwd)
    found = []
    for item in data.get("results", []):
        message = (
            f"{_without_secret(str(item['issue_text']))} ({item['test_name']}, "
            f"confidence {str(item.get('issue_confidence', '')).lower()})"
        )
        severity = _BANDIT_SEVERITY.get(str(item.get("issue_severity")), "warning")
        finding = _finding(
            "bandit",
            item["test_id"],
            message,
            severity,
            item["line_number"],
            item.get("col_offset", 0) + 1,
        )
        path = display_path(cwd / item["filename"])
        found.append(FileFinding(path, finding, "bandit", item.get("more_info") or ""))
    return found


def _misencoded(path: Path) -> bool:
    """Whether ``path`` holds bytes its encoding does not decode, as tether reads it."""
    try:
        return read_source(path).bad_at is not None
    except (OSError, RequestError):
        return False


# bandit's B105-B107 quote the password they found ("Possible hardcoded password: 'x'"):
# a report, a SARIF upload and a CI log must not carry it.
_QUOTED_PASSWORD = re.compile(r"^(Possible hardcoded password): .*$", re.DOTALL)


def _without_secret(text: str) -> str:
    return _QUOTED_PASSWORD.sub(r"\1 (its value is not shown)", text)


_SEMGREP_SEVERITY: dict[str, Severity] = {"ERROR": "error", "WARNING": "warning", "INFO": "note"}


def parse_semgrep(stdout: str, cwd: Path) -> list[FileFinding]:
    data = _load(stdout, {})
    for error in data.get("errors", []):
        if error.get("level") == "error":
            raise ToolError(f"semgrep failed: {error.get('message') or error.get('type')}")
    display_path = DisplayPaths(cwd)
    found = []
    for item in data.get("results", []):
        extra = item.get("extra") or {}
        start = item.get("start") or {}
        rule = str(item["check_id"]).rsplit(".", 1)[-1]  # semgrep prefixes the config's path
        severity = _SEMGREP_SEVERITY.get(str(extra.get("severity")), "warning")
        message = str(extra.get("message") or rule).strip()
        finding = _finding(
            "semgrep", rule, message, severity, start.get("line", 0), start.get("col", 0)
        )
        found.append(FileFinding(display_path(cwd / item["path"]), finding, "semgrep"))
    return found


def _semgrep_find() -> list[str] | None:
    found = shutil.which("semgrep")
    return [found] if found else None


def _semgrep_arguments() -> list[str]:
    if not SEMGREP_RULES.is_file():
        raise ToolError(
            f"semgrep rules missing at {SEMGREP_RULES}; reinstall tether, or run with "
            "--tools ruff,bandit"
        )
    return [
        "scan",
        "--config",
        str(SEMGREP_RULES),
        "--json",
        "--metrics=off",
        "--quiet",
        "--disable-version-check",
    ]


RUFF = Tool(
    "ruff",
    _PYTHON,
    _module_command("ruff"),
    # --force-exclude: the project's `exclude` and `extend-exclude` apply to the files
    # named, as to those ruff finds itself; those it leaves out are listed (`listing`).
    lambda: ["check", "--output-format", "json", "--exit-zero", "--no-cache", "--force-exclude"],
    parse_ruff,
    frozenset({0}),
    "install it with `pip install 'tether[check]'`",
    listing=lambda: ["check", "--show-files", "--no-cache", "--force-exclude"],
    showing_settings=lambda: ["check", "--show-settings", "--no-cache"],
)
# The folders ruff's `exclude` names unless the project's settings set it (ruff 0.17,
# `ruff check --show-settings`), which may say why a file there went unchecked: ruff's own
# list, or the project's `exclude` where it names them too.
RUFF_DEFAULT_EXCLUDE = frozenset(
    {
        ".bzr", ".direnv", ".eggs", ".git", ".git-rewrite", ".hg", ".ipynb_checkpoints",
        ".mypy_cache", ".nox", ".pants.d", ".pyenv", ".pytest_cache", ".pytype",
        ".ruff_cache", ".svn", ".tox", ".venv", ".vscode", "__pypackages__", "_build",
        "buck-out", "dist", "node_modules", "site-packages", "venv",
    }
)  # fmt: skip
BANDIT = Tool(
    "bandit",
    _PYTHON,
    _module_command("bandit"),
    lambda: ["-f", "json", "-q"],
    parse_bandit,
    frozenset({0, 1}),
    "install it with `pip install 'tether[check]'`",
    one_core=True,
)
SEMGREP = Tool(
    "semgrep",
    frozenset({".py", ".js", ".mjs", ".cjs", ".jsx", ".ts", ".tsx"}),
    _semgrep_find,
    _semgrep_arguments,
    parse_semgrep,
    frozenset({0, 1}),
    "install it with `pip install semgrep`",
)
TOOLS = {tool.name: tool for tool in (RUFF, BANDIT, SEMGREP)}


def select_tools(spec: str) -> tuple[list[Tool], list[str]]:
    """The tools named by ``--tools``, and a note for each optional one that is missing.

    ``auto``: ruff and bandit when installed, semgrep when on PATH; ``none``: no tool;
    else a comma-separated list, each of which must be installed.
    """
    spec = spec.strip().lower()
    if spec == "none":
        return [], []
    if spec == "auto":
        chosen, notes = [], []
        for tool in TOOLS.values():
            if tool is SEMGREP and tool.find() is not None and not SEMGREP_RULES.is_file():
                notes.append(f"semgrep skipped: its rules are missing at {SEMGREP_RULES}")
            elif tool.find() is not None:
                chosen.append(tool)
            elif tool is not SEMGREP:  # semgrep is optional: no note when it is absent
                notes.append(f"{tool.name} is not installed, skipped; {tool.install_hint}")
        return chosen, notes
    # A tool named twice runs once, else each of its findings would be reported twice.
    names = list(dict.fromkeys(part.strip() for part in spec.split(",") if part.strip()))
    if not names:
        raise ToolError("--tools is empty; name tools (ruff, bandit, semgrep), auto or none")
    named = []
    for name in names:
        wanted = TOOLS.get(name)
        if wanted is None:
            raise ToolError(
                f"unknown tool {name!r} in --tools; use {', '.join(TOOLS)}, auto or none"
            )
        if wanted.find() is None:
            raise ToolError(f"{name} is not installed; {wanted.install_hint}")
        named.append(wanted)
    return named, []


class ToolRuns:
    """The tools' processes of one check, which ``stop`` kills: a check interrupted (Ctrl-C,
    SIGTERM) ends at once, where it waited for every tool to finish, or left them running."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: set[subprocess.Popen[str]] = set()
        self._stopped = False

    def run(self, command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
        with self._lock:
            if self._stopped:
                raise ToolError("stopped")
            process = subprocess.Popen(
                command,
                cwd=cwd,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                encoding="utf-8",
                errors="replace",
                # Its own process group, killed whole: a tool's own processes (semgrep's
                # semgrep-core) would outlive it, and hold its output open, which the
                # check waits on.
                start_new_session=True,
            )
            self._running.add(process)
        try:
            stdout, stderr = process.communicate()
        finally:
            with self._lock:
                self._running.discard(process)
        return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            for process in self._running:  # those whose run has not yet returned
                with contextlib.suppress(ProcessLookupError, PermissionError):  # all ended
                    os.killpg(process.pid, signal.SIGKILL)


def run_tool(
    tool: Tool, files: Sequence[Path], cwd: Path, runs: ToolRuns | None = None
) -> list[FileFinding]:
    """``tool``'s findings in those of ``files`` it understands."""
    command = tool.find()
    if command is None:
        raise ToolError(f"{tool.name} is not installed; {tool.install_hint}")
    runs = runs or ToolRuns()
    found: list[FileFinding] = []
    for files_of_run in tool_runs(tool, files):
        done = _run(tool, runs, [*command, *tool.arguments()], files_of_run, cwd)
        try:
            found += tool.parse(done.stdout, cwd)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ToolError(f"cannot read {tool.name}'s JSON output ({exc!r})") from exc
    return found


def _run(
    tool: Tool, runs: ToolRuns, command: list[str], files: Sequence[Path], cwd: Path
) -> subprocess.CompletedProcess[str]:
    """``command`` run on ``files``; ToolError, saying why, unless it exits as ``tool``
    does when it worked."""
    try:
        # "--": a file named "-x.py" or "--config=x" is a file, never an option.
        done = runs.run([*command, "--", *map(str, files)], cwd)
    except OSError as exc:
        raise ToolError(f"cannot run {tool.name}: {exc}") from exc
    if done.returncode not in tool.ok_codes:
        raise ToolError(
            f"{tool.name} exited with status {done.returncode}: "
            f"{(done.stderr or done.stdout).strip()[-2000:]}"
        )
    return done


def left_out(
    tool: Tool,
    files: Sequence[Path],
    cwd: Path,
    runs: ToolRuns | None = None,
    exclusions: Exclusions | None = None,
) -> list[Skipped]:
    """Those of ``files`` (one of ``tool_runs``) that ``tool`` reads but leaves out, and
    why: ruff, given a file its settings exclude, checks nothing there and says nothing.
    ``exclusions``, shared by the runs of one check, reads the settings that say why once
    for them all."""
    command = tool.find()
    if tool.listing is None or command is None or not files:
        return []
    runs = runs or ToolRuns()
    done = _run(tool, runs, [*command, *tool.listing()], files, cwd)
    # Absolute, links kept, and with U+FFFD for the bytes of a name that are not UTF-8.
    listed = {_lossy(os.path.normpath(line)) for line in done.stdout.splitlines() if line}
    left = [file for file in files if _lossy(os.path.normpath(cwd / file)) not in listed]
    exclusions = exclusions or Exclusions(tool, cwd, runs)
    return [Skipped(file, exclusions.why(cwd / file)) for file in left]


def _lossy(name: str) -> str:
    return name_bytes(name).decode("utf-8", errors="replace")


class Exclusions:
    """The folders and patterns ruff's settings exclude, as ruff reads them for a file: its
    own list, unless the project's settings set `exclude`, and their `extend-exclude`. Read
    once in a check (which runs ruff on many files at once, from threads of its own) for
    the files that share the settings file ruff reads for them."""

    def __init__(self, tool: Tool, cwd: Path, runs: ToolRuns) -> None:
        self._tool, self._command, self._cwd, self._runs = tool, tool.find() or [], cwd, runs
        self._lock = threading.Lock()
        self._nearest: dict[Path, Path | None] = {}
        self._read: dict[Path | None, _Shown | None] = {}
        self._defaults: frozenset[str] | None = None

    def why(self, path: Path) -> str:
        """Why ruff, by its settings, left out ``path``, and what to do to have it checked."""
        with self._lock:
            return _why_excluded(path, self._cwd, self)

    def defaults(self, path: Path) -> frozenset[str]:
        """Ruff's own list, as the installed ruff has it (read for ``path``, the first file
        asked about, with no settings file), or as ruff 0.17 has it where it did not say."""
        if self._defaults is None:
            read = self._shown(path, "--isolated")
            self._defaults = frozenset(read.exclude) if read else RUFF_DEFAULT_EXCLUDE
        return self._defaults

    def of(self, path: Path) -> _Shown | None:
        """The settings ruff reads for ``path`` that exclude files; None where ruff did not
        say."""
        nearest = self._nearest_settings(path.parent)
        if nearest not in self._read:
            self._read[nearest] = self._shown(path)
        return self._read[nearest]

    def _nearest_settings(self, folder: Path) -> Path | None:
        """The folder of the settings file ruff reads for the files in ``folder``, the
        nearest up that holds its settings (None: none): the files under it share them."""
        if folder not in self._nearest:
            here = _holds_ruff_settings(folder)
            above = folder.parent
            self._nearest[folder] = (
                folder if here else None if above == folder else self._nearest_settings(above)
            )
        return self._nearest[folder]

    def _shown(self, path: Path, *extra: str) -> _Shown | None:
        if self._tool.showing_settings is None:
            return None
        arguments = [*self._command, *self._tool.showing_settings(), *extra]
        try:
            done = _run(self._tool, self._runs, arguments, [path], self._cwd)
        except ToolError:
            return None  # the notes say less, the check goes on
        exclude = _listed_setting(done.stdout, "file_resolver.exclude")
        extend = _listed_setting(done.stdout, "file_resolver.extend_exclude")
        settings = re.search(r'^Settings path: (".*")$', done.stdout, re.MULTILINE)
        if settings is None:  # none: ruff's project is the folder it runs in
            root = self._cwd
        else:
            try:
                root = Path(json.loads(settings[1])).parent
            except ValueError:
                return None
        if exclude is None or extend is None:
            return None
        return _Shown(exclude, extend, root)


@dataclass(frozen=True)
class _Shown:
    """What ``ruff check --show-settings`` says of the settings that exclude files."""

    exclude: list[str]
    extend_exclude: list[str]
    # The folder of the settings file ruff read (where none, the one it ran in): ruff
    # matches its exclusions with the names of the folders from there down.
    root: Path


def _holds_ruff_settings(folder: Path) -> bool:
    """Whether ``folder`` holds a settings file of ruff's, as ruff looks for them: a
    `.ruff.toml` or `ruff.toml`, or a `pyproject.toml` with a `[tool.ruff]` table (one that
    does not parse too: ruff says what is wrong with it)."""
    if (folder / ".ruff.toml").is_file() or (folder / "ruff.toml").is_file():
        return True
    pyproject = folder / "pyproject.toml"
    if not pyproject.is_file():
        return False
    try:
        with pyproject.open("rb") as file:
            tool = tomllib.load(file).get("tool")
    except (OSError, tomllib.TOMLDecodeError):
        return True
    return isinstance(tool, dict) and "ruff" in tool


def _listed_setting(shown: str, name: str) -> list[str] | None:
    """The strings of the list ``name`` in ``ruff check --show-settings`` output, or None
    where it is not there as a list."""
    if re.search(rf"^{re.escape(name)} = \[\]$", shown, re.MULTILINE):
        return []
    match = re.search(rf"^{re.escape(name)} = \[\n(.*?)^\]$", shown, re.MULTILINE | re.DOTALL)
    if match is None:
        return None
    values = []
    for line in match[1].splitlines():
        quoted = line.strip().removesuffix(",")
        try:
            value = json.loads(quoted)
        except ValueError:
            return None
        if not isinstance(value, str):
            return None
        values.append(value)
    return values


def _folders_named(path: Path, root: Path) -> list[str]:
    """The names of the folders ruff matches its exclusions with for ``path``: from
    ``root`` (its project's folder, whose own name counts) down, or from the top of the
    file system where ``path`` lies outside it; each once, the outermost first."""
    path = Path(os.path.normpath(path))  # as ruff reads it: `..` taken away, links kept
    if path.is_relative_to(root):
        folders = (root.name, *path.relative_to(root).parent.parts)
    else:
        folders = path.parent.parts[1:]
    return list(dict.fromkeys(name for name in folders if name))


def _why_excluded(path: Path, cwd: Path, exclusions: Exclusions) -> str:
    """Why ruff, by its settings, left out ``path``: each folder above it that its own list
    or the project's `exclude` or `extend-exclude` names, and what to do to have it
    checked, or else the project's settings (a pattern, not a folder's name)."""
    defaults = exclusions.defaults(path)
    shown = exclusions.of(path)
    # Where ruff did not say: its own list, as known, matched from the folder it runs in.
    shown = shown or _Shown(sorted(defaults), [], cwd)
    # The project's `exclude` replaces ruff's list: a folder it names is its own choice,
    # ruff's list or not.
    own_exclude = set(shown.exclude) != defaults
    groups: dict[tuple[str, ...], list[str]] = {}  # by whose lists name them
    for folder in _folders_named(path, shown.root):
        own = tuple(
            key
            for key, names in (("exclude", shown.exclude), ("extend-exclude", shown.extend_exclude))
            if folder in names and (own_exclude or key != "exclude")
        )
        if own:
            groups.setdefault(own, []).append(folder)
        if folder in shown.exclude and not own_exclude:
            groups.setdefault((), []).append(folder)  # ruff's own list
    if not groups:
        return (
            "excluded by the project's ruff settings (`exclude`, `extend-exclude`); to lint "
            "it, take it out of them"
        )
    clauses, fixes = [], []
    for keys, folders in groups.items():
        listed = _and(folders)
        if not keys:
            clauses.append(f"{listed}, which ruff excludes by default")
            fixes.append(
                f"set ruff's `exclude` in the project's settings (it replaces ruff's list) "
                f"without {listed}"
            )
        else:
            quoted = ", ".join(f"`{key}`" for key in keys)
            clauses.append(f"{listed}, which the project's own ruff settings exclude ({quoted})")
            fixes.append(f"take {listed} out of {_and([f'`{key}`' for key in keys])}")
    named = {folder for folders in groups.values() for folder in folders}
    where = "in a folder named" if len(named) == 1 else "in folders named"
    return f"{where} {', and '.join(clauses)}; to lint it, {', and '.join(fixes)}"


def _and(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def tool_runs(tool: Tool, files: Sequence[Path], cores: int = 1) -> list[list[Path]]:
    """Those of ``files`` that ``tool`` reads, split among its runs: each of at most
    ``_FILES_PER_RUN`` files, and, for a tool that runs on one core, one for each of
    ``cores`` where there are files enough, to be run at once."""
    wanted = [f for f in files if f.suffix.lower() in tool.suffixes]
    count = -(-len(wanted) // _FILES_PER_RUN)
    if tool.one_core:
        count = max(count, min(cores, len(wanted) // _FILES_PER_CORE))
    if not count:
        return []
    size = -(-len(wanted) // count)
    return [wanted[start : start + size] for start in range(0, len(wanted), size)]
