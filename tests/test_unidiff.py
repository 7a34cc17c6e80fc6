from __future__ import annotations

from tether.unidiff import HunkHeader, parse_hunk_header


def test_a_hunk_header_is_read_in_digits_0_to_9_only() -> None:
    assert parse_hunk_header("@@ -3,2 +3 @@ def f():") == HunkHeader(3, 2, 3, 1)
    # \\d alone takes other scripts' digits, and int() reads them: no diff writes those.
    assert parse_hunk_header("@@ -\u0663,\u0662 +\u0663 @@") is None
