"""Find secrets and personal data in a text: one RE2 pass per rule whose keywords occur.

Which keywords occur is found in one pass for all of them, by an RE2 set of literals.

A match becomes a ``Finding`` when its secret passes the rule's entropy threshold and
validator and its fingerprint is not allow-listed. Base64 that decodes to text is read
too (``encoded``): a finding inside it covers the whole encoded run. Overlapping findings
are resolved so each character is covered at most once (see ``_resolve_overlaps``).
"""

from __future__ import annotations

import array
import bisect
import functools
import itertools
import re
import string
import threading
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import re2

from tether.errors import ConfigError
from tether.findings import Action, Finding, Severity, fingerprint
from tether.policy.encoded import decoded_runs, matched_as
from tether.policy.lookalikes import lookalike_table
from tether.policy.regex_syntax import pieces
from tether.policy.rules import (
    RULE_ACTIONS,
    Pattern,
    RegexMatch,
    ScanRule,
    builtin_rules,
    compile_rule,
    either_pattern,
    rule_from_mapping,
)
from tether.policy.validators import VALIDATORS, shannon_entropy

if TYPE_CHECKING:
    from tether.settings import PolicySettings

# Which action wins an overlap: the one that protects more.
_STRENGTH: dict[Action, int] = {"block": 3, "redact": 2, "pseudonymize": 1, "annotate": 0}
# Base64 inside base64 is read too (a Docker config's "auth" inside .dockerconfigjson), to
# this depth; each level decodes to three quarters of the one above, so time stays linear.
_DECODE_DEPTH = 2
_SEVERITY: dict[Action, Severity] = {
    "block": "error",
    "redact": "warning",
    "pseudonymize": "warning",
    "annotate": "note",
}


@dataclass(frozen=True)
class _Active:
    """A rule ready to run: its compiled pattern and the action in force."""

    rule: ScanRule
    pattern: Pattern
    action: Action
    # Whether the regex starts and ends with \b, which RE2 reads for ASCII only.
    word_edges: tuple[bool, bool] = (False, False)


class _KeywordSet:
    """Which of many keywords occur in a text, found in one pass over it.

    One substring search per keyword read a megabyte of prompt a hundred times (40 ms
    for the built-in rules); an RE2 set of the literals reads it once (2 ms), and is
    faster on short texts too. Its automaton has at most one state per keyword character,
    so the memory allowed below is never reached, and a match never fails for want of it.
    """

    def __init__(self, keywords: Iterable[str]) -> None:
        self._words = sorted(set(keywords))
        options = re2.Options()
        options.max_mem = 64 << 20
        options.log_errors = False
        self._set = re2.Set.SearchSet(options)
        for word in self._words:
            self._set.Add(re2.escape(word))
        self._set.Compile()

    def occurring(self, text: str | bytes) -> set[str]:
        if not self._words:
            return set()
        return {self._words[index] for index in self._set.Match(text) or ()}


@dataclass(frozen=True)
class _Candidate:
    start: int
    end: int
    order: int  # index of the rule; earlier is more specific
    strength: int
    fingerprint: str
    encoded: bool = False  # found in what base64 here decodes to


