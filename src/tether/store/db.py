"""The function store's SQLite database: snippets, versions, decisions, the search index.

One file under the data directory, in WAL mode so the server and the command line can
use it at once. The schema is versioned (``PRAGMA user_version``) and migrated forward in
one transaction. Every change is one transaction: a failure leaves nothing half-written.
Edits never overwrite: each makes a new version, and a new version must be vetted again.
Meanwhile the version vetted last stays in service (``served``): an edit cannot take a
vetted snippet away, only offer a successor. Only served versions are in the full-text
index, so nothing else can be retrieved or called.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from tether.closing import Closeable
from tether.databases import (
    is_locked,
    locked_message,
    newer_schema_message,
    open_database,
    open_read_only,
    private_folder,
    roll_back,
    say_upgraded,
)
from tether.errors import ConfigError, DatabaseLockedError, NotFoundError, RequestError
from tether.settings import Settings
from tether.store.model import STATES, Added, Decision, Draft, Origin, Snippet, State, Version
from tether.store.text import WORDS_VERSION, fts_query, indexed_text
from tether.textfile import without_surrogates

log = logging.getLogger(__name__)

# Each entry moves the schema one version forward; they run in order, never edited.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE snippets (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        language TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('candidate', 'vetted', 'rejected', 'retired')),
        version INTEGER NOT NULL,       -- the current version
        callable INTEGER NOT NULL DEFAULT 0,
        origin_key TEXT NOT NULL,       -- repository, path and name: what an edit keeps
        created REAL NOT NULL,
        updated REAL NOT NULL
    );
    CREATE INDEX snippets_origin ON snippets (origin_key);
    CREATE INDEX snippets_state ON snippets (state, id);
    CREATE TABLE versions (
        snippet_id INTEGER NOT NULL REFERENCES snippets (id),
        version INTEGER NOT NULL,
        code TEXT NOT NULL,
        body_hash TEXT NOT NULL,
        signature TEXT NOT NULL,
        docstring TEXT NOT NULL,
        tags TEXT NOT NULL,             -- JSON list
        origin TEXT NOT NULL,           -- JSON: path, repository, commit, line
        licence TEXT NOT NULL,
        test TEXT NOT NULL,
        created REAL NOT NULL,
        author TEXT NOT NULL,
        PRIMARY KEY (snippet_id, version)
    );
    CREATE INDEX versions_hash ON versions (body_hash);
    CREATE TABLE decisions (
        id INTEGER PRIMARY KEY,
        snippet_id INTEGER NOT NULL REFERENCES snippets (id),
        version INTEGER NOT NULL,
        state TEXT NOT NULL,
        principal TEXT NOT NULL,
        reason TEXT NOT NULL,
        gates TEXT NOT NULL,            -- JSON: the automatic gates' results
        at REAL NOT NULL
    );
    CREATE INDEX decisions_snippet ON decisions (snippet_id, id);
    -- Vetted snippets only, as words (identifiers split); rowid = snippets.id.
    CREATE VIRTUAL TABLE search USING fts5 (
        name, signature, docstring, code, tags,
        tokenize = 'porter unicode61 remove_diacritics 2'
    );
    CREATE TABLE vectors (
        snippet_id INTEGER PRIMARY KEY REFERENCES snippets (id),
        model TEXT NOT NULL,
        vector BLOB NOT NULL            -- float32, little-endian
    );
    CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
    INSERT INTO meta VALUES ('revision', 0);
    """,
    """
    -- The vetted version in service, NULL when none: it stays while a new one is reviewed.
    ALTER TABLE snippets ADD COLUMN served INTEGER;
    UPDATE snippets SET served = version WHERE state = 'vetted';
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)
# What each migration does, in its words: an upgrade says so in the log.
CHANGES: tuple[str, ...] = (
    "the store's tables",
    "a vetted snippet's version in service is kept apart from a new version under review",
)
# bm25 weights of the search columns: a match in the name counts most, in the code least.
WEIGHTS = (8.0, 3.0, 4.0, 1.0, 4.0)
_COLUMNS = (
    "s.id, s.name, s.language, s.state, s.callable, s.created, s.updated, s.served, "
    "v.version, v.code, v.body_hash, v.signature, v.docstring, v.tags, v.origin, v.licence, "
    "v.test, v.created, v.author"
)
_VERSION_COLUMNS = (
    "version, code, body_hash, signature, docstring, tags, origin, licence, test, created, author"
)
_JOIN = "snippets s JOIN versions v ON v.snippet_id = s.id AND v.version = s.version"
# The versions in service, each seen as a vetted snippet: what search, retrieval, MCP and
# calls use, whatever new version waits for review.
_SERVED_COLUMNS = _COLUMNS.replace("s.state", "'vetted'")
_SERVED_JOIN = "snippets s JOIN versions v ON v.snippet_id = s.id AND v.version = s.served"
BUSY_TIMEOUT_MS = 10_000
MAX_ID = 2**63 - 1  # SQLite's largest integer: no snippet has an id past it
MAX_TAGS, MAX_TAG_CHARS = 32, 64
MAX_RANKED = 3000  # snippets a full-text search ranks at most, give or take its rarest term
DF_CACHE = 50_000  # query words whose snippet counts are remembered


class SnippetStore(Closeable):
    def __init__(
        self,
        path: Path,
        max_code_kb: int = 64,
        wait_ms: int | None = None,
        *,
        read_only: bool = False,
    ) -> None:
        """``wait_ms``: how long a write waits for another process's to end, 10 s unless
        said (a server's is short: a store read waits for it, on its event loop).
        ``read_only``: for the commands that only read the store, which then work on a
        read-only copy of the data directory and write nothing to it."""
        self.path = path
        self.read_only = read_only
        self._wait_ms = wait_ms = BUSY_TIMEOUT_MS if wait_ms is None else wait_ms
        self.max_code_chars = max_code_kb * 1024
        self._lock = threading.RLock()
        self._df: dict[str, int] = {}  # snippets matching each query word, this revision
        self._df_revision = -1
        if read_only:
            self._db = self._reader(path)
            return
        private_folder(path.parent)

        def setup(db: sqlite3.Connection) -> None:
            self._db = db  # _migrate and _reindex work through it
            db.execute(f"PRAGMA busy_timeout = {wait_ms}")
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA foreign_keys = ON")
            self._migrate()
            self._reindex()

        self._db = open_database(path, "the function store", setup)

    @classmethod
    def from_settings(
        cls, settings: Settings, wait_ms: int | None = None, *, read_only: bool = False
    ) -> SnippetStore:
        path, max_code_kb = settings.data.home / "store.sqlite", settings.store.max_code_kb
        return cls(path, max_code_kb, wait_ms, read_only=read_only)

    def _reader(self, path: Path) -> sqlite3.Connection:
        """``path`` opened only to read. None there yet holds no snippets: an empty store in
        memory stands for it, as reading makes no file. One an older tether wrote is read
        through a copy in memory, upgraded there: the file stays as it is, for the server
        to upgrade (an older server may still be using it)."""
        if not path.exists():
            self._db = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
            self._migrate()
            self._db.execute("INSERT INTO meta VALUES ('words', ?)", (WORDS_VERSION,))
            return self._db
        self._db = open_read_only(path, "the function store")
        try:
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                self._migrate()  # refused, saying so
            if version < SCHEMA_VERSION or self._words_version(self._db) != WORDS_VERSION:
                on_disk = self._db
                self._db = sqlite3.connect(
                    ":memory:", check_same_thread=False, isolation_level=None
                )
                on_disk.backup(self._db)
                on_disk.close()
                self._migrate(say=False)
                self._reindex(say=False)
        except BaseException:
            self._db.close()
            raise
        return self._db

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _migrate(self, *, say: bool = True) -> None:
        """Bring the schema up to this tether's; ``say``: log what an upgrade did (not for
        a copy in memory)."""
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise ConfigError(
                newer_schema_message("the function store", self.path, version, SCHEMA_VERSION)
            )
        if version == SCHEMA_VERSION:
            return
        with self._transaction() as db:
            # Another process (the server, the command line) may have migrated it meanwhile.
            version = db.execute("PRAGMA user_version").fetchone()[0]
            for step in MIGRATIONS[version:]:
                for statement in _statements(step):
                    db.execute(statement)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        if say and 0 < version < SCHEMA_VERSION:  # 0: a new store, made rather than upgraded
            changes = "; ".join(CHANGES[version:])
            say_upgraded(
                "the function store", self.path, version, SCHEMA_VERSION, changes,
                older_read_it=False,
            )  # fmt: skip

    def _words_version(self, db: sqlite3.Connection) -> int:
        row = db.execute("SELECT value FROM meta WHERE key = 'words'").fetchone()
        return 1 if row is None else int(row[0])  # 1: before the version was kept

    def _reindex(self, *, say: bool = True) -> None:
        """Index the vetted snippets again when the index holds words split another way
        (by an older tether), so that every query finds what it would in a new store."""
        if self._words_version(self._db) == WORDS_VERSION:
            return
        with self._transaction() as db:
            if self._words_version(db) == WORDS_VERSION:
                return  # another process did it first
            db.execute("DELETE FROM search")
            rows = db.execute(f"SELECT {_SERVED_COLUMNS} FROM {_SERVED_JOIN}").fetchall()
            for row in rows:
                self._index(db, _snippet(row))
            db.execute("INSERT OR REPLACE INTO meta VALUES ('words', ?)", (WORDS_VERSION,))
        if say and rows:
            log.warning(
                "indexed the %d snippets in service of the function store %s again, their "
                "words split as this tether splits them (an older tether split them "
                "otherwise)",
                len(rows),
                self.path,
            )

    @contextmanager
    def _transaction(self, wait_ms: int | None = None) -> Iterator[sqlite3.Connection]:
        """A write, waiting ``wait_ms`` (the store's wait by default) at most for another
        process's; DatabaseLockedError after that."""
        wait = self._wait_ms if wait_ms is None else min(wait_ms, self._wait_ms)
        with self._lock:
            if wait != self._wait_ms:
                self._db.execute(f"PRAGMA busy_timeout = {int(wait)}")
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if not is_locked(exc):
                    raise
                raise DatabaseLockedError(
                    locked_message("the function store", self.path) + ", then try again"
                ) from exc
            finally:
                if wait != self._wait_ms:
                    self._db.execute(f"PRAGMA busy_timeout = {self._wait_ms}")
            try:
                yield self._db
            except BaseException:
                roll_back(self._db)
                raise
            self._db.execute("COMMIT")

    # -- writing -------------------------------------------------------------------------

    def add(self, draft: Draft, author: str) -> Added:
        return self.add_many([draft], author)[0]

    def add_many(self, drafts: Iterable[Draft], author: str) -> list[Added]:
        """Add each draft as a new snippet, a new version of the snippet it edits (same
        repository, path and name), or nothing when that code is already in the store."""
        checked = [self._checked(d) for d in drafts]
        with self._transaction() as db:
            return [self._add(db, draft, author) for draft in checked]

    def _checked(self, draft: Draft) -> Draft:
        if not draft.name.strip():
            raise RequestError("a snippet needs a name", param="name")
        if len(draft.code) > self.max_code_chars:
            raise RequestError(
                f"snippet {draft.name} is {len(draft.code) // 1024} KiB; the store takes "
                f"{self.max_code_chars // 1024} KiB at most (store.max_code_kb)",
                param="code",
            )
        if not draft.code.strip():
            raise RequestError(f"snippet {draft.name} has no code", param="code")
        if draft.test and not draft.test.strip():
            raise RequestError(
                f"the test of snippet {draft.name} is blank; send code that exercises it, "
                'or "" to remove the test it has',
                param="test",
            )
        if draft.test and len(draft.test) > self.max_code_chars:
            raise RequestError(
                f"the test of snippet {draft.name} is {len(draft.test) // 1024} KiB; the store "
                f"takes {self.max_code_chars // 1024} KiB at most (store.max_code_kb)",
                param="test",
            )
        _check_tags(draft.tags or ())
        return draft

    def _add(self, db: sqlite3.Connection, draft: Draft, author: str) -> Added:
        now = time.time()
        key = _origin_key(draft)
        row = db.execute(
            f"SELECT {_COLUMNS} FROM {_JOIN} WHERE s.origin_key = ? AND s.language = ?",
            (key, draft.language),
        ).fetchone()
        if row is not None:
            existing = _snippet(row)
            # What the offer leaves out (an import gives no tags or test) stays as it was.
            current = existing.current
            draft = replace(
                draft,
                tags=current.tags if draft.tags is None else draft.tags,
                licence=draft.licence or current.licence,
                test=current.test if draft.test is None else draft.test,
            )
            if _same(current, draft):
                if draft.callable and not existing.callable and existing.state == "candidate":
                    # Asking again to be callable is heard, as with a new version: nothing
                    # in service yet, so the reviewer decides on it.
                    db.execute("UPDATE snippets SET callable = 1 WHERE id = ?", (existing.id,))
                    existing = self._get(db, existing.id)
                return Added(existing, "unchanged")
            if existing.served not in (None, current.version) and _same(
                self._version_of(db, existing.id, existing.served), draft
            ):
                # The code went back to the version in service (an edit undone in the
                # repository): the edit waiting for review is withdrawn, not followed by
                # a copy of what already serves, to be reviewed again.
                db.execute(
                    "UPDATE snippets SET state = 'vetted', version = served, updated = ? "
                    "WHERE id = ?",
                    (now, existing.id),
                )
                reason = f"withdrawn: offered again as version {existing.served}, in service"
                decision = self._record(
                    db, existing.id, current.version, "rejected", author, reason, [], now,
                    current.body_hash,
                )  # fmt: skip
                return Added(self._get(db, existing.id), "withdrawn", decision)
            # After a rejected version the current one is not the highest.
            (highest,) = db.execute(
                "SELECT MAX(version) FROM versions WHERE snippet_id = ?", (existing.id,)
            ).fetchone()
            version = int(highest) + 1
            self._insert_version(db, existing.id, version, draft, author, now)
            # Callable is decided on vetting: an offer cannot make the version in service
            # callable, which no reviewer made so.
            makes_callable = existing.callable
            if existing.served is None:
                makes_callable = draft.callable or existing.callable
            db.execute(
                "UPDATE snippets SET version = ?, state = 'candidate', updated = ?, "
                "callable = ? WHERE id = ?",
                (version, now, int(makes_callable), existing.id),
            )
            self._record(db, existing.id, version, "candidate", author, "a new version", [], now)
            return Added(self._get(db, existing.id), "new version")
        twin = db.execute(
            f"SELECT {_COLUMNS} FROM {_JOIN} WHERE v.body_hash = ? AND s.language = ? LIMIT 1",
            (draft.body_hash, draft.language),
        ).fetchone()
        if twin is not None:
            return Added(_snippet(twin), "duplicate")
        cursor = db.execute(
            "INSERT INTO snippets (name, language, state, version, callable, origin_key, "
            "created, updated) VALUES (?, ?, 'candidate', 1, ?, ?, ?, ?)",
            (draft.name, draft.language, int(draft.callable), key, now, now),
        )
        snippet_id = int(cursor.lastrowid or 0)
        self._insert_version(db, snippet_id, 1, draft, author, now)
        self._record(db, snippet_id, 1, "candidate", author, "added", [], now)
        return Added(self._get(db, snippet_id), "added")

    @staticmethod
    def _insert_version(
        db: sqlite3.Connection, snippet_id: int, version: int, draft: Draft, author: str, at: float
    ) -> None:
        origin = draft.origin
        db.execute(
            "INSERT INTO versions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                snippet_id,
                version,
                draft.code,
                draft.body_hash,
                draft.signature,
                draft.docstring,
                json.dumps(list(draft.tags or ())),
                json.dumps(
                    {
                        "path": origin.path,
                        "repository": origin.repository,
                        "commit": origin.commit,
                        "line": origin.line,
                    }
                ),
                draft.licence,
                draft.test or "",
                at,
                author,
            ),
        )

    def decide(
        self,
        snippet_id: int,
        state: State,
        principal: str,
        reason: str,
        gates: Sequence[dict[str, Any]] = (),
        version: int | None = None,
        callable_: bool | None = None,
        from_state: State | None = None,
    ) -> Decision:
        """Move the snippet to ``state``; ``version`` and ``from_state``, when given, must
        still be current (a decision about code someone has since changed, or on a snippet
        someone has decided meanwhile, is refused)."""
        return self.decide_many(
            [snippet_id], state, principal, reason, gates, version, callable_, from_state
        )[0]

    def decide_many(
        self,
        snippet_ids: Sequence[int],
        state: State,
        principal: str,
        reason: str,
        gates: Sequence[dict[str, Any]] = (),
        version: int | None = None,
        callable_: bool | None = None,
        from_state: State | None = None,
    ) -> list[Decision]:
        """``decide`` for each snippet, in one transaction: all or none."""
        if state not in STATES:
            raise RequestError(f"unknown state {state!r}; one of {', '.join(STATES)}")
        if not reason.strip():
            raise RequestError(
                "a decision needs a reason: say why (--reason, or reason in the request)",
                param="reason",
            )
        with self._transaction() as db:
            return [
                self._decide(db, i, state, principal, reason, gates, version, callable_, from_state)
                for i in snippet_ids
            ]

    def _decide(
        self,
        db: sqlite3.Connection,
        snippet_id: int,
        state: State,
        principal: str,
        reason: str,
        gates: Sequence[dict[str, Any]],
        version: int | None,
        callable_: bool | None,
        from_state: State | None,
    ) -> Decision:
        now = time.time()
        snippet = self._get(db, snippet_id)
        if version is not None and version != snippet.current.version:
            raise RequestError(
                f"snippet {snippet_id} is at version {snippet.current.version}, not "
                f"{version}; look at the new version before deciding",
                param="version",
            )
        if from_state is not None and from_state != snippet.state:
            raise RequestError(
                f"snippet {snippet_id} is {snippet.state} now, not {from_state}: it was decided "
                "meanwhile; look at its decisions before deciding again",
                param="state",
            )
        makes_callable = snippet.callable if callable_ is None else callable_
        decided = snippet.current.version
        pending = snippet.served is not None and snippet.served != decided
        if state == "rejected" and pending:
            # The new version is turned down; the one in service stays, as current.
            db.execute(
                "UPDATE snippets SET state = 'vetted', version = served, updated = ? WHERE id = ?",
                (now, snippet_id),
            )
        elif state == "candidate":
            db.execute(
                "UPDATE snippets SET state = ?, updated = ?, callable = ? WHERE id = ?",
                (state, now, int(makes_callable), snippet_id),
            )
        else:
            served = decided if state == "vetted" else None
            db.execute(
                "UPDATE snippets SET state = ?, updated = ?, callable = ?, served = ? WHERE id = ?",
                (state, now, int(makes_callable), served, snippet_id),
            )
            self._unindex(db, snippet_id)
            if state == "vetted":
                self._index(db, snippet)
        return self._record(
            db, snippet_id, decided, state, principal, reason, gates, now, snippet.current.body_hash
        )

    @staticmethod
    def _record(
        db: sqlite3.Connection,
        snippet_id: int,
        version: int,
        state: State,
        principal: str,
        reason: str,
        gates: Sequence[dict[str, Any]],
        at: float,
        body_hash: str = "",
    ) -> Decision:
        db.execute(
            "INSERT INTO decisions (snippet_id, version, state, principal, reason, gates, at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (snippet_id, version, state, principal, reason, json.dumps(list(gates)), at),
        )
        return Decision(version, state, principal, reason, at, list(gates), body_hash)

    @staticmethod
    def _index(db: sqlite3.Connection, snippet: Snippet) -> None:
        current = snippet.current
        db.execute(
            "INSERT INTO search (rowid, name, signature, docstring, code, tags) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (
                snippet.id,
                indexed_text(snippet.name),
                indexed_text(current.signature),
                indexed_text(current.docstring),
                indexed_text(current.code),
                indexed_text(" ".join(current.tags)),
            ),
        )
        db.execute("UPDATE meta SET value = value + 1 WHERE key = 'revision'")

    @staticmethod
    def _unindex(db: sqlite3.Connection, snippet_id: int) -> None:
        gone = db.execute("DELETE FROM search WHERE rowid = ?", (snippet_id,)).rowcount
        db.execute("DELETE FROM vectors WHERE snippet_id = ?", (snippet_id,))
        if gone:
            db.execute("UPDATE meta SET value = value + 1 WHERE key = 'revision'")

    def set_vectors(
        self, model: str, vectors: Iterable[tuple[int, bytes]], wait_ms: int | None = None
    ) -> None:
        with self._transaction(wait_ms) as db:
            db.executemany(
                "INSERT OR REPLACE INTO vectors (snippet_id, model, vector) VALUES (?, ?, ?)",
                [(snippet_id, model, blob) for snippet_id, blob in vectors],
            )

    # -- reading -------------------------------------------------------------------------

    def get(self, snippet_id: int) -> Snippet:
        with self._lock:
            return self._get(self._db, snippet_id)

    def _get(self, db: sqlite3.Connection, snippet_id: int) -> Snippet:
        row = None
        if _storable(snippet_id):
            row = db.execute(
                f"SELECT {_COLUMNS} FROM {_JOIN} WHERE s.id = ?", (snippet_id,)
            ).fetchone()
        if row is None:
            raise NotFoundError(f"no snippet {snippet_id} (tether store list shows the ids)")
        return _snippet(row)

    def served(self, snippet_id: int) -> Snippet | None:
        """The snippet as in service (its vetted version), or None when none is."""
        return self.served_many([snippet_id]).get(snippet_id)

    def served_many(self, ids: Sequence[int]) -> dict[int, Snippet]:
        ids = [i for i in ids if _storable(i)]
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_SERVED_COLUMNS} FROM {_SERVED_JOIN} WHERE s.id IN ({marks})", list(ids)
            ).fetchall()
        return {row[0]: _snippet(row) for row in rows}

    def served_snippets(self, limit: int) -> list[Snippet]:
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_SERVED_COLUMNS} FROM {_SERVED_JOIN} ORDER BY s.id LIMIT ?", (limit,)
            ).fetchall()
        return [_snippet(row) for row in rows]

    def callable_named(self, name: str) -> Snippet:
        """The callable snippet in service called ``name``."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_SERVED_COLUMNS} FROM {_SERVED_JOIN} WHERE s.name = ? "
                "AND s.callable = 1 ORDER BY s.id",
                (name,),
            ).fetchall()
        if not rows:
            raise NotFoundError(
                f"no vetted callable function {name!r} (tether store list --callable shows them)"
            )
        return _snippet(rows[0])

    def snippets(
        self,
        state: State | None = None,
        limit: int = 100,
        offset: int = 0,
        callable_only: bool = False,
    ) -> list[Snippet]:
        where, args = [], []
        if state is not None:
            where.append("s.state = ?")
            args.append(state)
        columns, join = _COLUMNS, _JOIN
        if callable_only:  # what can be called: the version in service, when callable
            where.append("s.callable = 1")
            columns, join = _SERVED_COLUMNS, _SERVED_JOIN
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {columns} FROM {join} {clause} ORDER BY s.id LIMIT ? OFFSET ?",
                [*args, min(limit, MAX_ID), min(offset, MAX_ID)],
            ).fetchall()
        return [_snippet(row) for row in rows]

    def ids_holding(self, words: Sequence[str], state: State | None = None) -> list[int]:
        """The ids, in order, of the snippets in ``state`` (any when None) whose name,
        docstring or tags hold every one of ``words``, in any case: one read of the
        store (names, docstrings and tags only), however many words."""
        clause, args = ("WHERE s.state = ?", [state]) if state is not None else ("", [])
        with self._lock:
            rows = self._db.execute(
                f"SELECT s.id, s.name, v.docstring, v.tags FROM {_JOIN} {clause} ORDER BY s.id",
                args,
            ).fetchall()
        wanted = [word.casefold() for word in words]
        return [
            snippet_id
            for snippet_id, name, docstring, tags in rows
            if all(
                w in f"{name} {docstring} {' '.join(json.loads(tags))}".casefold() for w in wanted
            )
        ]

    def counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute("SELECT state, COUNT(*) FROM snippets GROUP BY state")
            found = dict(rows.fetchall())
        return {state: int(found.get(state, 0)) for state in STATES}

    def versions(self, snippet_id: int) -> list[Version]:
        with self._lock:
            self._get(self._db, snippet_id)
            rows = self._db.execute(
                f"SELECT {_VERSION_COLUMNS} FROM versions WHERE snippet_id = ? ORDER BY version",
                (snippet_id,),
            ).fetchall()
        return [_version(row) for row in rows]

    @staticmethod
    def _version_of(db: sqlite3.Connection, snippet_id: int, version: int) -> Version:
        row = db.execute(
            f"SELECT {_VERSION_COLUMNS} FROM versions WHERE snippet_id = ? AND version = ?",
            (snippet_id, version),
        ).fetchone()
        return _version(row)

    def decisions(self, snippet_id: int) -> list[Decision]:
        if not _storable(snippet_id):
            return []
        with self._lock:
            rows = self._db.execute(
                "SELECT d.version, d.state, d.principal, d.reason, d.at, d.gates, v.body_hash "
                "FROM decisions d JOIN versions v ON v.snippet_id = d.snippet_id "
                "AND v.version = d.version WHERE d.snippet_id = ? ORDER BY d.id",
                (snippet_id,),
            ).fetchall()
        return [Decision(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), r[6]) for r in rows]

    def revision(self) -> int:
        """Changes with every change to what can be retrieved; caches key on it."""
        with self._lock:
            return int(
                self._db.execute("SELECT value FROM meta WHERE key = 'revision'").fetchone()[0]
            )

    def bm25(self, terms: Sequence[str], limit: int) -> list[tuple[int, float]]:
        """Vetted snippet ids with BM25 scores (higher is better) for any of ``terms``.

        Ranking costs a few microseconds per matching snippet, so the rarest terms are
        kept while the snippets they match stay under ``MAX_RANKED``: a common word adds
        little to BM25 (its IDF is low) and would have every snippet ranked.
        """
        with self._lock:
            chosen = self._selective(terms)
            if not chosen:
                return []
            weights = ", ".join(str(w) for w in WEIGHTS)
            rows = self._db.execute(
                f"SELECT rowid, -bm25(search, {weights}) AS score FROM search "
                f"WHERE search MATCH ? ORDER BY bm25(search, {weights}) LIMIT ?",
                (fts_query(chosen), limit),
            ).fetchall()
        return [(int(r[0]), float(r[1])) for r in rows]

    def _selective(self, terms: Sequence[str]) -> list[str]:
        revision = int(
            self._db.execute("SELECT value FROM meta WHERE key = 'revision'").fetchone()[0]
        )
        if revision != self._df_revision or len(self._df) > DF_CACHE:
            self._df, self._df_revision = {}, revision
        for term in terms:
            if term not in self._df:
                self._df[term] = int(
                    self._db.execute(
                        "SELECT count(*) FROM search WHERE search MATCH ?", (fts_query([term]),)
                    ).fetchone()[0]
                )
        chosen: list[str] = []
        matched = 0
        for term in sorted((t for t in terms if self._df[t]), key=lambda t: self._df[t]):
            if chosen and matched + self._df[term] > MAX_RANKED:
                break
            chosen.append(term)
            matched += self._df[term]
        return chosen

    def vectors(self, model: str) -> list[tuple[int, bytes]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT snippet_id, vector FROM vectors WHERE model = ? ORDER BY snippet_id",
                (model,),
            ).fetchall()
        return [(int(r[0]), bytes(r[1])) for r in rows]

    def unembedded(self, model: str) -> list[Snippet]:
        """Snippets in service without a vector from ``model``."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_SERVED_COLUMNS} FROM {_SERVED_JOIN} WHERE NOT EXISTS "
                "(SELECT 1 FROM vectors x WHERE x.snippet_id = s.id AND x.model = ?)",
                (model,),
            ).fetchall()
        return [_snippet(row) for row in rows]


