"""Searching traces through their indexed columns, facets for the filters, and a store
written before those columns existed."""

from __future__ import annotations

import logging
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from tests.traces.conftest import make_trace
from tether import __version__
from tether.errors import ConfigError
from tether.traces import TraceStore
from tether.traces.store import SCHEMA_VERSION


def test_search_filters_pages_and_offers_facets(tmp_path: Path) -> None:
    with TraceStore(tmp_path / "t.sqlite") as store:
        for i in range(6):
            store.record(make_trace(f"cmpl-{i}", created=1_700_000_000.0 + i // 2,
                                    principal="alice" if i % 2 else "bob"))  # fmt: skip
        store.record(make_trace("cmpl-clean", created=1_700_000_010.0, policy=[], findings=[]))
        newest = store.search(limit=3)
        assert [t["id"] for t in newest] == ["cmpl-clean", "cmpl-5", "cmpl-4"]
        last = newest[-1]
        older = store.search(limit=10, before=(last["created"], last["id"]))
        assert [t["id"] for t in older] == ["cmpl-3", "cmpl-2", "cmpl-1", "cmpl-0"]
        assert {t["id"] for t in store.search(principal="bob")} == {"cmpl-0", "cmpl-2", "cmpl-4"}
        flagged = store.search(rule="secrets.aws-access-key", limit=100)
        assert "cmpl-clean" not in {t["id"] for t in flagged} and len(flagged) == 6
        assert store.search(rule="secrets.aws") == []  # whole rule ids only
        facets = store.facets()
        assert facets["principals"] == ["alice", "bob"]
        assert "secrets.aws-access-key" in facets["findings"]


def test_an_older_store_gets_its_search_columns_filled(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE traces (id TEXT PRIMARY KEY, created REAL NOT NULL, body TEXT)")
    old = make_trace("cmpl-old")
    db.execute("INSERT INTO traces VALUES (?, ?, ?)", (old.id, old.created, old.to_json()))
    db.commit()
    db.close()
    with TraceStore(path) as store:
        (found,) = store.search(principal="alice", rule="secrets.aws-access-key")
        assert found["id"] == "cmpl-old" and found["findings"] >= 1
        assert store.facets()["endpoints"] == ["/v1/completions"]


def test_pruning_drops_facets_no_trace_has_any_more(tmp_path: Path) -> None:
    now = [1_700_000_000.0]
    with TraceStore(tmp_path / "t.sqlite", max_age_days=1, clock=lambda: now[0]) as store:
        store.record(make_trace("cmpl-a", created=now[0], principal="gone"))
        store.record(make_trace("cmpl-b", created=now[0] + 2 * 86_400, principal="kept"))
        now[0] += 2 * 86_400
        assert store.prune() == 1
        assert store.facets()["principals"] == ["kept"]


def _old_store(path: Path, *ids: str) -> None:
    """A trace store as a tether from before the search columns wrote it."""
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE traces (id TEXT PRIMARY KEY, created REAL NOT NULL, body TEXT)")
    for trace_id in ids:
        old = make_trace(trace_id)
        db.execute("INSERT INTO traces VALUES (?, ?, ?)", (old.id, old.created, old.to_json()))
    db.commit()
    db.close()


def test_an_upgrade_cut_short_is_done_again_in_full(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server killed, or a disk full, while the columns were being filled left them added
    and empty: no later start filled them, and the dashboard's filters missed every trace."""
    path = tmp_path / "old.sqlite"
    _old_store(path, "cmpl-old")
    # The fill fails as a full disk would make it, after the columns were added.
    monkeypatch.setattr(
        "tether.traces.store._BACKFILL", "UPDATE traces SET model = json_extract('{', '$')"
    )
    with pytest.raises(ConfigError):
        TraceStore(path)
    monkeypatch.undo()
    with TraceStore(path) as store:
        (found,) = store.search(principal="alice")
        assert found["id"] == "cmpl-old"
        assert store.facets()["endpoints"] == ["/v1/completions"]


def test_traces_an_older_tether_adds_after_the_upgrade_are_filled_in(tmp_path: Path) -> None:
    """Rolled back, an older tether writes only id, created and body; upgraded again, those
    traces are searched like the rest."""
    path = tmp_path / "t.sqlite"
    with TraceStore(path) as store:
        store.record(make_trace("cmpl-new", principal="bob"))
    db = sqlite3.connect(path)
    old = make_trace("cmpl-rolled-back", principal="carol")
    db.execute(
        "INSERT INTO traces (id, created, body) VALUES (?, ?, ?)",
        (old.id, old.created, old.to_json()),
    )
    db.commit()
    db.close()
    with TraceStore(path) as store:
        assert [t["id"] for t in store.search(principal="carol")] == ["cmpl-rolled-back"]
        assert store.facets()["principals"] == ["bob", "carol"]


def test_an_upgrade_says_what_it_did(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "old.sqlite"
    _old_store(path, "cmpl-1", "cmpl-2")
    with caplog.at_level(logging.WARNING, logger="tether"), TraceStore(path):
        pass
    (said,) = [r.getMessage() for r in caplog.records]
    assert str(path) in said and "2 traces" in said and "older tether" in said
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="tether"), TraceStore(path):
        pass
    assert caplog.records == []  # nothing left to do, nothing said


def test_a_store_is_stamped_with_its_schema_and_an_older_one_on_opening(tmp_path: Path) -> None:
    """The number a later tether reads to tell this store's schema from its own."""
    path = tmp_path / "old.sqlite"
    _old_store(path, "cmpl-old")
    TraceStore(path).close()
    TraceStore(tmp_path / "new.sqlite").close()
    for name in ("old.sqlite", "new.sqlite"):
        with closing(sqlite3.connect(tmp_path / name)) as db:
            assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


@pytest.mark.parametrize("read_only", [False, True])
def test_a_store_a_newer_tether_wrote_is_refused_untouched(tmp_path: Path, read_only: bool) -> None:
    """Rolled back, this tether would add rows a newer schema may not hold as it wrote
    them, or read rows it misunderstands: it says so, and leaves the file as it was."""
    path = tmp_path / "t.sqlite"
    with TraceStore(path) as store:
        store.record(make_trace("cmpl-new"))
    with closing(sqlite3.connect(path)) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
        db.execute("DROP INDEX traces_principal")  # what a start would make again
    with pytest.raises(ConfigError) as refused:
        TraceStore(path, read_only=read_only)
    said = refused.value.message
    assert str(path) in said and "the trace store" in said
    assert f"(schema {SCHEMA_VERSION + 1}; this tether, {__version__}, reads schema" in said
    # The file, not the whole directory, goes back: audit/ must keep what it holds since.
    assert "put back t.sqlite from the copy of the data directory" in said
    assert "keep audit/ as it is" in said and "or move t.sqlite aside" in said
    with closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1
        assert not db.execute(
            "SELECT 1 FROM sqlite_master WHERE name = 'traces_principal'"
        ).fetchone()
