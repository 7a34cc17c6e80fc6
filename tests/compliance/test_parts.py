"""The smaller parts of ``tether check``: diff parsing, tool output, suppressions, rules files."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest
import yaml

from tests.compliance.helpers import PLAIN
from tether.compliance.baseline import load_baseline, save_baseline, without_baseline
from tether.compliance.gitdiff import parse_diff, unquote_path
from tether.compliance.languages import Language
from tether.compliance.report import FileFinding
from tether.compliance.suppress import Suppressions
from tether.compliance.tools import SEMGREP_RULES, parse_bandit, parse_semgrep
from tether.errors import ConfigError, ToolError
from tether.findings import Finding

DIFF = """diff --git a/a.py b/a.py
index 1..2 100644
--- a/a.py
+++ b/a.py
@@ -3,0 +4,2 @@ def f():
+    x = 1
+    y = 2
@@ -10 +12 @@ def g():
-    old
+    new
diff --git a/gone.py b/gone.py
--- a/gone.py
+++ /dev/null
@@ -1,2 +0,0 @@
-a
-b
diff --git a/dir/b c.py b/dir/b c.py
--- a/dir/b c.py
+++ b/dir/b c.py
@@ -1,3 +1,0 @@
-only
-deletions
-here
"""


def test_parse_diff_collects_added_lines() -> None:
    changed = parse_diff(DIFF, Path("/repo"))
    assert changed == {Path("/repo/a.py"): {4, 5, 12}, Path("/repo/dir/b c.py"): set()}


# How git writes awkward names: a tab after a name with a space, C quoting otherwise.
QUOTED_DIFF = """diff --git a/plain space.py b/plain space.py
--- a/plain space.py\t
+++ b/plain space.py\t
@@ -1,0 +2 @@
+++ b/not-a-file-header.py
diff --git "a/q\\"uote.py" "b/q\\"uote.py"
--- "a/q\\"uote.py"
+++ "b/q\\"uote.py"
@@ -1,0 +2,2 @@
+a
+b
diff --git "a/\\303\\274 \\\\ \\t.py" "b/\\303\\274 \\\\ \\t.py"
--- "a/\\303\\274 \\\\ \\t.py"
+++ "b/\\303\\274 \\\\ \\t.py"
@@ -3 +3 @@
-old
+new
"""


def test_parse_diff_reads_names_git_quotes() -> None:
    changed = parse_diff(QUOTED_DIFF, Path("/repo"))
    assert changed == {
        Path("/repo/plain space.py"): {2},
        Path('/repo/q"uote.py'): {2, 3},
        Path("/repo/\u00fc \\ \t.py"): {3},
    }


@pytest.mark.parametrize(
    ("printed", "name"),
    [
        ("b/a b.py\t", "b/a b.py"),
        ('"b/a\\"b.py"', 'b/a"b.py'),
        ('"b/\\303\\251\\n\\a.py"', "b/\u00e9\n\a.py"),
        ('"b/caf\u00e9\\\\.py"', "b/caf\u00e9\\.py"),  # core.quotePath=false
        ('"b/\\377.py"', "b/\udcff.py"),  # not UTF-8: kept as the bytes the file system has
    ],
)
def test_unquote_path(printed: str, name: str) -> None:
    assert unquote_path(printed) == name


def test_suppressions_by_line() -> None:
    text = (
        "x = 1  # tether: ignore[security/eval, B307]\n"
        "  // tether: ignore\n"
        "y = 2\n"
        "/* TETHER: IGNORE[licence] */\n"
        "z = 3\n"
    )
    rules = Suppressions(text)
    assert rules.covers("security/eval", 1)
    assert rules.covers("bandit/B307", 1)
    assert not rules.covers("security/shell-true", 1)
    assert not rules.covers("syntax", 4)
    assert rules.covers("anything/at-all", 3)  # bare ignore on the line above
    assert rules.covers("licence/copyright", 5)
    assert not rules.covers("licence/copyright", 6)
    assert not Suppressions("no directives here").covers("syntax", 1)
    # A line whose controls reorder what it shows hides them only from a comment naming them.
    assert not rules.covers("unicode/bidi", 3)
    assert Suppressions("x = 1  # tether: ignore[unicode/bidi]\n").covers("unicode/bidi", 1)
    assert Suppressions("x = 1  # tether: ignore[unicode]\n").covers("unicode/bidi", 1)


@pytest.mark.parametrize(
    ("language", "text"),
    [
        ("python", 'x = "# tether: ignore"; y = eval(a)\n'),
        ("python", "x = '# tether: ignore[security]'\ny = eval(a)\n"),
        ("python", 'def f():\n    """Docs.\n# tether: ignore\n    """\n'),
        ("python", 'x = f"{a}# tether: ignore"\n'),
        ("javascript", 'const x = "// tether: ignore"; eval(a);\n'),
        ("javascript", "const t = `\n// tether: ignore\n`;\neval(a);\n"),
        ("javascript", "const r = /\\/\\/ tether: ignore|\\/* tether: ignore/;\n"),
        ("typescript", 'const x: string = "/* tether: ignore */";\n'),
        ("tsx", "const e = <p>// tether: ignore</p>;\n"),
    ],
    ids=[
        "py-string",
        "py-string-own-line",
        "py-docstring",
        "py-f-string",
        "js-string",
        "js-template",
        "js-regex",
        "ts-string",
        "tsx-jsx-text",
    ],
)
def test_a_directive_in_a_string_hides_nothing(language: Language, text: str) -> None:
    rules = Suppressions(text, language)
    assert not any(rules.covers("security/eval", n) for n in range(1, text.count("\n") + 2))
    # Read as a language tether does not parse, every line that spells one counts.
    assert any(Suppressions(text).covers("security/eval", n) for n in range(1, 6))


