"""`tether complete --line/--col`: the cursor lands where the editor shows it."""

from __future__ import annotations

import pytest

from tether.cli.generate import split_at_cursor
from tether.errors import RequestError


@pytest.mark.parametrize("separator", ["\f", "\v", "\x1c", "\x85", "\u2028", "\u2029"])
def test_only_line_feeds_and_carriage_returns_end_a_line(separator: str) -> None:
    source = f"x = 1\n{separator}\ns = 'a{separator}b'\ndef f():\n    return \n"
    before, after = split_at_cursor(source, 5, 12)
    assert before.endswith("    return ") and after == "\n"


@pytest.mark.parametrize("ending", ["\n", "\r\n", "\r"])
def test_each_line_ending_counts_one_line(ending: str) -> None:
    source = ending.join(["a = 1", "b = 2", "c"]) + ending
    assert split_at_cursor(source, 2, 3) == (f"a = 1{ending}b ", f"= 2{ending}c{ending}")
    assert split_at_cursor(source, 4, 1) == (source, "")  # the line after the last ending
    with pytest.raises(RequestError, match="past the end of line 3"):
        split_at_cursor(source, 3, 3)
    with pytest.raises(RequestError, match="past the end of the file: its last line is 4"):
        split_at_cursor(source, 5, 1)
    with pytest.raises(RequestError, match="past the end of the file: its last line is 1"):
        split_at_cursor("", 2, 1)  # an empty file: one line, with nothing on it


def test_columns_count_characters_and_the_help_says_so() -> None:
    """An editor's LSP column counts UTF-16 units and vim's counts bytes: --col counts
    characters, which its help did not say (an emoji is one, not two or four)."""
    from click.testing import CliRunner

    from tether.cli.main import cli

    assert split_at_cursor("s = '😀x'\n", 1, 8) == ("s = '😀x", "'\n")
    with pytest.raises(RequestError, match=r"past the end of line 1 \(1 character\)"):
        split_at_cursor("\t\n", 1, 5)
    shown = CliRunner().invoke(cli, ["complete", "--help"]).output
    assert "in characters" in " ".join(shown.split())
