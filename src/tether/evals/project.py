"""A team's own project as a benchmark: blank one tested function's body at a time, have the
model write it again, and run the project's own tests on the result.

The project's tests run once first, under coverage, to find the functions they exercise
(and to prove they pass as they are). Each sample then runs the whole suite, in the
sandbox, with the regenerated body in place: passed when pytest does, with the line and
branch coverage of the generated lines, and whether they follow the project's own style
rules (its ruff configuration, and pep8 naming).
"""

from __future__ import annotations

import ast
import asyncio
import hashlib
import json
import re
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tether.cpus import usable_cores
from tether.errors import ConfigError, ToolError
from tether.evals.runner import (
    Generate,
    Progress,
    RunConfig,
    all_or_none,
    generate_sample,
    summarize,
)
from tether.evals.store import EvalStore, SampleResult
from tether.pipeline import FimInput, FimTask
from tether.sandbox import Limits, Outcome, Sandbox, Status
from tether.suggestions.patch import split_lines

MAX_PROJECT_BYTES = 8 * 1024 * 1024
_KEPT = {".py", ".cfg", ".toml", ".ini", ".txt", ".json", ".rst", ".md", ".yaml", ".yml"}
_SKIPPED_DIRS = {
    *(".git", ".hg", ".tox", ".nox", ".venv", "venv", "build", "dist", "__pycache__"),
    # Tools' caches: text (mypy's is JSON, tens of MiB), but nothing the tests read.
    *(".mypy_cache", ".pytest_cache", ".ruff_cache", ".hypothesis", "htmlcov", "node_modules"),
}
_CONFIGS = ("pytest.ini", ".pytest.ini", "pyproject.toml", "tox.ini", "setup.cfg")
# pytest -q's last line: "1 failed, 2 passed in 0.05s", "no tests ran", "2 errors".
_COUNTS = re.compile(r"^(\d+ (failed|passed|errors?|skipped)\b.*| *no tests ran\b.*)$")
_PYTEST = ["-q", "-x", "-p", "no:cacheprovider", "-p", "no:cov", "-o", "addopts="]

# Runs inside the sandbox: the project's tests under coverage, figures to result.json.
_RUNNER = """
import json, os, sys
os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # the project's tests, not this Python's plugins
# As if the project were installed for development: its root, or its src/, imports.
sys.path[:0] = [os.path.abspath(p) for p in ("src", ".") if os.path.isdir(p)]
import coverage, pytest
targets = {targets!r}
span = {span!r}
included = [os.path.abspath(t) for t in targets]
cov = coverage.Coverage(data_file=None, branch=True, include=included)
sys.stdout = sys.stderr  # pytest's report is the story of a failure, kept with its tail
cov.start()
code = int(pytest.main({args!r}))
cov.stop()
report = {{"pytest": code, "covered": {{}}}}
for target in targets:
    analysis = cov._analyze(os.path.abspath(target))
    run = analysis.executed & analysis.statements
    report["covered"][target] = sorted(run)
    if span and target == span[0]:
        first, last = span[1], span[2]
        lines = [n for n in analysis.statements if first <= n <= last]
        stats = [v for n, v in analysis.branch_stats().items() if first <= n <= last]
        report["lines"] = len(lines)
        report["lines_run"] = sum(n in run for n in lines)
        report["branches"] = sum(total for total, _ in stats)
        report["branches_run"] = sum(taken for _, taken in stats)
with open("result.json", "w") as handle:
    json.dump(report, handle)
assert code == 0, "the tests failed"
"""


@dataclass(frozen=True)
class Target:
    """One function whose body the model writes again."""

    path: str  # inside the project
    name: str  # qualified: Class.method
    prefix: str  # the file up to the body (signature and docstring)
    body: str  # the original body: the reference
    suffix: str  # the file after the function
    first_line: int  # of the body in the file

    @property
    def task_id(self) -> str:
        return f"{self.path}::{self.name}"

    @property
    def original(self) -> str:
        """The file as it is, with this function's body in place."""
        return self.prefix + self.body + self.suffix

    def file_with(self, body: str) -> tuple[str, int, int]:
        """The file with ``body`` in place, and the body's first and last line in it."""
        body = body if body.endswith("\n") else body + "\n"
        last = self.first_line + body.count("\n") - 1
        return self.prefix + body + self.suffix, self.first_line, last


