"""``tether check`` through its entry point: exit codes, formats, baseline, suppressions, --diff."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import stat
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.compliance.helpers import commit_all, git, init_repo, tether, tether_env
from tests.helpers import bound_by_permissions
from tether.compliance.gitdiff import unquote_path
from tether.compliance.report import (
    FileFinding,
    render_github,
    render_json,
    render_text,
    written_by_check,
)
from tether.compliance.sarif import render_sarif
from tether.findings import Finding

BAD = "import os\n\n\ndef run(text):\n    return eval(text)\n"
CLEAN = "def add(a, b):\n    return a + b\n"
GITHUB_TOKEN = "ghp_" + "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    return root


def findings_of(result: str) -> list[dict[str, Any]]:
    findings: list[dict[str, Any]] = json.loads(result)["findings"]
    return findings


def test_clean_file_exits_0_and_bad_file_exits_1(project: Path) -> None:
    (project / "clean.py").write_text(CLEAN)
    clean = tether(project, "check", "clean.py")
    assert (clean.returncode, clean.stdout) == (0, "no findings\n"), clean.stderr
    (project / "bad.py").write_text(BAD)
    bad = tether(project, "check", "bad.py", "--tools", "none")
    assert bad.returncode == 1
    assert "bad.py:5:12: error [security/eval]" in bad.stdout
    assert bad.stdout.endswith("1 finding: 1 error\n")


def test_folder_is_expanded_to_source_files(project: Path) -> None:
    (project / "src").mkdir()
    (project / "src" / "app.ts").write_text("el.innerHTML = html;\n")
    (project / "src" / "notes.txt").write_text("eval(x)\n")
    (project / ".hidden").mkdir()
    (project / ".hidden" / "x.py").write_text(BAD)
    result = tether(project, "check", "--tools", "none", "--format", "json")
    assert [(f["path"], f["rule_id"]) for f in findings_of(result.stdout)] == [
        ("src/app.ts", "security/inner-html")
    ]


def test_a_folder_git_ignores_is_checked_when_named_not_passed_as_empty(
    project: Path,
) -> None:
    """`tether check build`, or `tether check .` inside a virtual environment, said
    "no findings" having checked nothing: git lists no files in an ignored folder."""
    init_repo(project)
    (project / ".gitignore").write_text("build/\n")
    (project / "app.py").write_text(CLEAN)
    (project / "build" / "gen").mkdir(parents=True)
    (project / "build" / "gen" / "bad.py").write_text(BAD)
    commit_all(project, "base")
    named = tether(project, "check", "build", "--tools", "none", "--format", "json")
    assert [(f["path"], f["rule_id"]) for f in findings_of(named.stdout)] == [
        ("build/gen/bad.py", "security/eval")
    ]
    inside = tether(project / "build", "check", "--tools", "none", "--format", "json")
    assert [f["path"] for f in findings_of(inside.stdout)] == ["gen/bad.py"]
    whole = tether(project, "check", "--tools", "none")  # the repository: as git tracks it
    assert whole.returncode == 0 and whole.stdout == "no findings\n", whole.stdout


def test_fail_on_threshold(project: Path) -> None:
    (project / "page.js").write_text("el.innerHTML = html;\n")  # a warning
    assert tether(project, "check", "--tools", "none").returncode == 1
    assert tether(project, "check", "--tools", "none", "--fail-on", "error").returncode == 0
    (project / "page.js").write_text("// Copyright (c) 2020 Someone\n")  # a note
    assert tether(project, "check", "--tools", "none").returncode == 0
    assert tether(project, "check", "--tools", "none", "--fail-on", "note").returncode == 1
    (project / "page.js").write_text("eval(x);\n")
    assert tether(project, "check", "--tools", "none", "--fail-on", "never").returncode == 0


@pytest.mark.parametrize(
    "args",
    [
        ["missing.py"],
        ["--tools", "eslint"],
        ["--format", "xml"],
        ["--baseline", "nope.json"],
        ["--corpus", "nope.sqlite"],
        ["--diff=no-such-revision"],
    ],
)
def test_usage_and_tool_errors_exit_2(project: Path, args: list[str]) -> None:
    (project / "a.py").write_text(CLEAN)
    result = tether(project, "check", *args)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stderr.strip()


def test_bad_settings_exit_2_with_the_reason(project: Path) -> None:
    (project / "a.py").write_text(CLEAN)
    result = tether(project, "check", TETHER_COMPLIANCE_ACTIONS='{"syntax": "explode"}')
    assert result.returncode == 2
    assert "compliance.actions['syntax'] = 'explode'" in result.stderr


def test_json_and_output_file(project: Path) -> None:
    (project / "bad.py").write_text(BAD)
    (project / "out").mkdir()
    result = tether(
        project, "check", "--tools", "none", "--format", "json", "--output", "out/r.json"
    )
    assert result.returncode == 1
    assert result.stdout == ""
    payload = json.loads((project / "out" / "r.json").read_text())
    (finding,) = payload["findings"]
    assert finding["path"] == "bad.py"
    assert finding["tool"] == "tether"
    assert (finding["rule_id"], finding["line"], finding["column"]) == ("security/eval", 5, 12)
    assert payload["summary"] == {"error": 1, "warning": 0, "note": 0}


def test_output_dash_is_standard_output(project: Path) -> None:
    (project / "bad.py").write_text(BAD)
    result = tether(project, "check", "bad.py", "--tools", "none", "--format", "json", "-o", "-")
    assert result.returncode == 1
    assert json.loads(result.stdout)["summary"]["error"] == 1
    assert not (project / "-").exists()


@pytest.mark.parametrize("flag", ["--output", "--write-baseline"])
def test_writing_into_a_missing_folder_is_a_usage_error(project: Path, flag: str) -> None:
    (project / "bad.py").write_text(BAD)
    result = tether(project, "check", "bad.py", "--tools", "none", flag, "missing/r.txt")
    assert result.returncode == 2
    assert f"{flag} missing/r.txt: the folder missing does not exist" in result.stderr
    assert not (project / "missing").exists()


@pytest.mark.parametrize("flag", ["--output", "--write-baseline"])
@pytest.mark.parametrize("named", ["lib.py", ".", "git ."])
def test_writing_over_a_checked_file_is_refused_and_the_file_kept(
    project: Path, flag: str, named: str
) -> None:
    """Named, or one of a folder's files (outside git and inside): a report written over
    it would lose the code."""
    (project / "bad.py").write_text(BAD)
    (project / "lib.py").write_text(CLEAN)
    if named.startswith("git "):
        subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    path = named.removeprefix("git ")
    result = tether(project, "check", path, "--tools", "none", flag, "./lib.py")
    assert result.returncode == 2
    assert f"{flag} lib.py is a file being checked" in result.stderr
    assert (project / "lib.py").read_text() == CLEAN


@pytest.mark.parametrize(
    ("flag", "form"),
    [
        ("--output", "text"),
        ("--output", "json"),
        ("--output", "sarif"),
        ("--output", "github"),
        ("--write-baseline", "text"),
    ],
)
def test_a_report_left_in_the_checked_folder_is_written_again_not_refused(
    project: Path, flag: str, form: str
) -> None:
    """--secrets-only reads every text file, the last run's report too: run again, the
    report is left out of the check and rewritten, committed to git or not."""
    (project / "app.py").write_text(CLEAN)
    (project / "keys.cfg").write_text(f"token = {GITHUB_TOKEN}\n")
    args = ["check", ".", "--secrets-only", "--format", form, flag, "report.out"]
    for _ in range(2):
        result = tether(project, *args)
        assert result.returncode in (0, 1), result.stderr
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    subprocess.run(["git", "add", "report.out"], cwd=project, check=True)
    tracked = tether(project, *args)
    assert tracked.returncode in (0, 1), tracked.stderr


@pytest.mark.parametrize("flag", ["--output", "--write-baseline"])
@pytest.mark.parametrize("git", [False, True])
def test_a_file_of_the_project_that_is_not_code_is_not_written_over(
    project: Path, flag: str, git: bool
) -> None:
    """Notes, a README, an env file: not reports, whatever their names."""
    (project / "app.py").write_text(CLEAN)
    (project / "notes.txt").write_text("my notes\n")
    if git:
        subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    result = tether(project, "check", ".", "--secrets-only", flag, "notes.txt")
    assert result.returncode == 2
    assert f"{flag} notes.txt is a file being checked" in result.stderr
    assert (project / "notes.txt").read_text() == "my notes\n"


def test_prompt_scanning_off_leaves_the_secrets_check_on(project: Path) -> None:
    """``policy.enabled = false`` (prompts unscanned, on a gateway) made the secrets
    hook pass every file: "no findings", exit 0."""
    (project / "app.py").write_text("TOKEN = 'ghp_" + "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5'\n")
    result = tether(project, "check", ".", "--secrets-only", TETHER_POLICY_ENABLED="false")
    assert result.returncode == 1 and "secrets/github-pat" in result.stdout, result.stdout


def test_a_link_to_a_checked_file_is_not_written_through(project: Path) -> None:
    (project / "app.py").write_text(CLEAN)
    (project / "report.txt").symlink_to("app.py")
    result = tether(project, "check", ".", "--secrets-only", "-o", "report.txt")
    assert result.returncode == 2 and "is a file being checked" in result.stderr
    assert (project / "app.py").read_text() == CLEAN


def test_a_folder_outside_git_is_checked_without_git_s_complaint(project: Path) -> None:
    (project / "bad.py").write_text(BAD)
    result = tether(project, "check", ".", "--tools", "none")
    assert result.returncode == 1 and "security/eval" in result.stdout
    assert result.stderr == "", result.stderr


def test_github_annotations_escape_their_fields(project: Path) -> None:
    (project / "a,b.py").write_text(BAD)
    result = tether(project, "check", "--tools", "none", "--format", "github")
    assert result.stdout.startswith("::error file=a%2Cb.py,line=5,col=12,title=security/eval::")


def test_github_annotations_name_a_file_as_it_is(project: Path) -> None:
    """A name with a tab was written quoted as git quotes it (``"n\\tx.py"``), a file
    GitHub could not find to place the annotation on."""
    (project / 'n\tx "q".py').write_text(BAD)
    result = tether(project, "check", "--tools", "none", "--format", "github")
    assert result.stdout.startswith('::error file=n\tx "q".py,line=5,'), result.stdout


def test_github_annotations_name_a_file_by_its_utf8_under_an_ascii_locale(
    project: Path,
) -> None:
    """Where the locale reads names as ASCII, café.py was named quoted, its bytes in
    octal ("caf\\303\\251.py"): a file GitHub could not place the annotation on."""
    name = "café_\u6f22.py"
    (project / name).write_text(BAD)
    done = subprocess.run(
        [sys.executable, "-m", "tether", "check", "--tools", "none", "--format", "github"],
        cwd=project,
        env=tether_env(project / ".tether-home", LC_ALL="C", PYTHONUTF8="0"),
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr
    assert f"::error file={name},line=5,".encode() in done.stdout, done.stdout


def test_github_annotations_name_a_file_by_its_utf8_under_a_latin1_locale(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Where the locale reads names as Latin-1, the UTF-8 of é is read as two characters
    ("Ã©"), and the annotation named a file that is not there in their UTF-8."""

    def latin1(name: str | bytes) -> bytes:
        return name if isinstance(name, bytes) else name.encode("latin-1", "surrogateescape")

    monkeypatch.setattr(os, "fsencode", latin1)
    as_read = "café.py".encode().decode("latin-1")  # how such a locale names the file
    bad = Finding("security/eval", "eval", "compliance", "annotate", "error", 0, 0, 1, 1)
    shown = render_github([FileFinding(as_read, bad), FileFinding("n\xffm.py", bad)])
    assert shown.startswith("::error file=café.py,line=1,"), shown
    assert '::error file="n\\377m.py",line=1,' in shown, shown


