from __future__ import annotations

import asyncio

import pytest

from tether.engines.slots import WORTH_WAITING, SlotPool, common_prefix_length
from tether.errors import OverloadedError


def test_common_prefix() -> None:
    assert common_prefix_length([1, 2, 3], [1, 2, 4]) == 2
    assert common_prefix_length([], [1]) == 0


def test_prefers_the_slot_that_holds_the_prompt() -> None:
    cached = {"a": [9, 9], "b": [1, 2, 3]}
    pool = SlotPool(["a", "b"], 4, lambda s: cached[s])

    async def run() -> str:
        return await pool.acquire([1, 2, 3, 4])

    assert asyncio.run(run()) == "b"


def test_queue_bound_and_hand_over() -> None:
    async def run() -> None:
        pool = SlotPool(["only"], 1, lambda s: [])
        slot = await pool.acquire([1])
        waiter = asyncio.ensure_future(pool.acquire([1]))
        await asyncio.sleep(0)
        assert pool.queue_depth == 1
        with pytest.raises(OverloadedError) as info:
            await pool.acquire([1])
        assert info.value.retry_after_s >= 1
        # In words too: a command's user never sees the Retry-After header.
        assert f"retry in {info.value.retry_after_s} s" in info.value.message
        pool.release(slot)
        assert not pool.is_free("only")  # handed to the waiter before it runs
        assert await waiter == "only"
        assert pool.queue_depth == 0 and pool.in_flight == 1

    asyncio.run(run())


def test_a_full_queue_says_to_retry_once_the_work_ahead_has_drained() -> None:
    """Retry-After is the queue ahead at the pace answers have ended: a fixed second had
    clients spend their retries while a queue of long answers took far longer."""
    now = [0.0]

    async def run() -> list[int]:
        pool = SlotPool(["a", "b"], 3, lambda s: [], clock=lambda: now[0])
        waits: list[int] = []

        async def refused() -> int:
            with pytest.raises(OverloadedError) as info:
                await pool.acquire([1])
            assert f"retry in {info.value.retry_after_s} s" in info.value.message
            return info.value.retry_after_s

        slots = [await pool.acquire([1]), await pool.acquire([1])]
        waiters = [asyncio.ensure_future(pool.acquire([1])) for _ in range(3)]
        await asyncio.sleep(0)
        waits.append(await refused())  # no answer has ended yet: the shortest wait
        for _ in range(3):  # an answer ends every 4 s; each hands its slot on
            now[0] += 4
            pool.release(slots.pop(0))
            slots.append(await waiters.pop(0))
            waiters.append(asyncio.ensure_future(pool.acquire([1])))
            await asyncio.sleep(0)
        waits.append(await refused())  # three ahead, one every 4 s
        now[0] += 10  # then nothing ends for 10 s: answers that all run long
        waits.append(await refused())
        now[0] += 1000
        waits.append(await refused())
        for waiter in waiters:
            waiter.cancel()
        return waits

    assert asyncio.run(run()) == [1, 12, 30, 60]


def test_cancelled_waiter_leaves_the_queue() -> None:
    async def run() -> None:
        pool = SlotPool(["only"], 2, lambda s: [])
        slot = await pool.acquire([1])
        waiter = asyncio.ensure_future(pool.acquire([1]))
        await asyncio.sleep(0)
        waiter.cancel()
        await asyncio.sleep(0)
        assert pool.queue_depth == 0
        pool.release(slot)
        assert pool.in_flight == 0

    asyncio.run(run())


FILE = list(range(1, 201))  # a prompt of 200 tokens an editor resends


async def returning_pool(held: list[int]) -> SlotPool[str]:
    """Slots "a" (holding ``held``, its answer just cut short) and "b" (free, empty)."""
    cached = {"a": held, "b": []}
    pool = SlotPool(["a", "b"], 4, lambda s: cached[s])
    assert await pool.acquire(held) == "a"
    pool.returning("a")  # it leaves the batch at the next step
    return pool