@dataclass(frozen=True)
class Project:
    root: Path
    name: str
    files: dict[str, str]  # relative path -> text
    sha256: str
    sources: tuple[str, ...]  # modules that are not tests
    pytest_args: tuple[str, ...] = ()  # e.g. --ignore for tests the sandbox cannot run

    @classmethod
    def read(cls, root: Path, pytest_args: tuple[str, ...] = ()) -> Project:
        if not root.is_dir():
            raise ConfigError(f"{root} is not a folder; give the project's folder")
        files: dict[str, str] = {}
        size = 0
        for path in sorted(_walk(root)):
            relative = path.relative_to(root).as_posix()
            if _not_utf8(relative):
                continue  # a name that is not text: it cannot be hashed, stored or shown
            try:
                text = path.read_text(encoding="utf-8")  # not the locale's: code is UTF-8
            except (UnicodeDecodeError, OSError):
                continue  # binary or unreadable: not what tests or the model need
            size += len(text)
            if size > MAX_PROJECT_BYTES:
                raise ConfigError(
                    f"{root} holds more than {MAX_PROJECT_BYTES // 2**20} MiB of text (at "
                    f"{relative}); tether eval project copies it all into the sandbox: move "
                    "what the tests do not need (data, generated files) out of the folder"
                )
            files[relative] = text
        sources = tuple(
            p for p in files if p.endswith(".py") and not _is_test(p) and not _is_tooling(p)
        )
        if not any(_is_test(p) for p in files):
            raise ConfigError(
                f"{root} has no tests (test_*.py, *_test.py or tests/); tether eval project "
                "runs the project's own tests"
            )
        digest = hashlib.sha256()
        for relative, text in files.items():
            digest.update(relative.encode() + b"\0" + text.encode() + b"\0")
        name = root.resolve().name  # `.` names the folder it is
        return cls(root, name, files, digest.hexdigest(), sources, pytest_args)

    @staticmethod
    def hashes_of(target: Target) -> set[str]:
        """The store's hash of the target function as it stands (top-level ones only: the
        store holds no methods), so retrieval can leave it out."""
        from tether.store.split import functions

        return {f.body_hash for f in functions(target.original, "python") if f.name == target.name}

    def sandbox_files(self, replaced: dict[str, str] | None = None) -> dict[str, str]:
        files = {**self.files, **(replaced or {})}
        if not any(name in files for name in _CONFIGS):
            files["pytest.ini"] = "[pytest]\n"  # so pytest stops looking above the project
        return files


def _walk(root: Path) -> Iterator[Path]:
    for path in root.iterdir():
        if path.name in _SKIPPED_DIRS or path.name.endswith(".egg-info"):
            continue
        if path.is_dir() and not path.is_symlink():
            yield from _walk(path)
        elif path.is_file() and path.suffix in _KEPT:
            yield path


def _not_utf8(name: str) -> bool:
    try:
        name.encode()
    except UnicodeEncodeError:  # bytes that are not UTF-8, kept by Python as surrogates
        return True
    return False


def _is_tooling(relative: str) -> bool:
    """Packaging and documentation scripts: not the project's code under test."""
    parts = relative.split("/")
    return parts[-1] in ("setup.py", "noxfile.py", "conftest.py") or parts[0] in ("docs", "doc")


def _is_test(relative: str) -> bool:
    parts = relative.split("/")
    name = parts[-1]
    return (
        name.startswith("test_")
        or name.endswith("_test.py")
        or name == "conftest.py"
        or any(p in ("tests", "test", "testing") for p in parts[:-1])
    )


def run_tests(
    project: Project,
    sandbox: Sandbox,
    targets: list[str],
    replaced: dict[str, str] | None = None,
    span: tuple[str, int, int] | None = None,
    timeout_s: float = 120.0,
    stop: threading.Event | None = None,
) -> Outcome:
    """The project's tests, in the sandbox, with coverage of ``targets``."""
    args = [*_PYTEST, *project.pytest_args]
    program = _RUNNER.format(targets=targets, span=span, args=args)
    files = project.sandbox_files(replaced)
    return sandbox.run(program, Limits(timeout_s=timeout_s), files, stop)


def _pytest_summary(report: str, most: int = 12) -> str:
    """pytest's verdict lines from the tail of its report (which tests failed, and why),
    or the report's last lines when it has none (the tests could not be collected)."""
    lines = report.splitlines()
    if "Traceback (most recent call last):" in lines:  # the runner's own exit, not pytest's
        lines = lines[: len(lines) - lines[::-1].index("Traceback (most recent call last):") - 1]
    chosen = [
        line
        for line in lines
        if line.startswith(("FAILED ", "ERROR ", "E   ")) or _COUNTS.match(line)
    ] or lines[-most:]
    return "".join(f"\n  {line}" for line in chosen[-most:])


_NO_TESTS_COLLECTED = 5  # pytest's exit code when nothing was selected


