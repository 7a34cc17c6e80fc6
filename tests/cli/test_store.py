"""`tether store` as a user types it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.helpers import isolate_tether, tether_env
from tether.audit import segments
from tether.audit.log import AuditLog, audit_folder
from tether.cli.common import EXIT_USAGE
from tether.cli.main import cli
from tether.settings import load_settings
from tether.store import FunctionStore

ERA = 'def to_era(year):\n    """日本語の和暦に変換する。"""\n    return year\n'


@pytest.fixture
def snippet_id(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    """A vetted snippet whose docstring is Japanese."""
    isolate_tether(monkeypatch, tmp_path)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "era.py").write_text(ERA)
    added = CliRunner().invoke(cli, ["store", "add", "era.py", "--licence", "MIT", "--json"])
    assert added.exit_code == 0, added.output
    store = FunctionStore.open(load_settings())
    try:
        (snippet,) = store.db.snippets()
        store.db.decide(snippet.id, "vetted", "tester", "reviewed")
    finally:
        store.close()
    return snippet.id


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--approve", "--reject"], "pass --approve or --reject, not both"),
        (["--reject", "--approve"], "pass --approve or --reject, not both"),
        ([], "pass --approve or --reject"),
        (["--reject", "--callable", "--not-callable"], "--callable or --not-callable, not both"),
    ],
)
def test_vet_refuses_conflicting_flags_and_decides_nothing(
    snippet_id: int, flags: list[str], says: str
) -> None:
    result = CliRunner().invoke(cli, ["store", "vet", str(snippet_id), *flags, "--reason", "x"])
    assert result.exit_code == EXIT_USAGE, result.output
    assert says in result.output
    shown = CliRunner().invoke(cli, ["store", "show", str(snippet_id), "--json"])
    assert json.loads(shown.output)["state"] == "vetted"


def test_search_in_a_script_without_spaces(snippet_id: int) -> None:
    for query in ("日本語", "和暦"):
        result = CliRunner().invoke(cli, ["store", "search", query, "--json"])
        assert result.exit_code == 0, result.output
        found = json.loads(result.output)["data"]
        assert [r["id"] for r in found] == [snippet_id]


SLUGIFY = '''\
# SPDX-License-Identifier: MIT
import re
import unicodedata

SEPARATOR = "-"


def slugify(title: str) -> str:
    """Turn a title into a URL slug."""
    text = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def joined(words: list[str]) -> str:
    return SEPARATOR.join(words)
'''


def test_the_documented_slugify_example_runs_with_its_imports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    isolate_tether(monkeypatch, tmp_path)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "util.py").write_text(SLUGIFY)
    runner = CliRunner()
    for name in ("slugify", "joined"):
        added = runner.invoke(cli, ["store", "add", f"util.py::{name}", "--json"])
        assert added.exit_code == 0, added.output
    vet = ["vet", "--approve", "--callable", "--reason", "reviewed"]
    approved = runner.invoke(cli, ["store", vet[0], "1", *vet[1:]])
    assert approved.exit_code == 0, approved.output
    called = runner.invoke(cli, ["store", "call", "slugify", "--args", '{"title": "Héllo World"}'])
    assert called.exit_code == 0, called.output
    assert json.loads(called.output) == "hello-world"
    # A helper that reads a module constant cannot run alone: the gate names it.
    refused = runner.invoke(cli, ["store", vet[0], "2", *vet[1:]])
    assert refused.exit_code != 0 and "uses SEPARATOR" in refused.output


def test_no_test_removes_an_attached_test(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    isolate_tether(monkeypatch, tmp_path)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "util.py").write_text(SLUGIFY)
    (tmp_path / "check.py").write_text("assert slugify('A b') == 'a-b'\n")
    runner = CliRunner()
    add = ["store", "add", "util.py::slugify", "--licence", "MIT", "--json"]
    with_test = runner.invoke(cli, [*add, "--test", "check.py"])
    assert json.loads(with_test.output)[0]["test"].startswith("assert")
    both = runner.invoke(cli, [*add, "--test", "check.py", "--no-test"])
    assert both.exit_code == EXIT_USAGE and "not both" in both.output
    without = json.loads(runner.invoke(cli, [*add, "--no-test"]).output)[0]
    assert (without["outcome"], without["version"], without["test"]) == ("new version", 2, "")
    for blank in ("", "\n  \n"):  # read as no test, it would remove one, not add it
        (tmp_path / "empty.py").write_text(blank)
        refused = runner.invoke(cli, [*add, "--test", "empty.py"])
        assert refused.exit_code == EXIT_USAGE and "empty.py is empty" in refused.output
    listed = json.loads(runner.invoke(cli, ["store", "list", "--json"]).output)
    assert listed["snippets"][0]["version"] == 2  # nothing was stored


def test_add_names_the_functions_it_leaves_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    isolate_tether(monkeypatch, tmp_path)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mixed.py").write_text("def ok():\n    return 1\n\n\ndef bad(:\n    pass\n")
    added = CliRunner().invoke(cli, ["store", "add", "mixed.py", "--licence", "MIT"])
    assert added.exit_code == 0, added.output
    assert "skipped mixed.py::bad: does not parse" in added.stderr
    (tmp_path / "shows.py").write_text(
        "from functools import singledispatch\n\n@singledispatch\ndef show(x):\n    return x\n\n"
        "@show.register\ndef _(x: int):\n    return x\n\n@show.register\ndef _(x: str):\n"
        "    return x\n"
    )
    registered = CliRunner().invoke(cli, ["store", "add", "shows.py", "--licence", "MIT"])
    assert registered.exit_code == 0, registered.output
    assert "skipped shows.py:7::_: defined again at line 11" in registered.stderr
    assert "ok" in added.stdout and "bad" not in added.stdout


HUGE = "99999999999999999999999"


@pytest.mark.parametrize(
    "args",
    [
        ["show", HUGE],
        ["vet", HUGE, "--approve", "--reason", "x"],
        ["retire", HUGE, "--reason", "x"],
    ],
)
def test_an_id_past_the_store_s_range_is_no_snippet(snippet_id: int, args: list[str]) -> None:
    result = CliRunner().invoke(cli, ["store", *args])
    assert result.exit_code == EXIT_USAGE and f"no snippet {HUGE}" in result.output


def test_an_offset_past_the_store_s_range_lists_nothing(snippet_id: int) -> None:
    result = CliRunner().invoke(cli, ["store", "list", "--offset", HUGE, "--json"])
    assert result.exit_code == 0 and json.loads(result.output)["snippets"] == []


def test_a_call_refused_on_the_command_line_is_audited(snippet_id: int) -> None:
    result = CliRunner().invoke(cli, ["store", "call", "to_era", "--args", '{"year": 1}'])
    assert result.exit_code == EXIT_USAGE and "no vetted callable function" in result.output
    lines = [
        json.loads(item.data)
        for item in segments.iter_records(audit_folder(load_settings()))
        if isinstance(item, segments.Line)
    ]
    (event,) = [r["params"] for r in lines if r["endpoint"] == "event store.call"]
    assert event["name"] == "to_era" and "no vetted callable" in event["error"]


@pytest.mark.parametrize("how", [["add", "era.py"], ["import", "."]])
def test_an_edit_withdrawn_by_adding_the_served_code_again_is_audited(
    snippet_id: int, tmp_path: Path, how: list[str]
) -> None:
    """Withdrawing rejects the version waiting for review: a decision, which the log held
    no record of."""
    (tmp_path / "era.py").write_text(ERA.replace("return year", "return year - 1"))
    edited = CliRunner().invoke(cli, ["store", *how, "--licence", "MIT"])
    assert edited.exit_code == 0, edited.output
    (tmp_path / "era.py").write_text(ERA)
    back = CliRunner().invoke(cli, ["store", *how, "--licence", "MIT"])
    assert back.exit_code == 0 and "withdrawn" in back.output, back.output
    lines = [
        json.loads(item.data)
        for item in segments.iter_records(audit_folder(load_settings()))
        if isinstance(item, segments.Line)
    ]
    (event,) = [r["params"] for r in lines if r["endpoint"] == "event store.vet"]
    assert (event["snippet"], event["version"], event["state"]) == (snippet_id, 2, "rejected")
    assert event["reason"].startswith("withdrawn: offered again as version 1")


def test_an_add_while_another_command_keeps_the_audit_log_records_what_it_withdrew(
    snippet_id: int, tmp_path: Path
) -> None:
    """It waited 10 s for the log, then failed; the edit it could withdraw stayed."""
    (tmp_path / "era.py").write_text(ERA.replace("return year", "return year - 1"))
    assert CliRunner().invoke(cli, ["store", "add", "era.py", "--licence", "MIT"]).exit_code == 0
    (tmp_path / "era.py").write_text(ERA)
    other = AuditLog.open(load_settings())
    try:
        added = CliRunner().invoke(cli, ["store", "add", "era.py", "--licence", "MIT"])
    finally:
        other.close()  # signs in what the add left
    assert added.exit_code == 0 and "withdrawn" in added.output, added.output
    lines = [
        json.loads(item.data)
        for item in segments.iter_records(audit_folder(load_settings()))
        if isinstance(item, segments.Line)
    ]
    vetted = [r["params"] for r in lines if r["endpoint"] == "event store.vet"]
    assert vetted[-1]["reason"].startswith("withdrawn"), vetted


@pytest.mark.parametrize("in_git", [True, False], ids=["in git", "outside git"])
def test_a_file_in_a_folder_named_beyond_ascii_is_stored_under_the_c_locale(
    tmp_path: Path, in_git: bool
) -> None:
    """Under the C locale with UTF-8 mode off, the folder `prøj` is read as ASCII, its
    other bytes kept as lone surrogates: `store add` said the file was not UTF-8 text
    (git's name for the work tree) or its path was not (outside git), though both are."""
    project = tmp_path / "pr\u00f8j"
    project.mkdir()
    if in_git:
        subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    (project / "era.py").write_text(ERA)
    done = subprocess.run(
        [sys.executable, "-m", "tether", "store", "add", "era.py", "--json"],
        env={**tether_env(tmp_path), "LC_ALL": "C", "PYTHONUTF8": "0"},
        cwd=project,
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    (added,) = json.loads(done.stdout)
    assert added["outcome"] == "added"
    path, repository = ("era.py", str(project)) if in_git else (str(project / "era.py"), "")
    assert added["origin"] == {"path": path, "repository": repository, "commit": "", "line": 1}
