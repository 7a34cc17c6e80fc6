"""The built-in compliance checks on every answer: syntax, security, licence, duplication.

FIM and completion answers are checked as they would stand in the file; chat answers
have each fenced code block checked, and secrets looked for in the whole answer: a key
in a sentence, or in code the model left unfenced, reaches the client all the same.
``compliance.actions`` decides what a finding does:
annotate (reported), redact (the line becomes a comment), block (the answer is withheld).
"""

from __future__ import annotations

from dataclasses import replace

from tether.compliance import Checker, apply_actions
from tether.findings import Finding
from tether.hookspecs import hookimpl
from tether.languages import guess_from_code
from tether.markdown import fenced_blocks
from tether.pipeline.reviews import CompletionReview
from tether.settings import Settings

NAME = "tether.compliance"


class CompliancePlugin:
    def __init__(self, checker: Checker) -> None:
        self.checker = checker

    @classmethod
    def from_settings(cls, settings: Settings) -> CompliancePlugin:
        return cls(Checker.from_settings(settings))

    @hookimpl
    def check_completion(self, review: CompletionReview) -> None:
        if review.kind == "chat":
            fenced = [f for f in self._fenced(review.text) if not f.rule_id.startswith("secrets/")]
            findings = sorted(
                [*fenced, *self.checker.check_secrets(review.text)],
                key=lambda f: (f.start, f.rule_id),
            )
            language = "python"
        else:
            language = review.language or guess_from_code(review.prefix + review.text)
            findings = self.checker.check_insertion(
                review.prefix, review.text, review.suffix, language
            )
        # A value the prompt's policy pseudonymized comes back to the client who sent it.
        findings = [
            f
            for f in findings
            if not (f.rule_id.startswith("secrets/") and f.fingerprint in review.given_back)
        ]
        if review.cut_short:
            # Cut at its token limit, it may end anywhere: within a call, a block, a string.
            # Whether it parses says nothing about the code; every other rule still holds.
            findings = [f for f in findings if f.rule_id != "syntax"]
        if not findings:
            return
        text, blocked = apply_actions(review.text, findings, language=language or "python")
        review.findings.extend(findings)
        review.text = text
        review.blocked = review.blocked or blocked

    def _fenced(self, answer: str) -> list[Finding]:
        """Findings of each fenced block, placed in the whole answer."""
        found: list[Finding] = []
        for block in fenced_blocks(answer, lenient=True):
            offset = block.start
            lines_before = answer.count("\n", 0, offset)
            language = block.info or guess_from_code(block.code)
            for finding in self.checker.check_code(block.code, language):
                found.append(
                    replace(
                        finding,
                        start=finding.start + offset,
                        end=finding.end + offset,
                        line=finding.line + lines_before,
                    )
                )
        return found
