"""`tether eval project` on three real projects (`make eval-projects` fetches them).

inflection (one module of string functions), toolz (functional utilities) and semver
(version parsing): pure Python, tests in their source distributions, suites that run in
about a second, so each regenerated function is judged by the project's whole suite.
Prints pass rate, coverage of the generated lines and style conformance per project.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench._common import BENCH_DIR, print_table, write_result

FOLDER = BENCH_DIR.parent / ".venv" / "eval-projects"
# Each project's folder, and pytest arguments for tests the sandbox cannot run as shipped.
PROJECTS = {
    "inflection-0.5.1": [],
    # test_parallel forks processes, which the sandbox forbids; test_has_version needs the
    # package installed (its metadata), not just importable.
    "toolz-1.2.0": [
        "--ignore=toolz/sandbox/tests/test_parallel.py",
        "--deselect=toolz/tests/test_package.py::test_has_version",
    ],
    "semver-3.1.2": [],
}


def run_project(
    folder: Path, pytest_args: list[str], limit: int, *flags: str, home: Path | None = None
) -> dict[str, Any]:
    """``tether eval project`` on ``folder`` (in a subprocess); its JSON summary."""
    command = [
        sys.executable, "-m", "tether", "eval", "project", str(folder),
        "--limit", str(limit), "--json", *flags,
        *(f"--pytest-arg={a}" for a in pytest_args),
    ]  # fmt: skip
    env = {**os.environ, **({"TETHER_HOME": str(home)} if home else {})}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"{folder.name}: {done.stderr[-2000:]}")
    summary: dict[str, Any] = json.loads(done.stdout[done.stdout.index("{") :])
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=20, help="functions per project")
    args = parser.parse_args()
    rows, results = [], {}
    for name, pytest_args in PROJECTS.items():
        folder = FOLDER / name
        if not folder.is_dir():
            raise SystemExit(f"{folder} is missing: run `make eval-projects` first")
        summary = run_project(folder, pytest_args, args.limit)
        results[name] = summary
        rows.append(
            [
                name,
                summary["tasks"],
                summary["pass_at_k"]["pass@1"]["value"],
                summary.get("line_coverage"),
                summary.get("branch_coverage"),
                summary.get("style_conformance"),
            ]
        )
    print_table(["project", "functions", "pass", "line cov", "branch cov", "style"], rows)
    print(f"wrote {write_result('eval_projects', {'projects': results})}")


if __name__ == "__main__":
    main()
