"""Editable prompt templates: Jinja2, sandboxed, from a folder that overrides the built-ins.

``chat.j2`` adds a system preamble to chats, ``fim.j2`` lays out the context placed before
the code at the cursor, ``suggest.j2`` asks for a changed file. A team copies one into
``templates.dir`` and edits it; ``tether templates`` shows which is in force.
"""

from __future__ import annotations

import difflib
import hashlib
import logging
import threading
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

from jinja2 import (
    ChoiceLoader,
    FileSystemLoader,
    StrictUndefined,
    Template,
    TemplateError,
    TemplateSyntaxError,
)
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from tether.errors import ConfigError

log = logging.getLogger("tether")

NAMES = ("chat", "fim", "suggest")
# Variables of the kinds the pipeline passes each template, for a trial render.
_TRIAL: dict[str, dict[str, Any]] = {
    "chat": {
        "messages": [{"role": "user", "content": "Write a function that adds two numbers."}],
        "snippets": [
            {
                "name": "add",
                "language": "python",
                "code": "def add(a, b):\n    return a + b\n",
                "label": "vetted snippet 1 v1",
            }
        ],
    },
    "fim": {
        "snippets": [{"filename": "util.py", "text": "def helper():\n    return 1\n"}],
        "language": "python",
        "comment": "#",
    },
    "suggest": {
        "filename": "util.py",
        "language": "python",
        "source": "def helper():\n    return 1\n",
        "instruction": "Add a docstring.",
    },
}
_BUILTIN = files("tether.templates") / "builtin"


@dataclass(frozen=True)
class TemplateInfo:
    name: str
    origin: str  # "built-in" or the file that overrides it
    sha256: str


# The most a template may make of one ``*`` (a text or a list repeated): a prompt is bounded
# by the model's window anyway, and ``'x' * 50000000`` took half a gigabyte before a request
# was refused as too long. ``**`` is bounded for the same reason.
MAX_REPEAT = 1 << 20
MAX_POWER_BITS = 4096
# How long the trial render at start may take: a loop within a loop over range(100000) never
# ends for a request, and should be named before any request waits on it.
TRIAL_TIMEOUT_S = 5.0


class _Sandbox(ImmutableSandboxedEnvironment):
    """Jinja's sandbox, where a ``*`` or ``**`` that would make something huge is refused."""

    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            made = _repeated_size(left, right) or _repeated_size(right, left)
            if made > MAX_REPEAT:
                raise SecurityError(
                    f"a repetition would make {made:,} items, more than {MAX_REPEAT:,}"
                )
        if operator == "**" and _power_bits(left, right) > MAX_POWER_BITS:
            raise SecurityError(f"a power would have more than {MAX_POWER_BITS} bits")
        return super().call_binop(context, operator, left, right)


def _repeated_size(seq: Any, times: Any) -> int:
    """The length ``seq * times`` would have, for a text or a list repeated; else 0."""
    if isinstance(seq, str | list | tuple) and isinstance(times, int):
        return len(seq) * times
    return 0


def _power_bits(base: Any, exponent: Any) -> int:
    """About how many bits ``base ** exponent`` would have, for whole numbers; else 0."""
    if isinstance(base, int) and isinstance(exponent, int) and exponent > 0 and abs(base) > 1:
        return exponent * abs(base).bit_length()
    return 0


