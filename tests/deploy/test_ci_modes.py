"""The Action's suggest and licences modes, their shell steps run as a runner runs them
(install skipped), and the plain script they share with GitLab CI and shells."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.compliance.helpers import commit_all, git, init_repo, tether_env
from tests.stub_upstream import StubUpstream, stub_upstream

ROOT = Path(__file__).resolve().parents[2]


def _steps() -> dict[str, dict[str, Any]]:
    action = yaml.safe_load((ROOT / "action.yml").read_text())
    return {step.get("name", step.get("uses")): step for step in action["runs"]["steps"]}


@pytest.fixture
def runner(tmp_path: Path) -> dict[str, str]:
    temp = tmp_path / "runner-temp"
    temp.mkdir()
    summary = tmp_path / "step-summary.md"
    summary.touch()
    outputs = tmp_path / "step-outputs"
    outputs.touch()
    return tether_env(
        tmp_path / "home",
        RUNNER_TEMP=str(temp),
        GITHUB_STEP_SUMMARY=str(summary),
        GITHUB_OUTPUT=str(outputs),
        GITHUB_ACTION_PATH=str(ROOT),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    )


def _run(
    name: str, cwd: Path, env: dict[str, str], **inputs: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-e", "-c", _steps()[name]["run"]],
        cwd=cwd,
        env={**env, **inputs},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_suggest_mode_writes_patches_and_a_summary_and_never_commits(
    tmp_path: Path, runner: dict[str, str]
) -> None:
    repo = init_repo(tmp_path / "repo")
    (repo / "keep.py").write_text("def add(a, b):\n    return a + b\n")
    commit_all(repo, "base")
    base = git(repo, "rev-parse", "HEAD").strip()
    (repo / "src dir").mkdir()
    (repo / "src dir" / "sub.py").write_text("def sub(a, b):\n    return a - b\n")
    (repo / "keep.py").write_text(
        "def add(a, b):\n    return a + b\n\n\ndef neg(a):\n    return -a\n"
    )
    commit_all(repo, "pull request")
    head = git(repo, "rev-parse", "HEAD").strip()

    done = _run(
        "Suggest changes",
        repo,
        # Room for each whole file: an answer cut off inside its file gives no patch.
        {**runner, "TETHER_SUGGEST_ARGS": "--max-tokens 160"},
        INSTRUCTION="Add a docstring to each function",
        MAX_FILES="20",
        TETHER_SERVER="",
        BASE=base,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = Path(runner["RUNNER_TEMP"]) / "tether-suggestions"
    summary = (out / "summary.md").read_text()
    assert "| `keep.py` |" in summary and "| `src dir/sub.py` |" in summary
    assert "Add a docstring to each function" in summary
    assert summary in Path(runner["GITHUB_STEP_SUMMARY"]).read_text()
    for patch in out.glob("*.patch"):
        assert patch.read_text().startswith("--- a/")
        assert f"[{patch.name}](<{patch.name}>)" in summary
    assert git(repo, "rev-parse", "HEAD").strip() == head  # nothing committed
    assert git(repo, "status", "--porcelain") == ""  # nothing applied
    # The upload step's condition reads the folder from the step's outputs: hashFiles()
    # sees only the workspace, and the folder is in RUNNER_TEMP.
    assert f"folder={out}\n" in Path(runner["GITHUB_OUTPUT"]).read_text()
    upload = _steps()["Upload suggestions"]
    assert "steps.suggest.outputs.folder != ''" in upload["if"] and "hashFiles" not in upload["if"]
    assert _steps()["Suggest changes"]["id"] == "suggest"


def _pull_request(tmp_path: Path) -> tuple[Path, str]:
    """A repository with a commit on main and a branch that changes two files whose
    names would make one patch name, and one named like an option; and main's commit."""
    origin = init_repo(tmp_path / "origin")
    (origin / "base.py").write_text("x = 1\n")
    commit_all(origin, "base")
    base = git(origin, "rev-parse", "HEAD").strip()
    git(origin, "checkout", "-q", "-b", "feature")
    (origin / "sub").mkdir()
    for name in ("sub/x.py", "sub_x.py", "-dash.py"):
        (origin / name).write_text("y = 2\n")
    commit_all(origin, "pull request")
    return origin, base


def _shallow_clone(origin: Path, into: Path) -> Path:
    """The feature branch as actions/checkout gives it by default: one commit deep."""
    git(
        into.parent,
        "clone",
        "-q",
        "--depth",
        "1",
        "--branch",
        "feature",
        origin.as_uri(),
        str(into),
    )
    return into


def _swapping_stub() -> Any:
    return stub_upstream("```python\ny = 3\n```\n")


def _with_stub(runner: dict[str, str], stub: StubUpstream) -> dict[str, str]:
    return {**runner, "TETHER_ENGINE_KIND": "openai", "TETHER_UPSTREAM_BASE_URLS": stub.base_url}


def test_suggest_mode_deepens_a_shallow_checkout_and_names_each_patch_apart(
    tmp_path: Path, runner: dict[str, str]
) -> None:
    origin, base = _pull_request(tmp_path)
    shallow = _shallow_clone(origin, tmp_path / "shallow")
    with _swapping_stub() as stub:
        done = _run(
            "Suggest changes", shallow, _with_stub(runner, stub),
            INSTRUCTION="y is 3", MAX_FILES="5", BASE=base, DEFAULT_BRANCH="main",
        )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    out = Path(runner["RUNNER_TEMP"]) / "tether-suggestions"
    summary = (out / "summary.md").read_text()
    for name in ("sub/x.py", "sub_x.py", "-dash.py"):
        assert f"| `{name}` | [" in summary, summary
    assert len(list(out.glob("*.patch"))) == 3  # sub/x.py and sub_x.py: one patch each
    assert "base.py" not in summary


