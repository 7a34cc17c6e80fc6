"""Findings in files, and the text, JSON and GitHub-annotation reports of ``tether check``.

SARIF lives in :mod:`tether.compliance.sarif`.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tether.findings import Finding, Severity

SEVERITY_RANK: dict[str, int] = {"note": 1, "warning": 2, "error": 3}
_GITHUB_LEVEL: dict[Severity, str] = {"error": "error", "warning": "warning", "note": "notice"}


@dataclass(frozen=True)
class FileFinding:
    """A finding in a file: tether's own (tool ``tether``) or ruff's, bandit's, semgrep's."""

    path: str  # relative to the working directory when inside it, POSIX separators
    finding: Finding
    tool: str = "tether"
    help_uri: str = ""

    def as_record(self) -> dict[str, Any]:
        record = {"path": self.path, "tool": self.tool, **self.finding.as_record()}
        if self.help_uri:
            record["help_uri"] = self.help_uri
        return record


def summary(findings: Sequence[FileFinding]) -> dict[str, int]:
    counts = Counter(f.finding.severity for f in findings)
    return {severity: counts.get(severity, 0) for severity in ("error", "warning", "note")}


def render_text(findings: Sequence[FileFinding]) -> str:
    lines = [
        f"{f.path}:{f.finding.line}:{f.finding.column}: {f.finding.severity} "
        f"[{f.finding.rule_id}] {f.finding.message}"
        for f in findings
    ]
    counts = summary(findings)
    if findings:
        parts = [f"{n} {severity}{'s' if n != 1 else ''}" for severity, n in counts.items() if n]
        lines.append(
            f"{len(findings)} finding{'s' if len(findings) != 1 else ''}: " + ", ".join(parts)
        )
    else:
        lines.append("no findings")
    return "\n".join(lines) + "\n"


def render_json(findings: Sequence[FileFinding]) -> str:
    payload = {
        "version": 1,
        "findings": [f.as_record() for f in findings],
        "summary": summary(findings),
    }
    return json.dumps(payload, indent=2) + "\n"


def _escape_data(value: str) -> str:
    return value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(value: str) -> str:
    return _escape_data(value).replace(":", "%3A").replace(",", "%2C")


def render_github(findings: Sequence[FileFinding]) -> str:
    """GitHub Actions workflow commands, which the runner shows as annotations on the diff."""
    lines = []
    for f in findings:
        properties = [f"file={_escape_property(f.path)}"]
        if f.finding.line:
            properties.append(f"line={f.finding.line}")
            if f.finding.column:
                properties.append(f"col={f.finding.column}")
        properties.append(f"title={_escape_property(f.finding.rule_id)}")
        level = _GITHUB_LEVEL[f.finding.severity]
        lines.append(f"::{level} {','.join(properties)}::{_escape_data(f.finding.message)}")
    return "".join(line + "\n" for line in lines)
