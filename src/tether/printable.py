"""Text from outside (a client's prompt, a model's answer, a program's error) made safe to
print at a terminal."""

from __future__ import annotations

import re

# Control characters but tab and newline, C1's included: printed as they are, escape
# sequences among them would drive the reader's terminal (retitle it, hide or clear
# lines, set the clipboard with OSC 52).
# U+2028 and U+2029 too: no line ends there in an editor or git, and a terminal shows
# them as nothing, or as a line break. And the bidirectional overrides, embeddings and
# isolates (Trojan Source), which reorder how the rest of their line is shown. And the
# characters that are nothing but hidden, which a terminal shows as nothing: the
# zero-width space, the word joiner and the byte-order mark, anywhere in the text
# (``is\u200b_admin`` is not ``is_admin``, though it reads the same). Not the joiners nor
# the direction marks: Persian, Indic scripts and emoji sequences are drawn with them, and
# right-to-left text placed by them; escaped, such text could not be read.
_CONTROLS = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b\u2028\u2029\u202a-\u202e\u2060\u2066-\u2069\ufeff]"
)


def printable(text: str) -> str:
    """``text`` with each control character but tab and newline shown as ``\\xNN``, and
    each Unicode line or paragraph separator, bidirectional control and character that is
    nothing but hidden as ``\\uNNNN``."""
    return _CONTROLS.sub(_escaped, text)


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
