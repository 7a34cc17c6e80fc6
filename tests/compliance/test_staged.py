"""``tether check --staged``: what the next commit holds, not the working tree."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.compliance.helpers import commit_all, git, init_repo, tether, tether_env
from tether.compliance.staged import staged_files

BAD = "import os\n\n\ndef run(text):\n    return eval(text)\n"
CLEAN = "def add(a, b):\n    return a + b\n"
TOKEN = "ghp_" + "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5"


def found(project: Path, *args: str, cwd: Path | None = None) -> list[tuple[str, str, int]]:
    done = tether(cwd or project, "check", "--staged", "--format", "json", *args)
    assert done.returncode in (0, 1), done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return [(f["path"], f["rule_id"], f["line"]) for f in report["findings"]]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = init_repo(tmp_path / "project")
    (root / "app.py").write_text(CLEAN)
    (root / "pkg").mkdir()
    (root / "pkg" / "mod.py").write_text(CLEAN)
    commit_all(root, "first")
    return root


def test_the_staged_text_is_checked_not_the_working_trees(project: Path) -> None:
    """A hook that checked the working tree passed a commit whose staged file was bad
    and mended since, and failed one whose bad change was never staged."""
    (project / "app.py").write_text(BAD)
    git(project, "add", "app.py")
    (project / "app.py").write_text(CLEAN)  # mended, but not staged
    (project / "pkg" / "mod.py").write_text(BAD)  # bad, but not staged
    assert found(project, "--tools", "none") == [("app.py", "security/eval", 5)]
    plain = tether(project, "check", "--tools", "none", "--format", "json")
    assert [f["path"] for f in json.loads(plain.stdout)["findings"]] == ["pkg/mod.py"]


def test_nothing_staged_is_nothing_to_check(project: Path) -> None:
    (project / "app.py").write_text(BAD)
    done = tether(project, "check", "--staged", "--tools", "none")
    assert (done.returncode, done.stdout) == (0, "no findings\n"), done.stderr


def test_with_diff_only_the_lines_the_index_changes_are_reported(project: Path) -> None:
    (project / "app.py").write_text("x = eval('1')\n" + CLEAN)
    commit_all(project)
    (project / "app.py").write_text("x = eval('1')\n" + CLEAN + "y = eval('2')\n")
    git(project, "add", "app.py")
    assert found(project, "--tools", "none") == [
        ("app.py", "security/eval", 1),
        ("app.py", "security/eval", 4),
    ]
    assert found(project, "--tools", "none", "--diff") == [("app.py", "security/eval", 4)]


def test_paths_and_the_working_folder_bound_what_is_checked(project: Path) -> None:
    (project / "app.py").write_text(BAD)
    (project / "pkg" / "mod.py").write_text(BAD)
    git(project, "add", "-A")
    assert found(project, "--tools", "none", "pkg") == [("pkg/mod.py", "security/eval", 5)]
    inside = found(project, "--tools", "none", cwd=project / "pkg")
    assert inside == [("mod.py", "security/eval", 5)]
    # A file outside the working folder by its path in the work tree, as without --staged.
    above = found(project, "--tools", "none", "..", cwd=project / "pkg")
    outside = str((project / "app.py").resolve())
    assert sorted(above) == [(outside, "security/eval", 5), ("mod.py", "security/eval", 5)]


def test_a_new_file_staged_is_checked_and_a_deleted_one_is_not(project: Path) -> None:
    (project / "new.py").write_text(BAD)
    git(project, "add", "new.py")
    git(project, "rm", "-q", "pkg/mod.py")
    os.remove(project / "new.py")  # staged, then removed from the working tree
    assert found(project, "--tools", "none") == [("new.py", "security/eval", 5)]


def test_secrets_are_found_in_any_staged_text_file(project: Path) -> None:
    (project / "notes.txt").write_text(f"token = {TOKEN}\n")
    git(project, "add", "notes.txt")
    (project / "notes.txt").write_text("nothing here\n")
    assert found(project, "--secrets-only") == [("notes.txt", "secrets/github-pat", 1)]


def test_links_and_binary_files_are_named_as_not_checked(project: Path) -> None:
    (project / "link.py").symlink_to("app.py")
    (project / "blob.py").write_bytes(b"\0\x01eval(x)\n")
    git(project, "add", "link.py", "blob.py")
    done = tether(project, "check", "--staged", "--tools", "none")
    assert done.returncode == 0, done.stderr
    assert "1 file not checked, binary: blob.py" in done.stderr
    assert "not a file in the index (a link or submodule): link.py" in done.stderr


def test_ruff_reads_the_settings_the_commit_will_have(project: Path) -> None:
    """Ruff read its settings from the folder the staged files were written to: those the
    commit holds, not the working tree's unstaged ones."""
    long_line = "x = '" + "a" * 100 + "'\n"
    (project / "pyproject.toml").write_text('[tool.ruff.lint]\nselect = ["E501"]\n')
    (project / "app.py").write_text(long_line)
    git(project, "add", "-A")
    (project / "pyproject.toml").write_text('[tool.ruff.lint]\nselect = ["F"]\n')  # not staged
    assert found(project, "--tools", "ruff") == [("app.py", "ruff/E501", 1)]
    git(project, "add", "pyproject.toml")
    assert found(project, "--tools", "ruff") == []


