"""What a run measured, with what, and where: enough to say what a figure means and to
measure it again."""

from __future__ import annotations

import platform
import subprocess
import time
from pathlib import Path
from typing import Any

from tether import __version__
from tether.cpus import cpu_name, usable_cores
from tether.evals.datasets import Dataset


def machine() -> dict[str, Any]:
    return {
        "system": platform.system(),
        "machine": platform.machine(),
        "cpu": cpu_name(),
        "cores": usable_cores(),
        "python": platform.python_version(),
    }


def tether_build() -> dict[str, Any]:
    """tether's version, and its git commit when it runs from a checkout."""
    source = Path(__file__).resolve().parents[3]
    commit = ""
    if (source / ".git").exists():
        done = subprocess.run(
            ["git", "-C", str(source), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
        )
        commit = done.stdout.strip() if done.returncode == 0 else ""
    return {"version": __version__, "git_commit": commit}


def manifest(
    dataset: Dataset, config: dict[str, Any], answering: dict[str, Any], source: str
) -> dict[str, Any]:
    return {
        "suite": dataset.suite.name,
        "dataset": {
            "file": dataset.path.name,
            "sha256": dataset.sha256,
            "tasks": len(dataset.problems),
            "licence": dataset.suite.licence,
        },
        "source": source,  # "generated" by tether, or "scored" samples made elsewhere
        "config": config,
        "engine": answering,
        "tether": tether_build(),
        "machine": machine(),
        "started": time.time(),
    }
