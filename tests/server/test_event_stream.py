"""EventStream: streamed from the request's task, cancelled when the client goes away."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from starlette.types import Message, Send

from tether.server.draining import Drain
from tether.server.event_stream import EventStream

SCOPE: dict[str, Any] = {"type": "http", "asgi": {"spec_version": "2.3"}}
DRAINED = b"data: shutting down\n\ndata: [DONE]\n\n"


class Client:
    """The ASGI side of one connection: records what was sent; disconnects on demand."""

    def __init__(self) -> None:
        self.sent: list[Message] = []
        self.gone = asyncio.Event()
        self.drain = Drain()  # the server's, which its shutdown expires

    async def receive(self) -> Message:
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        self.sent.append(message)

    def bodies(self) -> list[bytes]:
        return [m["body"] for m in self.sent if m["type"] == "http.response.body"]

    async def fetch(self, events: Events, send: Send | None = None) -> None:
        """Serve ``events`` to this client as one response."""
        stream = EventStream(events.__aiter__(), drain=self.drain, drained=DRAINED)
        await stream(SCOPE, self.receive, send or self.send)


class Events:
    """A body that sends ``before`` events, then waits for ``release`` (a model thinking)."""

    def __init__(self, before: int, then_wait: bool) -> None:
        self.before = before
        self.then_wait = then_wait
        self.release = asyncio.Event()
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            for number in range(self.before):
                yield b"data: %d\n\n" % number
            if self.then_wait:
                await self.release.wait()
                yield b"data: late\n\n"
        finally:
            self.closed = True


def test_a_whole_stream_goes_out_in_order_and_ends() -> None:
    async def run() -> Client:
        client = Client()
        await client.fetch(Events(3, then_wait=False))
        return client

    client = asyncio.run(run())
    assert client.sent[0]["type"] == "http.response.start"
    assert client.bodies() == [b"data: 0\n\n", b"data: 1\n\n", b"data: 2\n\n", b""]
    assert client.sent[-1]["more_body"] is False


def test_a_disconnect_closes_the_body_and_the_response_ends_normally() -> None:
    async def run() -> tuple[Client, Events, int]:
        client = Client()
        events = Events(2, then_wait=True)
        streaming = asyncio.create_task(client.fetch(events))
        while len(client.bodies()) < 2:
            await asyncio.sleep(0)
        client.gone.set()  # the client closes the connection while the body waits
        await asyncio.wait_for(streaming, 5)
        return client, events, streaming.cancelling()

    client, events, cancelling = asyncio.run(run())
    assert events.closed  # closing the body is what stops the engine
    assert b"data: late\n\n" not in client.bodies()
    assert cancelling == 0  # the task carries no stray cancellation on to what follows


def test_a_cancellation_from_elsewhere_still_propagates() -> None:
    async def run() -> Events:
        client = Client()
        events = Events(1, then_wait=True)
        streaming = asyncio.create_task(client.fetch(events))
        while not client.bodies():
            await asyncio.sleep(0)
        streaming.cancel()  # the server shutting down
        with pytest.raises(asyncio.CancelledError):
            await streaming
        return events

    assert asyncio.run(run()).closed


def test_a_disconnect_after_the_stream_ended_cancels_nothing() -> None:
    async def run() -> int:
        client = Client()

        async def send(message: Message) -> None:
            await client.send(message)
            if message.get("more_body") is False:
                client.gone.set()  # the client hangs up as soon as it has everything

        await client.fetch(Events(1, then_wait=False), send)
        for _ in range(5):
            await asyncio.sleep(0)  # what runs after the response (middleware) is not cut
        current = asyncio.current_task()
        assert current is not None
        return current.cancelling()

    assert asyncio.run(run()) == 0


def test_a_drain_that_expires_ends_the_stream_with_its_events() -> None:
    """The server's grace is over: the body is closed (stopping the engine), the client
    reads why and the end of the stream, and the task carries no cancellation on."""

    async def run() -> tuple[Client, Events, int]:
        client = Client()
        events = Events(1, then_wait=True)
        streaming = asyncio.create_task(client.fetch(events))
        while not client.bodies():
            await asyncio.sleep(0)
        client.drain.expire()
        await asyncio.wait_for(streaming, 5)
        return client, events, streaming.cancelling()

    client, events, cancelling = asyncio.run(run())
    assert events.closed
    assert client.bodies() == [b"data: 0\n\n", DRAINED]
    assert client.sent[-1]["more_body"] is False and cancelling == 0
