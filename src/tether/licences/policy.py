"""The licence policy: which SPDX licences may ship, which may not, and reviewed exceptions.

An expression passes when some choice it offers uses allowed licences only: ``A OR B``
needs one of them, ``A AND B`` both. ``A WITH E`` is decided by an entry naming that exact
pair, allowed or denied, and otherwise by ``A`` (only when SPDX lists ``E`` as an
exception): the more specific entry wins either way. A denied licence never passes; one
neither allowed nor denied does not either, and neither does an unknown one. A package
passes when its licence and that of every part it bundles (a wheel's native libraries)
do. A package under ``exceptions`` passes with the reason a person wrote; an exception a
review shows is not used (its package passes without it, or is not installed) is
reported as stale.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from license_expression import ExpressionError, LicenseSymbol, LicenseWithExceptionSymbol
from packaging.utils import canonicalize_name

from tether.errors import ConfigError
from tether.licences.identify import PUBLIC_DOMAIN, UNKNOWN
from tether.settings import Settings
from tether.store.licences import licensing

# SPDX's own grammar for a licence it does not list: LicenseRef-, or DocumentRef-…: before.
_LICENCE_REFERENCE = re.compile(
    r"(?:DocumentRef-[A-Za-z0-9.\-]+:)?LicenseRef-[A-Za-z0-9.\-]+", re.IGNORECASE
)


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str


@dataclass(frozen=True)
class StaleException:
    package: str  # as licences.exceptions names it, so that it can be found there
    reason: str


@dataclass(frozen=True)
class LicencePolicy:
    allow: frozenset[str]
    deny: frozenset[str]
    exceptions: dict[str, str]
    setting: str = "licences.allow"  # where the allowed licences are set, for messages
    # Each exception's canonical name as licences.exceptions writes it (SmolLM2-….Q4_1).
    written: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings) -> LicencePolicy:
        chosen = settings.licences
        problems: list[str] = []
        allow: set[str] = set()
        deny: set[str] = set()
        for listed, into, key in ((chosen.allow, allow, "allow"), (chosen.deny, deny, "deny")):
            for entry in listed:
                canonical = _canonical(entry)
                if canonical is None:
                    problems.append(_not_an_id(f"licences.{key}", entry))
                else:
                    into.add(canonical)
        if both := sorted(allow & deny):
            problems.append(_both(both, chosen.model_fields_set))
        for package, reason in chosen.exceptions.items():
            if not package.strip():  # a model's id (Qwen/Qwen2.5-…, name:tag) is a name too
                problems.append(
                    "licences.exceptions names an empty package: name the package or model "
                    "as `tether licences` lists it"
                )
            elif not reason.strip():
                problems.append(f"licences.exceptions.{package} needs a reason")
        if problems:
            raise ConfigError("; ".join(problems))
        exceptions = {str(canonicalize_name(k)): v for k, v in chosen.exceptions.items()}
        written = {str(canonicalize_name(k)): k for k in chosen.exceptions}
        return cls(frozenset(allow), frozenset(deny), exceptions, written=written)

    @classmethod
    def allowing(cls, allowed: Iterable[str]) -> LicencePolicy:
        """A policy that allows ``allowed`` (ids SPDX does not list, such as
        ``LicenseRef-…``, as written) and nothing else: the store's licence gate."""
        if wrong := [entry for entry in allowed if _canonical(entry) is None]:
            raise ConfigError("; ".join(_not_an_id("store.licences", entry) for entry in wrong))
        return cls(
            frozenset(_written(entry) for entry in allowed), frozenset(), {}, "store.licences"
        )

    def judge(
        self, package: str, expression: str, bundled: Iterable[tuple[str, str]] = ()
    ) -> Verdict:
        """The verdict on a package: its exception, else its licence and the licence of
        each part it bundles, ``(name, licence)``, which must all pass."""
        reason = self.exceptions.get(canonicalize_name(package))
        if reason is not None:
            return Verdict(True, f"exception: {reason}")
        return self.judge_licence(expression, bundled)

    def judge_licence(self, expression: str, bundled: Iterable[tuple[str, str]] = ()) -> Verdict:
        """The verdict on a package's licence and its bundled parts', leaving its
        exception aside."""
        own = self._judge_one(expression)
        blockers = [] if own.ok else [own.reason]
        for name, licence in bundled:
            verdict = self._judge_one(licence)
            if not verdict.ok:
                blockers.append(f"bundled {name}: {verdict.reason}")
        return Verdict(False, "; ".join(blockers)) if blockers else own

    def _judge_one(self, expression: str) -> Verdict:
        if expression == UNKNOWN:
            return Verdict(
                False,
                "licence unknown: read the package's licence, then add it under "
                "[licences.exceptions] with the reason",
            )
        return self.allows(expression, validate=True)

    def allows(self, expression: str, validate: bool = False) -> Verdict:
        """Whether ``expression`` offers a choice of allowed licences only; ``validate``
        refuses ids SPDX does not list."""
        try:
            parsed = licensing().parse(expression)
        except ExpressionError as exc:
            return Verdict(False, f"not an SPDX expression: {exc}")
        if parsed is None:
            return Verdict(False, "no licence given")
        unknown = [k for k in licensing().unknown_license_keys(parsed) if not _is_reference(k)]
        if validate and unknown:
            return Verdict(
                False, f"not an SPDX expression: unknown licence id(s): {', '.join(unknown)}"
            )
        ok, blockers = self._satisfied(parsed)
        if ok:
            return Verdict(True, "allowed")
        return Verdict(False, "; ".join(dict.fromkeys(blockers)))

    def _satisfied(self, node: Any) -> tuple[bool, list[str]]:
        if isinstance(node, LicenseWithExceptionSymbol):
            # An entry for the exact pair decides it, before its licence alone does.
            if str(node) in self.deny:
                return False, [f"{node} is denied"]
            if str(node) in self.allow:
                return True, []
            if not getattr(node.exception_symbol, "is_exception", False):
                # Only an exception SPDX lists grants more than its licence; anything else
                # after WITH (Commons-Clause, a licence, a LicenseRef) may take rights away.
                return False, [
                    f"{node} adds terms that are not an SPDX exception; list the whole "
                    f"expression in {self.setting} to allow it"
                ]
            ok, blockers = self._satisfied(node.license_symbol)
            if not ok:  # the pair may pass where its licence alone does not
                blockers = [f"{b} (list the pair `{node}` in {self.setting} to allow it)"
                            for b in blockers]  # fmt: skip
            return ok, blockers
        if isinstance(node, LicenseSymbol):
            if node.key in self.deny:
                return False, [f"{node.key} is denied"]
            if node.key in self.allow:
                return True, []
            if node.key == PUBLIC_DOMAIN:
                return False, [
                    f"{node.key} is not in {self.setting} (a claim of public domain, not a "
                    f"licence: list {PUBLIC_DOMAIN} in {self.setting} to accept such claims)"
                ]
            return False, [f"{node.key} is not in {self.setting}"]
        results = [self._satisfied(child) for child in node.args]
        if node.operator.strip() == "OR":
            if any(ok for ok, _ in results):
                return True, []
            return False, [b for _, blockers in results for b in blockers]
        blockers = [b for ok, bs in results if not ok for b in bs]
        return not blockers, blockers

    def stale_exceptions(
        self,
        reviewed: Mapping[str, str],
        needed_elsewhere: Collection[str],
        installed: Callable[[str], bool],
        bundled: Mapping[str, Sequence[tuple[str, str]]] | None = None,
    ) -> list[StaleException]:
        """The exceptions this review shows are not used. ``reviewed``: each reviewed
        package's canonical name and licence; ``needed_elsewhere``: canonical names of what
        tether needs with extras this review may leave out (an exception for one of those is
        not stale, only not used here); ``installed``: whether a package is installed;
        ``bundled``: by canonical name, the parts a package bundles, ``(name, licence)``."""
        stale = []
        for package in sorted(self.exceptions):
            name = self.written.get(package, package)
            if package in reviewed:
                licence = reviewed[package]
                parts = (bundled or {}).get(package, ())
                if self.judge_licence(licence, parts).ok:
                    also = ", and those of what it bundles, pass" if parts else ", passes"
                    stale.append(
                        StaleException(name, f"not needed: its licence, {licence}{also} the policy")
                    )
            elif package in needed_elsewhere:
                continue
            elif installed(package):
                stale.append(
                    StaleException(name, "installed, but tether does not need it with any extra")
                )
            else:
                stale.append(StaleException(name, "not installed here, so nothing uses it"))
        return stale