def test_a_new_branch_s_first_push_is_compared_with_the_default_branch(
    tmp_path: Path, runner: dict[str, str]
) -> None:
    origin, _ = _pull_request(tmp_path)
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", "--branch", "feature", origin.as_uri(), str(clone))
    with _swapping_stub() as stub:
        done = _run(
            "Suggest changes", clone, _with_stub(runner, stub),
            INSTRUCTION="y is 3", MAX_FILES="5", BASE="0" * 40, DEFAULT_BRANCH="main",
        )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    summary = (Path(runner["RUNNER_TEMP"]) / "tether-suggestions" / "summary.md").read_text()
    assert "| `sub_x.py` | [" in summary and "base.py" not in summary


def test_the_script_fails_where_it_cannot_compare_not_reporting_no_changes(
    tmp_path: Path, runner: dict[str, str]
) -> None:
    origin, base = _pull_request(tmp_path)
    shallow = _shallow_clone(origin, tmp_path / "shallow")
    git(shallow, "fetch", "-q", "--depth=1", "origin", base)  # the commit, not the history
    script = ROOT / "deploy" / "ci" / "suggest.sh"
    done = subprocess.run(
        ["bash", str(script), base, "x", str(tmp_path / "out")],
        cwd=shallow, env=runner, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"cannot list the files changed since {base}" in done.stderr
    assert "fetch-depth: 0" in done.stderr
    assert not (tmp_path / "out" / "summary.md").exists()


def test_suggest_mode_needs_an_instruction_and_a_known_base(
    tmp_path: Path, runner: dict[str, str]
) -> None:
    repo = init_repo(tmp_path / "repo")
    (repo / "a.py").write_text("x = 1\n")
    commit_all(repo, "base")
    missing = _run("Suggest changes", repo, runner, INSTRUCTION="", MAX_FILES="5", BASE="HEAD")
    assert missing.returncode == 2 and "needs an instruction" in missing.stdout
    script = ROOT / "deploy" / "ci" / "suggest.sh"
    unknown = subprocess.run(
        ["bash", str(script), "no-such-rev", "x", str(tmp_path / "out")],
        cwd=repo, env=runner, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert unknown.returncode == 2 and "no-such-rev is not a revision" in unknown.stderr
    bad_mode = _run("Install tether", repo, runner, MODE="deploy", SERVER="", EXTRAS="")
    assert bad_mode.returncode == 2 and "mode must be check, suggest or licences" in bad_mode.stdout


def test_licences_mode_writes_a_cyclonedx_sbom_and_reports_in_the_summary(
    tmp_path: Path, runner: dict[str, str]
) -> None:
    done = _run(
        "Licence review", tmp_path, runner, EXTRAS="embedded, check"
    )  # as a person types a list
    assert done.returncode == 0, done.stdout + done.stderr
    sbom = json.loads((Path(runner["RUNNER_TEMP"]) / "tether-sbom.cdx.json").read_text())
    assert sbom["bomFormat"] == "CycloneDX" and sbom["metadata"]["component"]["name"] == "tether"
    summary = Path(runner["GITHUB_STEP_SUMMARY"]).read_text()
    assert "### tether licence review" in summary and "all pass" in summary
    failing = _run("Licence review", tmp_path, {**runner, "TETHER_LICENCES_ALLOW": "MIT"},
                   EXTRAS="embedded")  # fmt: skip
    assert failing.returncode == 1


def _script(repo: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(ROOT / "deploy" / "ci" / "suggest.sh"), *args],
        cwd=repo, env=env, capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip


def test_a_binary_file_is_noted_and_a_pipe_in_a_name_keeps_the_table_whole(
    tmp_path: Path, runner: dict[str, str]
) -> None:
    """A pull request that adds an image failed the whole run; a file named a|b.py made
    its row five cells under a header of three."""
    origin, base = _pull_request(tmp_path)
    (origin / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    (origin / "a|b.py").write_text("y = 2\n")
    commit_all(origin, "an image and a pipe")
    out = tmp_path / "out"
    with _swapping_stub() as stub:
        done = _script(origin, _with_stub(runner, stub), base, "y is 3", str(out), "10")
    assert done.returncode == 0, done.stdout + done.stderr
    summary = (out / "summary.md").read_text()
    assert "| `logo.png` | skipped: not a text file | |" in summary
    (row,) = [line for line in summary.splitlines() if line.startswith("| `a")]
    assert row.replace("\\|", "").count("|") == 4, row  # three cells
    assert not list(out.glob("*logo*"))


@pytest.mark.parametrize("max_files", ["ten", "-1", "2.5"])
def test_a_max_files_that_is_not_a_whole_number_is_refused(
    tmp_path: Path, runner: dict[str, str], max_files: str
) -> None:
    origin, base = _pull_request(tmp_path)
    done = _script(origin, runner, base, "y is 3", str(tmp_path / "out"), max_files)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "MAX_FILES must be a whole number" in done.stderr
    assert not (tmp_path / "out").exists()