def test_the_json_report_names_a_file_by_its_utf8_under_a_latin1_locale(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Where the locale reads names as Latin-1, café.py was named "cafÃ©.py", with no
    path_base64 to say otherwise: a program reading the report found no such file."""

    def latin1(name: str | bytes) -> bytes:
        return name if isinstance(name, bytes) else name.encode("latin-1", "surrogateescape")

    monkeypatch.setattr(os, "fsencode", latin1)
    as_read = "café.py".encode().decode("latin-1")  # how such a locale names the file
    bad = Finding("security/eval", "eval", "compliance", "annotate", "error", 0, 0, 1, 1)
    report = json.loads(render_json([FileFinding(as_read, bad)], [("n\xffm.py", "why")]))
    assert report["findings"][0]["path"] == "café.py"
    assert "path_base64" not in report["findings"][0]
    raw = base64.b64encode(b"n\xffm.py").decode()
    assert report["skipped"] == [{"path": '"n\\377m.py"', "path_base64": raw, "why": "why"}]


@pytest.mark.parametrize("output", [[], ["-o", "-"]], ids=["default", "-o -"])
def test_reports_for_programs_are_utf8_on_standard_output_under_any_locale(
    project: Path, output: list[str]
) -> None:
    """Under a Latin-1 locale GitHub's annotations named café.py in Latin-1 bytes, and a
    name beyond Latin-1 as an escape: the runner reads UTF-8, and placed them nowhere."""
    name = "café_\u6f22.py"
    (project / name).write_text(BAD)
    for fmt in ("github", "sarif", "json"):
        done = subprocess.run(
            [sys.executable, "-m", "tether", "check", "--tools", "none", "--format", fmt, *output],
            cwd=project,
            env=tether_env(project / ".tether-home", PYTHONIOENCODING="latin-1"),
            capture_output=True,
            timeout=120,
        )
        assert done.returncode == 1, done.stderr
        if fmt == "github":
            assert f"::error file={name},".encode() in done.stdout, done.stdout
        else:  # JSON, read as the UTF-8 it must be
            assert json.loads(done.stdout.decode("utf-8")), done.stdout


def test_suppression_comments(project: Path) -> None:
    (project / "s.py").write_text(
        "a = eval(x)  # tether: ignore[security/eval]\n"
        "# tether: ignore[security]\n"
        "b = eval(y)\n"
        "c = eval(z)  # tether: ignore[security/shell-true]\n"
        "d = 1  # tether: ignore\n"
        "e = eval(w)\n"
        "f = eval(v)  # tether: ignore\n"
    )
    result = tether(project, "check", "--tools", "none", "--format", "json")
    # line 4: another rule is named; line 6: the comment above shares its line with code.
    assert [f["line"] for f in findings_of(result.stdout)] == [4, 6]


def test_a_directive_spelled_in_a_string_is_no_comment(project: Path) -> None:
    (project / "s.py").write_text(
        'x = "# tether: ignore"; y = eval(a)\n'
        's = """\n# tether: ignore[security]\n"""; z = eval(b)\n'
        "w = eval(c)  # tether: ignore\n"
    )
    (project / "s.ts").write_text(
        'const x = "// tether: ignore"; eval(a);\n'
        "const t = `\n/* tether: ignore */`; eval(b);\n"
        "eval(c); // tether: ignore\n"
    )
    result = tether(project, "check", "--tools", "none", "--format", "json")
    assert result.returncode == 1, result.stderr
    got = [(f["path"], f["line"], f["rule_id"]) for f in findings_of(result.stdout)]
    assert got == [
        ("s.py", 1, "security/eval"),
        ("s.py", 4, "security/eval"),
        ("s.ts", 1, "security/eval"),
        ("s.ts", 3, "security/eval"),
    ]


def test_ignore_option_skips_rules_and_families(project: Path) -> None:
    (project / "x.py").write_text("# Copyright (c) 2020 X\nv = eval(s)\n")
    result = tether(project, "check", "--tools", "none", "--format", "json", "--ignore", "licence")
    assert [f["rule_id"] for f in findings_of(result.stdout)] == ["security/eval"]


def test_baseline_hides_known_findings_but_not_new_ones(project: Path) -> None:
    (project / "old.py").write_text(BAD)
    written = tether(project, "check", "--tools", "none", "--write-baseline", "baseline.json")
    assert written.returncode == 0, written.stderr
    assert "wrote 1 findings" in written.stderr
    assert (
        tether(project, "check", "--tools", "none", "--baseline", "baseline.json").returncode == 0
    )
    # Moving the known line keeps it known; a second copy of it is new.
    (project / "old.py").write_text("\n\n" + BAD + "\ndef again(t):\n    return eval(text)\n")
    result = tether(
        project, "check", "--tools", "none", "--baseline", "baseline.json", "--format", "json"
    )
    assert result.returncode == 1
    assert [f["line"] for f in findings_of(result.stdout)] == [10]
    # Editing the line makes it a new finding.
    (project / "old.py").write_text(BAD.replace("eval(text)", "eval(text.strip())"))
    edited = tether(project, "check", "--tools", "none", "--baseline", "baseline.json")
    assert edited.returncode == 1


