"""Holding back the part of a live stream that may carry a secret, until it is checked.

Text once streamed cannot be taken back, and the checks run on the whole answer. Every
secret rule with keywords matches text that holds one of them (the scanner's prefilter
relies on it), so a live stream sends text as it comes until a keyword shows up (read as
the rules read it: in fullwidth or look-alike letters, decomposed, or with invisible
characters between them, too): from the word that holds it, the line is held until it
ends, then scanned. A line with a secret that the checks would redact or block holds the
rest of the answer, which goes out, checked, with the last event. A tail that could be
the start of a keyword waits for the next piece.

A secret inside base64 shows no keyword, and a built-in rule without keywords (a Discord
bot token) matches one run of token characters, so each such run waits until it ends and
is scanned, decoded, before it goes out: about one token of delay. Base64 wrapped over
lines is read a line at a time here (the whole answer's check reads it whole). A custom
rule without keywords could match anything, so then every line waits for its end.
"""

from __future__ import annotations

import functools
import re
import string
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import re2

from tether.compliance import Checker
from tether.compliance.actions import action_for, validate_actions
from tether.compliance.secrets import as_code_rule, policy_secret_scan
from tether.findings import Finding
from tether.policy import Scanner, builtin_rules
from tether.policy.scanner import (
    characters_read_as,
    composed_reading,
    invisible_pattern,
    letters_read_as,
)
from tether.settings import Settings

# What a rule that spans lines (a PEM private key) would go on to match, appended when a
# held line is scanned: a match that reaches into it could continue on the next line.
_CONTINUATION = "\n" + string.ascii_letters + string.digits + "+/"
# The characters of keys and tokens (base64, URL-safe base64, dotted JWT-like parts).
_TOKEN_ASCII = string.ascii_letters + string.digits + "_-.+/="
_WITHHOLDING = ("redact", "block")
_INVISIBLE_CHARACTERS = re.compile(invisible_pattern())
# How far before the unsent text a scan of it starts. The rules without keywords (cards,
# IBANs, phone numbers, Discord tokens) match fewer than 100 characters, and a run of
# token characters (base64) waits whole until it ends, so each match that reaches unsent
# text starts within this; a scan from the line's start made long lines quadratic.
RUN_LOOKBACK = 256
# The context a held line is scanned with at its end: rules that span lines (a private
# key, custom multi-line rules) may have begun on the lines before it.
LINE_LOOKBACK = 4096

SecretCheck = Callable[[str], Sequence[Finding]]


@functools.cache
def token_characters() -> frozenset[str]:
    """The characters of keys and tokens, and every one the rules read as such or as
    nothing (a fullwidth or mathematical letter, an invisible character), so that a run
    written with them waits whole, as its plain form would, where each such character
    went out on its own."""
    plain = frozenset(_TOKEN_ASCII)
    return plain | characters_read_as(plain)


