"""Words for search, from code and from what people type.

Identifiers are split where their words meet (``parse_iso_date``, ``parseIsoDate`` and
``ParseISODate`` all give ``parse iso date``), so the full-text index, which sees only
words, finds a snippet by any spelling of its name, and a query never needs to guess it.
"""

from __future__ import annotations

import re

# A word inside an identifier: an acronym before a capitalised word (``ISO`` in
# ``ISODate``), a capitalised or lower-case word, or a number.
_WORD = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")
_TOKEN = re.compile(r"[A-Za-z0-9]+")
MAX_QUERY_WORDS = 32  # a query made from a whole file keeps its rarest words, not all
# Words too common to tell snippets apart. Matching them would make every query match
# most of the store, and ranking all of those is what makes a search slow.
STOPWORDS = frozenset(
    {
        "a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "has", "have", "if",
        "in", "into", "is", "it", "its", "of", "on", "or", "that", "the", "this", "to", "was",
        "were", "will", "with", "return", "returns", "none", "self", "true", "false", "def",
        "function", "const", "let", "var",
    }
)  # fmt: skip


def words(text: str) -> list[str]:
    """The lower-case words of ``text``, identifiers split, in order, repeats kept."""
    return [w.lower() for token in _TOKEN.findall(text) for w in _WORD.findall(token)]


def indexed_text(text: str) -> str:
    """``text`` as the index stores it: its words separated by spaces."""
    return " ".join(words(text))


def query_words(text: str, limit: int = MAX_QUERY_WORDS) -> list[str]:
    """Distinct words of a query, longest first when there are more than ``limit``:
    longer words are the rarer, more telling ones."""
    every = list(dict.fromkeys(words(text)))
    telling = [w for w in every if (len(w) > 1 or w.isdigit()) and w not in STOPWORDS]
    distinct = telling or every  # a query of only such words searches for them anyway
    if len(distinct) > limit:
        keep = set(sorted(distinct, key=len, reverse=True)[:limit])
        distinct = [w for w in distinct if w in keep]
    return distinct


def fts_query(terms: list[str]) -> str:
    """An FTS5 query matching any of ``terms``; each is quoted, so any text is valid."""
    return " OR ".join('"' + term.replace('"', '""') + '"' for term in terms)