def test_baseline_and_sarif_paths_are_relative_to_the_repository_top(tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "repo")
    sub = repo / "sub dir"
    sub.mkdir()
    (sub / "old.py").write_text(BAD)
    (repo / "top.py").write_text(BAD)
    commit_all(repo, "start")
    assert tether(repo, "check", "--tools", "none", "--write-baseline", "bl.json").returncode == 0
    from_sub = tether(sub, "check", "--tools", "none", "--baseline", "../bl.json", ".", "..")
    assert (from_sub.returncode, from_sub.stdout) == (0, "no findings\n"), from_sub.stdout
    # Written from the subfolder, the baseline holds the same paths.
    assert tether(sub, "check", "--tools", "none", "--write-baseline", "sub.json").returncode == 0
    paths = {e["path"] for e in json.loads((sub / "sub.json").read_text())["findings"]}
    assert paths == {"sub dir/old.py"}
    (sub / "old.py").write_text(BAD + "y = eval(z)\n")
    sarif = tether(sub, "check", "--tools", "none", "--diff", "--format", "sarif")
    (result,) = json.loads(sarif.stdout)["runs"][0]["results"]
    location = result["locations"][0]["physicalLocation"]["artifactLocation"]
    assert location == {"uri": "sub%20dir/old.py", "uriBaseId": "%SRCROOT%"}
    github = tether(sub, "check", "--tools", "none", "--diff", "--format", "github")
    assert github.stdout.startswith("::error file=sub dir/old.py,line=6,")
    text = tether(sub, "check", "--tools", "none", "--diff")
    assert text.stdout.startswith("old.py:6:")  # read by people, from where they stand


def test_a_baseline_outside_git_works_from_a_folder_below_it(project: Path) -> None:
    """Its paths were from the folder it was written in, so from a subfolder every known
    finding was new."""
    (project / "pkg").mkdir()
    (project / "pkg" / "old.py").write_text(BAD)
    assert (
        tether(project, "check", "--tools", "none", "--write-baseline", "bl.json").returncode == 0
    )
    below = tether(project / "pkg", "check", "--tools", "none", "--baseline", "../bl.json")
    assert (below.returncode, below.stdout) == (0, "no findings\n"), below.stdout


def test_diff_in_a_subfolder_checks_that_folder_s_changes(tmp_path: Path) -> None:
    """As PATHS' default (the current folder) says; the whole repository's changes were
    checked, named by absolute paths."""
    repo = init_repo(tmp_path / "repo")
    (repo / "sub").mkdir()
    (repo / "top.py").write_text(CLEAN)
    (repo / "sub" / "here.py").write_text(CLEAN)
    commit_all(repo, "start")
    (repo / "top.py").write_text(BAD)
    (repo / "sub" / "here.py").write_text(BAD)
    result = tether(repo / "sub", "check", "--tools", "none", "--diff", "--format", "json")
    assert [f["path"] for f in findings_of(result.stdout)] == ["here.py"], result.stdout
    whole = tether(repo, "check", "--tools", "none", "--diff", "--format", "json")
    assert [f["path"] for f in findings_of(whole.stdout)] == ["sub/here.py", "top.py"]


def test_names_git_lists_lead_to_their_files_under_a_locale_that_is_not_utf8(
    tmp_path: Path,
) -> None:
    """git gives names as bytes. Read as UTF-8 where the system reads them otherwise (the
    C locale with UTF-8 mode off here; Latin-1 and EUC-JP alike), a name beyond ASCII led
    to no file: a folder's file went unchecked, "no findings" and exit 0 under Latin-1,
    and the run ended as an internal error under ASCII."""
    repo = init_repo(tmp_path / "repo")
    (repo / "ñame.py").write_text(CLEAN)
    commit_all(repo, "start")
    (repo / "ñame.py").write_text(BAD)
    (repo / "nüm.py").write_text(BAD)  # not tracked: every line is new
    for args in (["."], ["--diff"]):
        result = tether(
            repo, "check", "--tools", "none", "--format", "json", *args, LC_ALL="C", PYTHONUTF8="0"
        )
        assert result.returncode == 1, result.stderr
        # Named by their UTF-8, as the report is, though the locale reads them as ASCII.
        named = [(f["path"], "path_base64" in f) for f in findings_of(result.stdout)]
        assert sorted(named) == [("nüm.py", False), ("ñame.py", False)], args


def test_broken_baseline_is_a_usage_error(project: Path) -> None:
    (project / "a.py").write_text(CLEAN)
    (project / "baseline.json").write_text('{"version": 99, "findings": []}')
    result = tether(project, "check", "--baseline", "baseline.json")
    assert result.returncode == 2
    assert "--write-baseline" in result.stderr


@pytest.mark.parametrize(
    ("kind", "why"),
    [
        (
            "missing",
            "does not exist; name the file `tether check --write-baseline` wrote, or write "
            "one with `tether check --write-baseline baseline.json`",
        ),
        (
            "unreadable",
            "cannot be read (Permission denied); give this user read access to it, or leave "
            "out --baseline",
        ),
        ("folder", "is a folder; name the file `tether check --write-baseline` wrote"),
        (
            "not json",
            "is not a baseline of tether check's (not JSON: Expecting value: line 1 column 1 "
            "(char 0)); write a new one with `tether check --write-baseline baseline.json`",
        ),
        (
            "a list",
            "is not a baseline of tether check's (JSON, but not an object); write a new one "
            "with `tether check --write-baseline baseline.json`",
        ),
    ],
)
def test_a_baseline_that_cannot_be_used_is_an_error_that_says_what_to_do(
    project: Path, kind: str, why: str
) -> None:
    """A missing, unreadable or folder baseline got click's "Invalid value for
    '--baseline': File 'baseline.json' is not readable", which said nothing of what to do,
    and a malformed one "cannot read the baseline", as if it could not be read."""
    (project / "a.py").write_text(CLEAN)
    baseline = project / "baseline.json"
    if kind == "folder":
        baseline.mkdir()
    elif kind != "missing":
        baseline.write_text({"not json": "not json", "a list": "[]"}.get(kind, '{"version": 1}'))
    if kind == "unreadable":
        baseline.chmod(0)
    done = _bound(project, "check", "--tools", "none", "--baseline", "baseline.json")
    assert (done.returncode, done.stdout) == (2, ""), done.stderr
    assert done.stderr == f"error: the baseline baseline.json {why}\n"


@pytest.mark.parametrize(
    ("given", "why"),
    [
        (
            "my baseline.json",
            "does not exist; name the file `tether check --write-baseline` wrote, or write "
            "one with `tether check --write-baseline 'my baseline.json'`",
        ),
        (
            "a.py/baseline.json",
            "does not exist (a folder in its path is a file); name the file `tether check "
            "--write-baseline` wrote",
        ),
        (
            "loop.json",
            "cannot be read (Too many levels of symbolic links); name the file `tether check "
            "--write-baseline` wrote, or leave out --baseline",
        ),
        (
            "unlike.json",
            "is not a baseline of tether check's (a finding without the strings rule_id, "
            "path and fingerprint); write a new one with `tether check --write-baseline "
            "unlike.json`",
        ),
    ],
)
def test_what_an_unusable_baseline_error_says_to_do_can_be_done(
    project: Path, given: str, why: str
) -> None:
    """A baseline behind a file, or a link that leads to itself, was said to want read
    access, which would not help; the command to write one, copied, wrote a file named
    `my` for a name with a space; and a finding whose rule_id was a list was said to be no
    object."""
    (project / "a.py").write_text(CLEAN)
    (project / "loop.json").symlink_to("loop.json")
    finding = {"rule_id": ["x"], "path": "a.py", "fingerprint": "0"}
    (project / "unlike.json").write_text(json.dumps({"version": 1, "findings": [finding]}))
    done = tether(project, "check", "--tools", "none", "--baseline", given, "a.py")
    assert (done.returncode, done.stdout) == (2, ""), done.stderr
    assert done.stderr == f"error: the baseline {given} {why}\n"
    if given == "my baseline.json":  # the command, as a shell splits it, writes it
        written = tether(project, "check", "--tools", "none", "--write-baseline", given, "a.py")
        assert written.returncode == 0, written.stderr
        known = tether(project, "check", "--tools", "none", "--baseline", given, "a.py")
        assert known.returncode == 0, known.stderr


def test_diff_reports_only_changed_lines_and_files(tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "repo")
    (repo / "old.py").write_text(BAD)
    (repo / "untouched.py").write_text(BAD)
    commit_all(repo, "start")
    (repo / "old.py").write_text(BAD + "\n\ndef more(t):\n    return eval(t)\n")
    (repo / "new.js").write_text("eval(a);\n")  # untracked: every line is new
    result = tether(repo, "check", "--tools", "none", "--diff", "--format", "json")
    assert result.returncode == 1, result.stderr
    got = [(f["path"], f["line"]) for f in findings_of(result.stdout)]
    assert got == [("new.js", 1), ("old.py", 9)]
    commit_all(repo, "more")
    assert tether(repo, "check", "--tools", "none", "--diff").stdout == "no findings\n"
    against_first = tether(repo, "check", "--tools", "none", "--diff=HEAD~1", "old.py")
    assert "old.py:9:" in against_first.stdout
    assert "new.js" not in against_first.stdout


