"""llama.cpp's ``n_indent``: an answer ends before the first line indented too little.

An editor asking for the body of a block sends the cursor's indentation; a line that
starts further left (or a blank line) has left the block, so the answer ends before its
first character, as llama.cpp's server cuts it. The first line, which continues the
cursor's own line, is exempt.
"""

from __future__ import annotations

_INDENTATION = frozenset(" \t")


class IndentLimit:
    """Fed an answer piece by piece: the part of each piece to keep, until a line that is
    indented less than ``minimum`` spaces or tabs starts (then ``ended``)."""

    def __init__(self, minimum: int) -> None:
        self.minimum = minimum
        self.ended = False
        # Set by each newline: the line after it has shown only spaces and tabs so far.
        self._in_indentation = False
        self._indent = 0

    def feed(self, text: str) -> str:
        """``text`` up to where the answer ends: all of it while no line ends it."""
        if self.ended:
            return ""
        for index, char in enumerate(text):
            if self._in_indentation:
                if char in _INDENTATION:
                    self._indent += 1
                    continue
                self._in_indentation = False
                if self._indent < self.minimum:  # a newline here: a blank line, also cut
                    self.ended = True
                    return text[:index]
            if char == "\n":
                self._in_indentation = True
                self._indent = 0
        return text
