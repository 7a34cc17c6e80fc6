"""SARIF structure, the pre-commit hooks under the real pre-commit, and the GitHub Action."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.compliance.helpers import commit_all, git, init_repo, tether, tether_env
from tether.compliance.report import FileFinding
from tether.compliance.sarif import render_sarif, sarif_log
from tether.findings import Finding

ROOT = Path(__file__).resolve().parents[2]
BAD = "x = eval(input())\n"
CLEAN = "def add(a, b):\n    return a + b\n"


def _assert_sarif(log: dict[str, Any]) -> None:
    """The parts of the SARIF 2.1.0 schema that readers rely on, checked by hand.

    jsonschema is not a dependency of tether, and the schema cannot be fetched offline.
    """
    assert log["version"] == "2.1.0"
    assert log["$schema"].endswith("sarif-2.1.0.json")
    assert set(log) <= {"$schema", "version", "runs", "inlineExternalProperties", "properties"}
    assert isinstance(log["runs"], list) and log["runs"]
    for run in log["runs"]:
        driver = run["tool"]["driver"]
        assert isinstance(driver["name"], str) and driver["name"]
        rules = driver["rules"]
        ids = [rule["id"] for rule in rules]
        assert len(ids) == len(set(ids)), "rule ids are unique in a driver"
        for rule in rules:
            assert isinstance(rule["shortDescription"]["text"], str)
            assert rule["defaultConfiguration"]["level"] in ("none", "note", "warning", "error")
        for result in run["results"]:
            assert isinstance(result["message"]["text"], str) and result["message"]["text"]
            assert result["level"] in ("none", "note", "warning", "error")
            assert rules[result["ruleIndex"]]["id"] == result["ruleId"]
            for location in result["locations"]:
                physical = location["physicalLocation"]
                assert isinstance(physical["artifactLocation"]["uri"], str)
                region = physical["region"]
                assert isinstance(region["startLine"], int) and region["startLine"] >= 1
                assert isinstance(region["startColumn"], int) and region["startColumn"] >= 1
            for value in result.get("partialFingerprints", {}).values():
                assert isinstance(value, str)


def test_sarif_from_the_cli(tmp_path: Path) -> None:
    (tmp_path / "bad.py").write_text("import os\n" + BAD + "os.system(cmd)\n")
    (tmp_path / "page.ts").write_text("el.innerHTML = html;\n")
    result = tether(tmp_path, "check", "--format", "sarif", "--tools", "ruff")
    assert result.returncode == 1, result.stderr
    log = json.loads(result.stdout)
    _assert_sarif(log)
    (run,) = log["runs"]
    located = {
        (
            r["ruleId"],
            r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
            r["locations"][0]["physicalLocation"]["region"]["startLine"],
        )
        for r in run["results"]
    }
    assert ("security/eval", "bad.py", 2) in located
    assert ("security/shell-true", "bad.py", 3) in located
    assert ("security/inner-html", "page.ts", 1) in located
    levels = {r["ruleId"]: r["level"] for r in run["results"]}
    assert levels["security/eval"] == "error"
    assert levels["security/inner-html"] == "warning"


def test_sarif_for_no_findings_and_odd_paths() -> None:
    _assert_sarif(json.loads(render_sarif([])))
    finding = Finding("ruff/E501", "Line too long", "compliance", "annotate", "warning")
    log = sarif_log(
        [
            FileFinding("dir with space/a.py", finding, "ruff", "https://docs.astral.sh/ruff"),
            FileFinding("/elsewhere/b.py", finding, "ruff"),
        ]
    )
    _assert_sarif(log)
    (run,) = log["runs"]
    first, second = (r["locations"][0]["physicalLocation"] for r in run["results"])
    assert first["artifactLocation"] == {"uri": "dir%20with%20space/a.py", "uriBaseId": "%SRCROOT%"}
    assert second["artifactLocation"] == {"uri": "file:///elsewhere/b.py"}
    assert first["region"] == {"startLine": 1, "startColumn": 1}  # unknown place: line 1
    assert run["tool"]["driver"]["rules"][0]["helpUri"] == "https://docs.astral.sh/ruff"


@pytest.mark.skipif(sys.platform != "linux", reason="file names are bytes on Linux")
def test_sarif_for_file_names_that_are_not_utf8(tmp_path: Path) -> None:
    (tmp_path / os.fsdecode(b"bad\xff.py")).write_text(BAD)
    result = tether(tmp_path, "check", "--tools", "none", "--format", "sarif")
    assert result.returncode == 1, result.stderr
    log = json.loads(result.stdout)
    _assert_sarif(log)
    (found,) = log["runs"][0]["results"]
    location = found["locations"][0]["physicalLocation"]["artifactLocation"]
    assert location == {"uri": "bad%FF.py", "uriBaseId": "%SRCROOT%"}
    finding = Finding("encoding", "not UTF-8", "compliance", "annotate", "warning")
    (elsewhere,) = sarif_log([FileFinding("/x/caf\udce9.py", finding)])["runs"][0]["results"]
    assert elsewhere["locations"][0]["physicalLocation"]["artifactLocation"] == {
        "uri": "file:///x/caf%E9.py"
    }


def _hooks() -> list[dict[str, Any]]:
    hooks: list[dict[str, Any]] = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    return hooks


def test_hook_manifest_is_valid_for_pre_commit() -> None:
    pre_commit = Path(sys.executable).with_name("pre-commit")
    done = subprocess.run(
        [str(pre_commit), "validate-manifest", str(ROOT / ".pre-commit-hooks.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    entries = {hook["id"]: hook["entry"] for hook in _hooks()}
    assert entries == {
        "tether-check": "tether check",
        "tether-secrets": "tether check --secrets-only",
    }


def _local_config(hooks: list[dict[str, Any]]) -> str:
    """The manifest's hooks as `repo: local` hooks over this venv's tether (no network)."""
    tether_bin = Path(sys.executable).with_name("tether")
    local = []
    for hook in hooks:
        # additional_dependencies need an install from the network; system hooks take none.
        mirrored = {k: v for k, v in hook.items() if k != "additional_dependencies"}
        mirrored["entry"] = hook["entry"].replace("tether", str(tether_bin), 1)
        mirrored["language"] = "system"
        local.append(mirrored)
    return str(yaml.safe_dump({"repos": [{"repo": "local", "hooks": local}]}))


def _pre_commit(repo: Path, hook: str, *files: str) -> subprocess.CompletedProcess[str]:
    env = tether_env(repo / ".tether-home", PRE_COMMIT_HOME=str(repo.parent / "pre-commit-home"))
    return subprocess.run(
        [str(Path(sys.executable).with_name("pre-commit")), "run", hook, "--files", *files],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture
def hooked_repo(tmp_path: Path) -> Path:
    repo = init_repo(tmp_path / "repo")
    (repo / ".pre-commit-config.yaml").write_text(_local_config(_hooks()))
    (repo / "bad.py").write_text(BAD)
    (repo / "clean.py").write_text(CLEAN)
    commit_all(repo, "start")
    return repo


def test_pre_commit_check_hook_fails_on_eval_and_passes_clean_code(hooked_repo: Path) -> None:
    failed = _pre_commit(hooked_repo, "tether-check", "bad.py")
    assert failed.returncode == 1, failed.stdout
    assert "bad.py:1:5: error [security/eval]" in failed.stdout
    passed = _pre_commit(hooked_repo, "tether-check", "clean.py")
    assert passed.returncode == 0, passed.stdout
    assert "Passed" in passed.stdout


def test_pre_commit_secrets_hook(hooked_repo: Path) -> None:
    pytest.importorskip("tether.policy")
    token = "ghp_" + "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5"
    (hooked_repo / "deploy.sh").write_text(f"#!/bin/sh\nexport GITHUB_TOKEN={token}\n")
    git(hooked_repo, "add", "deploy.sh")
    failed = _pre_commit(hooked_repo, "tether-secrets", "deploy.sh")
    assert failed.returncode == 1, failed.stdout
    assert "secrets/github-pat" in failed.stdout
    assert _pre_commit(hooked_repo, "tether-secrets", "bad.py", "clean.py").returncode == 0


def _action() -> dict[str, Any]:
    action: dict[str, Any] = yaml.safe_load((ROOT / "action.yml").read_text())
    return action


def test_action_is_a_composite_that_installs_checks_uploads_and_annotates() -> None:
    action = _action()
    assert action["runs"]["using"] == "composite"
    steps = action["runs"]["steps"]
    scripts = "\n".join(step.get("run", "") for step in steps)
    assert 'pip install --quiet "${GITHUB_ACTION_PATH}[${extras}]"' in scripts
    assert "check) extras=check ;;" in scripts
    assert "--format sarif --output" in scripts
    assert "--format github" in scripts
    upload = next(
        s for s in steps if str(s.get("uses", "")).startswith("github/codeql-action/upload-sarif")
    )
    assert upload["with"]["sarif_file"] == "${{ inputs.sarif-file }}"
    assert all(step.get("shell") == "bash" for step in steps if "run" in step)


def test_action_scripts_check_the_changed_lines_of_a_pull_request(tmp_path: Path) -> None:
    """The action's own shell steps, run in order as the runner would (install skipped)."""
    repo = init_repo(tmp_path / "repo")
    (repo / "old.py").write_text(BAD)
    commit_all(repo, "base")
    base = git(repo, "rev-parse", "HEAD").strip()
    (repo / "new.py").write_text("import os\n\nos.system(cmd)\n")
    commit_all(repo, "pull request")

    steps = {step.get("name"): step for step in _action()["runs"]["steps"]}
    runner_temp = tmp_path / "runner-temp"
    runner_temp.mkdir()
    bin_dir = str(Path(sys.executable).parent)
    outputs = tmp_path / "step-outputs"
    outputs.touch()
    env = tether_env(
        repo / ".tether-home",
        RUNNER_TEMP=str(runner_temp),
        GITHUB_OUTPUT=str(outputs),
        PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        INPUT_PATHS="",
        INPUT_BASE="",
        INPUT_BASELINE="",
        EVENT_BASE=base,
        SARIF_FILE="tether.sarif",
        FAIL_ON="warning",
    )

    def run_step(name: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", "-e", "-c", steps[name]["run"]],
            cwd=repo,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    chosen = run_step("Choose what to check")
    assert chosen.returncode == 0, chosen.stderr
    assert (runner_temp / "tether-args").read_text() == f"--diff={base}\n"
    sarif = run_step("Check (SARIF)")
    assert sarif.returncode == 0, sarif.stderr
    log = json.loads((repo / "tether.sarif").read_text())
    _assert_sarif(log)
    # The upload step reads the report's path from here (hashFiles() sees the workspace only).
    assert outputs.read_text() == "file=tether.sarif\n"
    upload = steps["Upload SARIF"]["if"]
    assert "steps.sarif.outputs.file != ''" in upload and "hashFiles" not in upload
    uris = {
        r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
        for r in log["runs"][0]["results"]
    }
    assert uris == {"new.py"}  # old.py's eval predates the pull request
    annotate = run_step("Annotate")
    assert annotate.returncode == 1
    assert "::error file=new.py,line=3,col=1,title=security/shell-true::" in annotate.stdout