def test_outside_a_repository_it_says_so(tmp_path: Path) -> None:
    done = tether(tmp_path, "check", "--staged")
    assert done.returncode == 2
    assert "--staged reads git" in done.stderr and "drop --staged" in done.stderr


def test_a_staged_file_is_not_taken_for_a_copy_of_itself_in_the_corpus(project: Path) -> None:
    """The corpus knows the file by its place in the work tree: the copy written out to
    be checked must be known as that file, or it reproduces itself."""
    code = "".join(f"def step_{n}(value):\n    return value * {n} + {n * 7}\n\n" for n in range(30))
    (project / "app.py").write_text(code)
    commit_all(project)
    indexed = tether(project, "corpus", "index", ".", "--index", "corpus.sqlite")
    assert indexed.returncode == 0, indexed.stderr
    (project / "twin.py").write_text(code)
    (project / "app.py").write_text(code + "def last(value):\n    return value\n")
    git(project, "add", "app.py", "twin.py")
    checked = found(project, "--tools", "none", "--corpus", "corpus.sqlite")
    assert checked == [("twin.py", "duplication/corpus", 1)]


def test_a_file_whose_staged_change_only_removes_lines_is_checked(project: Path) -> None:
    """Staging the removal of a suppression comment alone changes no line of the file that
    is left, and the eval it silenced would go into the commit unreported."""
    (project / "app.py").write_text(
        "def run(text):\n    # tether: ignore[security/eval]\n    return eval(text)\n"
    )
    commit_all(project)
    (project / "app.py").write_text("def run(text):\n    return eval(text)\n")
    git(project, "add", "app.py")
    assert found(project, "--tools", "none") == [("app.py", "security/eval", 2)]
    # With --diff only the lines the index adds are reported: none here.
    assert found(project, "--tools", "none", "--diff") == []


def test_the_report_is_not_written_over_a_staged_file(project: Path) -> None:
    """--output names a file of the work tree: a staged source file there is the
    project's, whose unstaged changes the report would have replaced."""
    (project / "app.py").write_text(BAD)
    git(project, "add", "app.py")
    done = tether(project, "check", "--staged", "--tools", "none", "--output", "app.py")
    assert done.returncode == 2
    assert "is a file being checked, not a report of tether check's" in done.stderr
    assert (project / "app.py").read_text() == BAD
    # A report there is written again, and the copy staged, what the commit holds, checked.
    (project / "report.json").write_text(f"token = {TOKEN}\n")
    git(project, "add", "report.json")
    (project / "report.json").write_text(tether(project, "check", "--format", "json").stdout)
    args = ("--secrets-only", "--format", "json", "-o", "report.json")
    assert tether(project, "check", "--staged", *args).returncode == 1
    report = json.loads((project / "report.json").read_text())
    assert [f["path"] for f in report["findings"]] == ["report.json"]


def test_the_blob_is_checked_not_what_a_smudge_filter_makes_of_it(project: Path) -> None:
    """A clean filter keeps a key out of the commit and its smudge filter puts it back in
    the work tree: the commit holds no key, and the check must not read one there."""
    git(project, "config", "filter.key.clean", f"sed s/{TOKEN}/PLACEHOLDER/")
    git(project, "config", "filter.key.smudge", f"sed s/PLACEHOLDER/{TOKEN}/")
    (project / ".gitattributes").write_text("settings.py filter=key\n")
    (project / "settings.py").write_text(f"KEY = '{TOKEN}'\n")
    git(project, "add", ".gitattributes", "settings.py")
    assert git(project, "show", ":settings.py") == "KEY = 'PLACEHOLDER'\n"
    assert found(project, "--secrets-only") == []
    assert found(project, "--secrets-only", "--diff") == []