def discover(project: Project, sandbox: Sandbox) -> tuple[list[Target], float]:
    """The functions the project's tests exercise, and how long the tests take."""
    baseline = run_tests(project, sandbox, list(project.sources))
    if baseline.data is not None and baseline.data.get("pytest") == _NO_TESTS_COLLECTED:
        raise ConfigError(
            f"pytest selected no test of {project.name} (its exit code 5); "
            "tether eval project needs tests that exercise the code: check the --pytest-arg "
            "options (a -k or a path that matches nothing)"
        )
    if not baseline.passed or baseline.data is None:
        raise ConfigError(
            f"the tests of {project.name} do not pass as the project stands "
            f"({baseline.status}){_pytest_summary(baseline.detail)}\ntether eval project needs "
            "a suite that passes before any change; --pytest-arg=--ignore=PATH leaves out "
            "tests that cannot pass in the sandbox"
        )
    covered = {path: set(lines) for path, lines in baseline.data["covered"].items()}
    targets = [
        target
        for path in project.sources
        for target in _functions(path, project.files[path])
        if any(line in covered.get(path, ()) for line in _body_lines(target))
    ]
    return targets, baseline.duration_s


def _body_lines(target: Target) -> range:
    # The last line of a file without a final newline counts too.
    lines = target.body.count("\n") + (not target.body.endswith("\n"))
    return range(target.first_line, target.first_line + lines)


def _functions(path: str, text: str) -> Iterator[Target]:
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return
    # Cut at "\n" alone, as ast counts lines: splitlines() also cuts at a form feed.
    lines = split_lines(text)
    for node, qualname in _definitions(tree.body, ""):
        body = node.body
        if ast.get_docstring(node) is not None:
            body = body[1:]
        if not body or all(_placeholder(s) for s in body):
            continue  # nothing to write, or only an ellipsis
        start, end = body[0].lineno, node.end_lineno or body[-1].lineno
        if any(b.lineno == node.lineno for b in body):
            continue  # a one-line def: no body of its own lines
        prefix = "".join(lines[: start - 1])
        indent = lines[start - 1][: len(lines[start - 1]) - len(lines[start - 1].lstrip())]
        original = "".join(lines[start - 1 : end])
        yield Target(
            path=path,
            name=qualname + node.name,
            prefix=prefix + indent,
            body=original[len(indent) :],
            suffix="".join(lines[end:]),
            first_line=start,
        )


def _placeholder(statement: ast.stmt) -> bool:
    """``pass``, ``...`` or a bare string: no code. A call (``items.append(x)``) is."""
    return isinstance(statement, ast.Pass) or (
        isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant)
    )


def _definitions(
    statements: list[ast.stmt], owner: str
) -> Iterator[tuple[ast.FunctionDef | ast.AsyncFunctionDef, str]]:
    for statement in statements:
        if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef):
            yield statement, owner
        elif isinstance(statement, ast.ClassDef):
            yield from _definitions(statement.body, f"{owner}{statement.name}.")


def style_findings(
    project: Project, path: str, text: str, first: int, last: int
) -> list[str] | None:
    """ruff's findings on lines ``first``-``last`` of ``text`` as file ``path``, under the
    project's own ruff configuration plus pep8 naming; None when the code does not parse
    (that is a matter of correctness, not of style) or ruff is not installed."""
    from tether.compliance.tools import RUFF

    ruff = RUFF.find()
    if ruff is None:
        return None
    try:
        ast.parse(text)
    except SyntaxError:
        return None
    with tempfile.TemporaryDirectory(prefix="tether-style-") as folder:
        root = Path(folder)
        for name in ("pyproject.toml", "ruff.toml", ".ruff.toml"):
            if name in project.files:
                (root / name).write_text(project.files[name], encoding="utf-8")
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        done = subprocess.run(
            [*ruff, "check", "--output-format", "json", "--exit-zero", "--extend-select", "N",
             "--no-cache", path],
            cwd=root,
            capture_output=True,
            text=True,
            check=False,
        )  # fmt: skip
    if done.returncode != 0:  # with --exit-zero, findings are 0: this is ruff refusing
        said = (done.stderr.strip().splitlines() or ["no word"])[-1][:300]
        raise ToolError(
            f"ruff cannot judge the style of {path} (status {done.returncode}: {said}); fix "
            "the project's ruff configuration (pyproject.toml, ruff.toml)"
        )
    try:
        findings: list[dict[str, Any]] = json.loads(done.stdout or "[]")
    except ValueError as exc:
        raise ConfigError(f"ruff's output could not be read: {done.stderr[-300:]}") from exc
    return [
        f"{f['code']} {f['message']}"
        for f in findings
        if first <= int(f["location"]["row"]) <= last
    ]


