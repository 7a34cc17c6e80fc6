from __future__ import annotations

import logging
import subprocess
import sys

import pytest

from tests.store.conftest import SETTINGS, vetted
from tether.errors import RequestError
from tether.settings import StoreSettings
from tether.store import Searcher, SnippetStore
from tether.store.embeddings import WordLlamaEmbedder
from tether.store.model import Origin

PARSE = 'def parseIsoDate(text):\n    """Read a calendar day."""\n    return text\n'
SLUG = 'def slugify(title):\n    """Turn a title into a URL slug."""\n    return title\n'


def test_any_spelling_of_an_identifier_finds_it(db: SnippetStore) -> None:
    snippet = vetted(db, PARSE)
    searcher = Searcher(db, SETTINGS)
    for query in ("parse_iso_date", "parseIsoDate", "ParseISODate", "parse iso date"):
        hits = searcher.search(query)
        assert [h.snippet.id for h in hits] == [snippet.id], query
        assert hits[0].bm25 is not None and hits[0].similarity is None


def test_any_text_is_a_valid_query_and_punctuation_alone_is_refused(db: SnippetStore) -> None:
    vetted(db, SLUG)
    searcher = Searcher(db, SETTINGS)
    assert searcher.search('slug" OR (title AND NOT) NEAR(*') != []  # FTS5 syntax is escaped
    with pytest.raises(RequestError, match="no words"):
        searcher.search("?!*() --")


def test_candidates_are_never_found(db: SnippetStore) -> None:
    db.add(vetted.__globals__["draft"](SLUG), "ana")  # a candidate only
    assert Searcher(db, SETTINGS).search("slugify") == []


def test_at_most_per_origin_results_from_one_file(db: SnippetStore) -> None:
    for i in range(4):
        code = f'def slug_{i}(title):\n    """Make a slug, way {i}."""\n    return title\n'
        vetted(db, code, origin=Origin(path="same.py"))
    other = 'def slug_other(t):\n    """A slug too."""\n    return t\n'
    vetted(db, other, origin=Origin(path="b.py"))
    hits = Searcher(db, StoreSettings(per_origin=2)).search("slug", limit=10)
    paths = [h.snippet.current.origin.path for h in hits]
    assert paths.count("same.py") == 2 and "b.py" in paths


def test_hybrid_search_fuses_both_rankers_and_explains_each(db: SnippetStore) -> None:
    slug = vetted(db, SLUG)
    vetted(db, PARSE)
    searcher = Searcher(db, SETTINGS, WordLlamaEmbedder())
    hits = searcher.search("make a URL slug from a title")
    assert hits[0].snippet.id == slug.id
    scores = hits[0].scores()
    assert scores["bm25_rank"] == 1 and scores["similarity_rank"] == 1
    assert scores["fused"] == pytest.approx(2 / 61, abs=1e-6)  # 1/(60+1) from each
    # A meaning with no word in common is found by the embedding alone (over a lower
    # threshold: this small static model rates such pairs low).
    loose = Searcher(db, StoreSettings(min_similarity=0.15), WordLlamaEmbedder())
    only_meaning = loose.search("hyphenated lowercase link text")
    assert only_meaning[0].snippet.id == slug.id and only_meaning[0].bm25 is None
    default = searcher.search("hyphenated lowercase link text")  # under the default 0.35
    assert slug.id not in [h.snippet.id for h in default]


def test_a_retired_snippet_leaves_the_embedding_index_too(db: SnippetStore) -> None:
    slug = vetted(db, SLUG)
    searcher = Searcher(db, SETTINGS, WordLlamaEmbedder())
    assert searcher.search("slug")
    db.decide(slug.id, "retired", "bo", "gone")
    assert searcher.search("slug") == []


JAPANESE = 'def to_era(year):\n    """日本語の和暦に変換する。"""\n    return year\n'
GERMAN = 'def gruss(name):\n    """Grüße für über alles."""\n    return name\n'
RUSSIAN = 'def group(rows):\n    """Группирует данные по ключу."""\n    return rows\n'


@pytest.mark.parametrize(
    ("query", "language"),
    [
        ("日本語", "ja"),
        ("和暦に変換したい", "ja"),  # a sentence without spaces finds its parts
        ("暦", "ja"),  # and so does one character
        ("über", "de"),
        ("uber", "de"),  # as the index folds accents
        ("ДАННЫЕ", "ru"),
    ],
)
def test_a_query_in_any_script_finds_its_words(db: SnippetStore, query: str, language: str) -> None:
    found = {
        "ja": vetted(db, JAPANESE, origin=Origin(path="ja.py")).id,
        "de": vetted(db, GERMAN, origin=Origin(path="de.py")).id,
        "ru": vetted(db, RUSSIAN, origin=Origin(path="ru.py")).id,
    }
    hits = Searcher(db, SETTINGS).search(query)
    assert [h.snippet.id for h in hits] == [found[language]], query


def test_loading_the_embedder_leaves_logging_alone() -> None:
    """wordllama sets up the root logger for INFO when imported, which printed httpx's
    request lines on the stderr of `tether mcp` and of commands that search the store."""
    probe = (
        "import logging\n"
        "from tether.store.embeddings import WordLlamaEmbedder\n"
        "WordLlamaEmbedder().embed(['parse a date'])\n"
        "root = logging.getLogger()\n"
        "print(root.level, len(root.handlers))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.split() == [str(logging.WARNING), "0"], done.stderr