def _both(ids: list[str], chosen: set[str]) -> str:
    """The licences in both lists, and which list to change: a team that sets one list
    meets the other's defaults (deny = [..., "LGPL-3.0-only"] against the default allow)."""
    named = ", ".join(ids)
    for key, other, verb in (("allow", "deny", "pass"), ("deny", "allow", "be refused")):
        if key in chosen and other not in chosen:
            return (
                f"{named} both allowed and denied: licences.{key} names it and the default "
                f"licences.{other} holds it; for it to {verb}, set licences.{other} without it "
                f"(`tether config` shows the list), else take it out of licences.{key}"
            )
    return f"{named} both allowed and denied: take it out of licences.allow or licences.deny"


def _not_an_id(setting: str, entry: str) -> str:
    return (
        f"{setting} names {entry!r}, not an SPDX licence id (ids as on "
        "https://spdx.org/licenses, e.g. MIT, Apache-2.0, GPL-3.0-only, or "
        "LicenseRef-… for one SPDX does not list)"
    )


def _written(entry: str) -> str:
    """An allowed licence as parsed expressions write it, else as given (a
    ``LicenseRef-…`` SPDX does not list)."""
    return _canonical(entry) or entry.strip()


def _is_reference(key: str) -> bool:
    """An SPDX reference to a licence SPDX does not list (``LicenseRef-Proprietary``)."""
    return _LICENCE_REFERENCE.fullmatch(key) is not None


def _canonical(entry: str) -> str | None:
    """The SPDX id ``entry`` names, as SPDX writes it (``mit`` → ``MIT``; an older id for
    the licence it stands for, ``GPL-2.0`` → ``GPL-2.0-only``), or the ``LicenseRef-…``
    it names as written, else None."""
    written = entry.strip()
    if _is_reference(written):
        return written
    try:
        parsed = licensing().parse(written, strict=True)
    except Exception:  # the parser fails on some shapes, such as "()"
        return None
    if isinstance(parsed, LicenseWithExceptionSymbol):  # strict: an exception SPDX lists
        head = _canonical(parsed.license_symbol.key)
        return None if head is None else f"{head} WITH {parsed.exception_symbol.key}"
    if isinstance(parsed, LicenseSymbol) and not licensing().unknown_license_keys(parsed):
        return str(parsed.key)
    return None
