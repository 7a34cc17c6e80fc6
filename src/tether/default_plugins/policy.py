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

import re
from collections import Counter
from collections.abc import Collection, Generator
from dataclasses import replace

from tether.errors import PolicyBlockedError
from tether.findings import Finding
from tether.hookspecs import hookimpl
from tether.pipeline.reviews import PromptReview
from tether.policy import Pseudonyms, Scanner, govern
from tether.settings import Settings

NAME = "tether.policy"
_REDACTED = re.compile(r"\[REDACTED:[^\[\]\n]*\]")  # as ``govern`` redacts a value


class PolicyPlugin:
    def __init__(self, scanner: Scanner) -> None:
        self.scanner = scanner

    @classmethod
    def from_settings(cls, settings: Settings) -> PolicyPlugin:
        return cls(Scanner.from_settings(settings.policy))

    @hookimpl(wrapper=True, tryfirst=True, specname="govern_prompt")
    def govern_around_plugins(self, review: PromptReview) -> Generator[None, None, None]:
        pseudonyms = self._pseudonyms(review)
        before = len(review.findings)
        self._govern(review, review.parts.keys(), pseudonyms)
        # What it only notes stays in the text: found again in a part a plugin changed,
        # it is the same value, and one note of it is enough.
        noted = Counter(_noted(f) for f in review.findings[before:] if f.action == "annotate")
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
        self._govern(review, changed, pseudonyms, noted)
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

    def _govern(
        self,
        review: PromptReview,
        names: Collection[str],
        pseudonyms: Pseudonyms,
        noted: Counter[tuple[str, str, str]] | None = None,
    ) -> None:
        """Scan and rewrite the parts ``names``, and add a restorer for the pseudonyms
        if this gave the first of them (after a plugin's, it undoes the answer first).
        With ``noted`` (scanning again, after the other plugins) an annotation noted
        already (of the same part, rule and value) is not recorded again, and a value that
        is a placeholder (``[REDACTED:rule]``, a pseudonym given) is none."""
        given = len(pseudonyms)
        written = pseudonyms.placeholders() if noted is not None else set()
        around: dict[str, list[Finding]] = {}
        halves = {"prefix", "suffix"}
        if review.kind == "fim" and halves <= review.parts.keys() and halves & set(names):
            # A secret the cursor splits is found only in the two halves joined; after a
            # plugin changed one half, the other may hold the rest of a value it began.
            around["prefix"], around["suffix"] = self.scanner.scan_around(
                review.parts["prefix"], review.parts["suffix"]
            )
            names = [*names, *sorted(halves - set(names))]
        for part in names:
            text = review.parts[part]
            findings = around[part] if part in around else self.scanner.scan(text)
            if noted is not None:  # e.g. a URL's password that the first scan redacted
                findings = [f for f in findings if not _placeholder(text[f.start : f.end], written)]
            if not findings:
                continue
            review.parts[part] = govern(text, findings, pseudonyms).text
            found = [replace(f, message=f"{part}: {f.message}") for f in findings]
            if noted:
                found = [f for f in found if not _seen(f, noted)]
            review.findings.extend(found)
        if len(pseudonyms) and not given:
            review.add_restorer(pseudonyms.restore, pseudonyms.hide, pseudonyms.placeholders())


def _placeholder(value: str, pseudonyms: set[str]) -> bool:
    return value in pseudonyms or _REDACTED.fullmatch(value) is not None


def _noted(finding: Finding) -> tuple[str, str, str]:
    """What makes two annotations of the policy's the same: part (its message names it),
    rule and value."""
    return finding.message, finding.rule_id, finding.fingerprint


def _seen(finding: Finding, noted: Counter[tuple[str, str, str]]) -> bool:
    """Whether ``finding`` is one of ``noted`` (each counts once: a value a plugin
    repeated is noted again)."""
    if finding.action != "annotate" or noted[_noted(finding)] <= 0:
        return False
    noted[_noted(finding)] -= 1
    return True
