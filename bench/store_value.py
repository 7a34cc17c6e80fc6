"""What the function store is worth: the project suite with and without it, side by side.

For each project of ``make eval-projects``, its top-level functions go into a fresh store
and are vetted (they are the project's own helpers, reviewed by its maintainers); then
``tether eval project`` regenerates the same functions twice, without the store and with
it (the function being written is always left out), same seed. Printed per project: pass
rate and style conformance of both runs, and the paired difference in pass rate with its
95% interval and an exact sign test, whatever it shows.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from bench._common import print_table, write_result
from bench.eval_projects import FOLDER, PROJECTS, run_project
from tether.evals.metrics import compare
from tether.evals.store import EvalStore, per_task
from tether.settings import load_settings
from tether.store import SnippetStore
from tether.store.ingest import import_folder

NOT_LIBRARY = ("test", "doc", "example", "bench")
LICENCES = {
    "inflection-0.5.1": "MIT",
    "toolz-1.2.0": "BSD-3-Clause",
    "semver-3.1.2": "BSD-3-Clause",
}


def _is_library(path: Path) -> bool:
    """A package folder of the project (or its src/), not its tests, docs or examples."""
    if path.name == "src":
        return True
    package = path.is_dir() and (path / "__init__.py").exists()
    return package and not path.name.startswith(NOT_LIBRARY)


def _stock(home: Path, project: Path, licence: str) -> int:
    """The project's library code (not its tests or docs) into the store, vetted."""
    settings = load_settings(cwd=home, environ={"TETHER_HOME": str(home)})
    library = [p for p in sorted(project.iterdir()) if _is_library(p)]
    with SnippetStore.from_settings(settings) as db:
        for folder in library:
            import_folder(db, folder, "bench", licence=licence)
        ids = [s.id for s in db.snippets(limit=100_000) if "/tests/" not in s.current.origin.path]
        db.decide_many(ids, "vetted", "bench", "the project's own helpers")
    return len(ids)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=20, help="functions per project")
    args = parser.parse_args()
    rows, results = [], {}
    for name, pytest_args in PROJECTS.items():
        project = FOLDER / name
        if not project.is_dir():
            raise SystemExit(f"{project} is missing: run `make eval-projects` first")
        with tempfile.TemporaryDirectory(prefix="tether-store-value-") as folder:
            home = Path(folder)
            stocked = _stock(home, project, LICENCES[name])
            without = run_project(project, pytest_args, args.limit, "--no-snippets", home=home)
            with_store = run_project(project, pytest_args, args.limit, "--snippets", home=home)
            with EvalStore(home / "evals.sqlite") as evals:
                a = per_task(evals.samples(without["run"]))
                b = per_task(evals.samples(with_store["run"]))
            paired = compare(a, b)
        results[name] = {
            "snippets_in_store": stocked,
            "without": without,
            "with": with_store,
            "difference": paired.as_record(),
        }
        rows.append(
            [
                name,
                stocked,
                without["tasks"],
                without["pass_at_k"]["pass@1"]["value"],
                with_store["pass_at_k"]["pass@1"]["value"],
                f"{paired.difference:+.3f} [{paired.low:+.3f}, {paired.high:+.3f}]",
                f"{paired.p_value:.2g}",
                without.get("style_conformance"),
                with_store.get("style_conformance"),
            ]
        )
    print_table(
        ["project", "in store", "functions", "pass without", "pass with", "difference",
         "p", "style without", "style with"],
        rows,
    )  # fmt: skip
    print(f"wrote {write_result('store_value', {'limit': args.limit, 'projects': results})}")


if __name__ == "__main__":
    main()
