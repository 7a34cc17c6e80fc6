"""Scoped, short-lived bearer tokens that exist only in the server's memory.

A token is ``tth_`` plus 43 url-safe characters (the prefix lets the secret scanner
recognise a leaked one). The store keeps only its sha256 with the principal, scopes and
expiry; nothing is written anywhere, so a restart invalidates every token.

A token ends at its ``expires_at`` on the wall clock, or once its lifetime has passed on
the monotonic clock, whichever comes first: a wall clock stepped back (NTP correcting a
clock that ran fast) would otherwise add the step to every token's life, and the
monotonic clock alone stands still while a machine sleeps or a VM is suspended.
"""

from __future__ import annotations

import hashlib
import math
import secrets
import time
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

from tether.errors import AuthError, ForbiddenError, RateLimitedError, RequestError
from tether.limits import UNLIMITED, Limits, RateLimiter

TOKEN_PREFIX = "tth_"
# Said where a token is given for its id: never with the token, which would be kept there.
GIVEN_A_TOKEN = (
    "that is a token, not a token id: revoke it by its id (tid_…), which `tether token "
    "list` (GET /v1/tokens) shows beside its principal"
)
MAX_TTL_S = 30 * 24 * 3600
DEFAULT_TTL_S = 3600.0
# The principal of the server's own admin token.
ADMIN_PRINCIPAL = "admin"
# Names no issued token may carry, with why: traces, usage and the audit log would credit
# its requests to the server's own token, or to a usage report's total row or requests
# made without a token. Compared without regard to case, so none passes for another.
RESERVED_PRINCIPALS: dict[str, str] = {
    ADMIN_PRINCIPAL: "it is the server's own admin token's, and traces, usage and the audit "
    "log would credit this token's requests to that token",
    "total": "usage reports use it for their total",
    "(anonymous)": "usage reports use it for requests without a token",
    "(other)": "/metrics counts the principals past its first 1,000 under it",
}
# Scripts whose letters pass for one another's (a Cyrillic a for a Latin a): a name that
# mixes them can pass for another principal in traces, usage and the audit log.
_LOOKALIKE_SCRIPTS = frozenset({"LATIN", "CYRILLIC", "GREEK"})
_DOTLESS = str.maketrans({"\u0131": "i", "\u0237": "j"})  # letters no normalization takes a dot to

ScopeName = Literal[
    "completions",
    "chat",
    "suggest",
    "check",
    "audit:read",
    "audit:write",
    "tokens:admin",
    "store:read",
    "store:write",
    "store:vet",
    "functions:call",
    "dashboard",
    "slots",
]

SCOPES: dict[ScopeName, str] = {
    "completions": "code completion and fill-in-the-middle",
    "chat": "chat completions and responses",
    "suggest": "suggested changes to files",
    "check": "compliance checks on code",
    "audit:read": "audit checkpoints and proofs",
    "audit:write": "record what was done elsewhere in the audit log: evaluation runs, and "
    "answers made by commands while the server keeps the log",
    "tokens:admin": "create, list and revoke tokens",
    "store:read": "search and read the function store (and MCP)",
    "store:write": "add snippets to the function store as candidates",
    "store:vet": "approve, reject and retire snippets",
    "functions:call": "call vetted functions of the store in the sandbox",
    "dashboard": "read the web dashboard: usage, traces without their text, audit checkpoints, "
    "the store without its code, and evaluations (prompts and answers need audit:read too, "
    "code store:read)",
    "slots": "save, restore and erase the embedded engine's sequence caches (llama.cpp's "
    "POST /slots/{id}); a saved cache holds the prompt's tokens",
}


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Principal:
    """Who a request acts for, as the rest of the pipeline sees it (never the token)."""

    name: str
    token_id: str
    scopes: frozenset[str]
    limits: Limits = UNLIMITED
    # The ids and limits of the tokens it was issued through, nearest first, other than
    # the server's own: its use draws on their allowances too.
    issuers: tuple[tuple[str, Limits], ...] = ()
    expires_at: float | None = None  # its token's end, when it has one

    def allows(self, scope: str) -> bool:
        return scope in self.scopes


