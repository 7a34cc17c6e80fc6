"""A checked text and the conversions between its offsets, lines and columns.

Rules see code through three coordinate systems: Python's ``ast`` gives 1-based lines and
UTF-8 byte columns, tree-sitter gives byte offsets, and a :class:`~tether.findings.Finding`
wants character offsets plus a 1-based line and column. ``Source`` converts between them.
"""

from __future__ import annotations

import bisect
import re
from functools import cached_property

_LONE_CR = re.compile(r"\r(?!\n)")


def lone_cr_as_lf(text: str) -> str:
    """``text`` with each carriage return that ends a line on its own (classic Mac OS
    files) as a line feed. Python's parser, bandit, ruff and editors end a line there; the
    line table counts only line feeds, so a finding in such a file was placed on line 1,
    at a column past its end. One character for one: every offset stays where it was."""
    return _LONE_CR.sub("\n", text) if "\r" in text else text


def bom_as_form_feed(text: str) -> str:
    """``text`` with a leading byte-order mark as a form feed. A file read as it is stored
    begins with one (Windows editors write it), which Python's parser refuses in text: the
    file was a syntax error and no security rule read it. A form feed is blank to every
    parser, and one character for one: every offset stays where it was."""
    return "\f" + text[1:] if text.startswith("\ufeff") else text


class Source:
    """Text with a line table, built lazily because most texts produce no finding."""

    def __init__(self, text: str) -> None:
        self.text = text

    @cached_property
    def data(self) -> bytes:
        return self.text.encode("utf-8", errors="surrogatepass")

    @cached_property
    def is_ascii(self) -> bool:
        return self.text.isascii()

    @cached_property
    def line_starts(self) -> list[int]:
        starts = [0]
        find = self.text.find
        index = find("\n")
        while index != -1:
            starts.append(index + 1)
            index = find("\n", index + 1)
        return starts

    @property
    def line_count(self) -> int:
        return len(self.line_starts)

    def position(self, offset: int) -> tuple[int, int]:
        """1-based (line, column) of a character offset."""
        offset = max(0, min(offset, len(self.text)))
        index = bisect.bisect_right(self.line_starts, offset) - 1
        return index + 1, offset - self.line_starts[index] + 1

    def line_start(self, line: int) -> int:
        """Character offset where 1-based ``line`` starts (clamped to the text)."""
        starts = self.line_starts
        if line < 1:
            return 0
        if line > len(starts):
            return len(self.text)
        return starts[line - 1]

    def line_end(self, line: int) -> int:
        """Character offset of the newline that ends ``line`` (or the end of the text)."""
        if line >= len(self.line_starts):
            return len(self.text)
        return self.line_starts[line] - 1

    def line_text(self, line: int) -> str:
        return self.text[self.line_start(line) : self.line_end(line)]

    def offset_of_utf8_column(self, line: int, byte_column: int) -> int:
        """Character offset of ``ast``'s (1-based line, UTF-8 byte column)."""
        start = self.line_start(line)
        if self.is_ascii:
            return min(start + byte_column, len(self.text))
        encoded = self.line_text(line).encode("utf-8", errors="surrogatepass")
        chars = encoded[:byte_column].decode("utf-8", errors="ignore")
        return start + len(chars)

    def offset_of_byte(self, byte_offset: int) -> int:
        """Character offset of a UTF-8 byte offset (tree-sitter's coordinates)."""
        if self.is_ascii:
            return min(byte_offset, len(self.text))
        return len(self.data[:byte_offset].decode("utf-8", errors="ignore"))
