"""Bidirectional controls in code: "Trojan Source" (CVE-2021-42574).

An override or isolate control reorders how the text around it is shown, so a reviewer
reads ``if level != 'none' and level != 'user':`` where the interpreter runs a single
comparison with a string that holds the rest. Marks (U+200E, U+200F, U+061C) are left
alone: localized strings use them, and alone they reorder nothing that a reviewer reads
as code.
"""

from __future__ import annotations

import re

from tether.compliance.rules import make_finding
from tether.compliance.source import Source
from tether.findings import Finding

_CONTROLS = re.compile("[\u202a-\u202e\u2066-\u2069]+")
MAX_BIDI_FINDINGS = 20  # one file full of them needs no more to be looked at


def scan_bidi(source: Source) -> list[Finding]:
    """One finding per run of bidirectional override, embedding or isolate controls."""
    findings = []
    for match in _CONTROLS.finditer(source.text):
        named = ", ".join(f"U+{ord(c):04X}" for c in dict.fromkeys(match.group()))
        message = (
            f"bidirectional control character ({named}): the code may read differently "
            "from how it runs; remove it, or write it as an escape in the string"
        )
        findings.append(make_finding("unicode/bidi", message, source, match.start(), match.end()))
        if len(findings) == MAX_BIDI_FINDINGS:
            break
    return findings
