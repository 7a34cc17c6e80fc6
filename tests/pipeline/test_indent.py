"""IndentLimit: llama.cpp's n_indent, fed an answer in pieces as an engine sends it."""

from __future__ import annotations

import pytest

from tether.pipeline.indent import IndentLimit


def fed(minimum: int, pieces: list[str]) -> tuple[str, bool]:
    limit = IndentLimit(minimum)
    kept = "".join(limit.feed(piece) for piece in pieces)
    return kept, limit.ended


def test_lines_indented_enough_all_pass() -> None:
    answer = "total = 0\n    for x in xs:\n        total += x\n    return total\n"
    assert fed(4, [answer]) == (answer, False)


def test_the_first_line_is_exempt() -> None:
    # It continues the cursor's line, which already has its indentation.
    assert fed(8, ["x = 1\n        y = 2"]) == ("x = 1\n        y = 2", False)


def test_the_answer_ends_before_the_first_line_that_leaves_the_block() -> None:
    answer = "a = 1\n    b = 2\nprint(b)\n    c = 3\n"
    assert fed(4, [answer]) == ("a = 1\n    b = 2\n", True)


def test_the_cut_keeps_the_short_indentation_as_llama_cpp_does() -> None:
    assert fed(8, ["a\n        b\n    c\n"]) == ("a\n        b\n    ", True)


def test_a_blank_line_ends_the_answer() -> None:
    assert fed(4, ["a = 1\n    b = 2\n\n    c = 3\n"]) == ("a = 1\n    b = 2\n", True)


def test_tabs_count_as_one_each() -> None:
    assert fed(2, ["a\n\t\tb\n\tc"]) == ("a\n\t\tb\n\t", True)


@pytest.mark.parametrize("size", [1, 2, 3, 5])
def test_pieces_split_anywhere_give_the_same_cut(size: int) -> None:
    answer = "a = 1\n    b = 2\n  c = 3\n    d = 4\n"
    pieces = [answer[i : i + size] for i in range(0, len(answer), size)]
    assert fed(4, pieces) == ("a = 1\n    b = 2\n  ", True)


def test_nothing_more_is_kept_once_ended() -> None:
    limit = IndentLimit(4)
    assert limit.feed("a\nb") == "a\n"
    assert limit.feed("    c\n") == ""
    assert limit.ended


def test_a_line_still_being_indented_is_not_judged_yet() -> None:
    limit = IndentLimit(4)
    assert limit.feed("a\n  ") == "a\n  "  # two spaces so far: more may follow
    assert not limit.ended
    assert limit.feed("  b") == "  b"
