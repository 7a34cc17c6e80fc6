"""A store another process holds locked (a sqlite3 shell, a backup, a command): writes
wait a while, then say so clearly; searches answer without saving new vectors."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from tests.conftest import TOKEN, make_settings
from tests.helpers import ScriptedEngine
from tests.store.conftest import SETTINGS, draft, vetted
from tether.cli.common import EXIT_UNAVAILABLE
from tether.cli.main import cli
from tether.errors import DatabaseLockedError
from tether.server.app import build_app
from tether.store import SnippetStore
from tether.store.embeddings import WordLlamaEmbedder
from tether.store.search import Searcher

SLUG = 'def slugify(title):\n    """Turn a title into a URL slug."""\n    return title\n'


@contextmanager
def held(path: Path) -> Iterator[None]:
    """The store's write lock, held by another connection as another program would."""
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        other.execute("ROLLBACK")
        other.close()


def test_a_write_waits_its_while_then_names_the_lock(tmp_path: Path) -> None:
    store = SnippetStore(tmp_path / "store.sqlite", wait_ms=50)
    try:
        with held(store.path), pytest.raises(DatabaseLockedError, match="fuser"):
            store.add(draft(SLUG), "tester")
        assert store.add(draft(SLUG), "tester").outcome == "added"  # once it lets go
    finally:
        store.close()


def test_a_search_answers_with_vectors_it_could_not_save(
    db: SnippetStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Made once, used by every search meanwhile, saved once the lock is gone; no search
    waits for the lock again, nor embeds again (each did: ten searches took 2.7 s)."""
    slug = vetted(db, SLUG)
    embedder = WordLlamaEmbedder()
    made: list[list[str]] = []
    embed = embedder.embed

    def counted(texts: list[str]) -> Any:
        made.append(texts)
        return embed(texts)

    monkeypatch.setattr(embedder, "embed", counted)
    searcher = Searcher(db, SETTINGS, embedder)
    with held(db.path):
        for _ in range(10):
            assert searcher.search("make a URL slug")[0].snippet.id == slug.id
    assert len([m for m in made if m != ["make a URL slug"]]) == 1  # the snippet, once
    assert db.unembedded(embedder.name) == [db.served(slug.id)]
    monkeypatch.setattr("tether.store.search.SAVE_RETRY_S", 0.0)
    searcher._retry_at = 0.0  # the next try is due
    assert searcher.search("make a URL slug")[0].snippet.id == slug.id  # let go: saved
    assert db.unembedded(embedder.name) == []


def test_over_http_a_locked_store_is_a_503_to_retry(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    engine = ScriptedEngine("x\n")
    with TestClient(build_app(settings, TOKEN, lambda: engine)) as client:
        client.headers["Authorization"] = f"Bearer {TOKEN}"
        body = {"code": SLUG, "language": "python", "licence": "MIT"}
        with held(settings.data.home / "store.sqlite"):
            refused = client.post("/v1/snippets", json=body)
        assert refused.status_code == 503 and refused.headers["retry-after"]
        error = refused.json()["error"]
        assert (
            error["code"] == "database_locked"
            and "is locked by another process" in error["message"]
        )
        assert client.post("/v1/snippets", json=body).status_code == 201


def test_on_the_command_line_a_locked_store_is_busy_not_an_internal_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TETHER_HOME", str(tmp_path / "data"))
    monkeypatch.setattr("tether.store.db.BUSY_TIMEOUT_MS", 50)
    (tmp_path / "lib.py").write_text(SLUG)
    store = SnippetStore(tmp_path / "data" / "store.sqlite")
    store.close()
    with held(store.path):
        result = CliRunner().invoke(cli, ["store", "add", f"{tmp_path / 'lib.py'}::slugify"])
    assert result.exit_code == EXIT_UNAVAILABLE, result.output
    assert "is locked by another process" in result.output
    assert "internal error" not in result.output
