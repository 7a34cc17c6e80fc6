from __future__ import annotations

import json
import logging
import os
import sqlite3
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tests.store.conftest import draft, vetted
from tether import __version__
from tether.errors import ConfigError, NotFoundError, RequestError
from tether.store import SnippetStore
from tether.store.db import CHANGES, MIGRATIONS, SCHEMA_VERSION
from tether.store.ingest import drafts_from_file, import_folder
from tether.store.model import Origin

CODE = 'def double(x: int) -> int:\n    """Twice x."""\n    return 2 * x\n'


def test_a_snippet_starts_as_a_candidate_with_its_first_version(db: SnippetStore) -> None:
    added = db.add(draft(CODE, tags=("math",)), "ana")
    assert added.outcome == "added"
    snippet = added.snippet
    assert (snippet.state, snippet.current.version, snippet.current.author) == (
        "candidate",
        1,
        "ana",
    )
    assert snippet.current.tags == ("math",) and len(snippet.current.body_hash) == 64
    assert [d.state for d in db.decisions(snippet.id)] == ["candidate"]


def test_the_same_code_elsewhere_is_a_duplicate_and_an_edit_a_new_version(
    db: SnippetStore,
) -> None:
    first = db.add(draft(CODE, origin=Origin(path="a.py")), "ana").snippet
    reformatted = CODE.replace("2 * x", "2*x  # same")
    twin = db.add(draft(reformatted, origin=Origin(path="b.py")), "ana")
    assert twin.outcome == "duplicate" and twin.snippet.id == first.id
    assert db.add(draft(CODE, origin=Origin(path="a.py")), "ana").outcome == "unchanged"
    db.decide(first.id, "vetted", "bo", "fine")
    edited = db.add(draft(CODE.replace("2 * x", "x + x"), origin=Origin(path="a.py")), "ana")
    assert edited.outcome == "new version" and edited.snippet.id == first.id
    # An edit must be vetted again: it is a candidate; the vetted version stays in service.
    assert edited.snippet.state == "candidate" and edited.snippet.current.version == 2
    assert edited.snippet.served == 1
    assert [v.version for v in db.versions(first.id)] == [1, 2]
    assert "2 * x" in db.versions(first.id)[0].code  # history is never overwritten


def test_the_vetted_version_serves_until_a_successor_is_vetted(db: SnippetStore) -> None:
    where = Origin(path="a.py", repository="https://example.com/r.git")
    first = db.add(draft(CODE, origin=where), "ana").snippet
    db.decide(first.id, "vetted", "bo", "fine", callable_=True)
    # Anyone with store:write may offer a new version of it (the origin is the client's
    # word); the offer waits for review and takes nothing out of service.
    offer = draft(CODE.replace("2 * x", "x + x  # faster"), origin=where)
    pending = db.add(offer, "mallory").snippet
    assert (pending.state, pending.current.version, pending.served) == ("candidate", 2, 1)
    for served in (db.served(first.id), db.callable_named("double")):
        assert served is not None and served.state == "vetted"
        assert served.current.version == 1 and "2 * x" in served.current.code
    assert [i for i, _ in db.bm25(["double"], 5)] == [first.id]
    assert db.unembedded("m")[0].current.version == 1
    # Rejecting it leaves version 1 current and serving; the rejection names version 2.
    rejected = db.decide(first.id, "rejected", "bo", "no", version=2)
    assert (rejected.version, rejected.hash) == (2, pending.current.body_hash)
    after = db.get(first.id)
    assert (after.state, after.current.version, after.served) == ("vetted", 1, 1)
    # The next offer is version 3, and vetting it puts it in service.
    third = db.add(draft(CODE.replace("2 * x", "x * 2"), origin=where), "ana").snippet
    assert third.current.version == 3
    db.decide(first.id, "vetted", "bo", "ok", version=3)
    served = db.served(first.id)
    assert served is not None and served.current.version == 3 and "x * 2" in served.current.code
    assert [d.version for d in db.decisions(first.id)] == [1, 1, 2, 2, 3, 3]
    # Retiring takes it out of service altogether.
    db.decide(first.id, "retired", "bo", "gone")
    assert db.served(first.id) is None and db.bm25(["double"], 5) == []


