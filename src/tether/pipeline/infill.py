"""What editors do around a fill-in-the-middle request to a model without FIM tokens.

Such a model only continues the code before the cursor: it opens with comments, writes past
the hole, and rewrites code that already follows the cursor. ``EditorFilter`` reads its
output line by line as it streams and keeps what belongs in the hole:

- single or multi-line from the cursor's context, as Tabby's agents decide: one line when
  code is on both sides of the cursor, more when nothing but closing brackets follow it;
- a cursor at the start of a line gets the indentation an editor would give it
  (``auto_indent``): the prompt ends with it, so the model writes the body, not tests;
- it stops where the output meets the code after the cursor (the same line, one nearly the
  same, or a line that ends with the rest of the cursor's line), where a line leaves the
  block (less indented), after a line that opens the block the code after the cursor is
  the body of, at a fence, and at a line written the third time in a row;
- it drops blank lines, a fence and comment lines that the model opens with, and stops
  when those loop (a line the third time) or go on for more than a dozen lines;
- a cursor after nothing but indentation, whose line the model ends to write one of its
  own, gets that line without the indentation the cursor already has.

Lines go out only once complete, so what streams out is never taken back; when the filter
is done the pipeline stops the engine at once, which also saves its time.
"""

from __future__ import annotations

import difflib
from collections import Counter
from dataclasses import dataclass, field

FUZZY_SAME = 0.9  # how alike a generated line and the code after the cursor must be
REPEATS_TO_STOP = 3  # a line written this many times, in a row or among opening lines
# Lines of blanks, fences and comments a model may open with before it is judged to be
# writing no code at all (a loop of "# Example usage:" would spend the whole budget).
MAX_OPENING_LINES = 12
_COMMENTS = ("#", "//", "--")
_CLOSERS = set(")]}'\"`;, ")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def _body_indent(prefix: str) -> int:
    """The indentation of the body of the top-level definition the prefix ends in; 0 at
    the top level."""
    code = [ln for ln in prefix.split("\n") if ln.strip()]
    tops = [i for i, ln in enumerate(code) if not _indent(ln)]
    if not tops or not code[tops[-1]].rstrip().endswith((":", "{")):
        return 0
    body = code[tops[-1] + 1 :]
    return min((_indent(ln) for ln in body), default=1)


def primer(prefix: str, suffix: str) -> str:
    """What the prompt ends with so that the model writes at the editor's indentation.

    One space short: a model's word tokens carry their space, so after the whole
    indentation it writes one too many. At the end of the code the whole indentation:
    the model may start a new line to leave the block, as the last line often does.
    """
    lead = auto_indent(prefix)
    if lead.endswith(" ") and suffix.strip():
        return lead[:-1]
    return lead


def auto_indent(prefix: str) -> str:
    """The indentation an editor gives a new line, where the cursor is at a line's start.

    A small model continuing ``...\"\"\"\n\n`` believes the function ended and writes
    tests; at the body's indentation it writes the body.
    """
    if not prefix or not prefix.endswith("\n"):
        return ""
    code = [ln for ln in prefix.split("\n") if ln.strip()]
    if not code:
        return ""
    last = code[-1]
    indent = last[: _indent(last)]
    if last.rstrip().endswith((":", "{", "(", "[")):
        indent += "\t" if indent.startswith("\t") else "    "
    return indent


