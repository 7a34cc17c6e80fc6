"""A patch writes only inside its project: never through an absolute path, '..', a
symlink that leaves the tree, or into .git, nor to a name Windows reads as a device or a
file's stream; one clear error, and nothing written."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from tether.cli.common import EXIT_USAGE
from tether.cli.main import cli
from tether.suggestions import make_patch
from tether.suggestions.paths import check_relative

OLD, NEW = "secret = 1\n", "secret = 2\n"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A git project with one file, beside a file that is not in it."""
    root = tmp_path / "project"
    (root / "src").mkdir(parents=True)
    (root / "src" / "app.py").write_text(OLD)
    (tmp_path / "outside.py").write_text(OLD)
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    (root / ".git" / "config.py").write_text(OLD)
    for name in [n for n in os.environ if n.startswith("TETHER_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("TETHER_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(root / "src")
    return root


def _apply(project: Path, header: str) -> tuple[int, str]:
    patch = make_patch(OLD, NEW, header)
    patch_file = project.parent / "change.patch"
    patch_file.write_text(patch)
    result = CliRunner().invoke(cli, ["suggest", "--apply", str(patch_file), "--json"])
    return result.exit_code, result.output


def _untouched(project: Path) -> bool:
    files = [
        project.parent / "outside.py",
        project / ".git" / "config.py",
        project / "src" / "app.py",
    ]
    leftovers = [p for p in project.parent.rglob("*.tmp")]
    return all(f.read_text() == OLD for f in files) and not leftovers


def test_a_patch_applies_from_anywhere_in_its_project(project: Path) -> None:
    status, output = _apply(project, "src/app.py")
    assert status == 0, output
    assert json.loads(output) == {
        "applied": "app.py",
        "moved": [],
    }  # shown relative to where we are
    assert (project / "src" / "app.py").read_text() == NEW


@pytest.mark.parametrize(
    ("header", "why"),
    [
        ("../outside.py", "it climbs out with '..'"),
        ("src/../../outside.py", "it climbs out with '..'"),
        ("/etc/outside.py", "it is absolute"),
        (".git/config.py", "it is inside .git"),
        ("src/.git/config.py", "it is inside .git"),
        ("src/.Git/config.py", "it is inside .git"),  # the same folder on macOS and Windows
        ("src/.git./config.py", "it is inside .git"),  # Windows drops the dot
        ("src//app.py", "use a plain relative path: no empty or '.' parts"),
        # Names Windows reads as a device, whatever the case and extension, or a stream.
        ("CON", "on Windows it names the device CON"),
        ("src/aux.py", "on Windows it names the device AUX"),
        ("src/Nul.tar.gz", "on Windows it names the device NUL"),
        ("com1 .py", "on Windows it names the device COM1"),
        ("lpt9/app.py", "on Windows it names the device LPT9"),
        ("src/app.py:stream", "on Windows a ':' in a name makes a write go to a hidden stream"),
    ],
)
def test_a_path_out_of_the_project_is_refused(project: Path, header: str, why: str) -> None:
    status, output = _apply(project, header)
    assert status == EXIT_USAGE
    assert f"refusing path {header!r}: {why}" in output
    assert output.count("\n") == 1  # one line
    assert _untouched(project)


def test_a_symlink_that_leaves_the_tree_is_refused(project: Path) -> None:
    (project / "escape").symlink_to(project.parent, target_is_directory=True)
    status, output = _apply(project, "escape/outside.py")
    assert status == EXIT_USAGE
    assert "refusing path 'escape/outside.py': through a symlink it leads to" in output
    assert _untouched(project)


def test_a_symlink_into_git_is_refused(project: Path) -> None:
    (project / "meta").symlink_to(project / ".git", target_is_directory=True)
    status, output = _apply(project, "meta/config.py")
    assert status == EXIT_USAGE and "it leads into .git" in output
    assert _untouched(project)


def test_renames_and_two_file_patches_are_refused(project: Path) -> None:
    patch = make_patch(OLD, NEW, "src/app.py").replace("+++ b/src/app.py", "+++ b/src/other.py")
    (project.parent / "rename.patch").write_text(patch)
    result = CliRunner().invoke(cli, ["suggest", "--apply", str(project.parent / "rename.patch")])
    assert result.exit_code == EXIT_USAGE and "does not create, delete or rename" in result.output
    double = make_patch(OLD, NEW, "src/app.py") + make_patch(OLD, NEW, "../outside.py")
    (project.parent / "double.patch").write_text(double)
    result = CliRunner().invoke(cli, ["suggest", "--apply", str(project.parent / "double.patch")])
    assert result.exit_code == EXIT_USAGE and "one file's patch at a time" in result.output
    assert _untouched(project)


def test_suggesting_for_a_file_outside_the_project_is_refused(project: Path) -> None:
    result = CliRunner().invoke(cli, ["suggest", "../../outside.py", "-i", "change it"])
    assert result.exit_code == EXIT_USAGE and "is outside the project" in result.output


@pytest.mark.parametrize(
    "path",
    [
        *("a.py", "src/app.py", ".gitignore", ".github/ci.yml", "..a"),
        *("console.py", "aux_io.py", "com10.py", "nullable/x.py"),  # not devices' names
    ],
)
def test_plain_relative_paths_are_fine(path: str) -> None:
    assert check_relative(path) == path