def test_rejecting_the_version_in_service_withdraws_it_until_approved_again(
    db: SnippetStore,
) -> None:
    snippet = db.add(draft(CODE), "ana").snippet
    db.decide(snippet.id, "vetted", "bo", "fine", callable_=True)
    db.decide(snippet.id, "rejected", "cy", "leaks the input")
    after = db.get(snippet.id)
    assert (after.state, after.served) == ("rejected", None)
    assert db.served(snippet.id) is None and db.bm25(["double"], 5) == []
    with pytest.raises(NotFoundError, match="no vetted callable function 'double'"):
        db.callable_named("double")
    # Unlike a retired snippet, a rejected one can be approved again as it stands.
    db.decide(snippet.id, "vetted", "bo", "the leak was a misreading")
    assert [i for i, _ in db.bm25(["double"], 5)] == [snippet.id]


def test_an_edit_keeps_what_it_leaves_out_and_removes_what_it_empties(
    db: SnippetStore,
) -> None:
    where = Origin(path="a.py")
    first = db.add(draft(CODE, origin=where, tags=["math"], test="assert double(2) == 4\n"), "a")
    kept = db.add(draft(CODE.replace("2 * x", "x + x"), origin=where), "ana").snippet
    assert (kept.current.tags, kept.current.test) == (("math",), "assert double(2) == 4\n")
    emptied = db.add(draft(CODE.replace("2 * x", "x + x"), origin=where, tags=[], test=""), "a")
    assert emptied.outcome == "new version"
    assert (emptied.snippet.current.tags, emptied.snippet.current.test) == ((), "")
    assert emptied.snippet.id == first.snippet.id and emptied.snippet.current.version == 3


def test_only_vetted_snippets_are_searchable(db: SnippetStore) -> None:
    snippet = db.add(draft(CODE), "ana").snippet
    assert db.bm25(["double"], 5) == []
    db.decide(snippet.id, "vetted", "bo", "fine")
    assert [i for i, _ in db.bm25(["double"], 5)] == [snippet.id]
    db.decide(snippet.id, "retired", "bo", "superseded")
    assert db.bm25(["double"], 5) == []


def test_decisions_need_a_reason_and_the_current_version(db: SnippetStore) -> None:
    snippet = db.add(draft(CODE), "ana").snippet
    with pytest.raises(RequestError, match="reason"):
        db.decide(snippet.id, "vetted", "bo", "  ")
    with pytest.raises(RequestError, match="version 1, not 3"):
        db.decide(snippet.id, "vetted", "bo", "ok", version=3)
    with pytest.raises(NotFoundError, match="no snippet 99"):
        db.decide(99, "vetted", "bo", "ok")


def test_a_failed_batch_writes_nothing(db: SnippetStore) -> None:
    good = draft(CODE)
    huge = draft("def big():\n    return 1\n")
    huge = huge.__class__(**{**huge.__dict__, "code": "x" * (65 * 1024)})
    with pytest.raises(RequestError, match="64 KiB at most"):
        db.add_many([good, huge], "ana")
    assert db.snippets() == []


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"test": "assert double(2) == 4\n" * 4350}, "the test of snippet double is 93 KiB"),
        ({"test": " \n\t\n"}, "the test of snippet double is blank"),
        ({"tags": ("x" * 65,)}, "give words of 1 to 64 printable characters"),
        ({"tags": ("  ",)}, "is not a tag"),
        ({"tags": ("a\nb",)}, "is not a tag"),
        ({"tags": tuple(f"t{i}" for i in range(33))}, "33 tags; give at most 32"),
    ],
)
def test_tests_and_tags_have_limits_as_code_has(
    db: SnippetStore, change: dict[str, Any], says: str
) -> None:
    with pytest.raises(RequestError, match=says):
        db.add(replace(draft(CODE), **change), "ana")
    assert db.snippets() == []