def test_a_sparse_checkout_leaving_out_a_settings_file_is_checked(project: Path) -> None:
    """A settings file a sparse checkout leaves out of the work tree is still the index's,
    and git refuses to write it out the way a work tree's file is."""
    (project / "other").mkdir()
    (project / "other" / "pyproject.toml").write_text('[tool.ruff.lint]\nselect = ["E501"]\n')
    commit_all(project)
    git(project, "sparse-checkout", "set", "pkg")
    assert not (project / "other").exists()
    (project / "pkg" / "mod.py").write_text(BAD)
    git(project, "add", "pkg/mod.py")
    assert found(project, "--tools", "none") == [("pkg/mod.py", "security/eval", 5)]


def test_ruff_reads_the_settings_a_staged_settings_file_extends(project: Path) -> None:
    """A pyproject.toml may extend a settings file of any name: ruff stopped, unable to
    read it, where it was not written out with the rest."""
    (project / "configs").mkdir()
    (project / "configs" / "base.toml").write_text('[lint]\nselect = ["E501"]\n')
    (project / "pkg" / "pyproject.toml").write_text(
        '[tool.ruff]\nextend = "../configs/base.toml"\n'
    )
    commit_all(project)
    (project / "pkg" / "long.py").write_text("x = '" + "a" * 100 + "'\n")
    git(project, "add", "pkg/long.py")
    assert found(project, "--tools", "ruff") == [("pkg/long.py", "ruff/E501", 1)]


def test_the_git_add_a_note_suggests_works_where_the_check_was_run(project: Path) -> None:
    """The note said `git add NAME` with NAME from the top of the work tree, unquoted: run
    from a folder below it, or for a name with a space, that command staged nothing."""
    (project / "pyproject.toml").write_text('[tool.ruff]\nextend = "ruff base.toml"\n')
    commit_all(project)
    (project / "ruff base.toml").write_text('[lint]\nselect = ["F401"]\n')  # not staged
    (project / "pkg" / "app.py").write_text("import os\n")
    git(project, "add", "pkg/app.py")
    done = tether(project / "pkg", "check", "--staged", "--tools", "ruff")
    assert done.returncode == 1, done.stderr
    assert "stage it (`git add '../ruff base.toml'`)" in done.stderr, done.stderr
    git(project / "pkg", "add", "../ruff base.toml")
    assert "not staged" not in tether(project / "pkg", "check", "--staged").stderr


def test_a_settings_file_extended_but_not_staged_is_read_from_the_work_tree(
    project: Path,
) -> None:
    """ruff stopped the check ("Failed to read /tmp/tether-staged-…/tree/ruff-base.toml"),
    naming a temporary folder, where a settings file the staged ones extend was not in
    the index. It is read from the work tree, as ruff and pre-commit read it, and a note
    says to stage it; where the work tree lacks it too, the error says which file."""
    (project / "pyproject.toml").write_text('[tool.ruff]\nextend = "ruff-base.toml"\n')
    commit_all(project)
    (project / "ruff-base.toml").write_text('[lint]\nselect = ["F401"]\n')  # not staged
    (project / "app.py").write_text("import os\n")
    git(project, "add", "app.py")
    done = tether(project, "check", "--staged", "--tools", "ruff", "--format", "json")
    assert done.returncode == 1, done.stderr
    assert [f["rule_id"] for f in json.loads(done.stdout)["findings"]] == ["ruff/F401"]
    assert (
        "note: ruff-base.toml, which pyproject.toml extends, is not staged: ruff read the "
        "work tree's copy; stage it (`git add ruff-base.toml`)"
    ) in done.stderr
    (project / "ruff-base.toml").unlink()
    missing = tether(project, "check", "--staged", "--tools", "ruff")
    assert missing.returncode == 2
    assert missing.stderr.startswith(
        "error: pyproject.toml extends ruff-base.toml (ruff's `extend`), which neither the "
        "index nor the work tree holds"
    ), missing.stderr
    # Without ruff, nothing reads it.
    assert found(project, "--tools", "none") == []