@dataclass(frozen=True)
class TokenRecord:
    id: str
    principal: str
    scopes: frozenset[str]
    created_at: float
    expires_at: float | None
    digest: str = field(repr=False)
    limits: Limits = UNLIMITED
    # The ids of the tokens it was issued through, the first issuer first: a token that
    # issues tokens manages those and theirs, and revoking it revokes them all.
    lineage: tuple[str, ...] = ()
    issuers: tuple[tuple[str, Limits], ...] = ()  # as Principal.issuers
    # Its end on the monotonic clock (TokenStore.elapsed), which a step of the wall clock
    # does not move; it ends at whichever of the two comes first.
    ends_elapsed: float | None = field(default=None, repr=False, compare=False)

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "issued_by": self.lineage[-1] if self.lineage else None,
            "principal": self.principal,
            "scopes": sorted(self.scopes),
            "created_at": int(self.created_at),
            "expires_at": None if self.expires_at is None else int(self.expires_at),
            "limits": self.limits.as_record(),
        }


def _within_limits(issuer: Limits, asked: Limits) -> Limits:
    """The limits of a token issued by a token with limits ``issuer``: each the issuer's
    when not asked, and never beyond it."""
    chosen: dict[str, int | None] = {}
    for name, most in issuer.as_record().items():
        wanted = getattr(asked, name)
        if most is not None and wanted is not None and wanted > most:
            raise RequestError(
                f"{name} must be at most {most}, the issuing token's: a token can give only "
                "the allowance it holds",
                param=name,
            )
        chosen[name] = most if wanted is None else wanted
    return Limits(**chosen)


def check_principal(principal: str) -> str:
    """``principal`` without surrounding blanks and composed (NFC: an e and a combining
    acute are one é, so a name typed on macOS is the one typed elsewhere); RequestError
    when no issued token may carry it."""
    name = unicodedata.normalize("NFC", principal.strip())
    if not name:
        raise RequestError("principal must name who the token is for", param="principal")
    if not principal.isprintable():  # it is written in log lines, one per request
        raise RequestError(
            "principal must be printable text: no line breaks, tabs, control characters or "
            "invisible ones (a non-breaking or zero-width space, a zero-width joiner)",
            param="principal",
        )
    scripts = {_script(c) for c in unicodedata.normalize("NFKC", name) if c.isalpha()}
    if len(scripts & _LOOKALIKE_SCRIPTS) > 1:
        raise RequestError(
            f"principal {name!r} mixes Latin, Cyrillic or Greek letters, which pass for one "
            "another (a Cyrillic a among Latin letters reads as admin); write it in one script",
            param="principal",
        )
    why = RESERVED_PRINCIPALS.get(_as_read(name))
    if why is not None:
        raise RequestError(
            f"principal {name!r} is reserved: {why}; choose another name", param="principal"
        )
    return name


def _script(letter: str) -> str:
    """The script a letter's Unicode name begins with: LATIN, CYRILLIC, GREEK, CJK, …"""
    return unicodedata.name(letter, "").partition(" ")[0]


def _as_read(name: str) -> str:
    """``name`` as a reader takes it: without case, accents or compatibility forms, so
    fullwidth letters, a capital I with a dot and a dotless i all read as "admin"."""
    bare = unicodedata.normalize("NFKD", name)
    return "".join(c for c in bare if not unicodedata.combining(c)).casefold().translate(_DOTLESS)


def check_scopes(scopes: Iterable[str]) -> frozenset[str]:
    chosen = frozenset(s.strip() for s in scopes if s.strip())
    unknown = sorted(chosen - SCOPES.keys())
    if unknown:
        # "dashboard audit:read" is one unknown scope made of two known ones: say so.
        joined = [s for s in unknown if set(s.replace(";", " ").split()) <= SCOPES.keys()]
        hint = "; separate scopes with commas" if joined else ""
        raise RequestError(
            f"unknown scope(s) {', '.join(map(repr, unknown))}{hint}; known scopes: "
            f"{', '.join(SCOPES)}",
            param="scopes",
        )
    if not chosen:
        raise RequestError(f"give at least one scope of: {', '.join(SCOPES)}", param="scopes")
    return chosen


