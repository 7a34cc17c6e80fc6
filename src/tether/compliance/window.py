"""How much of the file around a completion the checks read.

Editors send prefixes and suffixes of any length; parsing thousands of lines for each
completion would cost tens of milliseconds. Only about ``CONTEXT_LINES`` lines on each
side are kept, cut where a top-level statement starts, so the window still parses. The
one-line imports of the part of the prefix dropped are kept too, because the rules
resolve names through them (``import subprocess as sp``, ``require("child_process")``).
"""

from __future__ import annotations

import re

from tether.compliance.languages import Language

CONTEXT_LINES = 300

_CONTINUATIONS = ("else", "elif", "except", "finally", "case")
# (where a top-level statement starts, a one-line import worth keeping, the words that
# can open one: found by plain string search, which is many times faster than a regex
# over every position of a long prefix)
_PYTHON = (
    re.compile(r"^(?!(?:else|elif|except|finally|case)\b)[A-Za-z_@]", re.M),
    re.compile(r"(?:import [\w. ,]+|from [\w.]+ import [\w., ]+)[ \t]*(?:#.*)?\n"),
    ("import ", "from "),
)
_JS = (
    re.compile(r"^(?!(?:else|catch|finally)\b)[A-Za-z_$@]", re.M),
    re.compile(
        r"""(?:import\s[^\n]*\bfrom\s*['"][^'"\n]+['"]|(?:const|let|var)\s[^\n]*require\(\s*"""
        r"""['"][^'"\n]+['"]\s*\))[ \t;]*\n"""
    ),
    ("import", "const", "let", "var"),
)


def window(prefix: str, suffix: str, language: Language) -> tuple[str, str]:
    """Prefix and suffix cut to about ``CONTEXT_LINES`` lines each, at statement starts."""
    statement, keep, openers = _PYTHON if language == "python" else _JS
    if prefix.count("\n") > CONTEXT_LINES:
        found = statement.search(prefix, _start_of_last_lines(prefix, CONTEXT_LINES))
        if found:
            cut = found.start()
            prefix = _imports(prefix, cut, keep, openers) + prefix[cut:]
    if suffix.count("\n") > CONTEXT_LINES:
        found = statement.search(suffix, _line_offset(suffix, CONTEXT_LINES))
        if found:
            suffix = suffix[: found.start()]
    return prefix, suffix


def top_level_start(prefix: str) -> int:
    """Offset of the last line in ``prefix`` that starts a top-level Python statement."""
    lines = prefix.split("\n")
    starts = [0]
    for line in lines[:-1]:
        starts.append(starts[-1] + len(line) + 1)
    for index in range(len(lines) - 1, -1, -1):
        line = lines[index]
        first_word = line.split(maxsplit=1)[0].rstrip(":") if line.strip() else ""
        if not line or line[0].isspace() or line[0] in "#)]}@" or first_word in _CONTINUATIONS:
            continue
        while index > 0 and lines[index - 1].startswith("@"):  # keep a def's decorators
            index -= 1
        return starts[index]
    return 0


def _imports(text: str, end: int, keep: re.Pattern[str], openers: tuple[str, ...]) -> str:
    """The one-line imports in ``text[:end]``, each once, in the order they come."""
    found: dict[str, int] = {}
    starts = sorted(at for opener in openers for at in _line_starts_with(text, opener, end))
    for at in starts:
        matched = keep.match(text, at, end)
        if matched:
            found.setdefault(matched.group(), at)
    return "".join(found)


def _line_starts_with(text: str, opener: str, end: int) -> list[int]:
    """Offsets before ``end`` of the lines of ``text`` that start with ``opener``."""
    found = [0] if text.startswith(opener) and end > 0 else []
    at = text.find("\n" + opener, 0, end)
    while at >= 0:
        found.append(at + 1)
        at = text.find("\n" + opener, at + 1, end)
    return found


def _start_of_last_lines(text: str, count: int) -> int:
    """Offset where the last ``count`` lines of ``text`` start; it has more than that."""
    at = len(text)
    for _ in range(count + 1):
        at = text.rindex("\n", 0, at)
    return at + 1


def _line_offset(text: str, line: int) -> int:
    """Offset where 0-based ``line`` of ``text`` starts."""
    offset = 0
    for _ in range(line):
        offset = text.index("\n", offset) + 1
    return offset
