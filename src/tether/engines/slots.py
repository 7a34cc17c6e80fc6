"""A pool of slots (model sequences, upstream replicas) behind a bounded waiting queue,
with prefix affinity.

A request takes the free slot whose cached tokens share the longest prefix with its
prompt, so an editor that resends the same file with one more keystroke lands where
the KV cache already holds that file; ``tie_break`` orders slots that share as much.

A slot whose work was stopped early is ``returning`` until its holder lets go (a sequence
leaves the batch at the next step). A request that would share ``WORTH_WAITING`` more
tokens with it than with any free slot waits for it rather than read them again
elsewhere: an editor's next request often follows an answer the pipeline cut short (a
time limit, a filled hole). A slot that only reads a prompt (llama.vim's warm-ups,
``n_predict`` 0) is returning from the start, and is weighed by the tokens it will hold:
the editor's next request, sent while that is still read, shares them.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from tether.errors import OverloadedError

SlotT = TypeVar("SlotT")
# Fewer shared tokens are read again sooner than a busy batch's step ends; every prompt
# shares its first token or two (BOS, a template's opening) with every cache.
WORTH_WAITING = 64
# A request refused for a full queue is told to come back once the queue ahead of it has
# drained, at the pace answers have ended lately: a fixed second had the OpenAI SDKs spend
# their three retries while a queue of long answers took eight. Within these bounds: those
# SDKs follow a Retry-After of up to 60 s, and use their own back-off beyond it.
RETRY_WHEN_FULL_S = 1
RETRY_WHEN_FULL_MAX_S = 60
RELEASES_KEPT = 16  # the pace is read over this many of the latest answers' ends


def common_prefix_length(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


class SlotPool(Generic[SlotT]):
    def __init__(
        self,
        slots: list[SlotT],
        max_queue: int,
        cached_tokens: Callable[[SlotT], Sequence[int]],
        tie_break: Callable[[SlotT], int] = lambda slot: 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._free = list(slots)
        self._clock = clock
        # How long each of the latest slots to come back was awaited with every slot busy,
        # and since when every slot is busy now (None: one is free). Time with a slot free
        # is no answer's: a quiet night between them made a morning's queue wait 60 s.
        self._gaps: deque[float] = deque(maxlen=RELEASES_KEPT)
        self._full_since: float | None = None
        self._tie_break = tie_break
        self._size = len(slots)
        self._max_queue = max_queue
        self._cached_tokens = cached_tokens
        self._waiters: deque[asyncio.Future[SlotT]] = deque()
        self._returning: dict[SlotT, deque[asyncio.Future[SlotT]]] = {}  # and who waits
        self._holding: dict[SlotT, Sequence[int]] = {}  # what a returning slot will hold
        self._claims: dict[SlotT, deque[asyncio.Future[SlotT]]] = {}  # ``take`` waits here
        self._refusal: Callable[[], Exception] | None = None  # set once the server stops

    @property
    def queue_depth(self) -> int:
        lines = (*self._returning.values(), *self._claims.values())
        return len(self._waiters) + sum(map(len, lines))

    @property
    def in_flight(self) -> int:
        return self._size - len(self._free)

    def is_free(self, slot: SlotT) -> bool:
        """Whether a request asking now would get ``slot`` without waiting."""
        return slot in self._free

    async def acquire(self, prompt_tokens: Sequence[int]) -> SlotT:
        if self._free and not self._waiters:
            shared = {
                s: common_prefix_length(self._holds(s), prompt_tokens)
                for s in (*self._free, *self._returning)
            }
            best = max(self._free, key=lambda s: (shared[s], self._tie_break(s)))
            back = max(self._returning, key=shared.__getitem__, default=None)
            # Once stopping, a slot free now is taken rather than waiting for one.
            worth_it = back is not None and shared[back] >= shared[best] + WORTH_WAITING
            if back is not None and worth_it and self._refusal is None:
                return await self._wait(self._returning[back])
            self._take_free(best)
            return best
        if self._refusal is not None:
            raise self._refusal()
        if len(self._waiters) >= self._max_queue:
            # The wait is said in words too: a command, or a script reading the message,
            # never sees the Retry-After header.
            wait = self._until_drained_s()
            raise OverloadedError(
                f"all {self._size} sequences are busy and {len(self._waiters)} requests "
                f"are waiting; retry in {wait} s, or raise engine.n_parallel / "
                "engine.max_queue",
                retry_after_s=wait,
            )
        return await self._wait(self._waiters)

    def _holds(self, slot: SlotT) -> Sequence[int]:
        holding = self._holding.get(slot)
        return self._cached_tokens(slot) if holding is None else holding

    def _until_drained_s(self) -> int:
        """Whole seconds until the requests waiting now have each been given a slot, at
        the pace slots have come back lately while all were busy; a wait since the last one
        (or since all became busy) longer than that pace is the pace (answers that all run
        long)."""
        gaps = self._gaps
        pace = sum(gaps) / len(gaps) if gaps else 0.0
        if self._full_since is not None:
            pace = max(pace, self._clock() - self._full_since)
        # With no queue (engine.max_queue 0), a place is the slot the next answer frees.
        wait = math.ceil(pace * max(len(self._waiters), 1))
        return min(max(wait, RETRY_WHEN_FULL_S), RETRY_WHEN_FULL_MAX_S)

    def _take_free(self, slot: SlotT) -> None:
        self._free.remove(slot)
        if not self._free and self._full_since is None:
            self._full_since = self._clock()

    async def take(self, slot: SlotT) -> SlotT:
        """``slot`` itself, as soon as it is free (before any request waiting for a slot):
        for work on what it holds, such as saving its cache."""
        if slot in self._free:
            self._take_free(slot)
            return slot
        return await self._wait(self._claims.setdefault(slot, deque()))

    async def _wait(self, line: deque[asyncio.Future[SlotT]]) -> SlotT:
        waiter: asyncio.Future[SlotT] = asyncio.get_running_loop().create_future()
        line.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                # Handed a slot just as we gave up; or refused (the server stops): none.
                if waiter.exception() is None:
                    self.release(waiter.result())
            else:  # still in its line, moved to the common one since, or taken off both
                # by a release or a refusal in the step it was cancelled in
                for queue in (line, self._waiters):
                    if waiter in queue:
                        queue.remove(waiter)
                        break
            raise

    def refuse_waiting(self, refusal: Callable[[], Exception]) -> None:
        """From now on a request that would wait for a slot gets ``refusal()`` instead, and
        so do those waiting now: the server is stopping, and what has not started by now
        may not finish within its grace (another replica can answer it at once)."""
        self._refusal = refusal
        lines = (self._waiters, *self._returning.values())
        for line in lines:
            while line:
                waiter = line.popleft()
                if not waiter.done():
                    waiter.set_exception(refusal())

    def returning(self, slot: SlotT, holding: Sequence[int] | None = None) -> None:
        """``slot``'s work was stopped early: it comes back soon, with its cache. Or it
        only reads a prompt, ``holding``: it comes back once it holds those tokens."""
        self._returning.setdefault(slot, deque())
        if holding is None:  # stopped early: it holds what it has read by then
            self._holding.pop(slot, None)
        else:
            self._holding[slot] = holding

    def release(self, slot: SlotT) -> None:
        if self._full_since is not None:  # handed on below, every slot stays busy from now
            now = self._clock()
            self._gaps.append(now - self._full_since)
            self._full_since = now
        self._holding.pop(slot, None)
        claims = self._claims.pop(slot, deque())
        while claims:
            waiter = claims.popleft()
            if not waiter.done():
                if claims:
                    self._claims[slot] = claims
                waiter.set_result(slot)
                return
        wanting = self._returning.pop(slot, deque())
        while wanting:
            waiter = wanting.popleft()
            if not waiter.done():
                waiter.set_result(slot)
                self._waiters.extendleft(reversed(wanting))  # the rest wait as anyone does
                wanting.clear()
                return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(slot)
                return
        self._full_since = None
        self._free.append(slot)