@pytest.mark.parametrize(
    ("language", "text"),
    [
        ("python", 's = "# tether: ignore"  # tether: ignore[security/eval]\n'),
        ("python", '"""Docs."""\n# TETHER: IGNORE[security]\n'),
        ("javascript", 'const s = "// x"; // tether: ignore[security]\n'),
        ("typescript", "/* tether: ignore[security/eval] */\n"),
        ("tsx", "const e = <p>{/* tether: ignore */}</p>;\n"),
        ("javascript", "<!-- tether: ignore\n"),
    ],
    ids=["py-after-a-string", "py-upper-case", "js-line", "ts-block", "tsx-jsx", "js-html"],
)
def test_a_directive_in_a_real_comment_counts(language: Language, text: str) -> None:
    rules = Suppressions(text, language)
    assert rules.covers("security/eval", 1) or rules.covers("security/eval", 2)


def test_where_python_does_not_tokenize_the_rest_is_read_by_line() -> None:
    text = 's = "# tether: ignore"\nif x:\n        a = 1\n    b = 2  # tether: ignore[syntax]\n'
    rules = Suppressions(text, "python")
    assert not rules.covers("syntax", 1)  # before the error: a string
    assert rules.covers("syntax", 4)  # the unindent stops the tokenizer on this line
    unclosed = 's = """\n# tether: ignore\nx = 1\n'
    assert Suppressions(unclosed, "python").covers("syntax", 3)


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("a/b c.py", "a/b c.py"),
        ("ünï/cødé.py", "ünï/cødé.py"),
        ('a"b\\c.py', 'a"b\\c.py'),  # shown bare: a bare name is always the name itself
        ("key_\udcff\udcfe.py", '"key_\\377\\376.py"'),  # bytes that are not UTF-8
        ("d\udce9/x.py", '"d\\351/x.py"'),
        ("new\nline\t.py", '"new\\nline\\t.py"'),
        ('"q\x1b".py', '"\\"q\\033\\".py"'),
    ],
)
def test_names_are_shown_bare_or_quoted_as_git_quotes_them(name: str, shown: str) -> None:
    from tether.compliance.report import shown_path

    assert shown_path(name) == shown
    assert unquote_path(shown) == name
    record = FileFinding(name, Finding("syntax", "m", "compliance", "annotate")).as_record()
    if "\udc80" <= max(name) <= "\udcff":
        assert record["path"] == shown
        assert base64.b64decode(record["path_base64"]) == os.fsencode(name)
        json.dumps(record, ensure_ascii=False).encode("utf-8")  # no lone surrogate left
    else:
        assert (record["path"], "path_base64" in record) == (name, False)


def _item(rule: str, path: str, line_text: str) -> FileFinding:
    from tether.findings import fingerprint

    finding = Finding(rule, "m", "compliance", "annotate", fingerprint=fingerprint(line_text))
    return FileFinding(path, finding)


def test_baseline_entries_absorb_one_finding_each(tmp_path: Path) -> None:
    known = [_item("security/eval", "a.py", "eval(x)")]
    path = tmp_path / "baseline.json"
    assert save_baseline(path, known) == 1
    current = [*known, _item("security/eval", "a.py", "eval(x)"), _item("syntax", "a.py", "(")]
    fresh = without_baseline(current, load_baseline(path))
    assert [f.finding.rule_id for f in fresh] == ["security/eval", "syntax"]
    assert json.loads(path.read_text())["version"] == 1


