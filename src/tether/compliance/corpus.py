"""The operator's corpus of code that must not be reproduced, as winnowing fingerprints in SQLite.

``tether corpus index DIR`` fills it; the inline checks ask it, for each completion, which
corpus files share fingerprints with the code and how much of the code they cover.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from tether.closing import Closeable
from tether.compliance.files import Skipped, read_source, select, walk
from tether.compliance.languages import SUFFIXES, language_for
from tether.compliance.report import shown_path
from tether.compliance.source import Source, lone_cr_as_lf
from tether.compliance.winnowing import WINDOW, K, Syntax, fingerprints, syntax_of
from tether.databases import make_private
from tether.errors import ConfigError, RequestError

SCHEMA_VERSION = "1"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,
    sha256 TEXT NOT NULL,
    fingerprints INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS fingerprints (
    hash INTEGER NOT NULL,
    file_id INTEGER NOT NULL,
    line INTEGER NOT NULL,
    end_line INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS fingerprints_by_hash ON fingerprints (hash);
CREATE INDEX IF NOT EXISTS fingerprints_by_file ON fingerprints (file_id);
CREATE TEMP TABLE IF NOT EXISTS wanted (hash INTEGER PRIMARY KEY);
"""
_MATCH = """
SELECT files.path, fingerprints.hash, fingerprints.line, fingerprints.end_line
FROM temp.wanted
JOIN fingerprints ON fingerprints.hash = wanted.hash
JOIN files ON files.id = fingerprints.file_id
"""


@dataclass(frozen=True)
class CorpusMatch:
    """How much of the checked code one corpus file covers."""

    source: str  # the corpus file, as it was indexed
    matched: int  # fingerprints of the code also found in that file
    total: int  # fingerprints of the code
    start: int  # character span of the code that the matched fingerprints cover
    end: int
    source_lines: tuple[int, int]  # first and last line of the copy in the corpus file

    @property
    def overlap(self) -> float:
        return self.matched / self.total if self.total else 0.0


@dataclass
class IndexReport:
    indexed: int = 0
    unchanged: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    fingerprints: int = 0