def _storable(snippet_id: int) -> bool:
    """Whether SQLite can hold the id; one past its range names no snippet, rather than
    failing to convert."""
    return -MAX_ID - 1 <= snippet_id <= MAX_ID


def _statements(script: str) -> list[str]:
    """The statements of a migration, for execution inside one transaction
    (``executescript`` would commit first)."""
    statements, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    return [s for s in statements if s]


def _origin_key(draft: Draft) -> str:
    origin = draft.origin
    if not origin.path and not origin.repository:
        return f"name:{draft.name}"  # added by hand: the name alone identifies it
    return json.dumps([origin.repository, origin.path, draft.name])


def _same(current: Version, draft: Draft) -> bool:
    return (
        current.body_hash == draft.body_hash
        and current.code == draft.code
        and current.tags == tuple(draft.tags or ())
        and current.licence == draft.licence
        and current.test == (draft.test or "")
    )


def _version(row: Sequence[Any]) -> Version:
    # A path stored before import refused names that are not UTF-8 is shown, not fatal.
    stored: dict[str, Any] = json.loads(row[6])
    origin: dict[str, Any] = {
        k: without_surrogates(v) if isinstance(v, str) else v for k, v in stored.items()
    }
    return Version(
        version=row[0],
        code=row[1],
        body_hash=row[2],
        signature=row[3],
        docstring=row[4],
        tags=tuple(json.loads(row[5])),
        origin=Origin(**origin),
        licence=row[7],
        test=row[8],
        created=row[9],
        author=row[10],
    )


def _snippet(row: Sequence[Any]) -> Snippet:
    return Snippet(
        id=row[0],
        name=row[1],
        language=row[2],
        state=row[3],
        callable=bool(row[4]),
        created=row[5],
        updated=row[6],
        served=row[7],
        current=_version(row[8:]),
    )


def _check_tags(tags: Sequence[str]) -> None:
    """Tags are short words to search by: a few, none empty, each on one line."""
    if len(tags) > MAX_TAGS:
        raise RequestError(f"{len(tags)} tags; give at most {MAX_TAGS}", param="tags")
    for tag in tags:
        if not tag.strip() or not tag.isprintable() or len(tag) > MAX_TAG_CHARS:
            raise RequestError(
                f"tag {tag[:40]!r} is not a tag: give words of 1 to {MAX_TAG_CHARS} printable "
                "characters",
                param="tags",
            )