async def two_waiting(pool: SlotPool[str]) -> tuple[asyncio.Future[str], asyncio.Future[str]]:
    first = asyncio.ensure_future(pool.acquire(FILE))
    second = asyncio.ensure_future(pool.acquire(FILE))
    await asyncio.sleep(0)
    return first, second


def test_a_request_waits_for_the_returning_slot_that_holds_its_prompt() -> None:
    async def run() -> None:
        pool = await returning_pool(FILE[:150])
        waiter = asyncio.ensure_future(pool.acquire([*FILE, 7]))
        await asyncio.sleep(0)
        assert not waiter.done() and pool.queue_depth == 1  # "b" is free but holds nothing
        pool.release("a")
        assert await waiter == "a"
        assert pool.queue_depth == 0 and pool.in_flight == 1

    asyncio.run(run())


def test_a_small_gain_is_not_worth_waiting_for() -> None:
    async def run() -> None:
        pool = await returning_pool(FILE[: WORTH_WAITING - 1])
        assert await pool.acquire(FILE) == "b"  # at once

    asyncio.run(run())


def test_a_request_waits_for_the_warm_up_that_reads_its_prompt() -> None:
    """llama.vim sends the context it is about to complete in (or to edit, for its
    instruction) with n_predict 0 first; its next request, sent while that is still read,
    waits for the sequence that will hold it rather than read it all again beside it."""

    async def run() -> None:
        cached: dict[str, list[int]] = {"a": [], "b": []}
        pool = SlotPool(["a", "b"], 4, lambda s: cached[s])
        assert await pool.acquire(FILE) == "a"
        pool.returning("a", holding=FILE)  # reads FILE and predicts nothing
        waiter = asyncio.ensure_future(pool.acquire([*FILE, 7]))
        await asyncio.sleep(0)
        assert not waiter.done() and pool.queue_depth == 1  # "b" is free but holds nothing
        assert await pool.acquire([5, 6]) == "b"  # what shares nothing with it goes on
        cached["a"] = FILE
        pool.release("a")
        assert await waiter == "a"
        pool.release("a")
        pool.release("b")
        # Once it is back, what it was to hold is no longer assumed: cut short, a warm-up
        # holds only what it read.
        assert await pool.acquire(FILE[:3]) == "a"
        pool.returning("a", holding=FILE)
        pool.returning("a")
        cached["a"] = FILE[: WORTH_WAITING - 1]
        taken = asyncio.ensure_future(pool.acquire(FILE))
        await asyncio.sleep(0)
        assert taken.done() and taken.result() == "b"

    asyncio.run(run())


def test_the_second_request_for_a_returning_slot_waits_like_anyone() -> None:
    async def run() -> None:
        pool = await returning_pool(FILE)
        first, second = await two_waiting(pool)
        assert pool.queue_depth == 2
        pool.release("a")
        assert await first == "a"
        await asyncio.sleep(0)
        assert not second.done() and pool.queue_depth == 1  # in the common line now
        pool.release("a")
        assert await second == "a"

    asyncio.run(run())


def test_a_request_moved_to_the_common_line_can_still_give_up() -> None:
    async def run() -> None:
        pool = await returning_pool(FILE)
        first, second = await two_waiting(pool)
        pool.release("a")
        assert await first == "a"
        second.cancel()
        await asyncio.sleep(0)
        assert second.cancelled() and pool.queue_depth == 0

    asyncio.run(run())


def test_a_cancelled_wait_for_a_returning_slot_leaves_nothing_behind() -> None:
    async def run() -> None:
        pool = await returning_pool(FILE)
        waiter = asyncio.ensure_future(pool.acquire(FILE))
        await asyncio.sleep(0)
        waiter.cancel()
        await asyncio.sleep(0)
        assert pool.queue_depth == 0
        pool.release("a")
        assert pool.in_flight == 0  # both free again

    asyncio.run(run())