async def run_project(
    generate: Generate,
    project: Project,
    targets: list[Target],
    sandbox: Sandbox,
    store: EvalStore,
    run_id: str,
    config: RunConfig,
    test_seconds: float,
    progress: Callable[[int, int, float], None] = lambda done, total, seconds: None,
) -> dict[str, Any]:
    """Each target's body written again by the model, the project's tests run on it."""
    done = store.done(run_id)
    todo = [t for t in targets if (t.task_id, 0) not in done]
    tracker = Progress(len(todo), progress)
    gate = asyncio.Semaphore(config.concurrency)
    loop = asyncio.get_running_loop()
    timeout = max(30.0, 4 * test_seconds + 10)
    workers = config.workers or usable_cores()
    stop = threading.Event()
    with ThreadPoolExecutor(workers, thread_name_prefix="tether-project") as pool:

        async def one(target: Target) -> None:
            fim = FimInput(prefix=target.prefix, suffix=target.suffix, language="python")
            # The function being written must not be handed over by the store.
            task = FimTask(
                config.params(0),
                fim,
                snippets=config.snippets,
                exclude_snippets=frozenset(project.hashes_of(target)),
            )
            async with gate:
                made = await generate_sample(generate, task, target.task_id, 0)
            if isinstance(made, SampleResult):  # refused, or its answer withheld
                store.add(run_id, made)
                tracker.step()
                return
            answer, generated = made
            text, first, last = target.file_with(answer.text)
            span = (target.path, first, last)
            unparsed = _syntax_error(text, target.path)
            if unparsed is not None:  # no test can import it: said so, as suites say it
                status, passed, duration = Status.SYNTAX_ERROR, False, 0.0
                extra: dict[str, Any] = {"reason": unparsed}
            else:

                def test() -> Outcome:
                    replaced = {target.path: text}
                    return run_tests(project, sandbox, [target.path], replaced, span, timeout, stop)

                outcome = await loop.run_in_executor(pool, test)
                style = await loop.run_in_executor(
                    pool, style_findings, project, target.path, text, first, last
                )
                status, passed, duration = outcome.status, outcome.passed, outcome.duration_s
                extra = {
                    **_coverage(outcome),
                    "style": style,
                    # Nothing written is no code to judge (judged, an empty body conformed).
                    "conforming": None if style is None or not answer.text.strip() else not style,
                    # pytest's verdict lines: which test failed, and on what
                    **({} if passed else {"reason": _failure(outcome)}),
                }
            store.add(
                run_id,
                SampleResult(
                    task_id=target.task_id,
                    sample=0,
                    completion=answer.text,
                    status=str(status),
                    passed=passed,
                    duration_s=duration,
                    generate_s=generated,
                    tokens=answer.completion_tokens,
                    trace_id=answer.id or None,
                    extra=extra,
                ),
            )
            tracker.step()

        try:
            await all_or_none([one(t) for t in todo])
        finally:
            # Stopped (Ctrl-C, SIGTERM, a failure): the tests under way end now, not at their
            # time limit, which the pool would wait out (a generated body that hangs: minutes).
            stop.set()
    return summarize_project(store.samples(run_id))


def _syntax_error(text: str, path: str) -> str | None:
    """Why the file with the generated body does not parse; None when it does."""
    try:
        ast.parse(text, path)
    except SyntaxError as exc:
        return f"{path}:{exc.lineno}: {exc.msg}"
    except ValueError as exc:  # a NUL byte in the answer
        return f"{path}: {exc}"
    return None


def _failure(outcome: Outcome) -> str:
    """The first of pytest's verdict lines on a failed run, or what the sandbox said."""
    summary = _pytest_summary(outcome.detail, most=4).strip()
    return " ".join(line.strip() for line in summary.splitlines()) or str(outcome.status)


def _coverage(outcome: Outcome) -> dict[str, Any]:
    data = outcome.data or {}
    lines, branches = data.get("lines", 0), data.get("branches", 0)
    return {
        "lines": lines,
        "line_coverage": data.get("lines_run", 0) / lines if lines else None,
        "branches": branches,
        "branch_coverage": data.get("branches_run", 0) / branches if branches else None,
    }


def summarize_project(results: list[SampleResult]) -> dict[str, Any]:
    summary = summarize(results, 1)
    extras = [r.extra or {} for r in results]
    lines = [e["line_coverage"] for e in extras if e.get("line_coverage") is not None]
    branches = [e["branch_coverage"] for e in extras if e.get("branch_coverage") is not None]
    summary["line_coverage"] = sum(lines) / len(lines) if lines else None
    summary["branch_coverage"] = sum(branches) / len(branches) if branches else None
    judged = [bool(e["conforming"]) for e in extras if e.get("conforming") is not None]
    summary["style_conformance"] = sum(judged) / len(judged) if judged else None
    summary["style_judged"] = len(judged)  # samples with code that parsed
    return summary
