from __future__ import annotations

import pytest

from tether.errors import RateLimitedError
from tether.limits import DAY_S, Limits, RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 10 * DAY_S + 3600.0

    def __call__(self) -> float:
        return self.now


def test_requests_per_minute_and_when_to_retry() -> None:
    clock = Clock()
    limiter = RateLimiter(clock)
    limits = Limits(rpm=2)
    limiter.admit("a", limits)
    clock.now += 20
    limiter.admit("a", limits)
    with pytest.raises(RateLimitedError) as refused:
        limiter.admit("a", limits)
    assert refused.value.limit == "rpm" and refused.value.retry_after_s == 40
    assert "2 requests a minute" in refused.value.message
    clock.now += 40  # the first request has aged out of the minute
    limiter.admit("a", limits)


def test_tokens_per_minute_count_answers_after_they_finish() -> None:
    clock = Clock()
    limiter = RateLimiter(clock)
    limits = Limits(tpm=100)
    limiter.admit("a", limits)
    limiter.spend("a", 70)
    clock.now += 30
    limiter.admit("a", limits)  # 70 < 100: one more may go (and may overshoot)
    limiter.spend("a", 50)
    with pytest.raises(RateLimitedError) as refused:
        limiter.admit("a", limits)
    assert refused.value.limit == "tpm" and refused.value.retry_after_s == 30
    assert limiter.usage("a") == {
        "requests_last_minute": 2,
        "tokens_last_minute": 120,
        "tokens_today": 120,
        "tokens_held": 0,
    }


def test_the_daily_budget_lasts_until_utc_midnight() -> None:
    clock = Clock()
    limiter = RateLimiter(clock)
    limits = Limits(daily_tokens=1000)
    limiter.admit("a", limits)
    limiter.spend("a", 1000)
    clock.now += 120
    with pytest.raises(RateLimitedError) as refused:
        limiter.admit("a", limits)
    assert refused.value.limit == "daily_tokens"
    assert refused.value.retry_after_s == int(DAY_S - 3600 - 120)
    clock.now += refused.value.retry_after_s
    limiter.admit("a", limits)
    assert limiter.usage("a")["tokens_today"] == 0


def test_tokens_are_counted_apart_and_unlimited_ones_pass() -> None:
    limiter = RateLimiter(Clock())
    limiter.admit("a", Limits(rpm=1))
    with pytest.raises(RateLimitedError):
        limiter.admit("a", Limits(rpm=1))
    limiter.admit("b", Limits(rpm=1))  # another token's allowance is its own
    for _ in range(100):
        limiter.admit("admin", Limits())
    assert limiter.usage("admin")["requests_last_minute"] == 100  # passed, and counted
    limiter.forget("a")
    limiter.admit("a", Limits(rpm=1))