def test_an_import_leaves_out_a_giant_function_and_keeps_the_rest(
    db: SnippetStore, tmp_path: Path
) -> None:
    (tmp_path / "big.py").write_text("def big():\n    return " + "1 + " * 20_000 + "1\n")
    (tmp_path / "small.py").write_text(CODE)
    report = import_folder(db, tmp_path, "ana")
    assert report.added == 1 and [s.name for s in db.snippets()] == ["double"]
    assert report.skipped == [(f"{tmp_path / 'big.py'}::big", "78 KiB, over store.max_code_kb")]


def test_an_import_names_a_file_whose_name_is_not_utf8_and_keeps_the_rest(
    db: SnippetStore, tmp_path: Path
) -> None:
    # Its name, held as lone surrogates, would fail every JSON answer and prompt it reached.
    (tmp_path / os.fsdecode(b"w\xe9.py")).write_text(CODE.replace("double", "gee"))
    (tmp_path / "small.py").write_text(CODE)
    report = import_folder(db, tmp_path, "ana")
    assert report.added == 1 and [s.name for s in db.snippets()] == ["double"]
    ((what, why),) = report.skipped
    assert what == f"{tmp_path}/w\\xe9.py" and "is not UTF-8 text; rename it" in why


def test_a_stored_path_that_is_not_utf8_is_read_back_as_text(db: SnippetStore) -> None:
    # As an import before the check above stored one.
    added = db.add(draft(CODE, origin=Origin(path="a.py")), "ana").snippet
    with sqlite3.connect(db.path) as raw:
        raw.execute("UPDATE versions SET origin = ?", ('{"path": "w\\udce9.py"}',))
    (snippet,) = db.snippets()
    assert snippet.id == added.id and snippet.current.origin.path == "w\ufffd.py"
    json.dumps(snippet.as_record(), ensure_ascii=False).encode("utf-8")


def test_import_is_idempotent_and_reads_licence_and_origin(db: SnippetStore, project: Path) -> None:
    first = import_folder(db, project, "ana")
    assert (first.files, first.added) == (2, 5)
    again = import_folder(db, project, "ana")
    assert (again.added, again.unchanged, again.new_versions) == (0, 5, 0)
    by_name = {s.name: s for s in db.snippets()}
    assert by_name["parse_iso_date"].current.licence == "MIT"  # its SPDX line
    assert by_name["clamp"].current.licence == "MIT"  # the project's LICENSE
    assert by_name["clamp"].current.origin.path.endswith("lib/util.ts")
    assert by_name["clamp"].current.origin.line == 8


@pytest.mark.parametrize(
    ("line", "licence"),
    [
        ("# SPDX-License-Identifier: MIT AND GPL-3.0-only", "MIT AND GPL-3.0-only"),
        ("# SPDX-License-Identifier: mit or apache-2.0", "MIT OR Apache-2.0"),
        ('"""SPDX-License-Identifier: GPL-2.0+"""', "GPL-2.0-or-later"),
        ("# SPDX-License-Identifier: MIT AND (", "MIT AND ("),  # kept for the gate to refuse
    ],
)
def test_an_spdx_line_is_read_as_a_whole_expression(
    tmp_path: Path, line: str, licence: str
) -> None:
    source = tmp_path / "mod.py"
    source.write_text(f"{line}\n\ndef f():\n    return 1\n")
    [found] = drafts_from_file(source)
    assert found.licence == licence
    js = tmp_path / "mod.js"
    js.write_text(f"/* {line.lstrip('#').strip(chr(34))} */\nfunction g() {{ return 1; }}\n")
    assert drafts_from_file(js)[0].licence == licence


