"""The declarative scanner rule: its fields, their validation, and the built-in rule file.

Built-in rules live in ``rules.toml`` beside this module; custom rules come from
``policy.rules`` in tether.toml as tables with the same fields. Every regex is compiled by
RE2, whose matching time is linear in the length of the text whatever the pattern, so
neither a rule nor a prompt can make a scan backtrack for ever.
"""

from __future__ import annotations

import functools
import re
import tomllib
import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal, Protocol

import re2

from tether.errors import ConfigError
from tether.policy.regex_syntax import pieces
from tether.policy.validators import VALIDATORS

RuleAction = Literal["block", "redact", "pseudonymize", "annotate"]
RULE_ACTIONS: tuple[RuleAction, ...] = ("block", "redact", "pseudonymize", "annotate")

# What each field means, in the order docs/policy.md lists them.
FIELDS: dict[str, str] = {
    "id": "unique name, letters, digits, `-`, `_` and `.`; findings and overrides use it",
    "description": "what the rule finds, in findings and docs (default: the id)",
    "regex": "RE2 pattern; no look-arounds or backreferences, capture the secret instead; "
    "it must not match the empty string",
    "keywords": "lowercase strings; the regex runs only when one occurs in the lowercased "
    "text (default: always run)",
    "entropy": "minimum Shannon entropy, bits per character, of the secret (default: none)",
    "action": "block, redact, pseudonymize or annotate (default: redact)",
    "validator": "`luhn` (card numbers), `iban` (mod-97), `phone` (8 to 15 digits), "
    "`random` (mixes two of lowercase, uppercase and digits; no placeholder word), "
    "`basic` (base64 of `user:password`) or `url_password` (not a stand-in such as "
    "`password`, `changeme`, `****` or `%s`)",
    "secret_group": "regex group holding the secret, 0 for the whole match (default 0); "
    "if that group is not part of a match, the first later group that is",
}
_REQUIRED = ("id", "regex")
_ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}"

# Texts on which a pattern that can match nothing shows it: an empty one, and ones with
# word and non-word characters and line breaks for anchors such as \b and (?m)^, ending
# in either kind for \b$ and \B$.
_EMPTY_PROBES = ("", "a b\n1-_.Z\n", "a b\n1-_.Z\nz")

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # RE2 would print every rejected pattern to stderr


@dataclass(frozen=True)
class ScanRule:
    """One kind of secret or personal data, how to recognise it and what to do with it."""

    id: str
    description: str
    regex: str
    keywords: tuple[str, ...] = ()
    entropy: float | None = None
    action: RuleAction = "redact"
    validator: str | None = None
    secret_group: int = 0


class RegexMatch(Protocol):
    def span(self, group: int = 0) -> tuple[int, int]: ...


class Pattern(Protocol):
    """The part of a compiled RE2 pattern the scanner uses."""

    @property
    def groups(self) -> int: ...

    def finditer(self, text: str | bytes) -> Iterator[RegexMatch]: ...

    def search(self, text: str | bytes) -> RegexMatch | None: ...


