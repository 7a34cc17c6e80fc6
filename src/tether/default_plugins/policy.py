"""The built-in prompt policy: secrets and personal data never reach the engine.

Every text part of a request is scanned (``tether.policy``) and rewritten before
tokenization; one pseudonym table per request keeps placeholders stable across parts and
puts the values back into the answer.

It runs around every other plugin's ``govern_prompt``: first, so that a third-party
plugin (which may log a prompt, or send it to a service of its own) is given the texts
with their secrets already replaced and never a prompt the policy blocks; and again after
them, on the parts they changed, so that what a plugin writes is held to the same rules
before it reaches the engine.
"""

from __future__ import annotations

from collections.abc import Collection, Generator
from dataclasses import replace

from tether.errors import PolicyBlockedError
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

    @hookimpl(wrapper=True, tryfirst=True, specname="govern_prompt")
    def govern_around_plugins(self, review: PromptReview) -> Generator[None, None, None]:
        pseudonyms = self._pseudonyms(review)
        self._govern(review, review.parts.keys(), pseudonyms)
        if review.blocking:  # the other plugins never see what is refused
            from tether.pipeline.governance import describe_block  # it imports this module

            raise PolicyBlockedError(describe_block(review.blocking), findings=review.findings)
        governed = dict(review.parts)
        yield
        changed = [name for name, text in review.parts.items() if governed.get(name) != text]
        if not changed:
            return
        given = len(pseudonyms)
        for name in changed:  # placeholders a plugin wrote are not to be given to values
            pseudonyms.reserve(review.parts[name])
        self._govern(review, changed, pseudonyms)
        if len(pseudonyms) > given and given:
            review.placeholders.update(pseudonyms.placeholders())

    def govern_prompt(self, review: PromptReview) -> None:
        """Scan and rewrite every part of ``review``, as the hook does before the other
        plugins run."""
        self._govern(review, review.parts.keys(), self._pseudonyms(review))

    @staticmethod
    def _pseudonyms(review: PromptReview) -> Pseudonyms:
        pseudonyms = Pseudonyms()
        for text in (*review.parts.values(), *review.reserved):
            pseudonyms.reserve(text)
        return pseudonyms

    def _govern(self, review: PromptReview, names: Collection[str], pseudonyms: Pseudonyms) -> None:
        """Scan and rewrite the parts ``names``, and add a restorer for the pseudonyms
        if this gave the first of them (after a plugin's, it undoes the answer first)."""
        given = len(pseudonyms)
        around: dict[str, list[Finding]] = {}
        halves = {"prefix", "suffix"}
        if review.kind == "fim" and halves <= review.parts.keys() and halves & set(names):
            # A secret the cursor splits is found only in the two halves joined.
            around["prefix"], around["suffix"] = self.scanner.scan_around(
                review.parts["prefix"], review.parts["suffix"]
            )
        for part in names:
            text = review.parts[part]
            findings = around[part] if part in around else self.scanner.scan(text)
            if not findings:
                continue
            review.parts[part] = govern(text, findings, pseudonyms).text
            review.findings.extend(replace(f, message=f"{part}: {f.message}") for f in findings)
        if len(pseudonyms) and not given:
            review.add_restorer(pseudonyms.restore, pseudonyms.hide, pseudonyms.placeholders())