def test_a_licence_given_by_hand_must_be_an_expression(tmp_path: Path, project: Path) -> None:
    with pytest.raises(RequestError, match="not an SPDX licence expression"):
        drafts_from_file(project / "lib" / "util.ts", licence="MIT OR OR Apache-2.0")
    given = drafts_from_file(project / "lib" / "util.ts", licence="apache-2.0 or mit")
    assert {d.licence for d in given} == {"Apache-2.0 OR MIT"}


def test_importing_a_tagged_vetted_snippet_again_keeps_it_as_it_was(
    db: SnippetStore, project: Path
) -> None:
    import_folder(db, project, "ana")
    clamp = next(s for s in db.snippets() if s.name == "clamp")
    offer = draft(clamp.current.code, clamp.language, origin=clamp.current.origin, tags=["math"])
    tagged = db.add(offer, "ana").snippet
    assert tagged.current.version == 2
    db.decide(clamp.id, "vetted", "bo", "reviewed", callable_=True)
    again = import_folder(db, project, "ana")  # offers no tags, test or callable
    assert (again.new_versions, again.added) == (0, 0)
    kept = db.get(clamp.id)
    assert (kept.state, kept.callable, kept.current.version) == ("vetted", True, 2)
    assert kept.current.tags == ("math",)


def test_import_skips_what_does_not_parse_or_is_not_text(db: SnippetStore, project: Path) -> None:
    (project / "lib" / "broken.py").write_text("def ok():\n    return 1\n\ndef bad(:\n    pass\n")
    (project / "lib" / "binary.py").write_bytes(b"\xff\xfe\x00def")
    report = import_folder(db, project, "ana")
    skipped = dict(report.skipped)
    assert any(what.endswith("broken.py::bad") for what in skipped)
    assert any("not UTF-8" in why for why in skipped.values())
    assert "ok" in {s.name for s in db.snippets()}


