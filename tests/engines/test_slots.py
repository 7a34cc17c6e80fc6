from __future__ import annotations

import asyncio

import pytest

from tether.engines.slots import SlotPool, common_prefix_length
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
        pool.release(slot)
        assert await waiter == "only"
        assert pool.queue_depth == 0 and pool.in_flight == 1

    asyncio.run(run())


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
