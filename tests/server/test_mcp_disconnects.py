"""A client that leaves an MCP request over HTTP: before the answer, the work stops;
after it (a notification, answered 202 before it is handled), the work goes on."""

from __future__ import annotations

import asyncio

import pytest
from starlette.types import Message, Receive, Scope, Send

from tether.errors import CancelledGeneration
from tether.server.mcp_mount import _stopped_when_the_client_leaves

SCOPE: Scope = {"type": "http", "method": "POST", "path": "/mcp", "headers": []}


def _leaving_after(event: asyncio.Event) -> Receive:
    async def receive() -> Message:
        await event.wait()
        return {"type": "http.disconnect"}

    return receive


def test_a_notification_answered_before_its_client_left_is_still_handled() -> None:
    """Cancelled after its 202, each one raised after the response had started: two
    tracebacks in the server's log per notification an SDK session sends."""
    handled: list[str] = []

    async def run() -> list[Message]:
        sent: list[Message] = []
        answered = asyncio.Event()

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            await receive()
            await send({"type": "http.response.start", "status": 202, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            answered.set()  # the client closes at once
            await asyncio.sleep(0.2)  # then the notification is handled
            handled.append("initialized")

        async def send(message: Message) -> None:
            sent.append(message)

        await _stopped_when_the_client_leaves(app, SCOPE, b"{}", _leaving_after(answered), send)
        return sent

    sent = asyncio.run(run())
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert handled == ["initialized"]


def test_a_call_whose_client_left_before_its_answer_is_stopped() -> None:
    stopped: list[bool] = []

    async def run() -> None:
        began = asyncio.Event()

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            await receive()
            began.set()
            try:
                await asyncio.sleep(30)  # a function call running on for no one
            except asyncio.CancelledError:
                stopped.append(True)
                raise

        async def send(message: Message) -> None:
            raise AssertionError(f"nothing is sent: {message}")

        await _stopped_when_the_client_leaves(app, SCOPE, b"{}", _leaving_after(began), send)

    with pytest.raises(CancelledGeneration, match="closed the connection"):
        asyncio.run(run())
    assert stopped == [True]


def test_a_stream_cut_by_its_client_ends_quietly_with_its_status_sent() -> None:
    async def run() -> list[Message]:
        sent: list[Message] = []
        started = asyncio.Event()

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            await receive()
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"data: 1\n\n", "more_body": True})
            started.set()
            await asyncio.sleep(30)

        async def send(message: Message) -> None:
            sent.append(message)

        await _stopped_when_the_client_leaves(app, SCOPE, b"{}", _leaving_after(started), send)
        return sent

    assert len(asyncio.run(run())) == 2  # no error raised after the response started
