"""A project's licence file is read as UTF-8 (or UTF-16 or -32 after their mark) whatever
the locale; a file's SPDX line is looked for in its first lines as the file counts them."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import python_under_the_c_locale
from tether.store.licences import HEADER_LINES, licence_of, spdx_in

# As a web page copies it: a no-break space (two bytes in UTF-8) between two words of the
# phrase the licence is known by, and a copyright holder's name beyond ASCII.
MIT = (
    "MIT License\n\nCopyright (c) 2024 Jos\u00e9 N\u00fa\u00f1ez\n\n"
    "Permission is hereby granted,\u00a0free of charge, to any person obtaining a copy\n"
)
FIND = (
    "from pathlib import Path\nfrom tether.store.licences import licence_of\n"
    "print(licence_of(Path('s.py'), ''))\n"
)


def test_a_licence_file_beyond_ascii_is_identified_under_the_c_locale(tmp_path: Path) -> None:
    """Under the C locale (UTF-8 mode off) the file was read as ASCII: the no-break space
    became two replacement characters, the phrase was not found, and the project's code
    was "unknown", which the licence gate refuses."""
    (tmp_path / "LICENSE").write_bytes(MIT.encode("utf-8"))
    status, out, err = python_under_the_c_locale(FIND, tmp_path)
    assert (status, out) == (0, "MIT\n"), err


def test_a_licence_file_that_is_not_utf8_is_read_with_its_odd_bytes_replaced(
    tmp_path: Path,
) -> None:
    # Latin-1, as older projects saved it: the bytes it cannot read are replaced, and the
    # licence is still known by its phrases, as it was.
    (tmp_path / "sub").mkdir()
    (tmp_path / "LICENSE").write_bytes(MIT.replace("\u00a0", " ").encode("latin-1"))
    assert licence_of(tmp_path / "sub" / "s.py", "", tmp_path) == "MIT"


def test_a_licence_file_in_utf16_is_identified(tmp_path: Path) -> None:
    """Windows PowerShell 5.1 writes UTF-16 (`Out-File`, `>`): read as UTF-8, every other
    byte was NUL and no phrase was found."""
    (tmp_path / "LICENSE").write_bytes(MIT.encode("utf-16"))
    assert licence_of(tmp_path / "s.py", "", tmp_path) == "MIT"


def test_the_spdx_line_is_found_in_the_first_lines_however_many_form_feeds_they_hold() -> None:
    # Emacs and GNU sources split sections with form feeds, on lines of their own or not:
    # each counted as a line end pushed the SPDX line out of the header read.
    sections = "".join(f"# section {n}\x0c\n" for n in range(HEADER_LINES - 2))
    code = sections + "# SPDX-License-Identifier: MIT\nx = 1\n"
    assert spdx_in(code) == "MIT"
    assert spdx_in("\n" * HEADER_LINES + "# SPDX-License-Identifier: MIT\n") == ""


def test_the_spdx_expression_ends_where_a_line_separator_is() -> None:
    # Counted as the file's own lines, a line holds what str.splitlines would end it at;
    # no expression does, so the expression ends there as it did, not at the newline.
    for breaker in ("\x0c", "\x0b", "\x85", "\u2028", "\u2029", "\x1c"):
        code = f"# SPDX-License-Identifier: MIT{breaker}# Copyright Ada\nx = 1\n"
        assert spdx_in(code) == "MIT", repr(breaker)
