"""The catalogue of tether's own compliance rules and the one way to make their findings.

Each rule has a default severity (what ``tether check --fail-on`` compares) and a default
action (what the pipeline does to a completion: annotate, redact or block);
``compliance.actions`` in the settings overrides the action per rule id.
"""

from __future__ import annotations

from dataclasses import dataclass

from tether.compliance.source import Source
from tether.findings import Action, Finding, Severity, fingerprint


@dataclass(frozen=True)
class CheckRule:
    id: str
    summary: str
    severity: Severity
    action: Action


RULES: dict[str, CheckRule] = {
    rule.id: rule
    for rule in (
        CheckRule("syntax", "The code does not parse.", "error", "annotate"),
        CheckRule("encoding", "A checked file is not valid UTF-8 (nor the encoding a Python "
             "file declares); its undecodable bytes were read as U+FFFD.", "warning", "annotate"),
        CheckRule("too-large", "A file too large to parse; only the rules that read text "
             "(licences, secrets, the corpus) were run on it.", "note", "annotate"),
        CheckRule("security/eval", "Code is evaluated from a string (eval, exec, new Function).",
             "error", "annotate"),
        CheckRule("security/shell-true", "A command runs through a shell (shell=True, os.system).",
             "error", "annotate"),
        CheckRule("security/command-injection",
             "child_process.exec is given a command built from variables.", "error", "annotate"),
        CheckRule("security/unsafe-deserialization",
             "pickle or marshal data is loaded; it can run arbitrary code.", "error", "annotate"),
        CheckRule("security/yaml-load", "yaml.load without SafeLoader can build arbitrary objects.",
             "error", "annotate"),
        CheckRule("security/sql-injection",
             "A SQL statement built by string formatting from values that are not constants "
             "is executed; use query parameters.",
             "error", "annotate"),
        CheckRule("security/weak-hash",
             "MD5 or SHA-1 hashes a password; use hashlib.scrypt or argon2.", "error", "annotate"),
        CheckRule("security/tls-verify", "TLS certificate verification is turned off.",
             "error", "annotate"),
        CheckRule("security/inner-html", "HTML built from a variable is assigned to innerHTML.",
             "warning", "annotate"),
        CheckRule("unicode/bidi", "A bidirectional override, embedding or isolate control "
             "character: the code may read differently from how it runs (Trojan Source).",
             "error", "annotate"),
        CheckRule("licence/spdx", "An SPDX licence identifier.", "note", "annotate"),
        CheckRule("licence/copyleft", "A GPL, LGPL or AGPL licence marker.", "warning", "annotate"),
        CheckRule("licence/copyright", "A copyright notice.", "note", "annotate"),
        CheckRule("licence/all-rights-reserved", "An 'All rights reserved' notice.", "note",
             "annotate"),
        CheckRule("duplication/corpus", "The code reproduces a file of the indexed corpus.",
             "warning", "block"),
        CheckRule("secrets", "A hard-coded secret found by the policy scanner; the action is the "
             "policy rule's own (pseudonymize becomes redact). In an answer, a value the "
             "prompt's policy pseudonymized, put back for the client who sent it, is not one.",
             "error", "redact"),
    )
}  # fmt: skip


def rule_for(rule_id: str) -> CheckRule | None:
    """The catalogue entry of ``rule_id``; ``secrets/<id>`` findings share ``secrets``."""
    return RULES.get(rule_id) or RULES.get(rule_id.split("/", 1)[0])


def make_finding(
    rule_id: str, message: str, source: Source, start: int, end: int | None = None
) -> Finding:
    """A finding of catalogue rule ``rule_id`` over ``source.text[start:end]``.

    Its fingerprint is the sha256 of the first line's text without surrounding blanks, so
    a baseline still recognises the finding after the lines above it moved.
    """
    rule = RULES[rule_id]
    end = start if end is None else max(start, end)
    line, column = source.position(start)
    return Finding(
        rule_id=rule_id,
        message=message,
        stage="compliance",
        action=rule.action,
        severity=rule.severity,
        start=start,
        end=end,
        line=line,
        column=column,
        fingerprint=fingerprint(source.line_text(line).strip()),
    )


def check_rules_reference() -> str:
    """The Markdown table of the rules, kept in docs/check.md (a test checks it)."""
    lines = ["| rule | severity | default action | what it means |", "|---|---|---|---|"]
    for rule in RULES.values():
        name = f"`{rule.id}/<id>`" if rule.id == "secrets" else f"`{rule.id}`"
        lines.append(f"| {name} | {rule.severity} | {rule.action} | {rule.summary} |")
    return "\n".join(lines) + "\n"
