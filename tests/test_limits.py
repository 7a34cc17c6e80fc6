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
    limiter = RateLimiter(clock, elapsed=clock)
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
    limiter = RateLimiter(clock, elapsed=clock)
    limits = Limits(tpm=100)
    limiter.admit("a", limits)
    limiter.hold("a", 0, limits)()
    limiter.spend("a", 70)
    clock.now += 30
    limiter.admit("a", limits)
    limiter.hold("a", 0, limits)()  # 70 < 100: one more may go (and may overshoot)
    limiter.spend("a", 50)
    limiter.admit("a", limits)  # a request that spends no tokens: only rpm counts
    with pytest.raises(RateLimitedError) as refused:
        limiter.hold("a", 0, limits)
    assert refused.value.limit == "tpm" and refused.value.retry_after_s == 30
    assert limiter.usage("a") == {
        "requests_last_minute": 3,
        "tokens_last_minute": 120,
        "tokens_today": 120,
        "tokens_held": 0,
    }


def test_the_daily_budget_lasts_until_utc_midnight() -> None:
    clock = Clock()
    limiter = RateLimiter(clock, elapsed=clock)
    limits = Limits(daily_tokens=1000)
    limiter.admit("a", limits)
    limiter.spend("a", 1000)
    clock.now += 120
    limiter.admit("a", limits)  # spent, it can still list and revoke its tokens
    with pytest.raises(RateLimitedError) as refused:
        limiter.hold("a", 1, limits)
    assert refused.value.limit == "daily_tokens"
    assert refused.value.retry_after_s == int(DAY_S - 3600 - 120)
    clock.now += refused.value.retry_after_s
    limiter.hold("a", 1, limits)()
    assert limiter.usage("a")["tokens_today"] == 0


def test_tokens_are_counted_apart_and_unlimited_ones_pass() -> None:
    limiter = RateLimiter(Clock(), elapsed=Clock())
    limiter.admit("a", Limits(rpm=1))
    with pytest.raises(RateLimitedError):
        limiter.admit("a", Limits(rpm=1))
    limiter.admit("b", Limits(rpm=1))  # another token's allowance is its own
    for _ in range(100):
        limiter.admit("admin", Limits())
    assert limiter.usage("admin")["requests_last_minute"] == 100  # passed, and counted
    limiter.forget("a")
    limiter.admit("a", Limits(rpm=1))


def test_a_refusal_from_tokens_held_by_running_requests_says_so_and_when_to_retry() -> None:
    clock = Clock()
    limiter = RateLimiter(clock, elapsed=clock)
    limits = Limits(tpm=100, daily_tokens=1000)
    limiter.admit("a", limits)
    limiter.spend("a", 30)
    clock.now += 20
    release = limiter.hold("a", 80, limits)  # 30 spent + 80 held: at the limit
    with pytest.raises(RateLimitedError) as refused:
        limiter.hold("a", 10, limits)
    # The 30 spent age out in 40 s, and 80 held alone is under the limit.
    assert refused.value.limit == "tpm" and refused.value.retry_after_s == 40
    assert "counting 80 tokens held for its requests still running" in refused.value.message
    release()
    release = limiter.hold("a", 100, limits)  # a request whose own worst case is the limit
    with pytest.raises(RateLimitedError) as refused:
        limiter.hold("a", 1, limits)
    assert refused.value.retry_after_s == 5  # when it ends, not when a minute has passed
    release()
    limiter.hold("a", 60, limits)  # fits again


def test_a_daily_budget_reached_only_with_what_is_held_is_not_retried_at_midnight() -> None:
    clock = Clock()
    limiter = RateLimiter(clock, elapsed=clock)
    limits = Limits(daily_tokens=1000)
    limiter.spend("a", 900)
    limiter.hold("a", 200, limits)
    with pytest.raises(RateLimitedError) as refused:
        limiter.hold("a", 1, limits)
    assert refused.value.limit == "daily_tokens" and refused.value.retry_after_s == 5
    assert "counting 200 tokens held" in refused.value.message
    limiter.spend("a", 100)  # a day's budget spent is back at midnight, not before
    with pytest.raises(RateLimitedError) as refused:
        limiter.hold("a", 1, limits)
    assert refused.value.retry_after_s == int(DAY_S - 3600)


def test_a_wall_clock_stepped_back_neither_locks_a_token_out_nor_stretches_its_minute() -> None:
    wall, elapsed = Clock(), Clock()
    limiter = RateLimiter(wall, elapsed=elapsed)
    limits = Limits(rpm=2, tpm=100)
    limiter.admit("a", limits)
    limiter.admit("a", limits)
    limiter.spend("a", 100)
    wall.now -= 3600  # NTP steps the clock back an hour; the minute still ends on time
    elapsed.now += 1
    with pytest.raises(RateLimitedError) as refused:
        limiter.admit("a", limits)
    assert refused.value.retry_after_s == 59
    elapsed.now += 59
    limiter.admit("a", limits)
    limiter.hold("a", 0, limits)()  # the tokens of a minute ago no longer count


def test_a_wall_clock_stepped_forward_does_not_empty_the_minute() -> None:
    wall, elapsed = Clock(), Clock()
    limiter = RateLimiter(wall, elapsed=elapsed)
    limiter.admit("a", Limits(rpm=1))
    wall.now += 3600  # a VM resumed, its clock put right: the minute is not over
    with pytest.raises(RateLimitedError):
        limiter.admit("a", Limits(rpm=1))


def test_a_day_stepped_back_or_forward_starts_its_count_afresh() -> None:
    wall = Clock()
    limiter = RateLimiter(wall, elapsed=Clock())
    limits = Limits(daily_tokens=100)
    limiter.spend("a", 100)
    wall.now += 3 * 365 * DAY_S  # a clock years ahead...
    limiter.spend("a", 100)
    wall.now -= 3 * 365 * DAY_S  # ...put right: its spent budget does not carry back
    limiter.hold("a", 1, limits)()
    assert limiter.usage("a")["tokens_today"] == 0


def test_the_clocks_are_read_under_the_lock() -> None:
    """Times read before the lock could be appended out of order by racing threads, and
    the windows' deques age out from their left end only."""
    held: list[bool] = []

    def clock() -> float:
        held.append(limiter._lock.locked())
        return 10 * DAY_S

    limiter = RateLimiter(clock, elapsed=clock)
    limiter.admit("a", Limits(rpm=5, tpm=100))
    limiter.hold("a", 10, Limits(tpm=100))()
    limiter.spend("a", 10)
    limiter.usage("a")
    assert held and all(held)