@pytest.mark.parametrize("content", ["not json", "[]", '{"version": 1}', '{"version": 2}'])
def test_unreadable_baseline_is_a_config_error(tmp_path: Path, content: str) -> None:
    path = tmp_path / "baseline.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match="--write-baseline"):
        load_baseline(path)


def test_bandit_syntax_errors_are_left_to_the_syntax_rule_others_fail(tmp_path: Path) -> None:
    syntax = {"errors": [{"filename": "a.py", "reason": "syntax error while parsing AST"}]}
    assert parse_bandit(json.dumps(syntax), tmp_path) == []
    other = {"errors": [{"filename": "a.py", "reason": "plugin crashed"}], "results": []}
    with pytest.raises(ToolError, match="plugin crashed"):
        parse_bandit(json.dumps(other), tmp_path)


def test_semgrep_output_and_errors(tmp_path: Path) -> None:
    output = {
        "results": [
            {
                "check_id": "home.user.rules.tempfile-mktemp",
                "path": "x.py",
                "start": {"line": 2, "col": 5},
                "extra": {"message": "use mkstemp", "severity": "WARNING"},
            }
        ],
        "errors": [{"level": "warn", "message": "partial parse"}],
    }
    (item,) = parse_semgrep(json.dumps(output), tmp_path)
    assert item.path == "x.py"
    assert (item.finding.rule_id, item.finding.severity) == ("semgrep/tempfile-mktemp", "warning")
    assert (item.finding.line, item.finding.column) == (2, 5)
    with pytest.raises(ToolError, match="bad rules"):
        parse_semgrep(
            json.dumps({"errors": [{"level": "error", "message": "bad rules"}]}), tmp_path
        )


def test_shipped_semgrep_rules_are_well_formed() -> None:
    rules = yaml.safe_load(SEMGREP_RULES.read_text())["rules"]
    assert len({rule["id"] for rule in rules}) == len(rules)
    for rule in rules:
        assert rule["severity"] in ("ERROR", "WARNING", "INFO")
        assert rule["languages"] and rule["message"]
        assert {"pattern", "patterns", "pattern-either"} & set(rule)


def test_docs_list_every_rule() -> None:
    from tether.compliance.rules import check_rules_reference

    docs = (Path(__file__).resolve().parents[2] / "docs" / "check.md").read_text()
    table = [line for line in docs.splitlines() if line.startswith("| `")]
    rows = [line for line in check_rules_reference().splitlines() if line.startswith("| `")]
    assert table == rows, "paste check_rules_reference() into docs/check.md"


