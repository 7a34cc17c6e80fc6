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
# (where a top-level statement starts, a one-line import worth keeping)
_PYTHON = (
    re.compile(r"^(?!(?:else|elif|except|finally|case)\b)[A-Za-z_@]", re.M),
    re.compile(r"^(?:import [\w. ,]+|from [\w.]+ import [\w., ]+)[ \t]*(?:#.*)?\n", re.M),
)
_JS = (
    re.compile(r"^(?!(?:else|catch|finally)\b)[A-Za-z_$@]", re.M),
    re.compile(
        r"""^(?:import\s[^\n]*\bfrom\s*['"][^'"\n]+['"]|(?:const|let|var)\s[^\n]*require\(\s*"""
        r"""['"][^'"\n]+['"]\s*\))[ \t;]*\n""",
        re.M,
    ),
)


def window(prefix: str, suffix: str, language: Language) -> tuple[str, str]:
    """Prefix and suffix cut to about ``CONTEXT_LINES`` lines each, at statement starts."""
    statement, keep = _PYTHON if language == "python" else _JS
    extra = prefix.count("\n") - CONTEXT_LINES
    if extra > 0:
        found = statement.search(prefix, _line_offset(prefix, extra))
        if found:
            cut = found.start()
            kept = "".join(dict.fromkeys(m.group() for m in keep.finditer(prefix, 0, cut)))
            prefix = kept + prefix[cut:]
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


def _line_offset(text: str, line: int) -> int:
    """Offset where 0-based ``line`` of ``text`` starts."""
    offset = 0
    for _ in range(line):
        offset = text.index("\n", offset) + 1
    return offset