class Scanner:
    """Scans text with the built-in rules plus custom ones, as configured.

    ``custom`` rules are tables of rule fields (``policy.rules``); one with a built-in's id
    replaces it. ``actions`` override a rule's action by id ("allow" turns it off);
    ``allow`` holds sha256 fingerprints of values never reported.
    """

    def __init__(
        self,
        rules: Sequence[ScanRule] | None = None,
        *,
        custom: Sequence[Mapping[str, Any]] = (),
        actions: Mapping[str, str] | None = None,
        allow: Iterable[str] = (),
    ) -> None:
        base = builtin_rules() if rules is None else tuple(rules)
        merged = _merge(base, _custom_rules(custom))
        known = {rule.id for rule in merged}
        overrides = _overrides(actions or {}, known)
        self._allow = _allow_list(allow)
        self._active: list[_Active] = []
        for rule in merged:
            action = overrides.get(rule.id, rule.action)
            if action == "allow":
                continue
            pattern = compile_rule(rule, where=f"policy rule {rule.id!r}")
            self._active.append(_Active(rule, pattern, action, _word_edges(rule.regex)))
        self._keywords = _KeywordSet(k for active in self._active for k in active.rule.keywords)
        # The rules each keyword lets run, and those that run on any text: a text with no
        # keyword (most code) is read by a few rules, not looked over by every one.
        self._unkeyed = tuple(
            i for i, active in enumerate(self._active) if not active.rule.keywords
        )
        self._any_unkeyed = either_pattern(self._active[i].rule.regex for i in self._unkeyed)
        self._keyed: dict[str, list[int]] = {}
        for order, active in enumerate(self._active):
            for keyword in set(active.rule.keywords):
                self._keyed.setdefault(keyword, []).append(order)

    @classmethod
    def from_settings(cls, settings: PolicySettings) -> Scanner:
        """A scanner from ``PolicySettings``; one with no rules when policy is disabled."""
        if not settings.enabled:
            return cls(rules=())
        return cls.of_rules(settings)

    @classmethod
    def of_rules(cls, settings: PolicySettings) -> Scanner:
        """A scanner with the rules of ``PolicySettings`` whether or not they govern
        prompts (``enabled``): answers are checked for secrets with them either way."""
        return cls(custom=settings.rules, actions=settings.actions, allow=settings.allow)

    @property
    def rules(self) -> tuple[ScanRule, ...]:
        """The rules that run, in order of precedence."""
        return tuple(active.rule for active in self._active)

    @property
    def actions(self) -> dict[str, Action]:
        """The action in force for each rule that runs, by id."""
        return {active.rule.id: active.action for active in self._active}

    @property
    def patterns(self) -> dict[str, Pattern]:
        """The compiled pattern of each rule that runs, by id."""
        return {active.rule.id: active.pattern for active in self._active}

    def scan(self, text: str) -> list[Finding]:
        """Every finding in ``text``, in order of position, none overlapping another."""
        if not text:
            return []
        subject = _encodable(text)
        composes = _composes(subject)  # else read alone is read composed, found once
        candidates = self._read(subject, compose=composes)
        if composes:
            # Read a character at a time too: a mark after a value ("key\u0301") makes its
            # last letter another, and the value as composed no longer matches its rule.
            # Composed first, so that of two equal spans the composed one is kept.
            seen = {(c.start, c.end, c.order) for c in candidates}
            again = self._read(subject, compose=False)
            candidates += [c for c in again if (c.start, c.end, c.order) not in seen]
        kept = _resolve_overlaps(candidates)
        return _findings(subject, kept, self._active)

    def _read(self, subject: str, *, compose: bool) -> list[_Candidate]:
        """The candidates in ``subject`` as the rules read it (``_normalised``), in offsets
        into ``subject``."""
        normal, offsets = _normalised(subject, compose=compose)
        candidates = self._candidates(normal, _DECODE_DEPTH)
        candidates += self._disguised(normal, candidates)
        if offsets is not None:  # back to offsets into the text as it came
            candidates = [
                replace(c, start=offsets.start(c.start), end=offsets.end(c.end)) for c in candidates
            ]
        return candidates

    def scan_around(self, prefix: str, suffix: str) -> tuple[list[Finding], list[Finding]]:
        """The findings in the code before and after a cursor, each in its own offsets.

        A value the cursor splits (half a key before it, half after) matches in neither
        half alone, so the two are scanned joined as well, and a value across the cursor
        becomes a finding on each side. A half cannot be pseudonymized (its placeholder
        would come back as half a value), so such a value is redacted instead. A value on
        one side whose context the cursor splits (``postgres://admin`` before it,
        ``:password@host`` after) is found on its side, with its rule's action.
        """
        before, after = self.scan(prefix), self.scan(suffix)
        cut = len(prefix)
        if not prefix or not suffix:
            return before, after
        found = {(f.rule_id, f.start, f.end) for f in before}
        found |= {(f.rule_id, f.start + cut, f.end + cut) for f in after}
        lines = prefix.count("\n")  # before the suffix's first line
        for finding in self.scan(prefix + suffix):
            if (finding.rule_id, finding.start, finding.end) in found:
                continue
            if finding.end <= cut:
                before = _absorb(before, finding)
                continue
            if finding.start >= cut:
                start, end, line = finding.start - cut, finding.end - cut, finding.line - lines
                column = start + 1 if line == 1 else finding.column
                after = _absorb(
                    after, replace(finding, start=start, end=end, line=line, column=column)
                )
                continue
            action: Action = "redact" if finding.action == "pseudonymize" else finding.action
            split = replace(finding, action=action, severity=_SEVERITY[action])
            before = _absorb(before, replace(split, end=cut))
            after = _absorb(after, replace(split, start=0, end=finding.end - cut, line=1, column=1))
        return before, after

    def _disguised(self, normal: str, found: list[_Candidate]) -> list[_Candidate]:
        """The matches that letters of other scripts looking like ASCII ones hid
        (``password`` with a Cyrillic a, the value after it): the rules read again with
        each as its ASCII letter, keeping what the text as written did not give (``found``).
        That was read first, so a rule in that script (a Cyrillic word) still matches it;
        the lengths are the same, so are the offsets."""
        if normal.isascii():
            return []
        table, chars = _lookalikes()
        if chars.isdisjoint(set(normal)):  # a set made in C: faster than a pattern of them
            return []
        seen = {(c.start, c.end, c.order) for c in found}
        again = self._candidates(normal.translate(table), 0)
        return [c for c in again if (c.start, c.end, c.order) not in seen]

    def _candidates(self, normal: str, decode_depth: int) -> list[_Candidate]:
        """Every match of every rule in ``normal`` text, overlaps and all."""
        subject = matched_as(normal)
        occurring = self._keywords.occurring(subject.lower())
        orders: Iterable[int] = self._unkeyed
        if self._any_unkeyed is not None and self._any_unkeyed.search(subject) is None:
            orders = ()  # one search says none of them matches: each need not look
        if occurring:  # in the rules' order, each once
            orders = sorted({*orders, *(i for word in occurring for i in self._keyed[word])})
        candidates: list[_Candidate] = []
        for order in orders:
            candidates.extend(self._matches(normal, subject, order, self._active[order]))
        if decode_depth and self._active:
            candidates.extend(self._encoded(normal, decode_depth))
        return candidates

    def _encoded(self, text: str, decode_depth: int) -> Iterator[_Candidate]:
        """For each base64 run whose text holds findings, one over the whole run, as the
        strongest of them: a part of the run cannot be mapped to a part of its text."""
        for run in decoded_runs(text):
            if fingerprint(text[run.start : run.end]) in self._allow:
                continue
            inner = self._candidates(_normalised(run.text)[0], decode_depth - 1)
            if not inner and _composes(run.text):  # a value with a mark after it, as above
                inner = self._candidates(_normalised(run.text, compose=False)[0], decode_depth - 1)
            if inner:
                strongest = min(_resolve_overlaps(inner), key=lambda c: (-c.strength, c.order))
                yield replace(strongest, start=run.start, end=run.end, encoded=True)

    def _matches(
        self, text: str, subject: str | bytes, order: int, active: _Active
    ) -> Iterable[_Candidate]:
        """The rule's matches in ``text``, which RE2 reads as ``subject``."""
        rule = active.rule
        validator = VALIDATORS[rule.validator] if rule.validator else None
        first, last = active.word_edges
        for match in active.pattern.finditer(subject):
            whole_start, whole_end = match.span(0)
            if (first and _inside_word(text, whole_start)) or (
                last and _inside_word(text, whole_end)
            ):
                continue  # RE2 took a non-ASCII letter for the end of the word
            start, end = _secret_span(match, rule.secret_group, active.pattern.groups)
            if start >= end:
                continue
            value = text[start:end]
            if rule.entropy is not None and shannon_entropy(value) < rule.entropy:
                continue
            if validator is not None and not validator(value):
                continue
            digest = fingerprint(value)
            if digest in self._allow:
                continue
            if (  # allowed as composed, read a character at a time here
                self._allow
                and not value.isascii()
                and fingerprint(_normalised(value)[0]) in self._allow
            ):
                continue
            yield _Candidate(start, end, order, _STRENGTH[active.action], digest)


