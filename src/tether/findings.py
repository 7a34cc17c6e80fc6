"""What the policy scanner and the compliance checks report, in one shape.

A finding never carries the matched text itself, only where it is and a fingerprint
(sha256 of the value), so findings can go to traces, logs and SARIF without leaking it.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from typing import Any, Literal

# block: refuse the request or answer; redact: replace the match; pseudonymize: replace it
# with a stable placeholder restored in the answer; annotate: report only; allow: ignore.
Action = Literal["block", "redact", "pseudonymize", "annotate", "allow"]
Severity = Literal["error", "warning", "note"]
Stage = Literal["policy", "compliance"]


def fingerprint(value: str) -> str:
    """The allow-list key of a matched value: its sha256, hex."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Finding:
    rule_id: str
    message: str
    stage: Stage
    action: Action
    severity: Severity = "warning"
    start: int = 0  # character offsets into the scanned text
    end: int = 0
    line: int = 0  # 1-based position of ``start``; 0 when unknown
    column: int = 0
    fingerprint: str = ""

    def as_record(self) -> dict[str, Any]:
        return asdict(self)
