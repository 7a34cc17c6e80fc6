"""Licence and copyright markers: a sign that code was copied from somewhere with terms.

In generated code an SPDX line, a copyright notice or a GPL header means the model is
reproducing a file it saw in training; copyleft markers weigh more (warning, not note).
"""

from __future__ import annotations

import re

from tether.compliance.rules import make_finding
from tether.compliance.source import Source
from tether.findings import Finding

_SPDX = re.compile(r"SPDX-License-Identifier:\s*(?P<id>[A-Za-z0-9.+\-() ]+?)\s*(?:\*/|-->|$)", re.M)
_COPYLEFT_ID = re.compile(r"\b(?:A|L)?GPL\b|\bGFDL\b", re.IGNORECASE)
_COPYLEFT_TEXT = re.compile(
    r"GNU\s+(?:Affero\s+|Lesser\s+|Library\s+)?General\s+Public\s+License"
    r"|\b(?:A|L)?GPL(?:-?v?[123](?:\.[01])?(?:\+|-only|-or-later)?)(?![\w.])"
)
_COPYRIGHT = re.compile(r"\bCopyright\s*(?:\(c\)|©|\d{4})", re.IGNORECASE)
_ALL_RIGHTS = re.compile(r"\ball\s+rights\s+reserved\b", re.IGNORECASE)
# One search decides whether any of the above can match, so clean code costs one pass.
_ANY = re.compile(r"SPDX|GPL|GNU|copyright|rights\s+reserved", re.IGNORECASE)


def scan_licence(source: Source) -> list[Finding]:
    """One finding per marker; an SPDX line naming a GPL licence is reported as copyleft."""
    text = source.text
    if not _ANY.search(text):
        return []
    findings: list[Finding] = []
    spdx_lines: set[int] = set()
    for match in _SPDX.finditer(text):
        licence = match.group("id").strip()
        spdx_lines.add(source.position(match.start())[0])
        if _COPYLEFT_ID.search(licence):
            rule, message = "licence/copyleft", f"SPDX identifier of a copyleft licence: {licence}"
        else:
            rule, message = "licence/spdx", f"SPDX licence identifier: {licence}"
        findings.append(make_finding(rule, message, source, match.start(), match.end()))
    for match in _COPYLEFT_TEXT.finditer(text):
        if source.position(match.start())[0] in spdx_lines:
            continue
        findings.append(
            make_finding(
                "licence/copyleft",
                f"copyleft licence text ({' '.join(match.group().split())})",
                source,
                match.start(),
                match.end(),
            )
        )
    for pattern, rule, message in (
        (_COPYRIGHT, "licence/copyright", "copyright notice"),
        (_ALL_RIGHTS, "licence/all-rights-reserved", "'All rights reserved' notice"),
    ):
        findings.extend(
            make_finding(rule, message, source, m.start(), m.end()) for m in pattern.finditer(text)
        )
    return sorted(findings, key=lambda f: f.start)
