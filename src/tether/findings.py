"""What the policy scanner and the compliance checks report, in one shape.

A finding never carries the matched text itself, only where it is and a fingerprint
(sha256 of the value), so findings can go to traces, logs and SARIF without leaking it.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from typing import Any, Literal, get_args

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

    def __post_init__(self) -> None:
        # A plugin's finding goes into answers and signed audit records as it is made: one
        # with an action tether does not know ("BLOCK") would block nothing, silently.
        for name, kind in (("stage", Stage), ("action", Action), ("severity", Severity)):
            value = getattr(self, name)
            if value not in get_args(kind):
                allowed = ", ".join(get_args(kind))
                raise ValueError(f"a finding's {name} is one of {allowed}, not {value!r}")
        for name in ("start", "end", "line", "column"):
            if type(getattr(self, name)) is not int:
                raise ValueError(
                    f"a finding's {name} is a whole number, not {getattr(self, name)!r}"
                )
        if not isinstance(self.rule_id, str) or not isinstance(self.message, str):
            raise ValueError("a finding's rule_id and message are text")

    def as_record(self) -> dict[str, Any]:
        return asdict(self)
