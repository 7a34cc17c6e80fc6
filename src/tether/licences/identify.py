"""What licence a distribution carries, as an SPDX expression, and where that came from.

In order: PEP 639's ``License-Expression``; the ``License`` field when it is an SPDX
expression or a common name for one; the trove classifiers; the licence file shipped in
the distribution, recognised by its text as the function store recognises licence files.
Anything else is unknown, which the policy refuses: a review cannot pass on a guess.
"""

from __future__ import annotations

from dataclasses import dataclass

from tether.errors import RequestError
from tether.store.licences import expression, licensing
from tether.store.licences import identify as licence_text_id

UNKNOWN = "NOASSERTION"
_REFERENCES = ("licenseref-", "documentref-")

# Free-text ``License`` values seen in the wild, lower-cased, and what they mean.
_NAMES = {
    "mit": "MIT", "mit license": "MIT", "the mit license (mit)": "MIT", "the mit license": "MIT",
    "apache 2.0": "Apache-2.0", "apache-2": "Apache-2.0", "apache 2": "Apache-2.0",
    "apache license 2.0": "Apache-2.0", "apache license, version 2.0": "Apache-2.0",
    "apache software license": "Apache-2.0", "apache license version 2.0": "Apache-2.0",
    "apache": "Apache-2.0", "apache2": "Apache-2.0",
    "bsd-3": "BSD-3-Clause", "3-clause bsd": "BSD-3-Clause", "new bsd": "BSD-3-Clause",
    "bsd 3-clause": "BSD-3-Clause", "new bsd license": "BSD-3-Clause",
    "bsd-2": "BSD-2-Clause", "2-clause bsd": "BSD-2-Clause", "simplified bsd": "BSD-2-Clause",
    "psfl": "PSF-2.0", "psf": "PSF-2.0", "psf license": "PSF-2.0", "psf-2.0": "PSF-2.0",
    "python software foundation license": "PSF-2.0",
    "mpl 2.0": "MPL-2.0", "mpl-2.0": "MPL-2.0", "mozilla public license 2.0 (mpl 2.0)": "MPL-2.0",
    "isc license": "ISC", "isc license (iscl)": "ISC", "public domain": "Unlicense",
    "lgpl": "LGPL-2.1-or-later", "gplv3": "GPL-3.0-only", "gplv2": "GPL-2.0-only",
}  # fmt: skip

# Trove classifiers (after "License :: ") that name one licence.
_CLASSIFIERS = {
    "OSI Approved :: MIT License": "MIT",
    "OSI Approved :: MIT No Attribution License (MIT-0)": "MIT-0",
    "OSI Approved :: Apache Software License": "Apache-2.0",
    "OSI Approved :: ISC License (ISCL)": "ISC",
    "OSI Approved :: Python Software Foundation License": "PSF-2.0",
    "OSI Approved :: Mozilla Public License 2.0 (MPL 2.0)": "MPL-2.0",
    "OSI Approved :: The Unlicense (Unlicense)": "Unlicense",
    "OSI Approved :: zlib/libpng License": "Zlib",
    "OSI Approved :: GNU General Public License v2 (GPLv2)": "GPL-2.0-only",
    "OSI Approved :: GNU General Public License v3 (GPLv3)": "GPL-3.0-only",
    "OSI Approved :: GNU Lesser General Public License v2 or later (LGPLv2+)":
        "LGPL-2.0-or-later",
    "OSI Approved :: GNU Lesser General Public License v3 (LGPLv3)": "LGPL-3.0-only",
    "OSI Approved :: GNU Affero General Public License v3": "AGPL-3.0-only",
    "CC0 1.0 Universal (CC0 1.0) Public Domain Dedication": "CC0-1.0",
    "Public Domain": "Unlicense",
}  # fmt: skip


@dataclass(frozen=True)
class Identified:
    expression: str  # SPDX, or NOASSERTION
    source: str  # which metadata said so


def spdx(text: str) -> str | None:
    """``text`` as a valid SPDX expression with canonical ids (a licence SPDX does not list
    named ``LicenseRef-…``, as SPDX names it), or None."""
    try:
        found = expression(text)
    except RequestError:
        return None
    unknown = licensing().unknown_license_keys(licensing().parse(found)) if found else [""]
    # expression() also keeps an id with SPDX's "+" (Apache-2.0+), which no policy names.
    return found if all(key.lower().startswith(_REFERENCES) for key in unknown) else None


def from_name(text: str) -> str | None:
    short = " ".join(text.strip().splitlines()[0].split()) if text.strip() else ""
    if not short or len(short) > 100:
        return None
    return spdx(short) or _NAMES.get(short.lower().rstrip("."))


def from_classifiers(classifiers: list[str]) -> str | None:
    found = [
        _CLASSIFIERS[c.removeprefix("License :: ")]
        for c in classifiers
        if c.removeprefix("License :: ") in _CLASSIFIERS
    ]
    unique = list(dict.fromkeys(found))
    # Several classifiers mean a choice between them, as PEP 639 reads them.
    return " OR ".join(unique) if unique else None


def from_text(text: str) -> str | None:
    """A licence's text, recognised as the function store recognises licence files."""
    found = licence_text_id(text)
    return (spdx(found) or found) if found else None


def identify(
    expression: str | None,
    license_field: str | None,
    classifiers: list[str],
    licence_texts: list[str],
) -> Identified:
    if expression and (found := spdx(expression)):
        return Identified(found, "License-Expression")
    if license_field and (found := from_name(license_field)):
        return Identified(found, "License")
    if found := from_classifiers(classifiers):
        return Identified(found, "classifiers")
    if license_field and (found := from_text(license_field)):
        return Identified(found, "License (text)")
    for text in licence_texts:
        if found := from_text(text):
            return Identified(found, "licence file")
    return Identified(UNKNOWN, "none")
