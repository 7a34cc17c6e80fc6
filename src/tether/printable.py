"""Text from outside (a client's prompt, a model's answer, a program's error) made safe to
print at a terminal."""

from __future__ import annotations

import re

# Control characters but tab and newline, C1's included: printed as they are, escape
# sequences among them would drive the reader's terminal (retitle it, hide or clear
# lines, set the clipboard with OSC 52).
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """``text`` with each control character but tab and newline shown as ``\\xNN``."""
    return _CONTROLS.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
