from __future__ import annotations

import pytest

from tether.store.text import indexed_text, query_words, words


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("parseISODate2", ["parse", "iso", "date", "2"]),  # identifiers split as before
        ("über_straße", ["über", "straße"]),  # a letter is a letter in any script
        ("ДанныеКлиента", ["данные", "клиента"]),  # and case splits identifiers there too
        ("हिन्दी पाठ", ["हिन्दी", "पाठ"]),  # combining marks stay in their word
        ("日本語", ["日本", "本語"]),  # a run without spaces gives its pairs
        ("ﬁle", ["file"]),  # compatibility forms read as what they stand for
    ],
)
def test_words_of_any_script(text: str, expected: list[str]) -> None:
    assert words(text) == expected


def test_the_index_keeps_each_character_of_a_run_and_a_query_asks_for_pairs() -> None:
    assert indexed_text("x 和暦") == "x 和 暦 和暦"
    assert query_words("和暦 and 字") == ["和暦", "字"]  # one character tells, unlike "a"