def _encodable(text: str) -> str:
    """``text`` with any lone surrogate (JSON allows them, UTF-8 and so RE2 do not) as "?".

    Each one stays one character, so offsets into the result are offsets into ``text``.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
    return text


# Characters that show as nothing: inserted into a secret, they would hide it from every
# rule. Zero-width spaces and joiners, the soft hyphen, word joiners, bidi controls,
# variation selectors, fillers, tags, and the other format controls that draw nothing
# (interlinear annotation, hieroglyph, shorthand and musical formatting).
_INVISIBLE = re.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f"
    "\u202a-\u202e\u2060-\u2064\u2066-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0"
    "\ufff9-\ufffb\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a"
    "\U000e0000-\U000e007f]"
)


def characters_read_as(allowed: frozenset[str]) -> frozenset[str]:
    """Every character beyond ASCII that the rules read as nothing or as ``allowed``
    characters only (fullwidth, mathematical bold and circled letters: their NFKC forms;
    letters of other scripts that look like ASCII ones)."""
    table = {**_folding()[0], **_lookalikes()[0]}
    return frozenset(chr(code) for code, form in table.items() if allowed.issuperset(form))


@functools.cache
def letters_read_as() -> dict[int, str]:
    """``str.translate``'s table of each character beyond ASCII the rules read as one
    other character (a fullwidth or mathematical letter, a look-alike of another
    script): what a search for a keyword must see through, keeping the text's length.
    Invisible characters, which the rules read as nothing, are not in it."""
    table, _ = _folding()
    return {code: form for code, form in table.items() if len(form) == 1} | _lookalikes()[0]


def invisible_pattern() -> str:
    """A regex class of the invisible characters the rules read as nothing."""
    return _INVISIBLE.pattern


@functools.cache
def _lookalikes() -> tuple[dict[int, str], frozenset[str]]:
    """``lookalike_table()``, and its characters."""
    table = lookalike_table()
    return table, frozenset(map(chr, table))


def _beyond_ascii() -> Iterator[int]:
    """The code points that may fold: no character beyond U+2FFFF has another NFKC form,
    and the tags (U+E0000 to U+E007F) are invisible."""
    return itertools.chain(range(0x80, 0x30000), range(0xE0000, 0xE0080))


@functools.cache
def _folding() -> tuple[dict[int, str], re.Pattern[str]]:
    """The form the rules read of each character that has another (its NFKC form, none
    for an invisible one), for ``str.translate``, and a pattern of those whose form is not
    one character long. Built once, on first use (a fraction of a second), so a text
    beyond ASCII is normalised at the speed of C rather than a character at a time."""
    # The 200,000 characters are looked at one at a time, each form dropped at once, and
    # the 5,000 kept made again after: a table built from all of them left 10 MB of the
    # server's memory in fragments for as long as it ran.
    changed = array.array(
        "I", (c for c in _beyond_ascii() if unicodedata.normalize("NFKC", chr(c)) != chr(c))
    )
    table = {code: unicodedata.normalize("NFKC", chr(code)) for code in changed}
    every = "".join(map(chr, _beyond_ascii()))
    table.update(dict.fromkeys(map(ord, _INVISIBLE.findall(every)), ""))
    ranges: list[list[int]] = []  # as ranges, which re checks far faster than a list
    for code in sorted(code for code, new in table.items() if len(new) != 1):
        if ranges and ranges[-1][1] == code - 1:
            ranges[-1][1] = code
        else:
            ranges.append([code, code])
    resizing = "".join(f"{re.escape(chr(first))}-{re.escape(chr(last))}" for first, last in ranges)
    return table, re.compile(f"[{resizing}]")


@functools.cache
def _marks() -> tuple[re.Pattern[str], frozenset[str]]:
    """A pattern of runs of the characters that may compose with the one before them
    (combining marks, the second half of each canonical pair, such as a kana's voicing
    mark, and the vowels and finals of Korean's conjoining jamo), and those characters.
    Text written decomposed (NFD, as macOS and some editors write it) is read composed."""
    codes = set(range(0x1161, 0x1176)) | set(range(0x11A8, 0x11C3))  # jamo V and T
    for code in _beyond_ascii():
        char = chr(code)
        if unicodedata.combining(char):
            codes.add(code)
        parts = unicodedata.decomposition(char).split()
        if len(parts) == 2 and not parts[0].startswith("<"):
            codes.add(int(parts[1], 16))
    ranges: list[list[int]] = []
    for code in sorted(codes):
        if ranges and ranges[-1][1] == code - 1:
            ranges[-1][1] = code
        else:
            ranges.append([code, code])
    pattern = "".join(f"{re.escape(chr(a))}-{re.escape(chr(b))}" for a, b in ranges)
    return re.compile(f"[{pattern}]+"), frozenset(map(chr, codes))


def _prepare() -> None:
    _folding()
    _marks()


def prepare_folding() -> None:
    """Build the tables ``_folding`` and ``_marks`` make, in a thread of its own, so that a
    server's first prompt beyond ASCII does not hold its event loop for the fraction of a
    second it takes."""
    threading.Thread(target=_prepare, name="tether-policy-folding", daemon=True).start()


class _Offsets:
    """Maps offsets into a normalised text back to offsets into the text it came from.

    The normalised text is a sequence of pieces; a piece of as many characters as its
    original maps one to one, any other (a character NFKC expanded) maps as a whole.
    """

    def __init__(self) -> None:
        self.starts: list[int] = []  # where each piece starts in the normalised text
        self._pieces: list[tuple[int, int, int]] = []  # (original start, its length, length)

    def add(self, start: int, original: int, original_length: int, length: int) -> None:
        self.starts.append(start)
        self._pieces.append((original, original_length, length))

    def start(self, offset: int) -> int:
        index = bisect.bisect_right(self.starts, offset) - 1
        original, original_length, length = self._pieces[index]
        if original_length == length:
            return original + offset - self.starts[index]
        return original

    def end(self, offset: int) -> int:
        index = bisect.bisect_right(self.starts, offset - 1) - 1
        original, original_length, length = self._pieces[index]
        if original_length == length:
            return original + offset - self.starts[index]
        return original + original_length


def _normalised(text: str, *, compose: bool = True) -> tuple[str, _Offsets | None]:
    """``text`` as the rules read it: each character NFKC-normalised (a fullwidth ``A`` is
    ``A``), a character and the marks that compose with it as one (``o`` and a combining
    diaeresis are ``ö``), and invisible ones left out, with the map back to offsets into
    ``text``; no map where every character stays one, as in all-ASCII text, which is most
    of it. Without ``compose``, each character is read alone, as before that."""
    if text.isascii():
        return text, None
    table, resizing = _folding()
    # (start, end, form) of each run read as another
    spans = _composed(text, table) if compose else []
    if not spans and resizing.search(text) is None:
        return text.translate(table), None
    alone: list[tuple[int, int, str]] = []  # the characters whose form is not one long
    taken = 0
    for found in resizing.finditer(text):
        index = found.start()
        while taken < len(spans) and spans[taken][1] <= index:
            taken += 1
        if taken == len(spans) or spans[taken][0] > index:  # not inside a composed run
            alone.append((index, index + 1, table[ord(found.group())]))
    spans = sorted(spans + alone) if spans else alone
    pieces: list[str] = []
    offsets = _Offsets()
    length = 0  # of the pieces so far
    done = 0  # characters of ``text`` in the pieces so far
    for start, end, new in spans:
        if start > done:  # characters that stay one each, in one piece
            offsets.add(length, done, start - done, start - done)
            pieces.append(text[done:start].translate(table))
            length += start - done
        if new:
            offsets.add(length, start, end - start, len(new))
            pieces.append(new)
            length += len(new)
        done = end
    offsets.add(length, done, len(text) - done, len(text) - done)
    pieces.append(text[done:].translate(table))
    return "".join(pieces), offsets


def composed_reading(text: str) -> tuple[str, Callable[[int], int]] | None:
    """``text`` as the rules read it where a letter and the marks after it read as one
    (NFD's ``o`` and diaeresis as ``ö``), with the map from an offset in it to one in
    ``text``; None where nothing in ``text`` composes, which is nearly all text."""
    if not _composes(text):
        return None
    normal, offsets = _normalised(text)
    assert offsets is not None  # a composed run changes the length
    return normal, offsets.start


def _composes(text: str) -> bool:
    """Whether ``text`` read composed is other than read a character at a time."""
    return not text.isascii() and bool(_composed(text, _folding()[0]))


def _composed(text: str, table: dict[int, str]) -> list[tuple[int, int, str]]:
    """Where a character and the marks after it read as other characters than each one
    does alone (NFD's ``o`` and diaeresis as ``ö``): (start, end, form) of each run, in
    order. None where the text is already in NFKC form, which is nearly all text."""
    pattern, composing = _marks()
    if unicodedata.is_normalized("NFKC", text) or composing.isdisjoint(set(text)):
        return []  # a set made in C: faster than the pattern where none occurs
    spans: list[tuple[int, int, str]] = []
    for marks in pattern.finditer(text):
        start = max(marks.start() - 1, spans[-1][1] if spans else 0)  # with its base
        run = text[start : marks.end()]
        form = unicodedata.normalize("NFKC", run)
        if form != run:  # as a piece of its own, even where it reads as its characters do
            # Less what stays as it was (an L before a mark that does not compose with it),
            # so that a value ending there ends there, not after the marks.
            same = next(
                (i for i, (a, b) in enumerate(zip(run, form, strict=False)) if a != b),
                min(len(run), len(form)),
            )
            spans.append((start + same, marks.end(), form[same:].translate(table)))
    return spans


# A \b first (after flags and opening groups) or last (before closing ones) in a regex.
_FIRST_BOUNDARY = re.compile(r"(?:\(\?[a-zA-Z]+\))?(?:\((?:\?:|\?P?<\w+>)?)*\\b")
_LAST_BOUNDARY = re.compile(r"(?<!\\)(?:\\\\)*\\b\)*\Z")


def _word_edges(regex: str) -> tuple[bool, bool]:
    """Whether every match of ``regex`` starts, and ends, at a \\b of its own: one first
    or last, in no group that has an alternative without it (``\\bkey-x|mailgun``) or
    may be left out (``(\\bx)?y``)."""
    first, last = _FIRST_BOUNDARY.match(regex), _LAST_BOUNDARY.search(regex)
    groups = _groups(regex) if first or last else None
    if groups is None:
        return False, False
    # The groups around each \b (by where they open), the regex as a whole among them.
    before = [g for g in groups if first and g.start < first.end() - 2]
    after = [g for g in groups if last and g.end >= len(regex.rstrip(")"))]
    optional = any(regex.startswith(("?", "*", "{0"), g.end + 1) for g in before[1:])
    return (
        bool(first) and not optional and not any(g.alternatives for g in before),
        bool(last) and not any(g.alternatives for g in after),
    )


@dataclass
class _Group:
    start: int  # where its "(" is
    end: int  # where its ")" is
    alternatives: bool = False  # whether a "|" of its own splits it


def _groups(regex: str) -> list[_Group] | None:
    """The groups of ``regex``, the regex as a whole first, or None where it quotes
    (``\\Q``) or does not balance: a reading this simple then cannot say."""
    groups = [_Group(-1, len(regex))]
    open_ = [groups[0]]
    for piece in pieces(regex):
        if piece.kind == "quote" or not piece.closed:
            return None
        char = regex[piece.start] if piece.kind == "char" else ""
        if char == "(":
            open_.append(_Group(piece.start, -1))
            groups.append(open_[-1])
        elif char == ")":
            if len(open_) == 1:
                return None
            open_.pop().end = piece.start
        elif char == "|":
            open_[-1].alternatives = True
    return groups if len(open_) == 1 else None


def _is_word(char: str) -> bool:
    return char.isalnum() or char == "_"


def _inside_word(text: str, offset: int) -> bool:
    """Whether RE2 saw a word boundary at ``offset`` that is none: a letter or digit on
    both sides, one of them beyond ASCII (RE2's \b knows only ASCII word characters)."""
    if not 0 < offset < len(text):
        return False
    before, after = text[offset - 1], text[offset]
    return not (before.isascii() and after.isascii()) and _is_word(before) and _is_word(after)


def _secret_span(match: RegexMatch, group: int, groups: int) -> tuple[int, int]:
    """The span of ``group``, or of the first later group that took part in the match."""
    for index in range(group, groups + 1):
        start, end = match.span(index)
        if start >= 0:
            return start, end
    return -1, -1


def _resolve_overlaps(candidates: list[_Candidate]) -> list[_Candidate]:
    """Keep the strongest action, then the longest span, then the earliest rule.

    Action first, so an overlap never weakens protection: a password inside a database URL
    that also looks like an e-mail address is redacted, not pseudonymized. Candidates are
    first split into runs that overlap one another, so the usual case, no overlap at all,
    costs one sort.
    """
    kept: list[_Candidate] = []
    run: list[_Candidate] = []
    reach = -1
    for candidate in sorted(candidates, key=lambda c: (c.start, c.end)):
        if run and candidate.start >= reach:
            kept.extend(_best_of(run))
            run = []
        run.append(candidate)
        reach = max(reach, candidate.end) if len(run) > 1 else candidate.end
    kept.extend(_best_of(run))
    return kept


def _best_of(run: list[_Candidate]) -> list[_Candidate]:
    """The non-overlapping choice from a run of overlapping candidates, in order."""
    if len(run) < 2:
        return run
    ranked = sorted(run, key=lambda c: (-c.strength, c.start - c.end, c.order, c.start))
    starts: list[int] = []  # kept spans, sorted by start; they never overlap each other
    ends: list[int] = []
    chosen: list[_Candidate] = []
    for candidate in ranked:
        i = bisect.bisect_right(starts, candidate.start)
        if i > 0 and ends[i - 1] > candidate.start:
            continue  # the kept span before it reaches into it
        if i < len(starts) and starts[i] < candidate.end:
            continue  # it reaches into the kept span after it
        starts.insert(i, candidate.start)
        ends.insert(i, candidate.end)
        chosen.append(candidate)
    return sorted(chosen, key=lambda c: c.start)


def _findings(text: str, kept: list[_Candidate], active: list[_Active]) -> list[Finding]:
    findings = []
    line, line_start, position = 1, 0, 0
    for candidate in kept:  # in order of start: each newline is counted once
        newlines = text.count("\n", position, candidate.start)
        if newlines:
            line += newlines
            line_start = text.rfind("\n", position, candidate.start) + 1
        position = candidate.start
        rule, action = active[candidate.order].rule, active[candidate.order].action
        findings.append(
            Finding(
                rule_id=rule.id,
                message=f"{rule.description}, base64-encoded"
                if candidate.encoded
                else rule.description,
                stage="policy",
                action=action,
                severity=_SEVERITY[action],
                start=candidate.start,
                end=candidate.end,
                line=line,
                column=candidate.start - line_start + 1,
                fingerprint=candidate.fingerprint,
            )
        )
    return findings


def _absorb(findings: list[Finding], piece: Finding) -> list[Finding]:
    """``findings`` with ``piece`` added, merged with any it overlaps into one finding that
    covers them all, with the strongest action among them: no character goes uncovered."""
    group = [f for f in findings if f.start < piece.end and piece.start < f.end] + [piece]
    first = min(group, key=lambda f: f.start)
    strongest = max(group, key=lambda f: _STRENGTH[f.action])
    merged = replace(
        strongest,
        start=first.start,
        end=max(f.end for f in group),
        line=first.line,
        column=first.column,
    )
    kept = [f for f in findings if not (f.start < piece.end and piece.start < f.end)]
    return sorted([*kept, merged], key=lambda f: f.start)


def _custom_rules(tables: Sequence[Mapping[str, Any]]) -> list[ScanRule]:
    rules: list[ScanRule] = []
    seen: set[str] = set()
    for index, table in enumerate(tables):
        rule = rule_from_mapping(table, where=f"policy.rules[{index}]")
        if rule.id in seen:
            raise ConfigError(f"policy.rules[{index}], rule {rule.id!r}: id used twice")
        seen.add(rule.id)
        rules.append(rule)
    return rules


def _merge(base: Sequence[ScanRule], custom: list[ScanRule]) -> list[ScanRule]:
    """Built-ins in order, a custom rule in the place of the built-in it replaces."""
    replacing = {rule.id: rule for rule in custom}
    merged = [replacing.pop(rule.id, rule) for rule in base]
    return merged + [rule for rule in custom if rule.id in replacing]


def _overrides(actions: Mapping[str, str], known: set[str]) -> dict[str, Action]:
    valid: tuple[Action, ...] = (*RULE_ACTIONS, "allow")
    overrides: dict[str, Action] = {}
    for rule_id, value in actions.items():
        if rule_id not in known:
            raise ConfigError(
                f"policy.actions: no rule {rule_id!r}; `docs/policy.md` lists the built-in ids"
            )
        action = next((a for a in valid if a == value), None)
        if action is None:
            raise ConfigError(
                f"policy.actions.{rule_id} is {value!r}; use one of {', '.join(valid)}"
            )
        overrides[rule_id] = action
    return overrides


def _allow_list(values: Iterable[str]) -> frozenset[str]:
    allow = []
    for value in values:
        digest = value.strip().lower()
        if len(digest) != 64 or not all(c in string.hexdigits for c in digest):
            raise ConfigError(
                f"policy.allow: {value!r} is not a sha256 fingerprint (64 hex digits); "
                "copy it from a finding's fingerprint field"
            )
        allow.append(digest)
    return frozenset(allow)
