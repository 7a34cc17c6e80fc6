"""Run ``tether check`` through its entry point, and build small git repositories."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tether.compliance.check import Checker
from tether.findings import Finding


def tether_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment without TETHER_* settings, with a throw-away data directory."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
    env["TETHER_HOME"] = str(home)
    env.update(extra)
    return env


def tether(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tether", *args],
        cwd=cwd,
        env=tether_env(cwd / ".tether-home", **env),
        capture_output=True,
        text=True,
        timeout=120,
    )


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, check=True, timeout=60
    )
    return done.stdout


def init_repo(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.email", "dev@example.invalid")
    git(path, "config", "user.name", "Dev")
    git(path, "config", "commit.gpgsign", "false")
    (path / ".gitignore").write_text(".tether-home/\n")
    return path


def commit_all(path: Path, message: str = "change") -> None:
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", message)


# The inline rules alone: no secret scanner, no corpus, default actions.
PLAIN = Checker()


def rule_ids(findings: list[Finding]) -> set[str]:
    return {f.rule_id for f in findings}


def check(code: str, language: str = "python") -> list[Finding]:
    return PLAIN.check_code(code, language)