def test_diff_reads_files_git_marks_binary_unless_they_hold_a_nul(tmp_path: Path) -> None:
    """Lock files and generated code are often marked `-diff` or `binary`: their changes
    are still checked, while a file with a NUL byte is left out as before."""
    repo = init_repo(tmp_path / "repo")
    (repo / ".gitattributes").write_text(
        "*.cfg -diff\npackage-lock.json binary\ngen.py -diff\nblob.dat binary\n"
    )
    for name in ("app.cfg", "package-lock.json", "gen.py"):
        (repo / name).write_text("x = 1\n")
    (repo / "blob.dat").write_bytes(b"a\0b\n")
    commit_all(repo, "start")
    token = "token = ghp_1234567890abcdefghijklmnopqrstuvwxyz\n"
    (repo / "app.cfg").write_text("x = 1\n" + token)
    (repo / "package-lock.json").write_text('x = 1\n{"k": "AKIAIOSFODNN7EXAMPLE"}\n')
    (repo / "gen.py").write_text("x = 1\ny = eval(z)\n")
    (repo / "blob.dat").write_bytes(b"a\0b\n" + token.encode())
    (repo / "new_blob.py").write_bytes(b"\0\x01eval(" + token.encode())  # untracked, binary
    secrets = tether(repo, "check", "--secrets-only", "--diff", "--format", "json")
    assert secrets.returncode == 1, secrets.stderr
    got = [(f["path"], f["line"]) for f in findings_of(secrets.stdout)]
    assert got == [("app.cfg", 2), ("package-lock.json", 2)]
    code = tether(repo, "check", "--tools", "none", "--diff", "--format", "json")
    assert [(f["path"], f["line"]) for f in findings_of(code.stdout)] == [("gen.py", 2)]


def test_diff_refuses_options_and_names_a_missing_revision(tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "repo")
    (repo / "a.py").write_text(CLEAN)
    commit_all(repo, "start")
    written = tmp_path / "written"
    option = tether(repo, "check", "--tools", "none", f"--diff=--output={written}")
    assert option.returncode == 2
    assert not written.exists()
    assert "cannot start with '-'" in option.stderr
    missing = tether(repo, "check", "--tools", "none", "--diff=mian")
    assert missing.returncode == 2
    assert "--diff=mian: no commit, branch or tag mian in this repository" in missing.stderr
    # --diff takes the next word as its value: a path there is a revision that is not one.
    path_taken = tether(repo, "check", "--tools", "none", "--diff", "a.py")
    assert path_taken.returncode == 2
    assert "`tether check a.py --diff`" in path_taken.stderr
    outside = tether(tmp_path, "check", "--tools", "none", "--diff")
    assert outside.returncode == 2
    assert "not inside a git work tree" in outside.stderr


def test_diff_before_the_first_commit_checks_every_file_in_full(tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "repo")
    (repo / "staged.py").write_text(BAD)
    git(repo, "add", "staged.py")
    (repo / "untracked.js").write_text("eval(a);\n")
    result = tether(repo, "check", "--tools", "none", "--diff", "--format", "json")
    assert result.returncode == 1, result.stderr
    got = [(f["path"], f["line"]) for f in findings_of(result.stdout)]
    assert got == [("staged.py", 5), ("untracked.js", 1)]
    named = tether(repo, "check", "--tools", "none", "--diff=main")
    assert named.returncode == 2
    assert "no commit, branch or tag main" in named.stderr


AWKWARD_NAMES = ["plain space.py", 'q"uote.py', "back\\slash.py", "t\tab.py", "ünï cødé.py"]


@pytest.mark.parametrize("quote_path", ["true", "false"])
def test_diff_reads_files_whose_names_git_quotes(tmp_path: Path, quote_path: str) -> None:
    repo = init_repo(tmp_path / "repo")
    git(repo, "config", "core.quotePath", quote_path)
    git(repo, "config", "diff.noprefix", "true")  # tether asks for its own prefixes
    for name in AWKWARD_NAMES:
        (repo / name).write_text("x = 1\n")
    commit_all(repo, "start")
    for name in AWKWARD_NAMES:
        (repo / name).write_text("x = 1\ny = eval(x)\n")
    result = tether(repo, "check", "--tools", "none", "--diff", "--format", "json")
    assert result.returncode == 1, result.stderr
    got = {(f["path"], f["line"]) for f in findings_of(result.stdout)}
    assert got == {(name, 2) for name in AWKWARD_NAMES}


def test_named_files_are_checked_whatever_their_size_or_encoding(project: Path) -> None:
    (project / "big.py").write_text('DATA = "' + "a" * (1 << 20) + '"\nresult = eval(data)\n')
    (project / "latin.js").write_bytes(b"// caf\xe9\neval(x);\n")
    named = tether(project, "check", "--tools", "none", "--format", "json", "big.py", "latin.js")
    assert named.returncode == 1, named.stderr
    got = [(f["path"], f["rule_id"], f["line"]) for f in findings_of(named.stdout)]
    assert got == [
        ("big.py", "security/eval", 2),
        ("latin.js", "encoding", 1),
        ("latin.js", "security/eval", 2),
    ]
    secrets = tether(project, "check", "--secrets-only", "latin.js")
    assert (secrets.returncode, secrets.stdout) == (0, "no findings\n")
    # In a folder, the large file is left out, and the run says so.
    walked = tether(project, "check", "--tools", "none", "--format", "json")
    assert "big.py" not in {f["path"] for f in findings_of(walked.stdout)}
    assert "1 file not checked, over 1 MiB; name the file to check it: big.py" in walked.stderr


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")
def test_fifos_are_skipped_in_folders_and_refused_by_name(project: Path) -> None:
    os.mkfifo(project / "pipe.py")
    (project / "bad.py").write_text(BAD)
    walked = tether(project, "check", "--tools", "none")
    assert walked.returncode == 1, walked.stderr
    assert "bad.py:5:12" in walked.stdout
    assert "1 file not checked, not a regular file: pipe.py" in walked.stderr
    secrets = tether(project, "check", "--secrets-only")
    assert secrets.returncode == 0, secrets.stderr
    named = tether(project, "check", "--tools", "none", "pipe.py")
    assert named.returncode == 2
    assert "pipe.py is not a regular file" in named.stderr


