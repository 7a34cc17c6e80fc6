"""Winnowing fingerprints of code (Schleimer, Wilkerson and Aiken, SIGMOD 2003; MOSS).

The text becomes a token stream in which identifiers, strings and numbers are replaced by
their kind and comments, whitespace, commas and semicolons are dropped, so renaming
variables and reformatting do not hide a copy. Import statements are dropped too: every
file has them, and once normalized they look alike everywhere. Each run of ``K`` tokens
is hashed, and in every window of ``WINDOW`` consecutive hashes the smallest is kept. Any
run of at least ``K + WINDOW - 1`` tokens that two texts share yields at least one common
fingerprint.
"""

from __future__ import annotations

import hashlib
import keyword
import re
from dataclasses import dataclass
from typing import Literal

K = 15
WINDOW = 8

Syntax = Literal["python", "c", "any"]

_STRING = (
    r"(?P<s>[rRbBuUfF]{0,2}(?:'''.*?'''|\"\"\".*?\"\"\"|'(?:\\.|[^'\\\n])*'"
    r"|\"(?:\\.|[^\"\\\n])*\"|`(?:\\.|[^`\\])*`))"
)
_REST = r"|(?P<n>\.?\d[\w.]*)|(?P<v>[A-Za-z_$][\w$]*)|(?P<o>[^\s,;])"
_COMMENTS: dict[Syntax, str] = {
    "python": r"(?P<c>\#[^\n]*)",
    "c": r"(?P<c>//[^\n]*|/\*.*?\*/)",
    "any": r"(?P<c>\#[^\n]*|//[^\n]*|/\*.*?\*/)",
}
_TOKEN = {
    syntax: re.compile(comment + "|" + _STRING + _REST, re.DOTALL)
    for syntax, comment in _COMMENTS.items()
}

# Words that shape the code are kept; every other name becomes "V".
_JS_WORDS = """break case catch class const continue debugger default delete do else export
extends finally for function if import in instanceof let new return super switch this throw
try typeof var void while with yield async await static get set of null undefined true false
interface type enum implements private protected public readonly declare namespace abstract
as any number string boolean never unknown self"""
_KEPT = frozenset(keyword.kwlist) | frozenset(_JS_WORDS.split())


@dataclass(frozen=True, slots=True)
class Token:
    text: str  # normalized: a kept word or operator, else V, S or N
    start: int  # character offsets in the original text
    end: int


@dataclass(frozen=True, slots=True)
class Fingerprint:
    hash: int  # signed 64-bit, as SQLite stores integers
    start: int  # character span of the K tokens it covers
    end: int


def syntax_of(language: str | None) -> Syntax:
    if language == "python":
        return "python"
    return "c" if language in ("javascript", "typescript", "tsx") else "any"


def tokenize(text: str, syntax: Syntax = "any") -> list[Token]:
    tokens: list[Token] = []
    append = tokens.append
    for match in _TOKEN[syntax].finditer(text):
        kind = match.lastgroup
        if kind == "c":
            continue
        value = match.group()
        if kind == "v":
            value = value if value in _KEPT else "V"
        elif kind == "s":
            value = "S"
        elif kind == "n":
            value = "N"
        append(Token(value, match.start(), match.end()))
    return _without_imports(tokens, text)


def _without_imports(tokens: list[Token], text: str) -> list[Token]:
    """Drops statements that start a line with ``import`` or ``from``, brackets included."""
    kept: list[Token] = []
    skipping, depth, previous_end = False, 0, -1
    for token in tokens:
        starts_line = previous_end < 0 or "\n" in text[previous_end : token.start]
        previous_end = token.end
        if skipping and (depth > 0 or not starts_line):
            depth += (token.text in "([{") - (token.text in ")]}")
            continue
        skipping = starts_line and token.text in ("import", "from")
        if skipping:
            depth = 0
            continue
        kept.append(token)
    return kept


def _hash(kgram: list[str]) -> int:
    digest = hashlib.blake2b("\x1f".join(kgram).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def winnow(hashes: list[int], window: int = WINDOW) -> list[int]:
    """Indices of the hashes kept: the rightmost minimum of each window, once each."""
    if not hashes:
        return []
    if len(hashes) <= window:
        return [len(hashes) - 1 - hashes[::-1].index(min(hashes))]
    kept: list[int] = []
    for left in range(len(hashes) - window + 1):
        chunk = hashes[left : left + window]
        smallest = min(chunk)
        index = left + window - 1 - chunk[::-1].index(smallest)
        if not kept or kept[-1] != index:
            kept.append(index)
    return kept


def fingerprints(
    text: str, syntax: Syntax = "any", *, k: int = K, window: int = WINDOW
) -> list[Fingerprint]:
    """The winnowed fingerprints of ``text``; none when it has fewer than ``k`` tokens."""
    tokens = tokenize(text, syntax)
    if len(tokens) < k:
        return []
    words = [token.text for token in tokens]
    hashes = [_hash(words[i : i + k]) for i in range(len(tokens) - k + 1)]
    return [
        Fingerprint(hashes[i], tokens[i].start, tokens[i + k - 1].end)
        for i in winnow(hashes, window)
    ]