@pytest.mark.parametrize("how", ["above", "absolute", "through another"])
def test_ruff_reads_a_settings_file_outside_the_work_tree_where_it_is(
    project: Path, tmp_path: Path, how: str
) -> None:
    """A settings file outside the work tree, which the staged ones extend by a relative
    path (`extend = "../base.toml"`), was looked for beside the temporary copies: ruff
    stopped, "Failed to read /tmp/tether-staged-…/base.toml". It is read where it is, as
    ruff reads it in the work tree; where it is not there, the error names it."""
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "base.toml").write_text('[lint]\nselect = ["F401"]\n')
    (shared / "entry.toml").write_text('extend = "base.toml"\n')
    extend = {
        "above": "../shared/base.toml",
        "absolute": str(shared / "base.toml"),
        "through another": "../../shared/entry.toml",  # from pkg/, by one that extends
    }[how]
    settings = project / ("pkg" if how == "through another" else ".") / "pyproject.toml"
    settings.write_text(f"[tool.ruff]\nextend = {json.dumps(extend)}\n")
    commit_all(project)
    (project / "pkg" / "mod.py").write_text("import os\n")
    git(project, "add", "pkg/mod.py")
    assert found(project, "--tools", "ruff") == [("pkg/mod.py", "ruff/F401", 1)]
    for name in ("base.toml", "entry.toml"):
        (shared / name).unlink()
    missing = tether(project, "check", "--staged", "--tools", "ruff")
    assert missing.returncode == 2
    if how == "above":
        assert missing.stderr == (
            f"error: pyproject.toml extends {shared / 'base.toml'} (ruff's `extend`), which "
            "is not a file: ruff cannot read its settings; put the file there, or mend "
            "`extend` in pyproject.toml\n"
        )


def test_ruff_reads_the_settings_above_the_work_tree_as_it_does_there(
    project: Path, tmp_path: Path
) -> None:
    """Ruff reads the settings file nearest above a file, past the top of the work tree
    where the work tree holds none (settings shared by the repositories of a folder):
    the staged copies, written elsewhere, were checked without them, and with them the
    files they `extend`."""
    (tmp_path / "ruff.toml").write_text('extend = "shared/base.toml"\n')
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "base.toml").write_text('[lint]\nselect = ["E711"]\n')
    (project / "app.py").write_text("x = None\nif x == None:\n    import os\n")
    git(project, "add", "app.py")
    plain = tether(project, "check", "--tools", "ruff", "--format", "json", "app.py")
    as_in_the_work_tree = [
        (f["path"], f["rule_id"], f["line"]) for f in json.loads(plain.stdout)["findings"]
    ]
    assert as_in_the_work_tree == [("app.py", "ruff/E711", 2)]
    assert found(project, "--tools", "ruff") == as_in_the_work_tree


def test_ruff_stopping_on_staged_settings_names_them_as_in_the_work_tree(
    project: Path,
) -> None:
    """Ruff, stopped by a staged settings file, named its copy in a temporary folder, gone
    once the check ended; and the work tree's file, mended since, held nothing wrong."""
    (project / "pyproject.toml").write_text("[tool.ruff\n")
    (project / "app.py").write_text("import os\n")
    git(project, "add", "pyproject.toml", "app.py")
    (project / "pyproject.toml").write_text("[tool.ruff]\n")  # mended, not staged
    done = tether(project, "check", "--staged", "--tools", "ruff")
    assert done.returncode == 2, done.stderr
    assert "tether-staged-" not in done.stderr
    assert f"Failed to parse {project / 'pyproject.toml'}\n" in done.stderr
    assert done.stderr.endswith(
        "\n(ruff read the files it names as staged, which `git diff --cached` shows)\n"
    )


def test_a_staged_file_ruff_leaves_out_is_named_as_in_the_work_tree(project: Path) -> None:
    """ruff leaves out a file in a folder named venv or dist (its default exclusions)
    whatever checks it: a staged one went into the commit unlinted, unsaid."""
    (project / "pkg" / "venv").mkdir()
    (project / "pkg" / "venv" / "tool.py").write_text("import os\n")
    git(project, "add", "-A")
    done = tether(project, "check", "--staged", "--tools", "ruff", "--format", "json")
    assert done.returncode == 0, done.stderr
    (left,) = json.loads(done.stdout)["not_checked_by_tools"]
    assert (left["path"], left["tool"]) == ("pkg/venv/tool.py", "ruff")
    assert left["why"].startswith("in a folder named venv, which ruff excludes by default")
    assert "1 file not checked by ruff, in a folder named venv" in done.stderr


