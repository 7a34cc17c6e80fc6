"""The built-in prompt policy: secrets and personal data never reach the engine.

Every text part of a request is scanned (``tether.policy``) and rewritten before
tokenization; one pseudonym table per request keeps placeholders stable across parts and
puts the values back into the answer.
"""

from __future__ import annotations

from dataclasses import replace

from tether.findings import Finding
from tether.hookspecs import hookimpl
from tether.pipeline.reviews import PromptReview
from tether.policy import Pseudonyms, Scanner, govern
from tether.settings import Settings

NAME = "tether.policy"


class PolicyPlugin:
    def __init__(self, scanner: Scanner) -> None:
        self.scanner = scanner

    @classmethod
    def from_settings(cls, settings: Settings) -> PolicyPlugin:
        return cls(Scanner.from_settings(settings.policy))

    @hookimpl
    def govern_prompt(self, review: PromptReview) -> None:
        pseudonyms = Pseudonyms()
        for text in (*review.parts.values(), *review.reserved):
            pseudonyms.reserve(text)
        around: dict[str, list[Finding]] = {}
        if review.kind == "fim" and {"prefix", "suffix"} <= review.parts.keys():
            # A secret the cursor splits is found only in the two halves joined.
            around["prefix"], around["suffix"] = self.scanner.scan_around(
                review.parts["prefix"], review.parts["suffix"]
            )
        for part, text in review.parts.items():
            findings = around[part] if part in around else self.scanner.scan(text)
            if not findings:
                continue
            governed = govern(text, findings, pseudonyms)
            review.parts[part] = governed.text
            review.findings.extend(replace(f, message=f"{part}: {f.message}") for f in findings)
        if len(pseudonyms):
            review.add_restorer(pseudonyms.restore, pseudonyms.hide, pseudonyms.placeholders())
