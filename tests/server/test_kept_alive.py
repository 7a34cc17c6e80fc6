"""A held stream's keepalive (``_kept_alive``), closed by its consumer while the step it
awaited for the next chunk has already ended, as when a client leaves while a keepalive is
written and the answer ends meanwhile."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tether.server.serving import _kept_alive


class Failed(Exception):
    pass


@pytest.mark.parametrize("ending", ["end", "failure"])
def test_a_stream_closed_as_its_step_ended_leaves_no_exception_unretrieved(ending: str) -> None:
    async def scenario() -> list[dict[str, Any]]:
        unretrieved: list[dict[str, Any]] = []
        asyncio.get_running_loop().set_exception_handler(lambda _, c: unretrieved.append(c))
        go = asyncio.Event()

        async def chunks() -> AsyncIterator[Any]:
            await go.wait()
            if ending == "failure":
                raise Failed("the engine failed")
            return
            yield

        kept = _kept_alive(chunks(), lambda: True, 0.001)
        assert await anext(kept) is None  # a keepalive, the step still awaited
        go.set()
        for _ in range(10):  # the step ends, the consumer still at the keepalive
            await asyncio.sleep(0)
        await kept.aclose()  # the client left
        del kept
        gc.collect()
        return unretrieved

    assert asyncio.run(scenario()) == []