def test_outside_the_work_tree_git_names_files_are_named_in_full(
    project: Path, tmp_path: Path
) -> None:
    """GIT_DIR and GIT_WORK_TREE name a work tree below the working folder, not the folder
    it is in: its files are named by their full paths, as without --staged."""
    (project / "app.py").write_text(BAD)
    git(project, "add", "app.py")
    at = {"GIT_DIR": str(project / ".git"), "GIT_WORK_TREE": str(project)}
    done = tether(tmp_path, "check", "--staged", "--tools", "none", "--format", "json", **at)
    assert done.returncode == 1, done.stderr
    named = [f["path"] for f in json.loads(done.stdout)["findings"]]
    assert named == [str((project / "app.py").resolve())]


def test_ruff_sees_the_projects_packages_and_modules_beside_the_staged_files(
    project: Path,
) -> None:
    """Ruff tells the project's own imports from others' by its folders and files, and a
    package by its __init__.py: written alone, a staged file's imports were reported out
    of order and its package as an implicit namespace package."""
    (project / "pyproject.toml").write_text('[tool.ruff.lint]\nselect = ["I", "INP"]\n')
    (project / "pkg" / "__init__.py").write_text("")
    (project / "util.py").write_text(CLEAN)
    commit_all(project)
    (project / "pkg" / "new.py").write_text("x = 1\n")
    imports = "import os\n\nimport requests\n\nimport pkg.mod\nimport util\n"
    (project / "app.py").write_text(imports + "\nprint(os, requests, pkg.mod, util)\n")
    git(project, "add", "pkg/new.py", "app.py")
    assert found(project, "--tools", "ruff") == []


def _laid_out(project: Path) -> set[str]:
    """The files written for ruff, beside the staged ones, by their paths from the top."""
    with staged_files("HEAD", project, [project], every_line=True, for_ruff=True) as (files, _):
        return {
            path.relative_to(files.root).as_posix()
            for path in files.root.rglob("*")
            if path.is_file()
        }


def test_of_the_indexs_modules_only_those_the_staged_files_import_are_laid_out(
    project: Path,
) -> None:
    """Ruff looks for the modules the checked code imports, in each source root, and for
    the __init__.py above the checked file: writing every module of a large index, which
    it never reads, took seconds of a pre-commit hook."""
    for name in ("pkg/__init__.py", "pkg/sub/__init__.py", "pkg/sub/deep.py", "util.py",
                 "src/helpers.pyi", "unused.py", "other/__init__.py", "other/mod.py"):  # fmt: skip
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text("")
    commit_all(project)
    imports = "import os\nimport pkg.sub.deep\nfrom helpers import util\nfrom . import mod\n"
    (project / "pkg" / "sub" / "new.py").write_text(imports)
    git(project, "add", "pkg/sub/new.py")
    assert _laid_out(project) == {
        "pkg/sub/new.py",  # staged
        "pkg/__init__.py",  # above it, and imported
        "pkg/sub/__init__.py",
        "pkg/sub/deep.py",  # imported
        "util.py",  # a name imported from a module may be a module
        "src/helpers.pyi",  # in any folder, which may be a source root
    }  # not unused.py, nor pkg/mod.py and other/mod.py: `from . import mod` is local


def test_a_staged_file_that_does_not_parse_lays_out_every_module_it_names(
    project: Path,
) -> None:
    (project / "util.py").write_text("")
    (project / "unused.py").write_text("")
    commit_all(project)
    (project / "app.py").write_text("import util\nx = (\n")
    git(project, "add", "app.py")
    assert _laid_out(project) == {"app.py", "util.py"}  # every word: not pkg/mod.py


