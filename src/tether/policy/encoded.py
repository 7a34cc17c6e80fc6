"""Base64 in a text that decodes to text, where a secret would hide from every rule.

Configuration often carries secrets encoded: a kubeconfig's ``client-key-data`` (a PEM
private key), a Kubernetes Secret's ``data``, a Docker config's ``.dockerconfigjson``, a
credentials file piped through ``base64``. The scanner reads each run that decodes to
text as well, so a rule finds what is inside it.

A run is standard or URL-safe base64 on one line, or wrapped at a fixed width as
``base64`` and PEM write it (each full line 60 to 76 characters). Random bytes almost
never decode as UTF-8 text without control characters, so identifiers and paths of the
base64 alphabet are dropped before any rule runs on them.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Iterator
from dataclasses import dataclass

import re2

# 24 characters hold 18 bytes: "password=" and a value of 8 is about the least a rule finds.
MIN_RUN = 24

# Padding counts towards the 24: "password=" and 8 is 17 bytes, 23 characters and one "=".
_LINE = rf"[A-Za-z0-9+/_\-]{{{MIN_RUN - 2},}}={{0,2}}"
# Wrapped: full lines of a width base64 and PEM use, then a last line that ends there.
_RUN = rf"(?m)(?:[A-Za-z0-9+/]{{60,76}}\r?\n[ \t]*)+[A-Za-z0-9+/]+={{0,2}}\r?$|{_LINE}"
_RUNS = re2.compile(_RUN)
_URL_SAFE = str.maketrans("-_", "+/")
# Control characters other than tab and line breaks: binary data, not text.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclass(frozen=True)
class Encoded:
    start: int  # the run's span in the text it was found in
    end: int
    text: str  # what it decodes to


def decoded_runs(text: str) -> Iterator[Encoded]:
    """Each base64 run in ``text`` that decodes to text, in order."""
    for match in _RUNS.finditer(matched_as(text)):
        start, end = match.span()
        decoded = decode(text[start:end])
        if decoded is not None:
            yield Encoded(start, end, decoded)
        elif "\n" in text[start:end]:
            yield from _not_one_run(text, start, end)


def _not_one_run(text: str, start: int, end: int) -> Iterator[Encoded]:
    """What a wrapped-looking run that does not decode holds: the block without its last
    line (a word such as a heredoc's EOF after it), else each line alone. Its lines are
    split here, not searched by RE2, whose wrapper would read a text beyond ASCII from its
    start again for each search."""
    lines: list[tuple[int, int]] = []  # each line's span, without indentation or "\r"
    at = start
    for line in text[start:end].split("\n"):
        lines.append((at + len(line) - len(line.lstrip(" \t")), at + len(line.rstrip("\r"))))
        at += len(line) + 1
    if len(lines) > 2:
        block_end = lines[-2][1]
        decoded = decode(text[start:block_end])
        if decoded is not None:
            yield Encoded(start, block_end, decoded)
            return
    for line_start, line_end in lines:
        decoded = decode(text[line_start:line_end])
        if decoded is not None:
            yield Encoded(line_start, line_end, decoded)


def matched_as(text: str) -> str | bytes:
    """``text`` as RE2 is best given it: ASCII (most prompts) as bytes, whose offsets are
    its characters'. Given a str, RE2's wrapper encodes it again for every pattern and maps
    each match back to characters, passes that made the rules' scan of an 8 KB prompt
    about a third slower."""
    return text.encode("ascii") if text.isascii() else text


def decode(run: str) -> str | None:
    """``run`` decoded as base64 (either alphabet) to UTF-8 text; None where it is not."""
    whole = "".join(run.split())
    data = whole.rstrip("=")
    if len(whole) < MIN_RUN or len(data) % 4 == 1:
        return None  # too short to hold a secret a rule finds, or no base64 length
    if "-" in data or "_" in data:
        if "+" in data or "/" in data:
            return None  # two alphabets at once: a name or a path, not base64
        data = data.translate(_URL_SAFE)
    try:
        raw = binascii.a2b_base64(data + "=" * (-len(data) % 4), strict_mode=True)
        decoded = raw.decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return None if _CONTROL.search(decoded) else decoded