def test_auto_tools_skip_semgrep_without_its_rules(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tether.compliance import tools

    fake = tmp_path / "semgrep"
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    chosen, notes = tools.select_tools("auto")
    assert chosen == [tools.RUFF, tools.BANDIT, tools.SEMGREP] and notes == []
    monkeypatch.setattr(tools, "SEMGREP_RULES", tmp_path / "missing.yml")
    chosen, notes = tools.select_tools("auto")
    assert chosen == [tools.RUFF, tools.BANDIT]
    assert notes == [f"semgrep skipped: its rules are missing at {tmp_path / 'missing.yml'}"]
    assert any("semgrep skipped" in note for note in notes)
    assert tools.select_tools(" none ") == ([], [])


def test_a_tool_named_twice_runs_once() -> None:
    from tether.compliance import tools

    assert tools.select_tools("bandit, ruff,bandit,RUFF") == ([tools.BANDIT, tools.RUFF], [])


def test_checked_code_ends_a_line_at_a_lone_carriage_return() -> None:
    code = "import os\r\rx = eval(s)\r"
    found = [
        (f.rule_id, f.line, f.column, code[f.start : f.end])
        for f in PLAIN.check_code(code, "python")
    ]
    assert found == [("security/eval", 3, 5, "eval(s)")]


def test_a_byte_order_mark_hides_no_python_code() -> None:
    """Python's parser refuses U+FEFF in text: code sent as stored, with its BOM, was a
    syntax error, and no security rule read it."""
    code = "\ufeffimport os\nx = eval(s)\n"
    found = [(f.rule_id, code[f.start : f.end]) for f in PLAIN.check_code(code, "python")]
    assert found == [("security/eval", "eval(s)")]


def test_a_tool_on_one_core_is_split_among_the_cores_ruff_is_not() -> None:
    """bandit uses one core, and took most of a check of a whole repository: its files are
    split into a run for each core, of at least 50 files; ruff uses every core itself."""
    from tether.compliance import tools

    files = [Path(f"m{n}.py") for n in range(130)] + [Path("notes.txt")]
    assert [len(run) for run in tools.tool_runs(tools.BANDIT, files, cores=4)] == [65, 65]
    assert [len(run) for run in tools.tool_runs(tools.BANDIT, files, cores=1)] == [130]
    assert [len(run) for run in tools.tool_runs(tools.RUFF, files, cores=4)] == [130]
    many = [Path(f"m{n}.py") for n in range(450)]
    assert [len(run) for run in tools.tool_runs(tools.RUFF, many)] == [150, 150, 150]
    assert [len(run) for run in tools.tool_runs(tools.BANDIT, many, cores=4)] == [113] * 3 + [111]
    assert [f for run in tools.tool_runs(tools.BANDIT, many, cores=4) for f in run] == many
    assert tools.tool_runs(tools.BANDIT, [Path("notes.txt")], cores=4) == []


def test_the_findings_of_each_run_of_a_tool_are_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tether.compliance import tools
    from tether.compliance.project import check_files

    monkeypatch.setattr(tools, "_FILES_PER_RUN", 1)
    files = []
    for name in ("a.py", "b.py", "c.py"):
        (tmp_path / name).write_text("import subprocess\n\nsubprocess.call('ls', shell=True)\n")
        files.append(tmp_path / name)
    found = check_files(files, checker=PLAIN, tools=[tools.BANDIT], cwd=tmp_path)
    assert {f.path for f in found if f.tool == "bandit"} == {"a.py", "b.py", "c.py"}


def test_without_tools_each_file_is_checked_as_it_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing waits for every file to be read when no tool runs: read all at once first,
    a whole repository was held in memory; tools are given the files read, so there they
    are read first."""
    from tether.compliance import project, tools
    from tether.compliance.check import Checker
    from tether.compliance.files import SourceText, read_source

    events: list[str] = []

    def read(path: Path) -> SourceText:
        events.append(f"read {path.name}")
        return read_source(path)

    monkeypatch.setattr(project, "read_source", read)

    class Watched(Checker):
        def check_code(self, code: str, language: str, *, path: str = "") -> list[Finding]:
            events.append(f"check {Path(path).name}")
            return super().check_code(code, language, path=path)

    files = []
    for name in ("a.py", "b.py"):
        (tmp_path / name).write_text("x = eval(y)\n" if name == "a.py" else "x = 1\n")
        files.append(tmp_path / name)
    found = project.check_files(files, checker=Watched(), cwd=tmp_path)
    assert events == ["read a.py", "check a.py", "read b.py", "check b.py"]
    assert [(f.path, f.finding.rule_id) for f in found] == [("a.py", "security/eval")]
    events.clear()
    found = project.check_files(files, checker=Watched(), tools=[tools.RUFF], cwd=tmp_path)
    assert events == ["read a.py", "read b.py", "check a.py", "check b.py"]
    assert ("a.py", "security/eval") in [(f.path, f.finding.rule_id) for f in found]


def test_ruff_is_asked_for_its_settings_once_per_settings_file_it_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Why ruff left files out was read again for each run of ruff (of 200 files), ruff's
    own list too, and for the files under each pyproject.toml, one without ruff's settings
    (which ruff passes by) too: a repository of many packages ran ruff hundreds of
    times more."""
    from tether.compliance import tools
    from tether.compliance.project import check_files
    from tether.compliance.report import NotChecked

    monkeypatch.setattr(tools, "_FILES_PER_RUN", 2)
    shown: list[list[str]] = []
    run = tools.ToolRuns.run

    def counted(self: tools.ToolRuns, command: list[str], cwd: Path) -> object:
        if "--show-settings" in command:
            shown.append(command[command.index("--show-settings") + 1 : command.index("--")])
        return run(self, command, cwd)

    monkeypatch.setattr(tools.ToolRuns, "run", counted)
    files = []
    for package in ("a", "b", "c", "d"):
        settings = '[tool.ruff]\nextend-exclude = ["gen"]\n' if package == "d" else "[project]\n"
        (tmp_path / package).mkdir()
        (tmp_path / package / "pyproject.toml").write_text(settings)
        for name in ("app.py", "dist/made.py", "gen/made.py"):
            (tmp_path / package / name).parent.mkdir(exist_ok=True)
            (tmp_path / package / name).write_text("import os\n")
            files.append(tmp_path / package / name)
    left: list[NotChecked] = []
    check_files(files, checker=PLAIN, tools=[tools.RUFF], cwd=tmp_path, not_checked=left)
    assert {item.path for item in left} == {
        "a/dist/made.py", "b/dist/made.py", "c/dist/made.py", "d/dist/made.py", "d/gen/made.py"
    }  # fmt: skip
    # Ruff's own list, and the settings of a, b and c (none), and of d.
    assert sorted(shown) == [["--no-cache"], ["--no-cache"], ["--no-cache", "--isolated"]]
