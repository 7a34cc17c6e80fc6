"""Findings in files, and the text, JSON and GitHub-annotation reports of ``tether check``.

SARIF lives in :mod:`tether.compliance.sarif`.

A file name is kept as Python reads it from the system: bytes that are not UTF-8 become
lone surrogates (``surrogateescape``), so the name still leads back to its file. The
reports show such a name, or one with a control character (a newline would split a text
report's line), quoted as git quotes names: in double quotes, with C escapes and octal
for each byte that is not UTF-8 (``"key_\\377.py"``), which ``git`` users can read back;
JSON also gives the name's bytes, base64, in ``path_base64``. SARIF percent-encodes them.
"""

from __future__ import annotations

import base64
import json
import os
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from tether.findings import Finding, Severity

SEVERITY_RANK: dict[str, int] = {"note": 1, "warning": 2, "error": 3}
# The lines of each report, told apart from any other file (``written_by_check``).
_TEXT_FINDING = re.compile(r".+:\d+:\d+: (?:error|warning|note) \[[^\]]+\] .*")
_TEXT_SUMMARY = re.compile(r"no findings(?: \(.+\))?|\d+ findings?: .+")
_GITHUB_LINE = re.compile(r"::(?:error|warning|notice) file=.+::.*")
_GITHUB_LEVEL: dict[Severity, str] = {"error": "error", "warning": "warning", "note": "notice"}


@dataclass(frozen=True)
class FileFinding:
    """A finding in a file: tether's own (tool ``tether``) or ruff's, bandit's, semgrep's."""

    path: str  # relative to the working directory when inside it, POSIX separators
    finding: Finding
    tool: str = "tether"
    help_uri: str = ""

    def as_record(self) -> dict[str, Any]:
        """The JSON report's record; ``path_base64`` only for a name that is not UTF-8."""
        record: dict[str, Any] = {**path_record(self.path), "tool": self.tool}
        record.update(self.finding.as_record())
        if self.help_uri:
            record["help_uri"] = self.help_uri
        return record


@dataclass(frozen=True)
class NotChecked:
    """A file that one of the tools did not check, though tether's own rules did, and why
    (ruff leaves out the files its settings exclude)."""

    path: str  # as a finding's
    tool: str
    why: str

    def as_record(self) -> dict[str, str]:
        return {**path_record(self.path), "tool": self.tool, "why": self.why}


# A finding or a file a tool left out: what is named by a path, renamed in one pass.
Named = TypeVar("Named", FileFinding, NotChecked)


def path_record(path: str) -> dict[str, str]:
    """A file's name in the JSON report: ``path``, its bytes read as UTF-8 whatever the
    locale reads names in (the report is UTF-8), and ``path_base64`` (its bytes) only for
    a name that is not UTF-8, which ``path`` then shows quoted."""
    raw = name_bytes(path)
    name = raw.decode("utf-8", "surrogateescape")
    if _is_unicode(name):
        return {"path": name}
    return {"path": shown_path(name), "path_base64": base64.b64encode(raw).decode("ascii")}


