"""Words for search, from code and from what people type, in any script.

Identifiers are split where their words meet (``parse_iso_date``, ``parseIsoDate`` and
``ParseISODate`` all give ``parse iso date``), so the full-text index, which sees only
words, finds a snippet by any spelling of its name, and a query never needs to guess it.
Letters of every script make words (``über``, ``данные``), so a query in any language
finds what the docstrings say in it.

Chinese, Japanese, Thai and the other scripts written without spaces have no words to
split on, so a run of their characters becomes overlapping pairs (``日本語`` gives
``日本 本語``): the index keeps each character and each pair, a query asks for its pairs
(or its one character), and a snippet is found by any part of a sentence it contains.
"""

from __future__ import annotations

import re
import unicodedata

# The text is first drawn as its shape, one letter a character: ``U`` upper case, ``l``
# lower case, ``o`` a letter without case, ``m`` a combining mark, ``d`` a digit, ``c`` a
# character of a script written without spaces, `` `` anything else. Words are read off
# the shape and cut from the text at the same places.
_WORD = re.compile(
    r"U+(?=Ul)"  # an acronym before a capitalised word (``ISO`` in ``ISODate``)
    r"|U?[lm]+"  # a capitalised or lower-case word
    r"|U[Um]*"  # an acronym
    r"|[om]+"  # a word of a script without case (Arabic, Devanagari, Hangul)
    r"|d+"
    r"|c+"
)
# Scripts written without spaces between words: CJK (Han, kana, their marks and
# compatibility forms), Thai, Lao, Khmer and Myanmar.
_UNSPACED = (
    (0x0E00, 0x0EFF),  # Thai, Lao
    (0x1000, 0x109F),  # Myanmar
    (0x1780, 0x17FF),  # Khmer
    (0x2E80, 0x2FDF),  # CJK radicals
    (0x3005, 0x3007),  # iteration and closing marks, ideographic zero
    (0x3021, 0x3029),  # Hangzhou numerals
    (0x3031, 0x3035),  # kana repeat marks
    (0x3040, 0x30FF),  # Hiragana, Katakana
    (0x3190, 0x319F),  # Kanbun
    (0x31F0, 0x31FF),  # Katakana extensions
    (0x3400, 0x4DBF),  # CJK extension A
    (0x4E00, 0x9FFF),  # CJK unified ideographs
    (0xF900, 0xFAFF),  # CJK compatibility ideographs
    (0x1AFF0, 0x1B16F),  # kana supplement and extensions
    (0x20000, 0x3FFFF),  # CJK extensions B onwards
)
_SHAPE_OF_CATEGORY = {"Lu": "U", "Lt": "U", "Ll": "l", "Lo": "o", "Lm": "o", "Nd": "d"}


class _Shapes(dict[int, str]):
    """Code point to shape letter, for ``str.translate``; filled as characters are met."""

    def __missing__(self, point: int) -> str:
        if any(low <= point <= high for low, high in _UNSPACED):
            shape = "c"
        else:
            category = unicodedata.category(chr(point))
            shape = _SHAPE_OF_CATEGORY.get(category) or {"M": "m", "N": "d"}.get(category[0], " ")
        self[point] = shape
        return shape


_SHAPES = _Shapes()
# How text becomes the index's words; a store indexed another way is reindexed on opening.
WORDS_VERSION = 2
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


def _pieces(text: str) -> list[tuple[str, bool]]:
    """The lower-case words of ``text`` in order, each with whether it is a run of a
    script written without spaces."""
    text = unicodedata.normalize("NFKC", text)
    shape = text.translate(_SHAPES)
    return [
        (text[m.start() : m.end()].lower(), shape[m.start()] == "c") for m in _WORD.finditer(shape)
    ]


def _pairs(run: str) -> list[str]:
    return [run[i : i + 2] for i in range(len(run) - 1)] or [run]


def words(text: str) -> list[str]:
    """The lower-case words of ``text``, identifiers split, in order, repeats kept; a run
    of a script written without spaces gives its overlapping pairs of characters."""
    found: list[str] = []
    for piece, unspaced in _pieces(text):
        found.extend(_pairs(piece) if unspaced else [piece])
    return found


def indexed_text(text: str) -> str:
    """``text`` as the index stores it: its words separated by spaces, and each character
    of a run without spaces as well as each pair, so a query of one character finds it."""
    found: list[str] = []
    for piece, unspaced in _pieces(text):
        if unspaced and len(piece) > 1:
            found.extend(piece)
        found.extend(_pairs(piece) if unspaced else [piece])
    return " ".join(found)


def _telling(word: str) -> bool:
    if word in STOPWORDS:
        return False
    return len(word) > 1 or word.isdigit() or word.translate(_SHAPES) == "c"


def query_words(text: str, limit: int = MAX_QUERY_WORDS) -> list[str]:
    """Distinct words of a query, longest first when there are more than ``limit``:
    longer words are the rarer, more telling ones."""
    every = list(dict.fromkeys(words(text)))
    telling = [w for w in every if _telling(w)]
    distinct = telling or every  # a query of only such words searches for them anyway
    if len(distinct) > limit:
        keep = set(sorted(distinct, key=len, reverse=True)[:limit])
        distinct = [w for w in distinct if w in keep]
    return distinct


def fts_query(terms: list[str]) -> str:
    """An FTS5 query matching any of ``terms``; each is quoted, so any text is valid."""
    return " OR ".join('"' + term.replace('"', '""') + '"' for term in terms)