def rule_from_mapping(data: object, *, where: str) -> ScanRule:
    """A validated ``ScanRule`` from a table of fields; ``where`` names it in errors."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: a rule is a table of fields, not {type(data).__name__}")
    unknown = sorted(str(key) for key in data if key not in FIELDS)
    if unknown:
        raise ConfigError(
            f"{where}: unknown field {', '.join(map(repr, unknown))}; "
            f"a rule has {', '.join(FIELDS)}"
        )
    for name in _REQUIRED:
        if name not in data:
            raise ConfigError(f"{where}: field {name!r} is missing; every rule needs id and regex")
    rule_id = _string(data, "id", where)
    if not re2.fullmatch(_ID_PATTERN, rule_id):
        raise ConfigError(
            f"{where}: field 'id' is {rule_id!r}; use letters, digits, '-', '_' and '.' "
            "(at most 64 characters)"
        )
    where = f"{where}, rule {rule_id!r}"
    rule = ScanRule(
        id=rule_id,
        description=_string(data, "description", where) if "description" in data else rule_id,
        regex=_composed(_string(data, "regex", where)),
        keywords=_keywords(data.get("keywords", []), where),
        entropy=_entropy(data.get("entropy"), where),
        action=_action(data.get("action", "redact"), where),
        validator=_validator(data.get("validator"), where),
        secret_group=_secret_group(data.get("secret_group", 0), where),
    )
    compile_rule(rule, where=where)  # reject a bad regex where the rule is declared
    return rule


def compile_rule(rule: ScanRule, *, where: str) -> Pattern:
    """The RE2 pattern of ``rule``; a ``ConfigError`` naming the rule if RE2 rejects it."""
    if rule.validator is not None and rule.validator not in VALIDATORS:
        known = ", ".join(VALIDATORS)
        raise ConfigError(f"{where}: field 'validator' is {rule.validator!r}; use one of {known}")
    try:
        pattern: Pattern = re2.compile(rule.regex, _OPTIONS)
    except re2.error as exc:
        reason = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else exc
        raise ConfigError(
            f"{where}: field 'regex' is not a pattern RE2 accepts ({reason}); RE2 has no "
            "look-arounds or backreferences: capture the secret in a group and set "
            "secret_group instead"
        ) from exc
    if (bad := _open_repeat(rule.regex)) is not None:
        body = bad.strip("{}")
        fixed = "{" + ("0" + body if body.startswith(",") else body) + "}"
        raise ConfigError(
            f"{where}: field 'regex' holds {bad!r}, which RE2 takes as literal text: "
            f"{bad!r} is not a repeat; close it ({fixed}) or escape it (\\{bad}) if the "
            "text is meant"
        )
    if any(_matches_empty(pattern, probe) for probe in _EMPTY_PROBES):
        raise ConfigError(
            f"{where}: field 'regex' {rule.regex!r} matches the empty string, so it would "
            "match at every position of every prompt; make it need at least one character "
            "(e.g. `+` rather than `*`, no empty alternative)"
        )
    if rule.secret_group > pattern.groups:
        raise ConfigError(
            f"{where}: field 'secret_group' is {rule.secret_group} but the regex has only "
            f"{pattern.groups} group(s)"
        )
    return pattern


def either_pattern(regexes: Iterable[str]) -> Pattern | None:
    """One RE2 pattern that matches wherever any of ``regexes`` does; None for fewer than
    two, or where RE2 cannot take them as one (too large together). RE2 finds a match that
    exists whatever memory it is allowed (its DFA falls back to another engine), so a
    text this misses holds a match of none of them."""
    joined = [f"(?:{regex})" for regex in regexes]
    if len(joined) < 2:
        return None
    try:
        pattern: Pattern = re2.compile("|".join(joined), _OPTIONS)
    except re2.error:
        return None
    return pattern


_REPEAT_LIKE = re.compile(r"\{(?:[0-9]+,?[0-9]*|,[0-9]+)\}?")
_REPEAT = re.compile(r"\{[0-9]+(?:,[0-9]*)?\}")


def _open_repeat(regex: str) -> str | None:
    """A brace that reads as a repeat left unclosed or misspelt (``{24``, ``{2,``,
    ``{,3}``), outside a class or quote: RE2 takes it as literal text, so a rule written
    so silently never matches what was meant."""
    for piece in pieces(regex):
        if piece.kind == "char" and regex[piece.start] == "{":
            found = _REPEAT_LIKE.match(regex, piece.start)
            if found and not _REPEAT.fullmatch(found.group()):
                return found.group()
    return None


def _matches_empty(pattern: Pattern, text: str) -> bool:
    return any(start == end for start, end in (m.span(0) for m in pattern.finditer(text)))


@functools.cache
def builtin_rules() -> tuple[ScanRule, ...]:
    """The rules shipped in ``rules.toml``, in their file order (most specific first)."""
    text = resources.files("tether.policy").joinpath("rules.toml").read_text("utf-8")
    tables = tomllib.loads(text).get("rule", [])
    return tuple(
        rule_from_mapping(table, where=f"rules.toml [[rule]] #{number}")
        for number, table in enumerate(tables, start=1)
    )


def _string(data: Mapping[str, Any], name: str, where: str) -> str:
    value = data[name]
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}: field {name!r} must be a non-empty string, not {value!r}")
    return value


_SYNTAX = frozenset(".^$|?*+(){}")  # escapes and classes are pieces of their own
_REPEATS = frozenset("?*+{")


def _composed(regex: str) -> str:
    """``regex`` with the letters and the marks written after them composed (NFC), as the
    text is read (NFD's o and diaeresis as one ö), for a regex pasted from a decomposed
    text: in each run of literal characters, and where that keeps its meaning. Not inside
    a class (``[o\u0308]`` is either), nor the letter and marks a repeat follows
    (``o\u0308?``: the mark alone is optional)."""
    if regex.isascii():
        return regex
    composed: list[str] = []
    run: list[str] = []  # literal characters since the last piece of syntax
    for piece in pieces(regex):
        text = regex[piece.start : piece.end]
        if piece.kind == "char" and text not in _SYNTAX:
            run.append(text)
            continue
        composed.append(_composed_run("".join(run), repeated=text in _REPEATS))
        if piece.kind == "quote":  # literal text: \Q...\E
            text = text[:2] + unicodedata.normalize("NFC", text[2:])
        composed.append(text)
        run.clear()
    composed.append(_composed_run("".join(run), repeated=False))
    return "".join(composed)


def _composed_run(run: str, *, repeated: bool) -> str:
    """``run`` composed; where a repeat follows it, its last letter and marks as written."""
    cut = len(run)
    if repeated:
        cut -= 1
        while cut > 0 and unicodedata.combining(run[cut]):
            cut -= 1
    return unicodedata.normalize("NFC", run[:cut]) + run[cut:]


def _keywords(value: object, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(k, str) and k for k in value):
        raise ConfigError(f"{where}: field 'keywords' must be a list of non-empty strings")
    # The prefilter looks in the lowercased text as the rules read it (each character in
    # its NFKC form, marks composed), so a keyword is read so too.
    return tuple(unicodedata.normalize("NFKC", k).lower() for k in value)


def _entropy(value: object, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 64:
        raise ConfigError(
            f"{where}: field 'entropy' must be bits per character, 0 or more, not {value!r}"
        )
    return float(value)


def _action(value: object, where: str) -> RuleAction:
    for action in RULE_ACTIONS:
        if value == action:
            return action
    raise ConfigError(f"{where}: field 'action' is {value!r}; use one of {', '.join(RULE_ACTIONS)}")


def _validator(value: object, where: str) -> str | None:
    if value is None or (isinstance(value, str) and value in VALIDATORS):
        return value
    raise ConfigError(
        f"{where}: field 'validator' is {value!r}; use one of {', '.join(VALIDATORS)}"
    )


def _secret_group(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{where}: field 'secret_group' must be an integer >= 0, not {value!r}")
    return value