_C_ESCAPES = {"\a": "\\a", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\v": "\\v", "\f": "\\f"}
_C_ESCAPES |= {"\r": "\\r", '"': '\\"', "\\": "\\\\"}


def name_bytes(name: str) -> bytes:
    """The bytes of a file name as the system spells it (``os.fsencode``), or its UTF-8
    with any surrogate that stands for no byte kept as such."""
    try:
        return os.fsencode(name)
    except UnicodeEncodeError:
        return name.encode("utf-8", "surrogatepass")


def _is_unicode(name: str) -> bool:
    """Whether ``name`` holds no lone surrogate: no byte that did not decode."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _needs_quotes(name: str) -> bool:
    return (
        name.startswith('"')
        or not _is_unicode(name)
        or any(ord(char) < 0x20 or char == "\x7f" for char in name)
    )


def shown_path(path: str) -> str:
    """``path`` as the text reports show it: as it is, unless it holds a byte that is not
    UTF-8 or a control character, or starts with a double quote; then quoted as git quotes
    names, so that a name shown bare is always the name itself."""
    if not _needs_quotes(path):
        return path
    out = []
    for char in path:
        if char in _C_ESCAPES:
            out.append(_C_ESCAPES[char])
        elif ord(char) < 0x20 or char == "\x7f" or "\ud800" <= char <= "\udfff":
            out.extend(f"\\{byte:03o}" for byte in name_bytes(char))
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def summary(findings: Sequence[FileFinding]) -> dict[str, int]:
    counts = Counter(f.finding.severity for f in findings)
    return {severity: counts.get(severity, 0) for severity in ("error", "warning", "note")}


def _not_checked_count(not_checked: Sequence[NotChecked]) -> str:
    """What the summary line says of the files a tool left out: a report read alone (an
    --output file) must not pass for one of files every tool checked."""
    if not not_checked:
        return ""
    parts = []
    for tool, count in Counter(item.tool for item in not_checked).items():
        parts.append(f"{count} file{'s' if count != 1 else ''} not checked by {tool}")
    return f" ({', '.join(parts)}, which its settings exclude: see the notes on stderr)"


def render_text(findings: Sequence[FileFinding], *, not_checked: Sequence[NotChecked] = ()) -> str:
    lines = [
        f"{shown_path(f.path)}:{f.finding.line}:{f.finding.column}: {f.finding.severity} "
        f"[{f.finding.rule_id}] {f.finding.message}"
        for f in findings
    ]
    counts = summary(findings)
    if findings:
        parts = [f"{n} {severity}{'s' if n != 1 else ''}" for severity, n in counts.items() if n]
        lines.append(
            f"{len(findings)} finding{'s' if len(findings) != 1 else ''}: "
            + ", ".join(parts)
            + _not_checked_count(not_checked)
        )
    else:
        lines.append("no findings" + _not_checked_count(not_checked))
    return "\n".join(lines) + "\n"


def render_json(
    findings: Sequence[FileFinding],
    skipped: Sequence[tuple[str, str]] = (),
    *,
    not_checked: Sequence[NotChecked] = (),
) -> str:
    """The JSON report; ``skipped``: the files of folders not checked (path, why);
    ``not_checked``: the files a tool did not check."""
    payload = {
        "version": 1,
        "findings": [f.as_record() for f in findings],
        "summary": summary(findings),
        "skipped": [{**path_record(path), "why": why} for path, why in skipped],
        "not_checked_by_tools": [item.as_record() for item in not_checked],
    }
    return json.dumps(payload, indent=2) + "\n"


def _escape_data(value: str) -> str:
    return value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(value: str) -> str:
    return _escape_data(value).replace(":", "%3A").replace(",", "%2C")


def _github_path(path: str) -> str:
    """``path`` as GitHub finds the file: its bytes read as UTF-8, as the runner reads
    them, whatever the locale reads names in (Latin-1 reads the UTF-8 of é as two other
    characters); a tab or a quote in it too (escaped as a property is); quoted as git
    quotes names only where it is not UTF-8, which a workflow command cannot carry (nor
    GitHub place)."""
    name = name_bytes(path).decode("utf-8", "surrogateescape")
    return name if _is_unicode(name) else shown_path(name)


def render_github(
    findings: Sequence[FileFinding], *, not_checked: Sequence[NotChecked] = ()
) -> str:
    """GitHub Actions workflow commands, which the runner shows as annotations on the diff;
    a notice for each file a tool did not check."""
    lines = []
    for f in findings:
        properties = [f"file={_escape_property(_github_path(f.path))}"]
        if f.finding.line:
            properties.append(f"line={f.finding.line}")
            if f.finding.column:
                properties.append(f"col={f.finding.column}")
        properties.append(f"title={_escape_property(f.finding.rule_id)}")
        level = _GITHUB_LEVEL[f.finding.severity]
        lines.append(f"::{level} {','.join(properties)}::{_escape_data(f.finding.message)}")
    for item in not_checked:
        title = f"not checked by {item.tool}"
        lines.append(
            f"::notice file={_escape_property(_github_path(item.path))},"
            f"title={_escape_property(title)}::{_escape_data(item.why)}"
        )
    return "".join(line + "\n" for line in lines)


def written_by_check(text: str) -> bool:
    """Whether ``text`` is a report or a baseline as ``tether check`` writes them, which a
    new run may write over; any other file is the project's own."""
    if not text.strip():
        return True  # nothing to lose; a GitHub report without findings is empty
    if text.lstrip().startswith("{"):
        try:
            return _tethers_json(json.loads(text))
        except ValueError:
            pass  # a text report whose first path begins with "{"
    # Lines as the reports end them: a name may hold U+2028, which splitlines() breaks at.
    lines = text.removesuffix("\n").split("\n")
    if all(_GITHUB_LINE.fullmatch(line) for line in lines):
        return True
    return bool(_TEXT_SUMMARY.fullmatch(lines[-1])) and all(
        _TEXT_FINDING.fullmatch(line) for line in lines[:-1]
    )


def _tethers_json(payload: Any) -> bool:
    """A JSON report or a baseline (version 1, findings), or SARIF from tether."""
    if not isinstance(payload, dict):
        return False
    if payload.get("version") == 1 and isinstance(payload.get("findings"), list):
        return True
    runs = payload.get("runs")
    return (
        isinstance(runs, list) and bool(runs) and all(_tool_name(run) == "tether" for run in runs)
    )


def _tool_name(run: Any) -> Any:
    for key in ("tool", "driver", "name"):
        if not isinstance(run, dict):
            return None
        run = run.get(key)
    return run
