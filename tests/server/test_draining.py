"""The drain ends covered requests once, and ends at once a request that reaches it late."""

from __future__ import annotations

import asyncio

import pytest

from tether.server.draining import Drain


async def _covered(drain: Drain, started: asyncio.Event, log: list[str]) -> None:
    with drain.covering():
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            log.append("ended")
            asyncio.current_task().uncancel()  # type: ignore[union-attr]
            await asyncio.sleep(0.05)  # writes its last answer: not to be cut short
            log.append("answered")


def test_expiring_twice_does_not_cut_short_the_answer_of_the_first() -> None:
    async def run() -> list[str]:
        drain, started, log = Drain(), asyncio.Event(), list[str]()
        task = asyncio.create_task(_covered(drain, started, log))
        await started.wait()
        drain.expire()
        await asyncio.sleep(0.01)
        drain.expire()  # a second Ctrl-C, after the grace's own expiry
        await drain.settled(5)
        assert task.done() and not task.cancelled()
        return log

    assert asyncio.run(run()) == ["ended", "answered"]


def test_a_request_covered_after_the_grace_ran_out_ends_at_once() -> None:
    async def run() -> list[str]:
        drain, started, log = Drain(), asyncio.Event(), list[str]()
        drain.expire()
        task = asyncio.create_task(_covered(drain, started, log))
        await drain.settled(0.01)  # not yet covered: nothing to wait for
        await asyncio.wait_for(task, 5)
        return log

    assert asyncio.run(run()) == ["ended", "answered"]


def test_settled_gives_up_after_its_timeout() -> None:
    async def run() -> None:
        drain = Drain()

        async def stubborn() -> None:
            with drain.covering():
                try:
                    await asyncio.sleep(30)
                except asyncio.CancelledError:
                    asyncio.current_task().uncancel()  # type: ignore[union-attr]
                    await asyncio.sleep(30)

        task = asyncio.create_task(stubborn())
        await asyncio.sleep(0)
        drain.expire()
        loop = asyncio.get_running_loop()
        began = loop.time()
        await drain.settled(0.1)
        assert loop.time() - began < 2 and not task.done()
        task.cancel()

    asyncio.run(run())


@pytest.mark.parametrize("expired", [False, True])
def test_nothing_to_settle_returns_at_once(expired: bool) -> None:
    async def run() -> None:
        drain = Drain()
        if expired:
            drain.expire()
        await asyncio.wait_for(drain.settled(30), 1)

    asyncio.run(run())