def test_import_names_a_file_it_may_not_read_and_keeps_the_rest(
    db: SnippetStore, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another user's file (mode 0600) ended the whole import, where one that is not
    UTF-8 is named among the skipped and the rest imported."""
    import errno

    locked = project / "lib" / "locked.py"
    locked.write_text(CODE.replace("double", "locked"))
    real = Path.read_bytes

    def read_bytes(path: Path) -> bytes:
        if path == locked:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    report = import_folder(db, project, "ana")
    assert dict(report.skipped)[str(locked)] == "cannot be read (Permission denied)"
    assert "slugify" in {s.name for s in db.snippets()}


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")
def test_import_never_opens_a_fifo_and_names_it(db: SnippetStore, project: Path) -> None:
    """A FIFO named like a source file waited for a writer that never came: the import
    hung, where tether check and corpus index leave out what is not a regular file."""
    import threading

    os.mkfifo(project / "lib" / "pipe.py")
    reports: list[Any] = []
    worker = threading.Thread(
        target=lambda: reports.append(import_folder(db, project, "ana")), daemon=True
    )
    worker.start()
    worker.join(timeout=30)
    assert not worker.is_alive(), "reading a FIFO blocked"
    skipped = dict(reports[0].skipped)
    assert "is not a regular file" in skipped[str(project / "lib" / "pipe.py")]
    assert "slugify" in {s.name for s in db.snippets()}
    with pytest.raises(RequestError, match=r"pipe\.py is not a regular file"):
        drafts_from_file(project / "lib" / "pipe.py")


def test_add_one_function_by_name_or_a_clear_error(project: Path) -> None:
    path = project / "lib" / "dates.py"
    assert [d.name for d in drafts_from_file(path, name="slugify")] == ["slugify"]
    with pytest.raises(NotFoundError, match="no top-level function 'nope'; it has: parse_iso"):
        drafts_from_file(path, name="nope")
    (project / "notes.txt").write_text("hello")
    with pytest.raises(RequestError, match=r"not \.txt"):
        drafts_from_file(project / "notes.txt")


def test_a_store_from_a_newer_tether_or_not_a_store_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite"
    SnippetStore(path).close()
    with sqlite3.connect(path) as raw:
        raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(ConfigError, match="newer tether") as refused:
        SnippetStore(path)
    said = str(refused.value)
    assert f"schema {SCHEMA_VERSION + 1}; this tether, {__version__}, " in said
    assert f"reads schema {SCHEMA_VERSION} at most" in said
    assert f"one that reads schema {SCHEMA_VERSION + 1}" in said
    assert f"put back {path.name} from the copy of the data directory" in said
    assert "keep audit/ as it is" in said and "move" not in said
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"not a database at all" * 100)
    with pytest.raises(ConfigError, match="the function store, is damaged"):
        SnippetStore(junk)


def test_a_store_indexed_by_an_older_tether_is_reindexed_on_opening(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite"
    with SnippetStore(path) as store:
        snippet = vetted(store, 'def era(y):\n    """和暦に変換する。"""\n    return y\n')
        store.add(draft(CODE), "ana")  # a candidate stays out of the index
    with sqlite3.connect(path) as raw:  # as an older tether left it: ASCII words only
        raw.execute("DELETE FROM meta WHERE key = 'words'")
        raw.execute(
            "UPDATE search SET docstring = '', code = 'def era y return y' WHERE rowid = ?",
            (snippet.id,),
        )
    with SnippetStore(path) as store:
        assert store.bm25(["和暦"], 10)[0][0] == snippet.id
        assert store.bm25(["double"], 10) == []


def test_an_offer_cannot_make_the_version_in_service_callable(db: SnippetStore) -> None:
    where = Origin(path="a.py")
    first = db.add(draft(CODE, origin=where), "ana").snippet
    db.decide(first.id, "vetted", "bo", "fine", callable_=False)
    offer = draft(CODE.replace("2 * x", "x + x"), origin=where, make_callable=True)
    db.add(offer, "mallory")
    with pytest.raises(NotFoundError):
        db.callable_named("double")
    db.decide(first.id, "rejected", "bo", "no", version=2)
    with pytest.raises(NotFoundError):
        db.callable_named("double")


def test_functions_that_import_different_things_are_not_duplicates(db: SnippetStore) -> None:
    body = "\n\ndef root(x):\n    return sqrt(x)\n"
    real = db.add(draft("from math import sqrt" + body, origin=Origin(path="a.py")), "a")
    other = db.add(draft("from cmath import sqrt" + body, origin=Origin(path="b.py")), "a")
    assert (real.outcome, other.outcome) == ("added", "added")
    assert real.snippet.current.body_hash != other.snippet.current.body_hash


def test_a_store_from_before_served_versions_serves_its_vetted_snippets(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite"
    with SnippetStore(path) as store:
        kept = vetted(store, CODE)
        waiting = store.add(draft("def half(x):\n    return x / 2\n"), "ana").snippet
    with sqlite3.connect(path) as raw:  # schema 1 had no served column
        raw.execute("ALTER TABLE snippets DROP COLUMN served")
        raw.execute("PRAGMA user_version = 1")
    with SnippetStore(path) as store:
        assert store.get(kept.id).served == 1 and store.get(waiting.id).served is None
        assert store.served(kept.id) is not None and store.served(waiting.id) is None


def test_vetted_fixture_helper(db: SnippetStore) -> None:
    assert vetted(db, CODE).state == "vetted"


def test_a_store_that_cannot_be_opened_is_not_called_damaged(tmp_path: Path) -> None:
    unopenable = tmp_path / "store.sqlite"
    unopenable.mkdir()  # sqlite cannot open it, as it cannot open a file it may not write
    with pytest.raises(ConfigError, match=r"cannot open the function store .* writable") as raised:
        SnippetStore(unopenable)
    assert "move it aside" not in str(raised.value)
    damaged = tmp_path / "other.sqlite"
    damaged.write_bytes(b"not a database" * 100)
    with pytest.raises(ConfigError, match=r"the function store, is damaged .* move it aside"):
        SnippetStore(damaged)


def test_only_functions_that_can_be_called_are_listed_as_callable(db: SnippetStore) -> None:
    """`store list --callable` lists what `store call` runs: not a candidate that asks to
    be callable, nor a retired function."""
    asks = db.add(draft(CODE, origin=Origin(path="a.py"), make_callable=True), "ana").snippet
    assert asks.callable and db.snippets(callable_only=True) == []
    db.decide(asks.id, "vetted", "bo", "fine")
    assert [s.id for s in db.snippets(callable_only=True)] == [asks.id]
    db.add(draft(CODE.replace("2 * x", "x + x"), origin=Origin(path="a.py")), "ana")
    (listed,) = db.snippets(callable_only=True)  # the version that runs, not the pending one
    assert listed.current.version == 1 and "2 * x" in listed.current.code
    db.decide(asks.id, "retired", "bo", "gone")
    assert db.snippets(callable_only=True) == []
    rejected = db.add(draft(CODE, origin=Origin(path="b.py")), "ana").snippet
    db.decide(rejected.id, "rejected", "bo", "no")
    again = db.add(draft(CODE, origin=Origin(path="b.py"), make_callable=True), "ana")
    assert again.outcome == "unchanged" and not again.snippet.callable  # decided already


def test_asking_again_to_be_callable_is_heard_until_a_version_serves(db: SnippetStore) -> None:
    where = Origin(path="a.py")
    first = db.add(draft(CODE, origin=where), "ana").snippet
    again = db.add(draft(CODE, origin=where, make_callable=True), "ana")
    assert again.outcome == "unchanged" and again.snippet.callable
    db.decide(first.id, "vetted", "bo", "fine", callable_=False)
    after = db.add(draft(CODE, origin=where, make_callable=True), "ana")
    assert after.outcome == "unchanged" and not after.snippet.callable  # the reviewer's word


def test_a_record_keeps_the_snippet_s_time_apart_from_its_version_s(db: SnippetStore) -> None:
    where = Origin(path="a.py")
    first = db.add(draft(CODE, origin=where), "ana").snippet
    edited = db.add(draft(CODE.replace("2 * x", "x + x"), origin=where), "ana").snippet
    record = edited.as_record()
    assert record["created"] == first.created  # as the dashboard shows it
    assert record["version"] == 2 and record["version_created"] == edited.current.created


def test_an_edit_undone_before_review_is_withdrawn_not_offered_again(db: SnippetStore) -> None:
    """The repository went back to the code in service while its edit waited: importing
    it again used to make a third version, a copy of the first, to be reviewed again."""
    where = Origin(path="a.py")
    first = db.add(draft(CODE, origin=where), "ana").snippet
    db.decide(first.id, "vetted", "bo", "fine")
    db.add(draft(CODE.replace("2 * x", "x + x"), origin=where), "ana")
    back = db.add(draft(CODE, origin=where), "ana")
    assert back.outcome == "withdrawn"
    assert (back.snippet.state, back.snippet.current.version, back.snippet.served) == (
        "vetted",
        1,
        1,
    )
    assert [v.version for v in db.versions(first.id)] == [1, 2]
    withdrawn = db.decisions(first.id)[-1]
    assert (withdrawn.version, withdrawn.state, withdrawn.principal) == (2, "rejected", "ana")
    assert "offered again as version 1" in withdrawn.reason
    assert db.add(draft(CODE, origin=where), "ana").outcome == "unchanged"
    # Code that is neither in service nor waiting is still a new version.
    assert db.add(draft(CODE.replace("2 * x", "x * 2"), origin=where), "ana").outcome == (
        "new version"
    )


@pytest.mark.parametrize("snippet_id", [2**63, 10**23, -(2**70)])
def test_an_id_past_sqlite_s_range_is_no_snippet(db: SnippetStore, snippet_id: int) -> None:
    vetted(db, "def one() -> int:\n    return 1\n")
    with pytest.raises(NotFoundError, match=f"no snippet {snippet_id}"):
        db.get(snippet_id)
    with pytest.raises(NotFoundError, match=f"no snippet {snippet_id}"):
        db.versions(snippet_id)
    with pytest.raises(NotFoundError, match=f"no snippet {snippet_id}"):
        db.decide(snippet_id, "retired", "tester", "gone")
    assert db.served(snippet_id) is None and db.decisions(snippet_id) == []
    assert db.snippets(offset=10**20) == [] and len(db.snippets(limit=10**20)) == 1


def test_snippets_holding_words_are_found_in_the_whole_store_not_its_first_rows(
    db: SnippetStore,
) -> None:
    """The dashboard's queue filtered the first 5,000 snippets: one imported after them
    was not found, and the total was short."""
    first = db.add(draft(CODE), "ana").snippet
    with db._lock, db._db:  # 5,000 more rows, as one import of a large project makes
        db._db.executemany(
            "INSERT INTO snippets (name, language, state, version, callable, origin_key, "
            "created, updated) VALUES (?, 'python', 'candidate', 1, 0, ?, 0, 0)",
            [(f"fn_{i}", f"k{i}") for i in range(5000)],
        )
        db._db.execute(
            "INSERT INTO versions SELECT s.id, 1, v.code, v.body_hash, v.signature, "
            "v.docstring, v.tags, v.origin, v.licence, v.test, v.created, v.author "
            "FROM snippets s, versions v WHERE s.id > ? AND v.snippet_id = ?",
            (first.id, first.id),
        )
    docstring = '    """\u00dcberpr\u00fcft die Gr\u00f6\u00dfe."""\n'
    needle = f"def needle_function(x):\n{docstring}    return x\n"
    last = db.add(draft(needle, tags=("donn\u00e9es", 'say"hi')), "ana").snippet
    assert db.ids_holding(["NEEDLE"], "candidate") == [last.id]
    assert db.ids_holding(["\u00fcber", "GR\u00d6SSE"]) == [last.id]  # case beyond ASCII
    assert db.ids_holding(["donn\u00e9es"]) == db.ids_holding(['say"hi']) == [last.id]
    assert db.ids_holding(["needle", "absent"]) == [] and db.ids_holding(["needle"], "vetted") == []
    # Tags are read as tags, not as the JSON they are kept in.
    assert db.ids_holding(["["]) == db.ids_holding(["u00e9"]) == db.ids_holding(['",']) == []
    assert len(db.ids_holding(["fn_"])) == 5000


def test_an_upgrade_says_what_it_did_and_that_older_tethers_no_longer_open_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "store.sqlite"
    with caplog.at_level(logging.WARNING, logger="tether"), SnippetStore(path) as store:
        vetted(store, CODE)
    assert caplog.records == []  # a new store is made, not upgraded
    with sqlite3.connect(path) as raw:  # schema 1 had no served column
        raw.execute("ALTER TABLE snippets DROP COLUMN served")
        raw.execute("PRAGMA user_version = 1")
    with caplog.at_level(logging.WARNING, logger="tether"), SnippetStore(path):
        pass
    (said,) = [r.getMessage() for r in caplog.records]
    assert f"{path} from schema 1 to {SCHEMA_VERSION}" in said
    assert CHANGES[1] in said and "schema 1 at most no longer opens it" in said
    assert "put back store.sqlite" in said and "keep audit/ as it is" in said
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="tether"), SnippetStore(path):
        pass
    assert caplog.records == []


def test_each_migration_says_what_it_does() -> None:
    assert len(CHANGES) == len(MIGRATIONS) and all(CHANGES)