def _bound(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``tether ARGS`` run in ``cwd`` so that file permission bits bind it, as root too."""
    return subprocess.run(
        bound_by_permissions([sys.executable, "-m", "tether", *args]),
        cwd=cwd,
        env=tether_env(cwd / ".tether-home"),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_an_unreadable_file_is_skipped_in_folders_and_refused_by_name(project: Path) -> None:
    """One file a folder held that could not be read stopped the whole run (exit 2), where
    store import and corpus index skip it and go on."""
    (project / "bad.py").write_text(BAD)
    (project / "locked.py").write_text(BAD)
    (project / "locked.py").chmod(0)

    def bound(*args: str) -> subprocess.CompletedProcess[str]:
        return _bound(project, "check", *args)

    why = "cannot be read (Permission denied)"
    walked = bound("--tools", "none", "--format", "json")
    assert walked.returncode == 1, walked.stderr
    assert {f["path"] for f in findings_of(walked.stdout)} == {"bad.py"}
    assert json.loads(walked.stdout)["skipped"] == [{"path": "locked.py", "why": why}]
    assert f"1 file not checked, {why}: locked.py" in walked.stderr
    secrets = bound("--secrets-only")
    assert secrets.returncode == 0 and f"{why}: locked.py" in secrets.stderr, secrets.stderr
    # click's "Invalid value for '[PATHS]...': Path 'locked.py' is not readable" said
    # nothing of what to do.
    named = bound("--tools", "none", "locked.py")
    assert named.returncode == 2, named.stderr
    assert named.stderr == (
        "error: locked.py cannot be read (Permission denied); give this user read access "
        "to it, or leave it out of PATHS\n"
    )


def test_a_named_folder_or_link_that_cannot_be_read_is_an_error_that_says_why(
    project: Path,
) -> None:
    """A named folder that could not be listed was checked as one without files ("no
    findings", exit 0, once click no longer refuses it); a link to nothing "does not
    exist"; a file in a closed folder got a message of no command's."""
    (project / "closed").mkdir()
    (project / "closed" / "bad.py").write_text(BAD)
    (project / "gone.py").symlink_to("deleted.py")
    (project / "closed").chmod(0)
    try:
        folder = _bound(project, "check", "--tools", "none", "closed")
        inside = _bound(project, "check", "--tools", "none", "closed/bad.py")
    finally:
        (project / "closed").chmod(0o755)
    what_to_do = "give this user read access to it, or leave it out of PATHS\n"
    assert (folder.returncode, folder.stderr) == (
        2,
        f"error: closed is a folder that cannot be read (Permission denied); {what_to_do}",
    )
    assert (inside.returncode, inside.stderr) == (
        2,
        f"error: closed/bad.py cannot be read (Permission denied); {what_to_do}",
    )
    link = tether(project, "check", "--tools", "none", "gone.py")
    assert link.returncode == 2
    assert link.stderr.startswith("error: gone.py is a link to nothing (it leads to deleted.py)")
    # A loop of links: no read access would help, as the advice had said.
    (project / "one.py").symlink_to("two.py")
    (project / "two.py").symlink_to("one.py")
    loop = tether(project, "check", "--tools", "none", "one.py")
    assert (loop.returncode, loop.stderr) == (
        2,
        "error: one.py is a loop of links (it leads to two.py); mend the link, or leave it "
        "out of PATHS\n",
    )


def test_a_named_path_that_is_not_there_is_named(project: Path) -> None:
    """It was called "2 does not exist": the number of the error, not the path."""
    done = tether(project, "check", "--tools", "none", "missing.py")
    assert done.returncode == 2
    assert "Invalid value for PATHS: missing.py does not exist" in done.stderr


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")
def test_corpus_index_names_the_files_it_left_out(project: Path) -> None:
    """It counted them ("2 skipped") without saying which, or why."""
    (project / "kept.py").write_text(BAD)
    (project / "locked.py").write_text(BAD)
    (project / "locked.py").chmod(0)
    os.mkfifo(project / "pipe.py")
    done = _bound(project, "corpus", "index", ".", "--index", "corpus.sqlite")
    assert done.returncode == 0, done.stderr
    assert ".: 1 files indexed, 0 unchanged, 2 skipped" in done.stdout
    assert "1 file not indexed, cannot be read (Permission denied): locked.py" in done.stderr
    assert "1 file not indexed, not a regular file: pipe.py" in done.stderr


@pytest.mark.parametrize("kind", ["walked", "tracked", "untracked"])
def test_a_folder_that_cannot_be_read_is_named_not_passed_over(tmp_path: Path, kind: str) -> None:
    """Outside git its files went unchecked unsaid ("no findings", exit 0), and so did
    the new files git could not list in it; a tracked file in it stopped the whole run
    (exit 2)."""
    in_git = kind != "walked"
    root = init_repo(tmp_path / "repo") if in_git else tmp_path / "plain"
    (root / "closed").mkdir(parents=True)
    (root / "bad.py").write_text(BAD)
    (root / "closed" / "hidden.py").write_text(BAD)
    if kind == "tracked":
        commit_all(root)
    (root / "closed").chmod(0)
    try:
        done = _bound(root, "check", "--tools", "none", "--format", "json")
    finally:
        (root / "closed").chmod(0o755)
    assert done.returncode == 1, done.stderr
    assert {f["path"] for f in findings_of(done.stdout)} == {"bad.py"}
    folder = {"path": "closed", "why": "a folder that cannot be read (Permission denied)"}
    # A tracked file git lists from its index, and it cannot be read either.
    file = {"path": "closed/hidden.py", "why": "cannot be read (Permission denied)"}
    expected = [folder, file] if kind == "tracked" else [folder]
    assert json.loads(done.stdout)["skipped"] == expected
    for item in expected:
        assert f"{item['why']}: {item['path']}" in done.stderr, done.stderr


@pytest.mark.parametrize("name", ["closed", "new\nline"])
def test_a_folder_git_cannot_list_is_named_where_it_is(tmp_path: Path, name: str) -> None:
    """git names it from the top of the work tree, not from the folder named: under a
    named subfolder it was put in a folder that does not exist (sub/sub/closed); a name
    with a line end in it was not read as git's warning at all."""
    root = init_repo(tmp_path / "repo")
    closed = root / "sub" / name
    closed.mkdir(parents=True)
    (root / "sub" / "bad.py").write_text(BAD)
    (closed / "hidden.py").write_text(BAD)
    closed.chmod(0)
    try:
        done = _bound(root, "check", "--tools", "none", "--format=json", "sub")
    finally:
        closed.chmod(0o755)
    assert done.returncode == 1, done.stderr
    why = "a folder that cannot be read (Permission denied)"
    assert json.loads(done.stdout)["skipped"] == [{"path": f"sub/{name}", "why": why}]


def test_a_symlink_loop_is_skipped_with_a_note(project: Path) -> None:
    (project / "l1.py").symlink_to("l2.py")
    (project / "l2.py").symlink_to("l1.py")
    (project / "bad.py").write_text(BAD)
    for args in (["--tools", "none"], ["--secrets-only"]):
        walked = tether(project, "check", *args)
        assert walked.returncode in (0, 1), walked.stderr
        assert "cannot be read (Too many levels of symbolic links): l1.py, l2.py" in walked.stderr


def test_a_link_out_of_the_folder_is_not_followed_unless_named(project: Path) -> None:
    outside = project.parent / "elsewhere.py"
    outside.write_text('key = "AKIAIOSFODNN7EXAMPLX"\n')
    (project / "leak.py").symlink_to(outside)
    (project / "bad.py").write_text(BAD)
    # A link to a file of the folder is that file, checked once; one to nothing is said.
    (project / "alias.py").symlink_to("bad.py")
    (project / "gone.py").symlink_to("deleted.py")
    walked = tether(project, "check", "--secrets-only", "--format", "json")
    assert walked.returncode == 0, walked.stderr
    assert "elsewhere" not in walked.stdout
    assert "1 file not checked, a link out of the folder; name it to check it: leak.py" in (
        walked.stderr
    )
    named = tether(project, "check", "--secrets-only", "leak.py")
    assert named.returncode == 1 and "aws" in named.stdout.lower(), named.stdout
    inside = tether(project, "check", "--tools", "none", "--format", "json")
    assert [f["path"] for f in findings_of(inside.stdout)] == ["bad.py"]
    assert "1 file not checked, a link to nothing: gone.py" in inside.stderr
    aliased = tether(project, "check", "--tools", "none", "--format", "json", "alias.py")
    assert [f["path"] for f in findings_of(aliased.stdout)] == ["alias.py"]  # named: read


def test_a_file_reached_through_a_linked_folder_is_named_as_given_and_checked_once(
    project: Path,
) -> None:
    """`tether check link` (a link to the folder real) named every file real/…, a name
    the user never gave. Named as given, each is still checked once, whichever of its
    names come first; and a baseline or a SARIF report, read beyond this run, names it
    where it lies, so one written through the link is read through the other name."""
    init_repo(project)
    (project / "real" / "dist").mkdir(parents=True)
    (project / "real" / "app.py").write_text(
        "import os\nimport sys  # tether: ignore[F401]\n\n\ndef run(t):\n    return eval(t)\n"
    )
    (project / "real" / "dist" / "made.py").write_text("import os\n")
    (project / "link").symlink_to("real")
    commit_all(project)

    def found(*args: str) -> tuple[list[tuple[str, str]], dict[str, Any]]:
        done = tether(project, "check", "--tools", "ruff", "--format", "json", *args)
        assert done.returncode == 1, done.stderr
        report = json.loads(done.stdout)
        return [(f["path"], f["rule_id"]) for f in report["findings"]], report

    expected = [("app.py", "ruff/F401"), ("app.py", "security/eval")]
    through_link, report = found("link")
    assert sorted(through_link) == sorted((f"link/{n}", rule) for n, rule in expected)
    ruff = next(f for f in report["findings"] if f["rule_id"] == "ruff/F401")
    assert (ruff["line"], len(ruff["fingerprint"])) == (1, 64)  # placed in the file read
    assert [item["path"] for item in report["not_checked_by_tools"]] == ["link/dist/made.py"]
    assert sorted(found("link", "real")[0]) == sorted(through_link)
    assert sorted(found("real", "link")[0]) == sorted((f"real/{n}", r) for n, r in expected)
    written = tether(project, "check", "--tools", "ruff", "link", "--write-baseline", "b.json")
    assert written.returncode == 0, written.stderr
    known = tether(project, "check", "--tools", "ruff", "real", "--baseline", "b.json")
    assert known.returncode == 0, known.stderr
    assert known.stdout.startswith("no findings ("), known.stdout  # and one not checked
    sarif = tether(project, "check", "--tools", "none", "--format", "sarif", "link")
    (result,) = json.loads(sarif.stdout)["runs"][0]["results"]
    where = result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
    assert where == "real/app.py"


def test_a_reader_that_stops_early_gets_status_141(project: Path) -> None:
    """As documented for `| head`, even with unbuffered output (PYTHONUNBUFFERED=1, as in
    many container images), where one large write cut short reports no error."""
    for i in range(20):
        (project / f"f{i}.py").write_text("x = eval(input())\n" * 200)
    env = {**tether_env(project.parent / "home"), "PYTHONUNBUFFERED": "1"}
    child = subprocess.Popen(
        [str(Path(sys.executable).with_name("tether")), "check", "--tools", "none", "."],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert child.stdout is not None
    assert len(child.stdout.read(10)) == 10
    child.stdout.close()
    assert child.wait(timeout=120) == 141


def test_ruff_and_bandit_results_join_the_report(project: Path) -> None:
    (project / "tool.py").write_text(
        "import os\nimport subprocess\n\n\ndef run(cmd):\n"
        "    subprocess.call(cmd, shell=True)\n    return eval(cmd)\n"
    )
    result = tether(project, "check", "--tools", "ruff,bandit", "--format", "json")
    assert result.returncode == 1, result.stderr
    found = findings_of(result.stdout)
    rules = {(f["tool"], f["rule_id"], f["line"]) for f in found}
    assert ("ruff", "ruff/F401", 1) in rules  # unused import os
    assert ("bandit", "bandit/B404", 2) in rules  # import subprocess
    assert ("tether", "security/shell-true", 6) in rules
    # bandit's B602/B307 say what the inline rules said on the same lines: dropped.
    assert not {r for _, r, _ in rules} & {"bandit/B602", "bandit/B307"}
    ruff = next(f for f in found if f["rule_id"] == "ruff/F401")
    assert ruff["help_uri"].startswith("https://")
    assert len(ruff["fingerprint"]) == 64


def test_the_files_ruff_leaves_out_are_named_in_every_report(project: Path) -> None:
    """ruff, given a file its settings exclude (a folder named dist or venv by its own
    defaults, or the project's extend-exclude), checks nothing there and says nothing:
    the report passed it for linted."""
    init_repo(project)
    (project / "pyproject.toml").write_text('[tool.ruff]\nextend-exclude = ["gen"]\n')
    for name in ("app.py", "pkg/dist/build.py", "gen/made.py"):
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text("import os\n")

    def run(*args: str, status: int = 1) -> subprocess.CompletedProcess[str]:
        done = tether(project, "check", "--tools", "ruff", *args)
        assert done.returncode == status, done.stderr
        return done

    default = (
        "in a folder named dist, which ruff excludes by default; to lint it, set ruff's "
        "`exclude` in the project's settings (it replaces ruff's list) without dist"
    )
    configured = (
        "in a folder named gen, which the project's own ruff settings exclude "
        "(`extend-exclude`); to lint it, take gen out of `extend-exclude`"
    )
    as_json = run("--format", "json")
    assert [(f["path"], f["rule_id"]) for f in findings_of(as_json.stdout)] == [
        ("app.py", "ruff/F401")
    ]
    assert json.loads(as_json.stdout)["not_checked_by_tools"] == [
        {"path": "gen/made.py", "tool": "ruff", "why": configured},
        {"path": "pkg/dist/build.py", "tool": "ruff", "why": default},
    ]
    assert f"note: 1 file not checked by ruff, {default}: pkg/dist/build.py" in as_json.stderr
    assert f"note: 1 file not checked by ruff, {configured}: gen/made.py" in as_json.stderr
    text = run("--output", "report.txt")
    report = (project / "report.txt").read_text()
    assert report.endswith(
        "1 finding: 1 warning (2 files not checked by ruff, which its settings exclude: see "
        "the notes on stderr)\n"
    ), text.stderr
    assert written_by_check(report)  # a run may write it again
    run("--output", "report.txt")
    sarif = json.loads(run("--format", "sarif", "pkg", status=0).stdout)
    (invocation,) = sarif["runs"][0]["invocations"]
    (notification,) = invocation["toolExecutionNotifications"]
    assert notification["message"]["text"] == f"not checked by ruff: {default}"
    where = notification["locations"][0]["physicalLocation"]["artifactLocation"]
    assert where == {"uri": "pkg/dist/build.py", "uriBaseId": "%SRCROOT%"}
    github = run("--format", "github", "pkg", status=0).stdout
    assert "::notice file=pkg/dist/build.py,title=not checked by ruff::in a folder" in github


@pytest.mark.parametrize(
    ("settings", "text"),
    [
        (
            "pyproject.toml",
            '[tool.ruff]\nexclude = ["dist", "gen", "*_pb2.py"]\nextend-exclude = ["old"]\n',
        ),
        ("ruff.toml", 'exclude = ["dist", "gen", "*_pb2.py"]\nextend-exclude = ["old"]\n'),
    ],
)
def test_a_folder_the_projects_own_exclude_names_is_not_said_to_be_excluded_by_default(
    project: Path, settings: str, text: str
) -> None:
    """Where the project's `exclude` (which replaces ruff's list) named dist, a file in a
    folder named dist was said to be excluded by ruff's defaults, and the advice was to
    set `exclude`, which the project had. Of one in gen/dist only gen was named: taken
    out of `exclude`, dist still left it out."""
    init_repo(project)
    (project / settings).write_text(text)
    for name in (
        "app.py",
        "pkg/dist/build.py",
        "gen/dist/made.py",
        "old/venv/kept.py",
        "api_pb2.py",
    ):
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text("import os\n")
    done = tether(project, "check", "--tools", "ruff", "--format", "json")
    assert done.returncode == 1, done.stderr

    def own(folder: str, key: str = "exclude") -> str:
        return (
            f"in a folder named {folder}, which the project's own ruff settings exclude "
            f"(`{key}`); to lint it, take {folder} out of `{key}`"
        )

    assert json.loads(done.stdout)["not_checked_by_tools"] == [
        {
            "path": "api_pb2.py",
            "tool": "ruff",
            "why": "excluded by the project's ruff settings (`exclude`, `extend-exclude`); "
            "to lint it, take it out of them",
        },
        {
            "path": "gen/dist/made.py",
            "tool": "ruff",
            "why": "in folders named gen and dist, which the project's own ruff settings "
            "exclude (`exclude`); to lint it, take gen and dist out of `exclude`",
        },
        {"path": "old/venv/kept.py", "tool": "ruff", "why": own("old", "extend-exclude")},
        {"path": "pkg/dist/build.py", "tool": "ruff", "why": own("dist")},
    ]
    assert "by default" not in done.stderr
    assert f"note: 1 file not checked by ruff, {own('dist')}: pkg/dist/build.py" in done.stderr


def test_every_folder_that_leaves_a_file_out_of_ruff_is_named(project: Path) -> None:
    """A folder only the project's `extend-exclude` named got the note for any of the
    project's settings, which named none; of a folder it named inside one of ruff's own
    list (old/venv) only venv was named, and what the note said to do left the file out
    still; and from inside dist, where ruff reads its list from the project's folder, the
    file was said to be left out by the project's settings."""
    init_repo(project)
    (project / "pyproject.toml").write_text('[tool.ruff]\nextend-exclude = ["old", "gen"]\n')
    for name in ("old/venv/kept.py", "gen/made.py", "pkg/dist/sub/build.py"):
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text("import os\n")
    done = tether(project, "check", "--tools", "ruff", "--format", "json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["not_checked_by_tools"] == [
        {
            "path": "gen/made.py",
            "tool": "ruff",
            "why": "in a folder named gen, which the project's own ruff settings exclude "
            "(`extend-exclude`); to lint it, take gen out of `extend-exclude`",
        },
        {
            "path": "old/venv/kept.py",
            "tool": "ruff",
            "why": "in folders named old, which the project's own ruff settings exclude "
            "(`extend-exclude`), and venv, which ruff excludes by default; to lint it, take "
            "old out of `extend-exclude`, and set ruff's `exclude` in the project's "
            "settings (it replaces ruff's list) without venv",
        },
        {
            "path": "pkg/dist/sub/build.py",
            "tool": "ruff",
            "why": "in a folder named dist, which ruff excludes by default; to lint it, set "
            "ruff's `exclude` in the project's settings (it replaces ruff's list) without dist",
        },
    ]
    inside = tether(project / "pkg" / "dist" / "sub", "check", "--tools", "ruff")
    assert inside.returncode == 0, inside.stderr
    assert "in a folder named dist, which ruff excludes by default" in inside.stderr


def test_tool_findings_never_quote_a_secret_nor_repeat_an_inline_one(project: Path) -> None:
    """bandit's B105 quoted the password it found into every report, SARIF's rule
    description and CI's annotations, beside the inline rule that said the same."""
    secret, password = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "correct-horse-battery"
    (project / "keys.py").write_text(
        f'AWS_SECRET = "{secret}"\ndef connect(db_password="{password}"):\n    return 1\n'
    )
    result = tether(project, "check", "keys.py", "--tools", "ruff,bandit", "--format", "sarif")
    assert result.returncode == 1, result.stderr
    assert secret not in result.stdout and password not in result.stdout
    (run,) = json.loads(result.stdout)["runs"]
    by_line: dict[int, list[str]] = {}
    for found in run["results"]:
        line = found["locations"][0]["physicalLocation"]["region"]["startLine"]
        by_line.setdefault(line, []).append(found["ruleId"])
    assert [r for r in by_line[1] if r.startswith("secrets/")] and not {
        "bandit/B105", "ruff/S105"
    } & set(by_line[1]), by_line  # fmt: skip
    # No inline rule reads a parameter's default: bandit's finding stays, its value unsaid.
    described = {r["id"]: r["shortDescription"]["text"] for r in run["tool"]["driver"]["rules"]}
    assert "bandit/B107" in by_line[2]
    assert "its value is not shown" in described["bandit/B107"]


def test_bandit_columns_are_characters_not_bytes(project: Path) -> None:
    (project / "c.py").write_text('u = "日本"; import subprocess\n')
    result = tether(project, "check", "c.py", "--tools", "bandit", "--format", "json")
    (found,) = [f for f in findings_of(result.stdout) if f["rule_id"] == "bandit/B404"]
    assert found["column"] == 11


def test_a_file_bandit_cannot_decode_is_checked_by_the_rest(project: Path) -> None:
    """bandit fails on a byte its encoding does not hold after the first line: the whole
    run ended with exit 2, no report written, every other file's findings unsaid."""
    (project / "legacy.py").write_bytes(b"x = 1\n# caf\xe9\neval(input())\n")
    result = tether(project, "check", "legacy.py", "--tools", "bandit", "-o", "r.sarif",
                    "--format", "sarif")  # fmt: skip
    assert result.returncode == 1, result.stderr
    sarif = json.loads((project / "r.sarif").read_text())
    rules = {r["ruleId"] for r in sarif["runs"][0]["results"]}
    assert {"encoding", "security/eval"} <= rules, rules  # bandit reads none of it


def test_a_name_that_is_not_utf8_is_reported_so_it_leads_to_the_file(project: Path) -> None:
    raw = b"key_\xff\xfe.py"
    try:
        (project / os.fsdecode(raw)).write_text(
            "import os\nimport sys  # tether: ignore[F401]\n\n\ndef run(text):\n"
            "    return eval(text)\n"
        )
    except (OSError, UnicodeEncodeError):
        pytest.skip("this file system takes only UTF-8 names")
    # Quoted as git quotes names, on a standard output that takes only UTF-8.
    shown = '"key_\\377\\376.py"'
    text = tether(project, "check", "--tools", "ruff", PYTHONIOENCODING="utf-8:strict")
    assert text.returncode == 1, text.stderr
    assert text.stdout.splitlines()[:2] == [
        f"{shown}:1:8: warning [ruff/F401] `os` imported but unused",
        f"{shown}:6:12: error [security/eval] eval() runs code built from a string; parse "
        "data with ast.literal_eval or json instead",
    ]  # ruff names the file with U+FFFD: its findings land on the file all the same,
    # and the file's own suppression comment hides ruff's F401 on line 2
    assert "\ufffd" not in text.stdout
    written = tether(project, "check", "--tools", "none", "-o", "report.txt")
    assert written.returncode == 1, written.stderr
    assert (project / "report.txt").read_text().startswith(f"{shown}:6:12: error")
    # JSON gives the name's bytes as well, SARIF a percent-encoded URI.
    as_json = tether(project, "check", "--tools", "ruff", "--format", "json")
    found = findings_of(as_json.stdout)
    assert [(f["tool"], f["line"]) for f in found] == [("ruff", 1), ("tether", 6)]
    for finding in found:
        assert finding["path"] == shown
        assert base64.b64decode(finding["path_base64"]) == raw
    assert (project / os.fsdecode(base64.b64decode(found[0]["path_base64"]))).is_file()
    assert unquote_path(found[0]["path"]) == os.fsdecode(raw)
    sarif = tether(project, "check", "--tools", "none", "--format", "sarif")
    (result,) = json.loads(sarif.stdout)["runs"][0]["results"]
    location = result["locations"][0]["physicalLocation"]["artifactLocation"]
    assert location["uri"] == "key_%FF%FE.py"


def test_file_names_that_look_like_options_reach_the_tools_as_files(project: Path) -> None:
    (project / "-x.py").write_text("x = 1\n")  # bandit would read "-x .py": exclude .py
    (project / "--config=evil.py").write_text("import os\n")
    (project / "evil.py").write_text('import pickle\npickle.loads(b"")\nassert 1\n')
    result = tether(project, "check", "--tools", "ruff,bandit", "--format", "json")
    assert result.returncode == 1, result.stderr
    found = {(f["path"], f["rule_id"]) for f in findings_of(result.stdout)}
    assert ("--config=evil.py", "ruff/F401") in found
    assert {("evil.py", "bandit/B403"), ("evil.py", "bandit/B101")} <= found


@pytest.mark.parametrize("module", ["copy", "sysconfig"])
def test_checking_a_project_never_runs_its_code(project: Path, module: str) -> None:
    """A project file named like a standard module is not imported by the tools."""
    marker = project.parent / "ran"
    (project / f"{module}.py").write_text(f"open({str(marker)!r}, 'a').write('ran')\n")
    (project / "app.py").write_text('NAME = "café"\n')
    script = Path(sys.executable).with_name("tether")  # as a user runs it, not python -m
    done = subprocess.run(
        [str(script), "check", "--tools", "ruff,bandit", "app.py"],
        cwd=project,
        env=tether_env(project.parent / "home"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert not marker.exists(), done.stderr
    assert done.returncode == 0, done.stderr


def test_semgrep_runs_when_on_path(project: Path, tmp_path: Path) -> None:
    # A stand-in semgrep that checks its arguments and answers in semgrep's JSON shape.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "semgrep"
    fake.write_text(
        f"#!{sys.executable}\n"
        "import json, sys\n"
        "args = sys.argv[1:]\n"
        "assert args[0] == 'scan' and '--json' in args, args\n"
        "rules = args[args.index('--config') + 1]\n"
        "assert rules.endswith('semgrep.yml'), rules\n"
        "print(json.dumps({'errors': [], 'results': [{\n"
        "    'check_id': 'tmp.rules.flask-debug-true', 'path': args[-1],\n"
        "    'start': {'line': 3, 'col': 1}, 'end': {'line': 3, 'col': 20},\n"
        "    'extra': {'message': 'debug on', 'severity': 'ERROR'}}]}))\n"
    )
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    (project / "app.py").write_text(
        "import flask\napp = flask.Flask(__name__)\napp.run(debug=True)\n"
    )
    path = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
    result = tether(project, "check", "--tools", "semgrep", "--format", "json", PATH=path)
    assert result.returncode == 1, result.stderr
    (finding,) = findings_of(result.stdout)
    assert (finding["tool"], finding["rule_id"], finding["severity"]) == (
        "semgrep",
        "semgrep/flask-debug-true",
        "error",
    )
    assert finding["path"] == "app.py"


def _running(pid: int) -> bool:
    """Whether ``pid`` still runs: one ended but not reaped (its parent gone, under an init
    that reaps nothing) is not."""
    if not Path("/proc/self/stat").exists():  # no /proc to tell a zombie by
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat_line.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_a_check_stopped_stops_its_tools(project: Path, tmp_path: Path, signum: int) -> None:
    """SIGTERM ended `tether check` at once and left ruff, bandit or semgrep running (a
    CI job cancelled, a hook killed); SIGINT sent to it alone waited for each to finish.
    A tool's own processes (semgrep's semgrep-core) go too: killing the tool alone left
    them running, holding its output open, and the check waited for them to end."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    started = tmp_path / "semgrep.pid"
    fake = bin_dir / "semgrep"  # a semgrep that takes its time, in a process of its own
    fake.write_text(
        f"#!{sys.executable}\n"
        "import os, pathlib, subprocess, time\n"
        f"core = subprocess.Popen([{sys.executable!r}, '-c', 'import time; time.sleep(600)'])\n"
        f"pathlib.Path({str(started)!r}).write_text(f'{{os.getpid()}} {{core.pid}}')\n"
        "time.sleep(600)\n"
    )
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    (project / "app.py").write_text(CLEAN)
    path = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
    check = subprocess.Popen(
        [sys.executable, "-m", "tether", "check", "--tools", "semgrep"],
        cwd=project,
        env=tether_env(tmp_path / "home", PATH=path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # As a shell starts a command, whatever this process does with Ctrl-C.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    pids: list[int] = []
    try:
        for _ in range(1200):
            if started.exists() and started.read_text().endswith(tuple("0123456789")):
                pids = [int(pid) for pid in started.read_text().split()]
                break
            assert check.poll() is None, check.communicate()
            threading.Event().wait(0.05)
        assert pids, "the tool did not start"
        check.send_signal(signum)
        _, stderr = check.communicate(timeout=60)
        assert (check.returncode, stderr) == (130, "interrupted\n")
        assert [pid for pid in pids if _running(pid)] == []
    finally:
        check.kill()
        check.communicate()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_semgrep_named_but_missing_is_a_tool_error(project: Path, tmp_path: Path) -> None:
    (project / "a.py").write_text(CLEAN)
    result = tether(project, "check", "--tools", "semgrep", PATH=str(tmp_path / "empty"))
    assert result.returncode == 2
    assert "semgrep is not installed" in result.stderr


def test_secrets_only(project: Path) -> None:
    pytest.importorskip("tether.policy")
    token = "ghp_" + "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5"
    (project / "settings.ini").write_text(f"[github]\ntoken = {token}\n")
    (project / "code.py").write_text("x = eval(s)\n")
    result = tether(project, "check", "--secrets-only", "--format", "json")
    assert result.returncode == 1, result.stderr
    (finding,) = findings_of(result.stdout)
    assert (finding["path"], finding["rule_id"], finding["line"]) == (
        "settings.ini",
        "secrets/github-pat",
        2,
    )
    assert token not in result.stdout
    (project / "settings.ini").write_text("[github]\ntoken = ${GITHUB_TOKEN}\n")
    assert tether(project, "check", "--secrets-only").returncode == 0


@pytest.mark.parametrize("encoding", ["utf-16", "utf-32"])
def test_secrets_in_utf16_and_utf32_files_are_found_on_their_lines(
    project: Path, encoding: str
) -> None:
    pytest.importorskip("tether.policy")
    token = "ghp_" + "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5"
    text = f"[github]\r\n# caf\u00e9 \U0001f600\r\ntoken = {token}\r\n"
    (project / "settings.ini").write_bytes(text.encode(encoding))  # with its byte order mark
    (project / "app.py").write_bytes(f"x = 1\ntoken = '{token}'\n".encode(encoding))
    for args in (["--secrets-only"], ["--tools", "none", "app.py"]):
        result = tether(project, "check", *args, "--format", "json")
        assert result.returncode == 1, result.stderr
        got = [
            (f["path"], f["rule_id"], f["line"], f["column"]) for f in findings_of(result.stdout)
        ]
        expected = [("app.py", "secrets/github-pat", 2, 10)]
        if args == ["--secrets-only"]:
            expected.append(("settings.ini", "secrets/github-pat", 3, 9))
        assert got == expected


def test_a_clean_utf16_file_passes_though_ruff_reads_only_utf8(project: Path) -> None:
    pytest.importorskip("ruff")
    (project / "c16.py").write_bytes("x = 1\n".encode("utf-16"))
    result = tether(project, "check", "--tools", "ruff", "--format", "json")
    assert result.returncode == 0, result.stdout + result.stderr
    assert findings_of(result.stdout) == []
    (project / "bad.py").write_bytes(b"\xff\xfex = 1\n")  # not UTF-16: ruff's E902 stays
    named = tether(project, "check", "--tools", "ruff", "--format", "json", "bad.py")
    assert "ruff/E902" in [f["rule_id"] for f in findings_of(named.stdout)], named.stdout


def test_byte_order_mark_and_crlf_files(project: Path) -> None:
    (project / "win.py").write_bytes(b"\xef\xbb\xbfx = eval(s)\r\ny = 1\r\n")
    result = tether(project, "check", "--tools", "none", "--format", "json")
    assert [(f["rule_id"], f["line"], f["column"]) for f in findings_of(result.stdout)] == [
        ("security/eval", 1, 5)
    ]


@pytest.mark.parametrize("path", ["{{cookiecutter.slug}}/settings.py", "b\u2028c.py", "plain.py"])
def test_every_report_is_told_for_one_whatever_the_names_in_it(path: str) -> None:
    """A text report whose first name begins with "{" was read as broken JSON, and one
    with a name holding U+2028 was split there: the next run refused its own report."""
    finding = FileFinding(path, Finding("secrets/github-pat", "token", "compliance", "redact"))
    for render in (render_text, render_github, render_json, render_sarif):
        assert written_by_check(render([finding])), render.__name__
    assert written_by_check(render_text([]))
    assert not written_by_check("{ not json, notes\n") and not written_by_check("my notes\n")


def test_a_file_whose_lines_end_in_a_lone_carriage_return(project: Path) -> None:
    """Python ends a line at a lone "\\r" (classic Mac OS files), and so do editors; the
    findings were all placed on line 1, past its end, and a suppression anywhere in the
    file covered every one of them."""
    lines = ["import os", "# tether: ignore[security/eval]", "x = eval(s)", "", "y = eval(t)", ""]
    (project / "mac.py").write_bytes("\r".join(lines).encode())
    result = tether(project, "check", "--tools", "none", "--format", "json")
    assert [(f["rule_id"], f["line"], f["column"]) for f in findings_of(result.stdout)] == [
        ("security/eval", 5, 5)
    ]


def test_diff_finds_a_change_in_a_file_whose_lines_end_in_a_lone_carriage_return(
    tmp_path: Path,
) -> None:
    """git counts lines by "\\n" alone, the checks by every line end: a finding on the
    checked line 3 stands on git's line 1 of such a file, which --diff names as changed."""
    repo = init_repo(tmp_path / "repo")
    (repo / "mac.py").write_bytes(b"import os\r\ry = 1\r")
    (repo / "win.py").write_bytes(b"import os\r\n\r\nx = 1\r\n")
    commit_all(repo, "start")
    (repo / "mac.py").write_bytes(b"import os\r\ry = eval(s)\r")
    (repo / "win.py").write_bytes(b"import os\r\n\r\nx = eval(s)\r\n")
    result = tether(repo, "check", "--tools", "none", "--diff", "--format", "json")
    got = [(f["path"], f["line"]) for f in findings_of(result.stdout)]
    assert got == [("mac.py", 3), ("win.py", 3)]
    (repo / "mac.py").write_bytes(b"x = eval(s)\r\nimport os\r\ry = 1\r")
    result = tether(repo, "check", "--tools", "none", "--diff", "--format", "json")
    assert [(f["path"], f["line"]) for f in findings_of(result.stdout)] == [
        ("mac.py", 1),
        ("win.py", 3),
    ]


def test_enabled_plugins_check_files_as_the_server_checks_answers(project: Path) -> None:
    """CI runs the rules the server runs: a third-party check_completion too."""
    (project / "greet.py").write_text("def greet(name):\n    print(name)\n")
    (project / "quiet.py").write_text("x = 1\nprint(x)  # tether: ignore[example/print]\n")
    args = ("check", "greet.py", "quiet.py", "--tools", "none", "--format", "json")
    plain = tether(project, *args)
    assert (plain.returncode, findings_of(plain.stdout)) == (0, []), plain.stderr
    enabled = tether(project, *args, TETHER_PLUGINS_ENABLED="example")
    assert enabled.returncode == 0, enabled.stderr  # a note, under --fail-on warning
    found = [(f["path"], f["rule_id"], f["line"]) for f in findings_of(enabled.stdout)]
    assert found == [("greet.py", "example/print", 2)]  # and suppressed as any rule


def test_a_file_removed_while_being_checked_is_named_and_the_rest_checked(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file listed from a folder and removed before it was read (an editor's swap file, a
    build's temporary one) stopped the whole run with exit 2."""
    from click.testing import CliRunner

    from tether.cli.main import cli
    from tether.compliance.files import expand

    (project / "bad.py").write_text(BAD)
    (project / "swap.py").write_text(BAD)

    def listed_then_removed(*args: Any, **kwargs: Any) -> Any:
        found = expand(*args, **kwargs)
        (project / "swap.py").unlink()
        return found

    monkeypatch.setattr("tether.cli.check.expand", listed_then_removed)
    monkeypatch.chdir(project)
    monkeypatch.setenv("TETHER_HOME", str(project / ".tether-home"))
    done = CliRunner().invoke(cli, ["check", "--tools", "none", "--format", "json"])
    assert done.exit_code == 1, done.output
    report = json.loads(done.stdout)
    assert [f["path"] for f in report["findings"]] == ["bad.py"]
    assert report["skipped"] == [{"path": "swap.py", "why": "removed while being checked"}]
    assert "1 file not checked, removed while being checked: swap.py" in done.stderr


def test_a_file_named_twice_is_read_and_reported_once(project: Path) -> None:
    """Named by two spellings (a.py, sub/../a.py), a file was checked once but read twice,
    and its `encoding` finding reported twice."""
    (project / "sub").mkdir()
    (project / "a.py").write_bytes(b'x = "\xff"\ny = eval(x)\n')
    for tools in ("none", "ruff"):
        done = tether(project, "check", "--tools", tools, "--format", "json", "a.py", "sub/../a.py")
        report = json.loads(done.stdout)["findings"]
        rules = [(f["path"], f["rule_id"]) for f in report if f["tool"] == "tether"]
        assert rules == [("a.py", "encoding"), ("a.py", "security/eval")], tools
