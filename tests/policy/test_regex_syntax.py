"""A regex read as its pieces: what the checks on custom rules walk."""

from __future__ import annotations

import pytest

from tether.policy.regex_syntax import pieces


@pytest.mark.parametrize(
    ("regex", "expected"),
    [
        ("a(b)", ["char:a", "char:(", "char:b", "char:)"]),
        ("\\d\\x{1F600}\\p{Greek}", ["escape:\\d", "escape:\\x{1F600}", "escape:\\p{Greek}"]),
        ("\\Q(a]\\E|", ["quote:\\Q(a]\\E", "char:|"]),
        ("[]a[:digit:]\\]](", ["class:[]a[:digit:]\\]]", "char:("]),
        ("[^]x]{2}", ["class:[^]x]", "char:{", "char:2", "char:}"]),
    ],
)
def test_a_regex_is_read_as_its_pieces(regex: str, expected: list[str]) -> None:
    assert [f"{p.kind}:{regex[p.start : p.end]}" for p in pieces(regex)] == expected


def test_a_class_or_quote_left_open_runs_to_the_end_and_says_so() -> None:
    assert [(p.kind, p.end, p.closed) for p in pieces("a[bc")] == [
        ("char", 1, True),
        ("class", 4, False),
    ]
    assert [(p.kind, p.closed) for p in pieces("\\Qab")] == [("quote", False)]
    assert [p.end for p in pieces("a\\")] == [1, 2]  # a lone backslash at the end
