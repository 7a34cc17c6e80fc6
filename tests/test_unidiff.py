from __future__ import annotations

from tether.unidiff import HunkHeader, parse_hunk_header


def test_a_hunk_header_is_read_in_digits_0_to_9_only() -> None:
    assert parse_hunk_header("@@ -3,2 +3 @@ def f():") == HunkHeader(3, 2, 3, 1)
    # \\d alone takes other scripts' digits, and int() reads them: no diff writes those.
    assert parse_hunk_header("@@ -\u0663,\u0662 +\u0663 @@") is None


def test_zero_context_headers_read_with_their_zero_counts() -> None:
    # `git diff -U0`: lines added at the top, after line 3, and line 1 removed.
    assert parse_hunk_header("@@ -0,0 +1,2 @@") == HunkHeader(0, 0, 1, 2)
    assert parse_hunk_header("@@ -3,0 +4 @@ def f():") == HunkHeader(3, 0, 4, 1)
    assert parse_hunk_header("@@ -1 +0,0 @@") == HunkHeader(1, 1, 0, 0)