@dataclass(frozen=True)
class SecretKeywords:
    """What a holdback looks for, compiled once: the secret rules that redact or block.

    ``check`` finds the secrets of a text with the actions in force; ``words`` holds each
    run of token characters to its end, ``every_line`` each line.
    """

    check: SecretCheck
    keyword: re.Pattern[str] | None
    starts: frozenset[str]  # every proper prefix of a keyword
    longest: int
    # The keywords with invisible characters allowed between their letters, for text
    # beyond ASCII once its letters are read as the rules read them.
    spelled: re.Pattern[str] | None = None
    words: bool = False
    every_line: bool = False
    # The keywords that ASCII text can hold, for RE2 to find there: Python's search of a
    # hundred keywords ignoring case took 20-90 µs a piece of a stream, RE2's about 1.
    in_ascii: Any = None
    starts_in_ascii: Any = None  # the same for a keyword's start at the end of a text

    @classmethod
    def of(
        cls, check: SecretCheck, keywords: Iterable[str], *, words: bool = False,
        every_line: bool = False,
    ) -> SecretKeywords:  # fmt: skip
        ordered = sorted(set(keywords), key=len, reverse=True)
        pattern = "|".join(map(re.escape, ordered))
        gap = f"{invisible_pattern()}*"
        spelled = "|".join(gap.join(map(re.escape, word)) for word in ordered)
        # A keyword's start as written decomposed too (Korean's jamo, a kana's mark apart):
        # the first jamo of a syllable may come a piece before the rest.
        forms = {form for word in ordered for form in (word, unicodedata.normalize("NFD", word))}
        starts = frozenset(form[:size] for form in forms for size in range(1, len(form)))
        return cls(
            check=check,
            keyword=re.compile(pattern, re.IGNORECASE) if ordered else None,
            starts=starts,
            longest=max(map(len, forms), default=0),
            words=words,
            every_line=every_line,
            spelled=re.compile(spelled, re.IGNORECASE) if ordered else None,
            in_ascii=_in_ascii(ordered, "|".join),
            starts_in_ascii=_in_ascii(sorted(starts, key=len, reverse=True), _at_the_end),
        )

    def find(self, text: str, start: int = 0, end: int | None = None) -> int | None:
        """Where the first keyword in ``text[start:end]`` begins, read as the rules read
        it: in fullwidth or look-alike letters, or with invisible characters between
        them, too. None when there is none."""
        if self.keyword is None or self.spelled is None:
            return None
        end = len(text) if end is None else end
        if text.isascii():  # most text, known at once
            if self.in_ascii is not None:
                quick = self.in_ascii.search(text[start:end].encode())
                return start + quick.start() if quick else None
            found = self.keyword.search(text, start, end)
            return found.start() if found else None
        found = self.keyword.search(text, start, end)
        # As written too: a keyword of another script (a custom rule's) is its own letters.
        part = text[start:end]
        read = self.spelled.search(part.translate(letters_read_as()))
        places = [found.start() if found else None, start + read.start() if read else None]
        composed = composed_reading(part)  # a keyword written decomposed, as macOS writes
        if composed is not None:
            normal, back = composed
            again = self.spelled.search(normal.translate(letters_read_as()))
            places.append(start + back(again.start()) if again else None)
        return min((p for p in places if p is not None), default=None)

    def longest_start(self, text: str) -> int:
        """The length of the longest end of ``text`` that could begin a keyword."""
        if self.starts_in_ascii is not None and text.isascii():
            found = self.starts_in_ascii.search(text.encode())
            return len(text) - found.start() if found else 0
        for size in range(len(text), 0, -1):
            if self.begins_keyword(text[len(text) - size :]):
                return size
        return 0

    def begins_keyword(self, tail: str) -> bool:
        """Whether ``tail`` could be the start of a keyword, read as the rules read it."""
        if tail.lower() in self.starts:
            return True
        if tail.isascii():
            return False
        read = _INVISIBLE_CHARACTERS.sub("", tail.translate(letters_read_as())).lower()
        return read in self.starts or unicodedata.normalize("NFD", read) in self.starts

    @classmethod
    def from_settings(cls, settings: Settings) -> SecretKeywords | None:
        """The rules a live stream is held back for; None when none redacts or blocks, or
        when the operator turned the holdback off."""
        compliance = settings.compliance
        if not (compliance.enabled and compliance.stream_holdback):
            return None
        scanner = Scanner.of_rules(settings.policy)
        actions = validate_actions(compliance.actions)
        withheld, in_force = [], scanner.actions
        for rule in scanner.rules:
            code_rule = as_code_rule(rule.id, in_force[rule.id])
            if code_rule is not None and action_for(*code_rule, actions) in _WITHHOLDING:
                withheld.append(rule)
        if not withheld:
            return None
        unanchored = [rule for rule in withheld if not rule.keywords]
        token_characters()  # built now, at start-up, not in the first stream
        checker = Checker(actions=actions, secrets=policy_secret_scan(settings.policy))
        return cls.of(
            checker.check_secrets,
            (keyword for rule in withheld for keyword in rule.keywords),
            words=True,  # base64 holds any rule's secret without its keyword
            every_line=any(rule not in builtin_rules() for rule in unanchored),
        )