# An expired token is still told apart ("expired") and revocable for a day, then
# forgotten, so that a long-running server does not keep every token it ever issued; a
# revoked one is told apart ("revoked") until a day after it would have expired.
FORGET_EXPIRED_AFTER_S = 86_400.0
_SWEEP_EVERY_S = 60.0


class TokenStore:
    """The live tokens and what each has used: all in memory, gone with the process."""

    def __init__(
        self,
        clock: Callable[[], float] = time.time,
        *,
        elapsed: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self._elapsed = elapsed
        self._by_digest: dict[str, TokenRecord] = {}
        self._admins: set[str] = set()  # ids of the server's own tokens: never revoked
        # Digests, to say so when one comes back, with when each would have expired: it is
        # forgotten a day after that, as an expired token is.
        self._revoked: dict[str, float | None] = {}
        # Likewise, by digest: an expired token stays "expired", and can still be revoked
        # (with what it issued) by those who manage it.
        self._expired: dict[str, TokenRecord] = {}
        self.limiter = RateLimiter(clock, elapsed=elapsed)
        self._swept_at = -math.inf

    def _forget_expired(self) -> None:
        """Forget the tokens that expired over FORGET_EXPIRED_AFTER_S ago (at most once a
        minute: it reads every token)."""
        if self._elapsed() - self._swept_at < _SWEEP_EVERY_S:
            return
        self._swept_at = self._elapsed()
        cutoff = self._clock() - FORGET_EXPIRED_AFTER_S
        for held in (self._by_digest, self._expired):
            for record in [r for r in held.values() if r.expires_at is not None]:
                ends = self.ends_at(record)
                if ends is not None and ends <= cutoff:
                    del held[record.digest]
                    self.limiter.forget(record.id)
        for digest, ends in list(self._revoked.items()):
            if ends is not None and ends <= cutoff:
                del self._revoked[digest]

    def _add(
        self,
        token: str,
        principal: str,
        scopes: frozenset[str],
        ttl_s: float | None,
        limits: Limits = UNLIMITED,
        lineage: tuple[str, ...] = (),
        issuers: tuple[tuple[str, Limits], ...] = (),
    ) -> TokenRecord:
        now = self._clock()
        record = TokenRecord(
            id="tid_" + secrets.token_hex(6),
            principal=principal,
            scopes=scopes,
            created_at=now,
            expires_at=None if ttl_s is None else now + ttl_s,
            digest=_digest(token),
            limits=limits,
            lineage=lineage,
            issuers=issuers,
            ends_elapsed=None if ttl_s is None else self._elapsed() + ttl_s,
        )
        self._by_digest[record.digest] = record
        return record

    def add_admin(self, token: str) -> TokenRecord:
        """The server's own admin token: every scope, no expiry, not revocable."""
        record = self._add(token, ADMIN_PRINCIPAL, frozenset(SCOPES), None)
        self._admins.add(record.id)
        return record

    def issue(
        self,
        principal: str,
        scopes: Iterable[str],
        ttl_s: float | None = None,
        limits: Limits = UNLIMITED,
        issuer: Principal | None = None,
    ) -> tuple[str, TokenRecord]:
        """A new token; one issued by another token than the server's own has at most the
        issuer's scopes and ends no later than it does. Without ``ttl_s`` it lives
        DEFAULT_TTL_S, or as long as its issuer has left when that is less."""
        principal = check_principal(principal)
        if ttl_s is not None and not 1 <= ttl_s <= MAX_TTL_S:
            raise RequestError(
                f"ttl must be between 1 second and {MAX_TTL_S // 86400} days", param="ttl_s"
            )
        chosen = check_scopes(scopes)
        if issuer is not None and issuer.token_id not in self._admins:
            ttl_s = self._within(issuer, chosen, ttl_s)
            limits = _within_limits(issuer.limits, limits)
        ttl_s = DEFAULT_TTL_S if ttl_s is None else ttl_s
        lineage: tuple[str, ...] = ()
        issuers: tuple[tuple[str, Limits], ...] = ()
        if issuer is not None:
            parent = self._record(issuer.token_id)
            lineage = (*(parent.lineage if parent else ()), issuer.token_id)
        if issuer is not None and issuer.token_id not in self._admins:
            # A token shares its allowance with the tokens it issues, so that issuing
            # tokens is no way around its limits.
            issuers = ((issuer.token_id, issuer.limits), *issuer.issuers)
        token = new_token()
        return token, self._add(token, principal, chosen, ttl_s, limits, lineage, issuers)

    def _within(
        self, issuer: Principal, scopes: frozenset[str], ttl_s: float | None
    ) -> float | None:
        """The lifetime of a token ``issuer`` gives: at most what it has left itself."""
        beyond = sorted(scopes - issuer.scopes)
        if beyond:
            raise ForbiddenError(
                f"a token can give only the scopes it holds; this one lacks {', '.join(beyond)}"
            )
        record = self._record(issuer.token_id)
        left = self._left(record) if record is not None else None
        if left is None:
            return ttl_s
        if ttl_s is None:
            return max(1.0, min(DEFAULT_TTL_S, left))
        if ttl_s > left:
            raise RequestError(
                f"the token must end before the issuing token does, in {_duration(left)}: "
                "ask for that or less (--ttl), or leave the lifetime out",
                param="ttl_s",
            )
        return ttl_s

    def authenticate(self, token: str) -> Principal:
        self._forget_expired()
        digest = _digest(token)
        record = self._by_digest.get(digest)
        if record is None and digest in self._revoked:
            raise AuthError("the bearer token was revoked; ask for a new one")
        if record is None and digest in self._expired:
            raise AuthError("the bearer token has expired; ask for a new one")
        if record is None:
            raise AuthError(
                "the bearer token is not valid for this server (its tokens end when it "
                "restarts, and are forgotten a day after they expire): ask for a new one "
                "(tether token create), or use server.token"
            )
        if self.is_expired(record):
            del self._by_digest[record.digest]
            self._expired[record.digest] = record
            raise AuthError("the bearer token has expired; ask for a new one")
        return Principal(
            record.principal,
            record.id,
            record.scopes,
            record.limits,
            record.issuers,
            self.ends_at(record),
        )

    def admit(self, principal: Principal) -> None:
        """Count a request of ``principal`` against its token and the tokens that issued
        it; RateLimitedError when over a limit of any."""
        with self._expiry_said(principal):
            self.limiter.admit(principal.token_id, principal.limits, principal.issuers)

    def hold(self, principal: Principal, tokens: int) -> Callable[[], None]:
        """Hold ``tokens`` against ``principal``'s budgets while its request runs
        (``RateLimiter.hold``); the returned function lets them go."""
        with self._expiry_said(principal):
            return self.limiter.hold(
                principal.token_id, tokens, principal.limits, principal.issuers
            )

    @contextmanager
    def _expiry_said(self, principal: Principal) -> Iterator[None]:
        """A refusal whose wait outlasts the token says so: "retry in 60 s" of a token
        that ends in 10 is a wait for nothing."""
        try:
            yield
        except RateLimitedError as exc:
            ends = principal.expires_at
            # An issuer's limit refused it: a new token from that issuer would wait as long.
            if ends is None or exc.issuer is not None or self._clock() + exc.retry_after_s < ends:
                raise
            left = max(0, math.ceil(ends - self._clock()))
            raise RateLimitedError(
                f"{exc.message}; but this token expires in {left} s, before then: ask for a "
                "new one (tether token create)",
                limit=exc.limit,
                retry_after_s=exc.retry_after_s,
            ) from exc

    def revoke(self, token_id: str, by: Principal | None = None) -> list[str]:
        """Revoke a token and every token issued through it, and give their ids (that
        token's first); none when there is no token ``token_id`` to revoke (unknown, or
        revoked before). An expired token is revoked as a live one is, whether or not it
        was presented after it expired: revoking it is what was asked, and it succeeds.
        A token other than the server's own (``by``) revokes only itself and the tokens
        issued through it."""
        if token_id in self._admins:
            raise ForbiddenError(
                "the server's own admin token cannot be revoked: it ends with the server "
                "(set server.token and restart to change it)"
            )
        record = self._record(token_id, expired_too=True)
        if record is None:
            return []
        if by is not None and record.id != by.token_id and not self._manages(by, record):
            raise ForbiddenError(
                f"token {token_id} was not issued through this one: a token revokes only the "
                "tokens it issued, and theirs; ask the server's admin"
            )
        # What it issued goes with it: a leaked token's credentials must not outlive it.
        issued = [r for r in self._known() if token_id in r.lineage]
        for gone in (record, *issued):
            self._by_digest.pop(gone.digest, None)
            self._expired.pop(gone.digest, None)
            self._revoked[gone.digest] = self.ends_at(gone)
            self.limiter.forget(gone.id)
        return [record.id, *(r.id for r in issued)]

    def has_expired(self, token_id: str) -> bool:
        """Whether ``token_id`` names a token whose lifetime is over (and not revoked)."""
        record = self._record(token_id, expired_too=True)
        return record is not None and self.is_expired(record)

    def records(
        self, viewer: Principal | None = None, *, expired: bool = False
    ) -> list[TokenRecord]:
        """The live tokens, and with ``expired`` those expired within the last day (still
        revocable); for a token other than the server's own, those issued through it and
        itself."""
        self._forget_expired()
        return [
            r
            for r in (self._known() if expired else self._by_digest.values())
            if (expired or not self.is_expired(r))
            and (viewer is None or r.id == viewer.token_id or self._manages(viewer, r))
        ]

    def is_expired(self, record: TokenRecord) -> bool:
        left = self._left(record)
        return left is not None and left <= 0

    def ends_at(self, record: TokenRecord) -> float | None:
        """When ``record``'s token ends, on the wall clock as it reads now: its
        ``expires_at``, or sooner once the clock was stepped back after it was issued
        (its lifetime on the monotonic clock then runs out first); None for one that
        never does."""
        if record.expires_at is None or record.ends_elapsed is None:
            return record.expires_at
        return min(record.expires_at, self._clock() + record.ends_elapsed - self._elapsed())

    def public(self, record: TokenRecord) -> dict[str, Any]:
        """``record`` as its issuer and managers are shown it, with its end as the wall
        clock reads now (``ends_at``)."""
        ends = self.ends_at(record)
        return {**record.public(), "expires_at": None if ends is None else int(ends)}

    def _left(self, record: TokenRecord) -> float | None:
        """Seconds until ``record``'s token ends, by whichever clock says sooner; None
        for one that never does."""
        if record.expires_at is None:
            return None
        left = record.expires_at - self._clock()
        if record.ends_elapsed is not None:
            left = min(left, record.ends_elapsed - self._elapsed())
        return left

    def _manages(self, principal: Principal, record: TokenRecord) -> bool:
        return principal.token_id in self._admins or principal.token_id in record.lineage

    def _known(self) -> list[TokenRecord]:
        """The tokens not revoked: live ones, and expired ones whether presented since or not."""
        return [*self._by_digest.values(), *self._expired.values()]

    def _record(self, token_id: str, expired_too: bool = False) -> TokenRecord | None:
        known = self._known() if expired_too else self._by_digest.values()
        return next((r for r in known if r.id == token_id), None)


def _duration(seconds: float) -> str:
    """``seconds`` as a person reads a lifetime: 59m58s, 2h, 3d4h."""
    left = max(0, int(seconds))
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if left >= size:
            parts.append(f"{left // size}{unit}")
            left %= size
    if left or not parts:
        parts.append(f"{left}s")
    return "".join(parts)
