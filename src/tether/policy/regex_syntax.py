"""A regex (RE2's syntax) read as its pieces, as far as the checks on custom rules need:
escapes, quoted text, classes and single characters."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

Kind = Literal["escape", "quote", "class", "char"]


@dataclass(frozen=True)
class Piece:
    kind: Kind
    start: int
    end: int
    closed: bool = True  # a class or quote that ends before the regex does


def pieces(regex: str) -> Iterator[Piece]:
    """``regex``'s pieces in order: an escape (``\\d``, ``\\x{1F600}``, ``\\p{Greek}``),
    text quoted by ``\\Q`` to ``\\E`` (or to the end), a class (``[^]a-z[:digit:]]``, a
    ``]`` first in it being one of its members) and any other single character."""
    index = 0
    while index < len(regex):
        piece = _piece(regex, index)
        yield piece
        index = piece.end


def _piece(regex: str, index: int) -> Piece:
    char = regex[index]
    if char == "\\" and regex.startswith("Q", index + 1):
        end = regex.find("\\E", index + 2)
        return Piece("quote", index, len(regex) if end < 0 else end + 2, end >= 0)
    if char == "\\":
        end = index + 2
        if regex[index + 1 : index + 2] in ("x", "p", "P") and regex.startswith("{", end):
            close = regex.find("}", end + 1)
            end = len(regex) if close < 0 else close + 1
        return Piece("escape", index, min(end, len(regex)))
    if char == "[":
        return _class(regex, index)
    return Piece("char", index, index + 1)


def _class(regex: str, start: int) -> Piece:
    index = start + 1 + regex.startswith("^", start + 1)
    index += regex.startswith("]", index)  # a "]" first in a class is one of its members
    while index < len(regex):
        if regex[index] == "\\":
            index += 2
        elif regex.startswith("[:", index) and (posix := regex.find(":]", index + 2)) != -1:
            index = posix + 2  # [:digit:]
        elif regex[index] == "]":
            return Piece("class", start, index + 1)
        else:
            index += 1
    return Piece("class", start, len(regex), closed=False)