# The letters beyond ASCII that Python's search ignoring case takes for ASCII ones (a
# dotted and a dotless i, a long s, the Kelvin sign): a keyword with one may match ASCII.
_READ_AS_ASCII = frozenset("\u0130\u0131\u017f\u212a")


def _at_the_end(alternatives: Iterable[str]) -> str:
    return f"(?:{'|'.join(alternatives)})$"


def _in_ascii(words: Sequence[str], joined: Callable[[Iterable[str]], str]) -> Any:
    """An RE2 pattern, ``joined`` of ``words`` (keywords, or their starts), that finds in
    ASCII text what a search for them ignoring case finds there (only ASCII words can
    match it); None where that cannot be sure."""
    if not words or any(_READ_AS_ASCII.intersection(word) for word in words):
        return None
    ascii_words = [word for word in words if word.isascii()]
    if not ascii_words:
        return None
    options = re2.Options()
    options.case_sensitive = False
    options.log_errors = False
    return re2.compile(joined(map(re2.escape, ascii_words)), options)


class SecretHoldback:
    """Decides how much of one live stream may go out before the answer is checked.

    Each piece costs about the same however long its line or the answer grows: what went
    out is dropped but for ``LINE_LOOKBACK`` characters of context, scans start at most
    that far back, and a piece that could not let anything out (one more part of a held
    line, of an unfinished run of token characters, or anything once the answer is held)
    is only kept until one that can arrives.
    """

    def __init__(self, rules: SecretKeywords) -> None:
        self._rules = rules
        self._token = token_characters()
        self._gone: list[str] = []  # text that went out and was dropped from ``_text``
        self._text = ""  # the text being decided, with some that went out before it
        self._waiting: list[str] = []  # pieces after ``_text``, not yet looked at
        self._tail = ""  # the last characters fed, as long as a keyword but one
        self._sent = 0  # how much of ``_text`` went out
        self._line_start = 0  # in ``_text``; 0 also when the line began before it
        self._line_held = False  # the rest of the current line waits for its end
        self.holding = False  # the rest of the answer waits for the checks

    @property
    def sent(self) -> str:
        """The text that went out."""
        return "".join(self._gone) + self._text[: self._sent]

    def feed(self, piece: str) -> str:
        """The part of the text so far that may go out now, from where the last one ended."""
        looked_at = self._tail + piece
        # Twice a keyword's length: invisible characters may stand between its letters.
        self._tail = looked_at[len(looked_at) - 2 * self._rules.longest + 1 :]
        if self.holding or self._waits(piece, looked_at):
            self._waiting.append(piece)
            return ""
        self._drop_what_went_out()
        start = self._sent
        self._text += "".join(self._waiting) + piece
        self._waiting.clear()
        while not self.holding and self._sent < len(self._text) and self._advance():
            pass
        return self._text[start : self._sent]

    def _waits(self, piece: str, looked_at: str) -> bool:
        """Whether looking at ``piece`` now could let nothing out: it holds no newline and
        either the line is held, or it only goes on with a run of token characters that
        the text before already left open, without a keyword in it."""
        if "\n" in piece:
            return False
        if self._line_held:
            return True
        rules = self._rules
        before = self._waiting[-1] if self._waiting else self._text
        return (
            rules.words
            and not rules.every_line
            and before[-1:] in self._token
            and self._token.issuperset(piece)
            and rules.find(looked_at) is None
        )

    def _drop_what_went_out(self) -> None:
        """Drop text that went out, but for ``LINE_LOOKBACK`` characters of context."""
        drop = self._sent - LINE_LOOKBACK
        if drop < LINE_LOOKBACK:  # dropped in blocks: a copy per piece would cost more
            return
        self._gone.append(self._text[:drop])
        self._text = self._text[drop:]
        self._sent -= drop
        self._line_start = max(0, self._line_start - drop)

    def rest(self, checked: str, *, blocked: bool) -> str:
        """What the last event carries: the checked answer after what went out.

        The checks redact whole lines, so a redacted line whose start went out before its
        keyword arrived is ended there, and the checked answer follows from that line on:
        the client sees the start of the line, then the redaction on a line of its own.
        """
        sent = self.sent
        if checked.startswith(sent):
            return checked[len(sent) :]
        if blocked:
            return ""
        ended = "" if not sent or sent.endswith("\n") else "\n"
        # Lines end at "\n" alone, as they are counted: splitlines() also ends one at
        # U+2028 or a form feed, and the rest then began a line early, sent twice.
        return ended + "\n".join(checked.split("\n")[sent.count("\n") :])

    def _advance(self) -> bool:
        """Send what may go out of the current line; True when the line is done."""
        rules = self._rules
        newline = self._text.find("\n", self._sent)
        end = len(self._text) if newline < 0 else newline + 1
        if not self._line_held:
            found = rules.find(self._text, self._sent, end)
            if rules.every_line:
                ready = self._sent
            elif found is not None:
                ready = found
            else:
                ready = end if newline >= 0 else end - self._keyword_start(end)
            if rules.words:
                ready = self._before_open_run(ready)
                window = max(self._line_start, self._context_start(RUN_LOOKBACK))
                if ready > self._sent and self._has_secret(window, ready):
                    self.holding = True
                    return False
            self._sent = ready
            if found is None and not rules.every_line:
                return self._next_line(end) if self._sent == end and newline >= 0 else False
            self._line_held = True
        if newline < 0:
            return False
        if self._has_secret(self._context_start(LINE_LOOKBACK), end, spanning=True):
            self.holding = True
            return False
        self._sent = end
        return self._next_line(end)

    def _next_line(self, start: int) -> bool:
        self._line_start, self._line_held = start, False
        return True

    def _context_start(self, back: int) -> int:
        """Where a scan of the unsent text starts: ``back`` characters before it, moved on
        past a run of token characters cut there, whose piece could read as another."""
        start = max(0, self._sent - back)
        text = self._text
        if start > 0 and text[start - 1] in self._token:
            while start < self._sent and text[start] in self._token:
                start += 1
        return start

    def _keyword_start(self, end: int) -> int:
        """The length of the longest tail before ``end`` that could begin a keyword."""
        rules = self._rules
        # Twice as far where invisible characters may stand between a keyword's letters.
        reach = rules.longest - 1 if self._text.isascii() else 2 * rules.longest - 1
        return rules.longest_start(self._text[end - min(reach, end - self._sent) : end])

    def _before_open_run(self, ready: int) -> int:
        """``ready``, or the start of a run of token characters that it would split or that
        may go on in the next piece."""
        text = self._text
        if ready == 0 or text[ready - 1] not in self._token:
            return ready
        if ready < len(text) and text[ready] not in self._token:
            return ready  # the run ended
        while ready > self._sent and text[ready - 1] in self._token:
            ready -= 1
        return ready

    def _has_secret(self, start: int, end: int, *, spanning: bool = False) -> bool:
        """Whether a withheld secret in ``text[start:end]`` touches the unsent text. With
        ``spanning``, one that could go on past ``end`` on the next line counts too."""
        scanned = self._text[start : end + 1]  # a rule may need the character after a run
        if spanning:
            scanned = self._text[start:end] + _CONTINUATION
        first, last = self._sent - start, end - start
        return any(
            finding.action in _WITHHOLDING and finding.start < last and finding.end > first
            for finding in self._rules.check(scanned)
        )
