"""Which licence a file is under: its SPDX line, else the licence file of its project.

An SPDX line is read whole, as an expression (``MIT OR Apache-2.0``, ``MIT AND
GPL-3.0-only``), with the licence ids written the canonical way. A licence file is
recognised by the phrases each licence's text is known by; one that reads like none of
them is "unknown", which the licence gate refuses: guessing a licence is how a team ends
up shipping code it may not.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

from license_expression import ExpressionError, Licensing, get_spdx_licensing

from tether.compliance.files import decode_source
from tether.errors import RequestError
from tether.textfile import file_lines

# The expression ends at any line break str.splitlines knows: the header keeps those a
# file does not end its lines at (a form feed between sections), and none is in one.
_SPDX = re.compile(r"SPDX-License-Identifier:[ \t]*([^\n\r\v\f\x1c-\x1e\x85\u2028\u2029]*)")
# What may close the comment an SPDX line sits in: C, HTML, Jinja, and string quotes.
_CLOSERS = re.compile(r"\s*(\*/|-->|#}|\"\"\"|'''|\*\))\s*$")
LICENCE_FILES = ("LICENSE", "LICENSE.txt", "LICENSE.md", "LICENCE", "COPYING", "LICENSE.rst")
HEADER_LINES = 30
_BSD = "Redistribution and use in source and binary forms"
# (SPDX id, phrases that must all appear), most specific first.
_TEXTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("AGPL-3.0", ("GNU AFFERO GENERAL PUBLIC LICENSE",)),
    ("LGPL-3.0", ("GNU LESSER GENERAL PUBLIC LICENSE", "Version 3")),
    ("LGPL-2.1", ("GNU LESSER GENERAL PUBLIC LICENSE", "Version 2.1")),
    ("LGPL-2.0", ("GNU LIBRARY GENERAL PUBLIC LICENSE", "Version 2")),
    ("GPL-3.0", ("GNU GENERAL PUBLIC LICENSE", "Version 3")),
    ("GPL-2.0", ("GNU GENERAL PUBLIC LICENSE", "Version 2")),
    ("MPL-2.0", ("Mozilla Public License", "2.0")),
    ("Apache-2.0", ("Apache License", "Version 2.0")),
    ("MIT", ("Permission is hereby granted, free of charge",)),
    # The clauses past the second, however each project words them: the advertising
    # clause (the original BSD licence, which the GPL cannot take), then the one that
    # forbids using the authors' names to promote derived products ("Neither the name
    # ...", "The names of the contributors may not be used ...").
    ("BSD-4-Clause", (_BSD, "All advertising materials mentioning features or use")),
    ("BSD-3-Clause", (_BSD, "Neither the name")),
    ("BSD-3-Clause", (_BSD, "to endorse or promote products derived from this software")),
    ("BSD-2-Clause", (_BSD,)),
    ("ISC", ("Permission to use, copy, modify, and/or distribute this software",)),
    ("Unlicense", ("This is free and unencumbered software released into the public domain",)),
    ("PSF-2.0", ("PYTHON SOFTWARE FOUNDATION LICENSE VERSION 2",)),
)
# These texts name one another (the MPL the GNU licences it is compatible with, the GPL
# the LGPL and the AGPL): among them, a text is the one whose name comes first.
_CITING = frozenset({"AGPL-3.0", "LGPL-3.0", "LGPL-2.1", "LGPL-2.0", "GPL-3.0", "GPL-2.0",
                     "MPL-2.0"})  # fmt: skip


# An AND, OR or WITH with nothing after it, which the parser drops without a word.
_DANGLING = re.compile(r"(?:^|[\s(])(?:AND|OR|WITH)\s*(?:\)|$)", re.IGNORECASE)
_OWN_IDS = ("licenseref-", "documentref-")


@cache
def licensing() -> Licensing:
    return get_spdx_licensing()


def expression(text: str) -> str:
    """``text`` as an SPDX expression with canonical ids (``mit or gpl-3.0`` → ``MIT OR
    GPL-3.0-only``); a team's own ids (``LicenseRef-…``) are kept as written. RequestError
    for anything else: an id SPDX does not list, a licence where an exception goes or the
    other way round, or an operator without its licence (which the parser would drop,
    storing less than was written)."""
    written = text.strip()
    try:
        if _DANGLING.search(written):
            raise ExpressionError("an AND, OR or WITH has no licence after it")
        try:  # strict: MIT WITH GPL-3.0-only is no exception clause
            parsed = licensing().parse(written, strict=True)
        except ExpressionError:
            raise
        except Exception as exc:  # the parser fails on some shapes, such as "()"
            raise ExpressionError(f"it does not parse ({type(exc).__name__})") from exc
        unknown = [key for key in _keys(parsed) if not _known(key)]
        if unknown:
            raise ExpressionError(
                f"{', '.join(unknown)} is not on SPDX's list; name your own licence LicenseRef-NAME"
            )
    except ExpressionError as exc:
        raise RequestError(
            f"{written!r} is not an SPDX licence expression ({exc}); write ids as on "
            "https://spdx.org/licenses joined by AND, OR, WITH, e.g. 'MIT OR Apache-2.0'",
            param="licence",
        ) from exc
    return "" if parsed is None else str(parsed)


def _keys(parsed: object) -> list[str]:
    return licensing().unknown_license_keys(parsed) if parsed is not None else []


def _known(key: str) -> bool:
    """A team's own id, or a listed one with SPDX's "or later" ``+`` (``Apache-2.0+``)."""
    if key.lower().startswith(_OWN_IDS):
        return True
    return key.endswith("+") and not _keys(licensing().parse(key[:-1]))


def spdx_in(code: str) -> str:
    """The SPDX expression in the first lines of ``code``, or "". One that does not parse
    is kept as written, for the licence gate to refuse with the reason. Lines are counted
    as the file's own: a form feed between sections does not end one."""
    header = "\n".join(file_lines(code)[:HEADER_LINES])
    match = _SPDX.search(header)
    if not match:
        return ""
    written = _CLOSERS.sub("", match.group(1)).strip()
    try:
        return expression(written)
    except RequestError:
        return written