def test_a_slot_taken_by_name_comes_before_requests_and_can_be_given_up() -> None:
    async def run() -> None:
        pool = SlotPool(["a", "b"], 4, lambda s: [])
        assert await pool.take("b") == "b"  # free: at once
        held = await pool.acquire([1])
        assert held == "a" and pool.in_flight == 2
        request = asyncio.ensure_future(pool.acquire([1]))
        claim = asyncio.ensure_future(pool.take("a"))
        gone = asyncio.ensure_future(pool.take("b"))
        await asyncio.sleep(0)
        assert pool.queue_depth == 3
        gone.cancel()
        await asyncio.sleep(0)
        assert pool.queue_depth == 2
        pool.release("a")  # to the claim on "a", though the request waited longer
        assert await claim == "a" and not request.done()
        pool.release("b")  # nobody claims "b" now: to the request
        assert await request == "b"
        pool.release("a")
        pool.release("b")
        assert pool.in_flight == 0 and pool.queue_depth == 0

    asyncio.run(run())


def test_once_stopping_no_request_waits_and_those_waiting_are_refused() -> None:
    class Stopping(Exception):
        pass

    async def run() -> None:
        pool = await returning_pool(FILE[:150])
        for_a = asyncio.ensure_future(pool.acquire([*FILE, 7]))  # waits for "a"'s cache
        await asyncio.sleep(0)
        assert pool.queue_depth == 1
        pool.refuse_waiting(Stopping)
        with pytest.raises(Stopping):
            await for_a
        assert await pool.acquire([*FILE, 8]) == "b"  # free now: taken, not waited for
        with pytest.raises(Stopping):  # nothing free: refused at once, not queued
            await pool.acquire([1])
        pool.release("b")
        assert pool.queue_depth == 0 and pool.is_free("b")

    asyncio.run(run())


def test_a_waiter_cancelled_as_it_is_refused_is_cancelled() -> None:
    async def run() -> None:
        pool = SlotPool(["only"], 2, lambda s: [])
        held = await pool.acquire([1])
        waiter = asyncio.ensure_future(pool.acquire([1]))
        await asyncio.sleep(0)
        pool.refuse_waiting(RuntimeError)
        waiter.cancel()  # in the same step: the refusal is set, the cancel comes after
        with pytest.raises(asyncio.CancelledError):
            await waiter
        pool.release(held)
        assert pool.is_free("only") and pool.queue_depth == 0

    asyncio.run(run())


def test_a_waiter_cancelled_as_a_release_passes_it_over_leaves_quietly() -> None:
    async def run() -> None:
        pool = SlotPool(["only"], 2, lambda s: [])
        held = await pool.acquire([1])
        waiter = asyncio.ensure_future(pool.acquire([1]))
        await asyncio.sleep(0)
        waiter.cancel()  # its coroutine runs its handler only at the next step
        pool.release(held)  # takes the cancelled waiter off the line, hands it nothing
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert pool.is_free("only") and pool.queue_depth == 0

    asyncio.run(run())


def test_a_full_queue_after_a_quiet_time_or_with_no_queue_waits_for_the_answers_ahead() -> None:
    """The pace is that of answers ending while every slot was busy: hours with a slot
    free in between are no answer's time, and with no queue the next answer's end frees
    the place a refused request needs."""
    now = [0.0]

    async def refused(pool: SlotPool[str]) -> int:
        with pytest.raises(OverloadedError) as info:
            await pool.acquire([1])
        return info.value.retry_after_s

    async def quiet_then_busy() -> int:
        pool = SlotPool(["a"], 1, lambda s: [], clock=lambda: now[0])
        for _ in range(16):  # one 2 s answer every ten minutes
            slot = await pool.acquire([1])
            now[0] += 2
            pool.release(slot)
            now[0] += 600
        await pool.acquire([1])
        waiter = asyncio.ensure_future(pool.acquire([1]))
        await asyncio.sleep(0)
        now[0] += 0.5
        wait = await refused(pool)
        waiter.cancel()
        return wait

    async def no_queue() -> int:
        pool = SlotPool(["a"], 0, lambda s: [], clock=lambda: now[0])
        for _ in range(4):  # answers of 8 s, back to back
            slot = await pool.acquire([1])
            now[0] += 8
            pool.release(slot)
        await pool.acquire([1])
        now[0] += 0.5
        return await refused(pool)

    assert asyncio.run(quiet_then_busy()) == 2
    assert asyncio.run(no_queue()) == 8
