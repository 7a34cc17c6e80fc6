"""What licence a distribution carries, as an SPDX expression, and where that came from.

In order: PEP 639's ``License-Expression``; the ``License`` field when it is an SPDX
expression or a common name for one (unless it names only one of the licences the
classifiers offer as a choice: uvloop says ``MIT License`` and ships under MIT or
Apache-2.0, as its classifiers say); the trove classifiers that name one licence; the
licence file shipped in the distribution, recognised by its text as the function store
recognises licence files; last, a claim of "public domain", which is no licence SPDX lists
and is named ``LicenseRef-Public-Domain``. Anything else is unknown, which the policy
refuses: a review cannot pass on a guess, so a classifier that does not say which version
of a licence (``GNU General Public License (GPL)``, ``BSD License``) names none.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tether.errors import RequestError
from tether.store.licences import expression, licensing
from tether.store.licences import identify as licence_text_id

UNKNOWN = "NOASSERTION"
# "Public domain" names no licence: what it grants depends on the jurisdiction, and some
# have no such thing. PEP 639 names it so; the policy allows it only where a team lists it.
PUBLIC_DOMAIN = "LicenseRef-Public-Domain"
_REFERENCES = ("licenseref-", "documentref-")
# Names with no version that the SPDX library reads as one ("GPL" as GPL-1.0-or-later,
# "LicenseRef-LGPL" as LGPL-2.0-or-later): a version the package never gave, so not read.
_UNVERSIONED = frozenset({"gpl", "licenseref-gpl", "licenseref-lgpl", "licenseref-agpl"})

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
    "isc license": "ISC", "isc license (iscl)": "ISC",
    # A GNU licence named with its version; "LGPL" or "GPL" alone names none, so no entry.
    "gplv3": "GPL-3.0-only", "gplv2": "GPL-2.0-only", "lgplv3": "LGPL-3.0-only",
    "agplv3": "AGPL-3.0-only", "gplv2+": "GPL-2.0-or-later", "gplv3+": "GPL-3.0-or-later",
    "lgplv2+": "LGPL-2.0-or-later", "lgplv3+": "LGPL-3.0-or-later",
    "agplv3+": "AGPL-3.0-or-later",
    "eclipse public license 2.0": "EPL-2.0", "eclipse public license - v 2.0": "EPL-2.0",
    "boost software license 1.0": "BSL-1.0",
    # SPDX's deprecated ids for the GCC runtime library's licence, as older wheels that
    # bundle it name it: SPDX now writes them as the licence (of that time: "only") WITH
    # the exception.
    "gpl-3.0-with-gcc-exception": "GPL-3.0-only WITH GCC-exception-3.1",
    "gpl-2.0-with-gcc-exception": "GPL-2.0-only WITH GCC-exception-2.0",
}  # fmt: skip
_PUBLIC_DOMAIN_NAMES = frozenset({"public domain", "public-domain", "publicdomain"})

# Trove classifiers (after "License :: ") that name one licence, from the official list
# (the trove-classifiers package). Left out, so that they name none: those PEP 639 calls
# ambiguous because they give no version or variant (AFL, Apple, Artistic, BSD License,
# FDL, "GNU General Public License (GPL)", "GNU Library or Lesser General Public License
# (LGPL)", LGPLv2, which may be 2.0 or 2.1), those whose SPDX id has several versions or
# variants (Eiffel Forum, Netscape, Qt, W3C, Zope), the generic ones (OSI Approved, DFSG
# approved, Freeware, Other/Proprietary...), GUST Font (not on SPDX's list) and Public
# Domain (no licence; see PUBLIC_DOMAIN). Read by convention, though PEP 639 calls them
# ambiguous too: "Apache Software License" as Apache-2.0, a GNU licence's "vN" classifier
# as that version only (its "vN or later" one is "-or-later", which is not ambiguous).
_CLASSIFIERS = {
    "OSI Approved :: MIT License": "MIT",
    "OSI Approved :: MIT No Attribution License (MIT-0)": "MIT-0",
    "OSI Approved :: CMU License (MIT-CMU)": "MIT-CMU",
    "OSI Approved :: Apache Software License": "Apache-2.0",
    "OSI Approved :: ISC License (ISCL)": "ISC",
    "OSI Approved :: Zero-Clause BSD (0BSD)": "0BSD",
    "OSI Approved :: Python Software Foundation License": "PSF-2.0",
    "OSI Approved :: Python License (CNRI Python License)": "CNRI-Python",
    "OSI Approved :: Historical Permission Notice and Disclaimer (HPND)": "HPND",
    "OSI Approved :: Mozilla Public License 1.0 (MPL)": "MPL-1.0",
    "OSI Approved :: Mozilla Public License 1.1 (MPL 1.1)": "MPL-1.1",
    "OSI Approved :: Mozilla Public License 2.0 (MPL 2.0)": "MPL-2.0",
    "OSI Approved :: The Unlicense (Unlicense)": "Unlicense",
    "OSI Approved :: zlib/libpng License": "Zlib",
    "OSI Approved :: Boost Software License 1.0 (BSL-1.0)": "BSL-1.0",
    "OSI Approved :: Blue Oak Model License (BlueOak-1.0.0)": "BlueOak-1.0.0",
    "OSI Approved :: PostgreSQL License": "PostgreSQL",
    "OSI Approved :: Universal Permissive License (UPL)": "UPL-1.0",
    "OSI Approved :: University of Illinois/NCSA Open Source License": "NCSA",
    "OSI Approved :: Mulan Permissive Software License v2 (MulanPSL-2.0)": "MulanPSL-2.0",
    "OSI Approved :: Educational Community License, Version 2.0 (ECL-2.0)": "ECL-2.0",
    "OSI Approved :: Attribution Assurance License": "AAL",
    "OSI Approved :: MirOS License (MirOS)": "MirOS",
    "OSI Approved :: SIL Open Font License 1.1 (OFL-1.1)": "OFL-1.1",
    "OSI Approved :: Eclipse Public License 1.0 (EPL-1.0)": "EPL-1.0",
    "OSI Approved :: Eclipse Public License 2.0 (EPL-2.0)": "EPL-2.0",
    "OSI Approved :: Common Public License": "CPL-1.0",
    "OSI Approved :: IBM Public License": "IPL-1.0",
    "OSI Approved :: Common Development and Distribution License 1.0 (CDDL-1.0)":
        "CDDL-1.0",
    "OSI Approved :: European Union Public Licence 1.0 (EUPL 1.0)": "EUPL-1.0",
    "OSI Approved :: European Union Public Licence 1.1 (EUPL 1.1)": "EUPL-1.1",
    "OSI Approved :: European Union Public Licence 1.2 (EUPL 1.2)": "EUPL-1.2",
    "OSI Approved :: CEA CNRS Inria Logiciel Libre License, version 2.1 (CeCILL-2.1)":
        "CECILL-2.1",
    "OSI Approved :: Open Software License 3.0 (OSL-3.0)": "OSL-3.0",
    "OSI Approved :: NASA Open Source Agreement v1.3 (NASA-1.3)": "NASA-1.3",
    "OSI Approved :: Sun Public License": "SPL-1.0",
    "OSI Approved :: Nokia Open Source License": "Nokia",
    "OSI Approved :: Motosoto License": "Motosoto",
    "OSI Approved :: Nethack General Public License": "NGPL",
    "OSI Approved :: Open Group Test Suite License": "OGTSL",
    "OSI Approved :: Ricoh Source Code Public License": "RSCPL",
    "OSI Approved :: Sleepycat License": "Sleepycat",
    "OSI Approved :: Vovida Software License 1.0": "VSL-1.0",
    "OSI Approved :: GNU General Public License v2 (GPLv2)": "GPL-2.0-only",
    "OSI Approved :: GNU General Public License v2 or later (GPLv2+)": "GPL-2.0-or-later",
    "OSI Approved :: GNU General Public License v3 (GPLv3)": "GPL-3.0-only",
    "OSI Approved :: GNU General Public License v3 or later (GPLv3+)": "GPL-3.0-or-later",
    "OSI Approved :: GNU Lesser General Public License v2 or later (LGPLv2+)":
        "LGPL-2.0-or-later",
    "OSI Approved :: GNU Lesser General Public License v3 (LGPLv3)": "LGPL-3.0-only",
    "OSI Approved :: GNU Lesser General Public License v3 or later (LGPLv3+)":
        "LGPL-3.0-or-later",
    "OSI Approved :: GNU Affero General Public License v3": "AGPL-3.0-only",
    "OSI Approved :: GNU Affero General Public License v3 or later (AGPLv3+)":
        "AGPL-3.0-or-later",
    "Aladdin Free Public License (AFPL)": "Aladdin",
    "CC0 1.0 Universal (CC0 1.0) Public Domain Dedication": "CC0-1.0",
    "CeCILL-B Free Software License Agreement (CECILL-B)": "CECILL-B",
    "CeCILL-C Free Software License Agreement (CECILL-C)": "CECILL-C",
    "Nokia Open Source License (NOKOS)": "Nokia",
}  # fmt: skip
_PUBLIC_DOMAIN_CLASSIFIER = "License :: Public Domain"


@dataclass(frozen=True)
class Identified:
    expression: str  # SPDX, or NOASSERTION
    source: str  # which metadata said so


def spdx(text: str) -> str | None:
    """``text`` as a valid SPDX expression with canonical ids (a licence SPDX does not list
    named ``LicenseRef-…``, as SPDX names it), or None."""
    if any(word.lower() in _UNVERSIONED for word in re.findall(r"[\w.+:-]+", text)):
        return None
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


def _one_of(licence: str, choice: str) -> bool:
    """Whether ``licence`` is one of several licences ``choice`` offers."""
    offered = choice.split(" OR ")
    return len(offered) > 1 and licence in offered


def public_domain(text: str | None) -> bool:
    """Whether a ``License`` field (or a model's declared licence) says "public domain"."""
    short = " ".join(text.split()).lower().rstrip(".") if text else ""
    return short in _PUBLIC_DOMAIN_NAMES


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
    offered = from_classifiers(classifiers)
    if license_field and (found := from_name(license_field)):
        if offered and _one_of(found, offered):
            # The field names one licence of a choice: the classifiers say it all.
            return Identified(offered, "classifiers")
        return Identified(found, "License")
    if offered:
        return Identified(offered, "classifiers")
    if license_field and (found := from_text(license_field)):
        return Identified(found, "License (text)")
    for text in licence_texts:
        if found := from_text(text):
            return Identified(found, "licence file")
    # A claim, not a licence, and often a wrong one (a package so marked that ships a
    # BSD licence file): taken only when nothing above names a licence.
    if public_domain(license_field):
        return Identified(PUBLIC_DOMAIN, "License")
    if _PUBLIC_DOMAIN_CLASSIFIER in classifiers:
        return Identified(PUBLIC_DOMAIN, "classifiers")
    return Identified(UNKNOWN, "none")