def identify(text: str) -> str:
    """The SPDX id of a licence text, or "" when it reads like none tether knows."""
    spdx = spdx_in(text)
    if spdx:
        return spdx
    flat = " ".join(text.split()).lower()
    found = [
        (flat.find(phrases[0].lower()), spdx_id)
        for spdx_id, phrases in _TEXTS
        if all(p.lower() in flat for p in phrases)
    ]
    citing = [match for match in found if match[1] in _CITING]
    if citing:
        return min(citing, key=lambda match: match[0])[1]
    return found[0][1] if found else ""


def licence_of(path: Path, code: str, stop_at: Path | None = None) -> str:
    """The file's SPDX line, else the first licence file in its folder or those above
    it, up to ``stop_at`` (the repository or the folder being imported)."""
    spdx = spdx_in(code)
    if spdx:
        return spdx
    folder = path.parent.resolve()
    return _folder_licence(folder, (stop_at or folder).resolve())


@cache
def _folder_licence(folder: Path, top: Path) -> str:
    while True:
        for name in LICENCE_FILES:
            candidate = folder / name
            if candidate.is_file():
                # UTF-8 whatever the locale (under C a no-break space in a phrase hid
                # it), or UTF-16 or -32 after their mark, as PowerShell writes it; a byte
                # that does not decode (Latin-1 files) becomes U+FFFD, and the licence is
                # still known by its phrases, not refused as "not text".
                return identify(decode_source(candidate.read_bytes()).text)
        if folder == top or folder.parent == folder or top not in folder.parents:
            return ""
        folder = folder.parent
