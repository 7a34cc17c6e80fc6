"""The built-in compliance checks on every answer: syntax, security, licence, duplication.

FIM and completion answers are checked as they would stand in the file; chat answers
have each fenced code block checked. ``compliance.actions`` decides what a finding does:
annotate (reported), redact (the line becomes a comment), block (the answer is withheld).
"""

from __future__ import annotations

import re
from dataclasses import replace

from tether.compliance import Checker, apply_actions
from tether.findings import Finding
from tether.hookspecs import hookimpl
from tether.pipeline.reviews import CompletionReview
from tether.settings import Settings

_FENCE = re.compile(r"```([\w+#.-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
# When a client does not say the language, a few unmistakable openings do.
_PYTHON = re.compile(r"^\s*(def |class \w+.*:|import |from \w[\w.]* import )", re.MULTILINE)
_JAVASCRIPT = re.compile(r"^\s*(function |const |let |export |import .* from )", re.MULTILINE)


def guess_language(code: str) -> str:
    if _PYTHON.search(code):
        return "python"
    if _JAVASCRIPT.search(code):
        return "javascript"
    return ""


class CompliancePlugin:
    def __init__(self, checker: Checker) -> None:
        self.checker = checker

    @hookimpl
    def check_completion(self, review: CompletionReview) -> None:
        if review.kind == "chat":
            findings = self._fenced(review.text)
            language = "python"
        else:
            language = review.language or guess_language(review.prefix + review.text)
            findings = self.checker.check_completion(
                review.prefix, review.text, review.suffix, language
            )
        if not findings:
            return
        text, blocked = apply_actions(review.text, findings, language=language or "python")
        review.findings.extend(findings)
        review.text = text
        review.blocked = review.blocked or blocked

    def _fenced(self, answer: str) -> list[Finding]:
        """Findings of each fenced block, placed in the whole answer."""
        found: list[Finding] = []
        for match in _FENCE.finditer(answer):
            offset = match.start(2)
            lines_before = answer.count("\n", 0, offset)
            language = match.group(1) or guess_language(match.group(2))
            for finding in self.checker.check_code(match.group(2), language):
                found.append(
                    replace(
                        finding,
                        start=finding.start + offset,
                        end=finding.end + offset,
                        line=finding.line + lines_before,
                    )
                )
        return found


def plugin_for(settings: Settings) -> CompliancePlugin | None:
    if not settings.compliance.enabled:
        return None
    return CompliancePlugin(Checker.from_settings(settings))
