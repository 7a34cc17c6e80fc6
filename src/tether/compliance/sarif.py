"""SARIF 2.1.0 output, the format GitHub code scanning and most CI dashboards read.

One run, tool ``tether``; ruff, bandit and semgrep results appear as rules
``ruff/<code>``, ``bandit/<id>`` and ``semgrep/<id>`` of that run. Each result carries a
partial fingerprint (sha256 of its line's text) so code scanning follows it across edits.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import quote

from tether import __version__
from tether.compliance.report import FileFinding, NotChecked, name_bytes
from tether.compliance.rules import rule_for

SCHEMA_URI = "https://json.schemastore.org/sarif-2.1.0.json"
SARIF_VERSION = "2.1.0"


def _artifact(path: str) -> dict[str, str]:
    """Paths inside the checked tree are relative to %SRCROOT%, others are file URIs.

    The file name's own bytes are percent-encoded (RFC 3986), so a name that is not UTF-8
    still has a URI.
    """
    uri = quote(name_bytes(path))
    if PurePosixPath(path).is_absolute():
        return {"uri": "file://" + uri}
    return {"uri": uri, "uriBaseId": "%SRCROOT%"}


def _rule(item: FileFinding) -> dict[str, Any]:
    known = rule_for(item.finding.rule_id) if item.tool == "tether" else None
    summary = known.summary if known else item.finding.message
    descriptor: dict[str, Any] = {
        "id": item.finding.rule_id,
        "shortDescription": {"text": summary},
        "defaultConfiguration": {
            "level": known.severity if known else item.finding.severity,
        },
        "properties": {"tool": item.tool},
    }
    if item.help_uri:
        descriptor["helpUri"] = item.help_uri
    return descriptor


def _result(item: FileFinding, rule_index: int) -> dict[str, Any]:
    finding = item.finding
    result: dict[str, Any] = {
        "ruleId": finding.rule_id,
        "ruleIndex": rule_index,
        "level": finding.severity,
        "message": {"text": finding.message},
        "locations": [
            {
                "physicalLocation": {
                    "artifactLocation": _artifact(item.path),
                    "region": {
                        "startLine": max(finding.line, 1),
                        "startColumn": max(finding.column, 1),
                    },
                }
            }
        ],
    }
    if finding.fingerprint:
        result["partialFingerprints"] = {"tetherLineHash/v1": finding.fingerprint}
    return result


def _notification(item: NotChecked) -> dict[str, Any]:
    """A file a tool did not check: a tool execution notification of the run."""
    return {
        "level": "note",
        "message": {"text": f"not checked by {item.tool}: {item.why}"},
        "locations": [{"physicalLocation": {"artifactLocation": _artifact(item.path)}}],
        "properties": {"tool": item.tool},
    }


def sarif_log(
    findings: Sequence[FileFinding], *, not_checked: Sequence[NotChecked] = ()
) -> dict[str, Any]:
    """The log; ``not_checked`` (files a tool did not check) become notifications of the
    run's invocation, as SARIF places what a tool could not do."""
    rules: dict[str, int] = {}
    descriptors: list[dict[str, Any]] = []
    results = []
    for item in findings:
        index = rules.get(item.finding.rule_id)
        if index is None:
            index = rules[item.finding.rule_id] = len(descriptors)
            descriptors.append(_rule(item))
        results.append(_result(item, index))
    run: dict[str, Any] = {
        "tool": {
            "driver": {
                "name": "tether",
                "version": __version__,
                "rules": descriptors,
            }
        },
        "columnKind": "unicodeCodePoints",
        "results": results,
    }
    if not_checked:
        run["invocations"] = [
            {
                "executionSuccessful": True,
                "toolExecutionNotifications": [_notification(item) for item in not_checked],
            }
        ]
    return {"$schema": SCHEMA_URI, "version": SARIF_VERSION, "runs": [run]}


def render_sarif(findings: Sequence[FileFinding], *, not_checked: Sequence[NotChecked] = ()) -> str:
    return json.dumps(sarif_log(findings, not_checked=not_checked), indent=2) + "\n"
