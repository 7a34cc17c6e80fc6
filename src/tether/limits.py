"""Per-token limits: requests and tokens per minute, and a daily token budget.

Limits are set when a token is issued and live with it in memory. A request is admitted
while its token is under every limit; tokens are counted (prompt plus completion) when an
answer finishes. While it runs, its worst case (its prompt plus ``max_tokens``) is held
against the token's tpm and daily budget, so requests sent at once cannot all pass before
any is counted: one request may take a token past its limit, and the next waits. A
refusal says which limit and when to retry (``Retry-After``), and only the token that
spent its allowance is refused: every other token is counted apart, except that a token
shares its allowance with the tokens issued through it.

The minute windows are measured on the monotonic clock, which a step of the wall clock
(NTP correcting it, a VM resumed) does not move: a clock stepped back an hour would
otherwise keep the last minute's requests "in the last minute" for an hour and refuse
the token until then. The daily budget follows the wall clock's UTC day, the day a
person means; a step that changes the day (either way) starts that day's count afresh,
so that a clock set years ahead and then corrected never leaves a budget spent until
that far day comes.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from tether.errors import RateLimitedError

if TYPE_CHECKING:
    from tether.pipeline import Completion, Prepared

WINDOW_S = 60.0
DAY_S = 86_400.0
HELD_RETRY_S = 5.0  # when only running requests hold the allowance: about one answer's time


@dataclass(frozen=True)
class Limits:
    """What one token may use; None means no limit."""

    rpm: int | None = None  # requests per minute
    tpm: int | None = None  # tokens (prompt + completion) per minute
    daily_tokens: int | None = None  # tokens per UTC day

    def as_record(self) -> dict[str, int | None]:
        return {"rpm": self.rpm, "tpm": self.tpm, "daily_tokens": self.daily_tokens}


UNLIMITED = Limits()


@dataclass
class _Use:
    # Monotonic times (``RateLimiter.elapsed``), of the last minute:
    requests: deque[float] = field(default_factory=deque)  # each request's
    tokens: deque[tuple[float, int]] = field(default_factory=deque)  # (time, tokens)
    day: int = -1  # the UTC day ``today`` counts
    today: int = 0
    held: int = 0  # the worst case of the requests running now, not yet counted


class RateLimiter:
    def __init__(
        self,
        clock: Callable[[], float] = time.time,
        on_refused: Callable[[str], None] = lambda limit: None,
        *,
        elapsed: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock  # the wall clock: which UTC day it is
        self._elapsed = elapsed  # the minute windows: never stepped
        self._use: dict[str, _Use] = {}
        self._lock = threading.Lock()
        self.on_refused = on_refused  # told the limit's name (rpm, tpm, daily_tokens)

    def admit(
        self, token_id: str, limits: Limits, issuers: Sequence[tuple[str, Limits]] = ()
    ) -> None:
        """Count a request for ``token_id`` and each of its ``issuers`` (id and limits), or
        raise RateLimitedError if any is at its rpm. A token without limits is counted
        too: ``usage`` reports it. Token budgets (tpm, daily) are checked where tokens are
        spent, by ``hold``: a token whose budget its answers spent can still list, read
        and revoke."""
        try:
            self._admit(((token_id, limits), *issuers))
        except RateLimitedError as exc:
            self.on_refused(exc.limit)
            raise

    def _admit(self, allowances: Sequence[tuple[str, Limits]]) -> None:
        with self._lock:
            now = self._now()
            uses = [self._current(token_id, now) for token_id, _ in allowances]
            _check_all(uses, [(s, Limits(rpm=a.rpm)) for s, a in allowances], now)
            for use in uses:
                use.requests.append(now.at)

    def hold(
        self, token_id: str, tokens: int, limits: Limits, issuers: Sequence[tuple[str, Limits]] = ()
    ) -> Callable[[], None]:
        """Hold ``tokens`` (a running request's worst case) against ``token_id`` and its
        ``issuers`` until the returned function is called, or raise RateLimitedError if
        any is already at its tpm or daily budget with what is held."""
        allowances = ((token_id, limits), *issuers)
        with self._lock:
            now = self._now()
            uses = [self._current(spender, now) for spender, _ in allowances]
            try:  # its request was counted when it was admitted: only tokens are checked
                _check_all(uses, [(s, replace(a, rpm=None)) for s, a in allowances], now)
            except RateLimitedError as exc:
                self.on_refused(exc.limit)
                raise
            for use in uses:
                use.held += tokens
        released = False

        def release() -> None:
            nonlocal released
            with self._lock:
                if not released:
                    released = True
                    for use in uses:
                        use.held = max(0, use.held - tokens)

        return release

    def spend(self, token_id: str, tokens: int, issuers: Sequence[tuple[str, Limits]] = ()) -> None:
        """Count the tokens an answer used, against ``token_id`` and its ``issuers``."""
        with self._lock:
            now = self._now()
            for spender in (token_id, *(issuer for issuer, _ in issuers)):
                use = self._current(spender, now)
                use.tokens.append((now.at, tokens))
                use.today += tokens

    def usage(self, token_id: str) -> dict[str, int]:
        with self._lock:
            now = self._now()
            use = self._current(token_id, now)
            return {
                "requests_last_minute": len(use.requests),
                "tokens_last_minute": sum(n for _, n in use.tokens),
                "tokens_today": use.today,
                "tokens_held": use.held,
            }

    def forget(self, token_id: str) -> None:
        with self._lock:
            self._use.pop(token_id, None)

    def _now(self) -> _Now:
        # Read under the lock: the windows' deques stay in time order for popleft.
        return _Now(self._clock(), self._elapsed())

    def _current(self, token_id: str, now: _Now) -> _Use:
        use = self._use.setdefault(token_id, _Use())
        while use.requests and use.requests[0] <= now.at - WINDOW_S:
            use.requests.popleft()
        while use.tokens and use.tokens[0][0] <= now.at - WINDOW_S:
            use.tokens.popleft()
        day = int(now.wall // DAY_S)
        if day != use.day:
            use.day, use.today = day, 0
        return use


@dataclass(frozen=True)
class _Now:
    wall: float  # the wall clock, for the UTC day
    at: float  # the monotonic clock, for the minute windows


def _check_all(uses: Sequence[_Use], allowances: Sequence[tuple[str, Limits]], now: _Now) -> None:
    """Raise RateLimitedError when a token or an issuer is at a limit."""
    refused: RateLimitedError | None = None
    for index, (use, (token_id, limits)) in enumerate(zip(uses, allowances, strict=True)):
        whose = "this token" if index == 0 else f"token {token_id}, which issued it,"
        try:
            _check(use, limits, now, whose)
        except RateLimitedError as exc:
            if refused is None:
                refused = exc
            if index:  # an issuer at its limit too: a new token from it would wait as well
                refused.issuer = token_id
                break
    if refused is not None:
        raise refused


def _check(use: _Use, limits: Limits, now: _Now, whose: str) -> None:
    """Raise RateLimitedError when ``use`` is at a limit of ``limits``."""
    if limits.daily_tokens is not None and use.today + use.held >= limits.daily_tokens:
        # Spent, it comes back at midnight; only held, when the requests holding it end.
        wait = DAY_S - now.wall % DAY_S if use.today >= limits.daily_tokens else HELD_RETRY_S
        daily = limits.daily_tokens
        raise _refused(whose, "daily_tokens", daily, "tokens today", wait, use.held)
    if limits.tpm is not None:
        spent = sum(n for _, n in use.tokens)
        if spent + use.held >= limits.tpm:
            wait = _until_below(use.tokens, spent, use.held, limits.tpm, now.at)
            raise _refused(whose, "tpm", limits.tpm, "tokens a minute", wait, use.held)
    if limits.rpm is not None and len(use.requests) >= limits.rpm:
        wait = use.requests[0] + WINDOW_S - now.at
        raise _refused(whose, "rpm", limits.rpm, "requests a minute", wait)


def _until_below(
    tokens: deque[tuple[float, int]], spent: int, held: int, limit: int, now: float
) -> float:
    """Seconds until enough of the last minute's tokens age out to be under ``limit`` with
    ``held``; when none can, until the requests holding tokens end (a guess: their time)."""
    for when, count in tokens:
        spent -= count
        if spent + held < limit:
            return when + WINDOW_S - now
    return HELD_RETRY_S if held else WINDOW_S


def _refused(
    whose: str, limit: str, value: int, what: str, wait: float, held: int = 0
) -> RateLimitedError:
    seconds = max(1, math.ceil(wait))
    counting = (
        f", counting {held} tokens held for its requests still running (each one's prompt "
        "plus max_tokens, until it ends)"
        if held
        else ""
    )
    return RateLimitedError(
        f"{whose} is over its limit of {value} {what} ({limit}){counting}; retry in "
        f"{seconds} s, or ask an admin for a token with a higher limit",
        limit=limit,
        retry_after_s=seconds,
    )


class SpendRecorder:
    """The pipeline recorder that counts each answer's tokens against its token."""

    def __init__(self, limiter: RateLimiter, on_spend: Callable[[str, int], None]) -> None:
        self.limiter = limiter
        self.on_spend = on_spend  # (principal name, tokens): for metrics

    def record(self, prepared: Prepared, completion: Completion) -> None:
        principal = prepared.principal
        if principal is None:
            return
        tokens = completion.prompt_tokens + completion.completion_tokens
        self.limiter.spend(principal.token_id, tokens, principal.issuers)
        self.on_spend(principal.name, tokens)