class CorpusIndex(Closeable):
    """A fingerprint index in one SQLite file; safe to share between threads."""

    def __init__(self, path: Path | str, *, create: bool = True) -> None:
        self.path = Path(path)
        exists = self.path.is_file() and self.path.stat().st_size > 0
        if not create and not exists:
            raise ConfigError(
                f"no corpus index at {self.path}; build one with `tether corpus index DIR`"
            )
        make_private(self.path)  # fingerprints and paths of code kept from others
        self._db = sqlite3.connect(self.path, check_same_thread=False)
        try:
            # Another file (a database of something else) is refused before anything is
            # written to it.
            if exists and not self._is_corpus_index():
                raise sqlite3.DatabaseError("it has no corpus tables")
            self._db.executescript(_SCHEMA)
            self._check_parameters()
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise ConfigError(
                f"{self.path} is not a tether corpus index ({exc}); give the path of one "
                "built by `tether corpus index DIR`, or a new path to build one"
            ) from exc
        except BaseException:
            self._db.close()
            raise
        self._lock = threading.Lock()

    def _is_corpus_index(self) -> bool:
        tables = {name for (name,) in self._db.execute("SELECT name FROM sqlite_master")}
        return {"meta", "files", "fingerprints"} <= tables

    def _check_parameters(self) -> None:
        wanted = {"schema": SCHEMA_VERSION, "k": str(K), "window": str(WINDOW)}
        stored = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
        if not stored:
            with self._db:
                self._db.executemany("INSERT INTO meta VALUES (?, ?)", wanted.items())
        elif stored != wanted:
            raise ConfigError(
                f"the corpus index {self.path} was built by another tether version "
                f"({stored}); remove it and rebuild with `tether corpus index DIR`"
            )

    def close(self) -> None:
        self._db.close()

    def _add(self, path: str, text: str, language: str | None) -> int | None:
        """Fingerprints stored, or None when the same text is already indexed under ``path``."""
        digest = hashlib.sha256(text.encode("utf-8", errors="surrogatepass")).hexdigest()
        row = self._db.execute("SELECT id, sha256 FROM files WHERE path = ?", (path,)).fetchone()
        if row is not None:
            if row[1] == digest:
                return None
            self._db.execute("DELETE FROM fingerprints WHERE file_id = ?", (row[0],))
            self._db.execute("DELETE FROM files WHERE id = ?", (row[0],))
        prints = fingerprints(text, syntax_of(language))
        source = Source(text)
        cursor = self._db.execute(
            "INSERT INTO files (path, sha256, fingerprints) VALUES (?, ?, ?)",
            (path, digest, len(prints)),
        )
        file_id = cursor.lastrowid
        self._db.executemany(
            "INSERT INTO fingerprints VALUES (?, ?, ?, ?)",
            [
                (fp.hash, file_id, source.position(fp.start)[0], source.position(fp.end)[0])
                for fp in prints
            ],
        )
        return len(prints)

    def add_tree(self, root: str | Path, *, suffixes: Iterable[str] = SUFFIXES) -> IndexReport:
        """Index every source file under ``root`` (by suffix), stored by absolute path."""
        root = Path(root)
        if not root.is_dir():
            raise ConfigError(f"{root} is not a directory; give the folder to index")
        wanted = {s.lower() for s in suffixes}
        report = IndexReport()
        with self._lock, self._db:
            files, report.skipped = select(f for f in walk(root) if f.suffix.lower() in wanted)
            for file in files:
                try:
                    # Lines end where editors and the checks end them: a file of lone CRs
                    # was one line, a comment on its first line running to its end.
                    text = lone_cr_as_lf(read_source(file).text)
                except OSError as exc:
                    report.skipped.append(Skipped(file, f"cannot be read ({exc.strerror or exc})"))
                    continue
                except RequestError:  # replaced by a FIFO or a folder since it was listed
                    report.skipped.append(Skipped(file, "not a regular file"))
                    continue
                # The language by the name itself: a quoted key ends with its quote.
                resolved = str(file.resolve())
                added = self._add(_key(resolved), text, language_for("", resolved))
                if added is None:
                    report.unchanged += 1
                else:
                    report.indexed += 1
                    report.fingerprints += added
        return report

    def stats(self) -> dict[str, int]:
        with self._lock:
            files = self._db.execute("SELECT count(*) FROM files").fetchone()[0]
            prints = self._db.execute("SELECT count(*) FROM fingerprints").fetchone()[0]
        return {"files": int(files), "fingerprints": int(prints)}

    def match(
        self, code: str, syntax: Syntax = "any", *, exclude: str | None = None
    ) -> list[CorpusMatch]:
        """Corpus files sharing fingerprints with ``code``, the most matched first."""
        prints = fingerprints(code, syntax)
        if not prints:
            return []
        hits: dict[str, dict[int, tuple[int, int]]] = {}  # path -> hash -> lines
        with self._lock, self._db:
            # The code's hashes go into a temporary table joined in SQL: no statement is
            # built from values, and no limit on the number of ? parameters applies.
            self._db.execute("DELETE FROM temp.wanted")
            self._db.executemany(
                "INSERT OR IGNORE INTO temp.wanted VALUES (?)", [(fp.hash,) for fp in prints]
            )
            rows = self._db.execute(_MATCH).fetchall()
        for path, value, line, end_line in rows:
            hits.setdefault(path, {}).setdefault(value, (line, end_line))
        matches = []
        excluded = None if exclude is None else _key(exclude)
        for path, found in hits.items():
            if path == excluded:
                continue
            covered = [fp for fp in prints if fp.hash in found]
            lines = [found[fp.hash] for fp in covered]
            matches.append(
                CorpusMatch(
                    source=path,
                    matched=len(covered),
                    total=len(prints),
                    start=min(fp.start for fp in covered),
                    end=max(fp.end for fp in covered),
                    source_lines=(min(a for a, _ in lines), max(b for _, b in lines)),
                )
            )
        return sorted(matches, key=lambda m: (-m.matched, m.source))


def _key(path: str) -> str:
    """The text a file is indexed and named by: its path, or, where the path holds a byte
    that is not UTF-8 (which no SQLite text holds), the path quoted as reports quote it."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return shown_path(path)
    return path