def test_ruff_tells_first_party_imports_by_the_modules_of_a_source_root(project: Path) -> None:
    """A module in a source root the settings name, and a package folder without
    __init__.py, are first party for ruff as in the work tree."""
    (project / "pyproject.toml").write_text(
        '[tool.ruff]\nsrc = ["lib"]\n[tool.ruff.lint]\nselect = ["I"]\n'
    )
    (project / "lib" / "space").mkdir(parents=True)
    (project / "lib" / "helpers.py").write_text(CLEAN)
    (project / "lib" / "space" / "inner.py").write_text(CLEAN)
    commit_all(project)
    imports = "import os\n\nimport requests\n\nimport helpers\nimport space\n"
    (project / "app.py").write_text(imports + "\nprint(os, requests, helpers, space)\n")
    git(project, "add", "app.py")
    assert found(project, "--tools", "ruff") == []
    plain = tether(project, "check", "--tools", "ruff", "app.py")
    assert plain.returncode == 0, plain.stdout


def test_a_package_at_the_top_of_the_work_tree_is_laid_out(project: Path) -> None:
    """With an __init__.py at the top, the work tree is the package the staged file lies
    in, not the folder above it: a package of its own, pkg there is first party for ruff
    where its source roots do not hold it."""
    (project / "pyproject.toml").write_text(
        '[tool.ruff]\nsrc = ["lib"]\n[tool.ruff.lint]\nselect = ["I"]\n'
    )
    (project / "__init__.py").write_text("")
    (project / "pkg" / "__init__.py").write_text("")
    commit_all(project)
    imports = "import os\n\nimport pkg.mod\nimport requests\n"
    (project / "pkg" / "new.py").write_text(imports + "\nprint(os, pkg.mod, requests)\n")
    git(project, "add", "pkg/new.py")
    plain = tether(project, "check", "--tools", "ruff", "pkg/new.py")
    assert plain.returncode == 0, plain.stdout
    assert found(project, "--tools", "ruff") == []


def test_the_imports_of_a_staged_module_named_in_capitals_are_laid_out(project: Path) -> None:
    """Ruff is given APP.PY, as any file whose suffix is .py in any case."""
    (project / "pyproject.toml").write_text(
        '[tool.ruff]\nsrc = ["lib"]\n[tool.ruff.lint]\nselect = ["I"]\n'
    )
    (project / "lib").mkdir()
    (project / "lib" / "helpers.py").write_text(CLEAN)
    commit_all(project)
    imports = "import os\n\nimport requests\n\nimport helpers\n"
    (project / "APP.PY").write_text(imports + "\nprint(os, requests, helpers)\n")
    git(project, "add", "APP.PY")
    plain = tether(project, "check", "--tools", "ruff", "APP.PY")
    assert plain.returncode == 0, plain.stdout
    assert found(project, "--tools", "ruff") == []


def test_a_name_beyond_ascii_is_checked_under_an_ascii_locale(project: Path) -> None:
    """Where the locale reads names as ASCII, a name git prints in UTF-8 is given back to
    git on the command line as the system spells it, or it cannot be written there."""
    (project / "café.py").write_text(BAD)
    git(project, "add", "café.py")
    done = subprocess.run(
        [sys.executable, "-m", "tether", "check", "--staged", "--tools", "none"],
        cwd=project,
        env=tether_env(project / ".tether-home", LC_ALL="C", PYTHONUTF8="0"),
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr
    assert b"security/eval" in done.stdout


def test_a_file_renamed_as_it_was_is_checked_under_its_new_name(project: Path) -> None:
    """A pure rename holds no changed line, and the diff names no file for it: a text
    file renamed to a Python module (now read as Python) went into the commit unchecked."""
    (project / "notes.txt").write_text(BAD)
    commit_all(project)
    git(project, "mv", "notes.txt", "pkg/tool.py")
    assert found(project, "--tools", "none") == [("pkg/tool.py", "security/eval", 5)]
    # With --diff, only changed lines are reported, and a rename changes none.
    assert found(project, "--tools", "none", "--diff") == []


def test_a_file_made_executable_is_checked_with_its_mode(project: Path) -> None:
    """A change of mode alone was not checked; and the index's copy was written without
    its mode, so ruff's EXE rules, which read it, could not see it."""
    (project / "pyproject.toml").write_text('[tool.ruff.lint]\nselect = ["EXE"]\n')
    commit_all(project)
    (project / "app.py").chmod(0o755)
    git(project, "add", "app.py")
    assert found(project, "--tools", "ruff") == [("app.py", "ruff/EXE002", 1)]
