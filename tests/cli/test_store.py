"""`tether store` as a user types it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.helpers import isolate_tether
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
        found = json.loads(result.output)["results"]
        assert [r["id"] for r in found] == [snippet_id]