class PromptTemplates:
    def __init__(self, folder: Path | None) -> None:
        if folder is not None and not folder.is_dir():
            raise ConfigError(f"templates.dir {folder} is not a folder; create it or unset it")
        self.folder = folder
        loaders = [FileSystemLoader(str(folder))] if folder else []
        loaders.append(FileSystemLoader(str(_BUILTIN)))
        self._env = _Sandbox(
            loader=ChoiceLoader(loaders),
            undefined=StrictUndefined,
            keep_trailing_newline=True,
            autoescape=False,  # prompts are plain text, not HTML
        )
        self._cache: dict[str, Template] = {}

    def source(self, name: str) -> str:
        self._check(name)
        custom = self.folder / f"{name}.j2" if self.folder is not None else None
        if custom is None or not custom.is_file():
            return (_BUILTIN / f"{name}.j2").read_text(encoding="utf-8")
        try:
            return custom.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(
                f"prompt template {custom} is not UTF-8 text ({exc.reason}); save it as UTF-8, "
                "or remove it to use the built-in one"
            ) from exc

    def info(self) -> list[TemplateInfo]:
        result = []
        for name in NAMES:
            digest = hashlib.sha256(self.source(name).encode()).hexdigest()
            result.append(TemplateInfo(name, self._origin(name), digest))
        return result

    def render(self, name: str, **variables: Any) -> str:
        template = self._load(name)
        try:
            rendered: str = template.render(**variables)
        except TemplateError as exc:
            raise ConfigError(
                f"prompt template {name}.j2 failed: {exc}; fix it (tether templates show {name})"
            ) from exc
        except RecursionError as exc:  # a macro that calls itself without end
            raise ConfigError(
                f"prompt template {name}.j2 failed: it calls a macro within itself without "
                f"end; fix it (tether templates show {name})"
            ) from exc
        return rendered

    def load_all(self) -> None:
        """Compile every template and render it once with variables like a request's, so
        that a broken one (its syntax, a variable no request gives it) is named at start,
        not by every request that needs it."""
        for name in NAMES:
            self._trial(name)
        for stray in self.strays():
            log.warning("templates.dir %s: %s", self.folder, stray)

    def problem(self, name: str) -> str:
        """Why template ``name`` would fail every request; "" when it would not."""
        try:
            self._trial(name)
        except ConfigError as exc:
            return exc.message
        return ""

    def strays(self) -> list[str]:
        """What in ``templates.dir`` looks like a template but is none of them (a misspelt
        ``chatt.j2``), each with the one it may mean: it is never read."""
        if self.folder is None:
            return []
        said = []
        for path in sorted(self.folder.glob("*.j2")):
            if path.stem in NAMES:
                continue
            close = difflib.get_close_matches(path.stem, NAMES, n=1, cutoff=0.6)
            meant = f" (did you mean {close[0]}.j2?)" if close else ""
            said.append(f"{path.name} is not a template tether reads{meant}")
        return said

    def _trial(self, name: str) -> None:
        """Render ``name`` once with a request's kind of variables, in a thread of its own,
        given up on (the thread left to end by itself) past ``TRIAL_TIMEOUT_S``."""
        failed: list[ConfigError] = []

        def render() -> None:
            try:
                self.render(name, **_TRIAL[name])
            except ConfigError as exc:
                failed.append(exc)

        trial = threading.Thread(target=render, name=f"tether-template-{name}", daemon=True)
        trial.start()
        trial.join(TRIAL_TIMEOUT_S)
        if trial.is_alive():
            raise ConfigError(
                f"prompt template {self._origin(name)} takes more than {TRIAL_TIMEOUT_S:g} s "
                "to render for a small request (a loop within a loop?); fix it, or remove it "
                "to use the built-in one"
            )
        if failed:
            raise failed[0]

    def _load(self, name: str) -> Template:
        self._check(name)
        if name not in self._cache:
            try:
                self._cache[name] = self._env.get_template(f"{name}.j2")
            except (TemplateError, UnicodeDecodeError) as exc:
                where = f" at line {exc.lineno}" if isinstance(exc, TemplateSyntaxError) else ""
                raise ConfigError(
                    f"prompt template {self._origin(name)} is broken{where} ({exc}); fix it, "
                    "or remove it to use the built-in one"
                ) from exc
        return self._cache[name]

    def _origin(self, name: str) -> str:
        custom = self.folder / f"{name}.j2" if self.folder else None
        return str(custom) if custom is not None and custom.is_file() else "built-in"

    @staticmethod
    def _check(name: str) -> None:
        if name not in NAMES:
            raise ConfigError(f"no prompt template {name!r}; templates: {', '.join(NAMES)}")