@dataclass
class EditorFilter:
    single_line: bool
    head: str  # the cursor's line before the cursor: what the first line continues
    block_indent: int  # a line indented less than this has left the block
    next_code: str  # the first code after the cursor, stripped
    next_indent: int | None  # and its indentation, when it starts a line
    rest_of_line: str  # the code after the cursor on its line, stripped
    rest_leads_with: str  # the blanks between the cursor and that code
    newline_at_end: bool  # the hole is whole lines before code: the middle ends a line
    in_comment: bool = False  # the cursor is inside a comment: comments are what it wants
    # The indentation the editor has given the cursor's line (a cursor after nothing but
    # indentation, or a primed line start); None within code.
    indent_target: int | None = None
    done: bool = False
    _pending: str = ""  # the line being written
    _accepted: int = 0  # lines sent
    _blank: int = 0  # blank lines held back until code follows them
    _started: bool = False  # past the blank, fence and comment lines the model opens with
    _opening: Counter[str] = field(default_factory=Counter)  # those lines, stripped
    # The first line came one space deep and went out without it. A model may go on from
    # that line's depth, its later lines an odd number of spaces in from the cursor: then
    # each goes out one space shallower too (decided on the first of them).
    _first_deep: bool = False
    _shallower: bool | None = None
    _sent: list[str] = field(default_factory=list)
    # Characters of the answer read up to where the hole was found filled: the lines the
    # filter dropped were generated all the same, and are charged.
    read: int = 0

    @classmethod
    def around(cls, prefix: str, suffix: str, primed: bool = False) -> EditorFilter:
        """The filter for a hole between ``prefix`` and ``suffix``; ``primed``: the prompt
        ended with ``auto_indent(prefix)``, which the answer must then begin with."""
        head = prefix.rsplit("\n", 1)[-1]
        tail = suffix.split("\n", 1)[0]  # the cursor's line after the cursor
        following = [ln for ln in suffix.split("\n")[1:] if ln.strip()]
        at_line_end = set(tail) <= _CLOSERS
        if not at_line_end:
            next_line, next_indent = tail, (_indent(tail) if not head else None)
        else:
            next_line = following[0] if following else ""
            next_indent = _indent(next_line) if following else None
        # Within a line, the block is the line's; on a line of its own, the first line of
        # the answer sets it, and that line must stay inside the enclosing definition.
        block_indent = _indent(head) if head.strip() else _body_indent(prefix)
        editor = cls(
            # Code on both sides of the cursor: the hole is within the line.
            single_line=bool(head.strip()) and not at_line_end,
            head=head,
            block_indent=block_indent,
            next_code=next_line.strip(),
            next_indent=next_indent,
            rest_of_line=tail.strip(),
            rest_leads_with=tail[: len(tail) - len(tail.lstrip())],
            newline_at_end=not head and bool(tail.strip()),
            in_comment=head.lstrip().startswith(_COMMENTS),
        )
        editor._pending = primer(prefix, suffix) if primed and not head else ""
        editor.read = -len(editor._pending)  # the prompt's, not the answer's
        if not head.strip() and (head or primed):
            editor.indent_target = len(head) if head else len(auto_indent(prefix))
        return editor

    def feed(self, text: str) -> str:
        """What of ``text`` (with what came before it) may go out now."""
        if self.done:
            return ""
        self._pending += text
        out = []
        while not self.done:
            line, ended, rest = self._pending.partition("\n")
            if self._leaves_the_block(line):
                # Known from the line's first character: a model that writes a long line
                # there (usage and a comment) would otherwise run on to max_tokens.
                self.done = True
                # Read as far as that character, however much came with it.
                self.read += len(line) - len(line.lstrip()) + 1
                self._pending = ""
            elif ended:
                self._pending = rest
                self.read += len(line) + 1
                out.append(self._line(line))
            else:
                break
        return "".join(out)

    def finish(self) -> str:
        """The stream ended: judge the unfinished last line, and end the middle."""
        if not self.done:
            self.read += len(self._pending)
        out = "" if self.done else self._line(self._pending)
        self._pending = ""
        self.done = True
        if self.newline_at_end and self._accepted:
            out += "\n"
        return out

    def text_so_far(self) -> str:
        return "".join(self._sent)

    def _line(self, line: str) -> str:
        stripped = line.strip()
        if not stripped and not self._accepted and self.head.strip() and not self.single_line:
            return self._accept("", line)  # the cursor's line ends here; the answer goes on
        if not self._started:
            if (
                (not stripped and not self.single_line)
                or stripped.startswith("```")
                or (stripped.startswith(_COMMENTS) and not self.in_comment)
            ):
                return self._drop_opening(stripped)  # a blank, a fence or a comment
            self._started = True
        if not self._accepted and not self._after_its_own_line():
            self._first_deep = self._one_space_deep(line)  # accepted next, or the hole ends
        line, whole = self._placed(line)
        if self._ends_before(whole):
            self.done = True
            return ""
        if not stripped and self._accepted:
            self._blank += 1
            return ""
        before = REPEATS_TO_STOP - 1
        if [sent.lstrip("\n") for sent in self._sent[-before:]] == [line] * before:
            self.done = True  # the third time in a row: the model is stuck in a loop
            return ""
        if self.rest_of_line and whole.rstrip().endswith(self.rest_of_line):
            # The line goes on to write what follows the cursor: it ends the hole there.
            self.done = True
            middle = line.rstrip()[: -len(self.rest_of_line)]
            if self.rest_leads_with and middle.endswith(self.rest_leads_with):
                middle = middle[: -len(self.rest_leads_with)]  # the suffix has those blanks
            return self._accept(middle, whole)
        return self._accept(line, whole)

    def _after_its_own_line(self) -> bool:
        """The model ended the cursor's line, blank but for its indentation, and opened
        one of its own."""
        return bool(self._opening) and bool(self.head) and not self.head.strip()

    def _placed(self, line: str) -> tuple[str, str]:
        """The line as the answer gives it, and as the file has it (``whole``)."""
        if self._accepted:
            if self._first_deep and self._shallower is None and line.strip():
                depth = _indent(line) - (self.indent_target or 0)
                self._shallower = line.startswith(" ") and depth % 2 == 1
            if self._shallower and line.startswith(" "):
                line = line[1:]
            return line, line
        if self._after_its_own_line():
            # At the cursor, that line goes without the indentation already there.
            line_at_cursor = line[len(self.head) :] if line.startswith(self.head) else line.lstrip()
            return line_at_cursor, line
        if self._one_space_deep(line):
            # A model's word token carries its space: after the whole indentation, the
            # first line would sit one space deeper than the editor put the cursor.
            line = line[1:]
        return line, self.head + line

    def _leaves_the_block(self, partial: str) -> bool:
        """Whether the line being written, from what of it has come, is one that ends the
        hole by its indentation whatever follows: code, not a blank, comment or fence line
        the model may open with, starting left of the block."""
        stripped = partial.strip()
        if not stripped or stripped[0] in "#/-`":
            return False
        judged = self._accepted > 0 or not self.head.strip()
        return judged and _indent(self._placed(partial)[1]) < self.block_indent

    def _drop_opening(self, stripped: str) -> str:
        """Leave out a line the model opens with; end the hole when those lines loop or
        go on without code."""
        self._opening[stripped] += 1
        if stripped and self._opening[stripped] >= REPEATS_TO_STOP:
            self.done = True
        if self._opening.total() > MAX_OPENING_LINES:
            self.done = True
        return ""

    def _one_space_deep(self, line: str) -> bool:
        if self.indent_target is None or not line.strip():
            return False
        depth = _indent(self.head + line)
        return depth == self.indent_target + 1 and line.startswith(" ") and depth > 1

    def _accept(self, line: str, whole: str) -> str:
        out = ("\n" * (self._blank + 1) if self._accepted else "") + line
        if not self._accepted and not self.head.strip():
            self.block_indent = _indent(whole)
        self._blank = 0
        self._accepted += 1
        self._sent.append(out)
        if self.single_line or self._opens_the_next_block(whole):
            self.done = True
        return out

    def _ends_before(self, whole: str) -> bool:
        stripped = whole.strip()
        if stripped.startswith("```"):
            return True
        # The first line of a single-line hole is the hole, however it looks.
        if stripped and (self._accepted or not self.single_line) and self._meets(stripped):
            return True
        # A first line after code on the cursor's line continues it: its indentation is set.
        judged = self._accepted > 0 or not self.head.strip()
        return bool(stripped) and judged and _indent(whole) < self.block_indent

    def _opens_the_next_block(self, whole: str) -> bool:
        """The line opens a block, and the code after the cursor is that block's body."""
        return (
            not self.single_line
            and self.next_indent is not None
            and whole.rstrip().endswith((":", "{"))
            and _indent(whole) < self.next_indent
        )

    def _meets(self, stripped: str) -> bool:
        """The line is the code after the cursor, its start, or nearly the same."""
        if not self.next_code:
            return False
        if stripped == self.next_code or (
            len(stripped) >= 6 and self.next_code.startswith(stripped)
        ):
            return True
        ratio = difflib.SequenceMatcher(None, stripped, self.next_code).ratio()
        return len(stripped) >= 3 and ratio >= FUZZY_SAME
