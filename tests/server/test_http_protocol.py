"""What the HTTP protocol writes, fed read by read: the bound on a request's head, the
bound on how long a request may take to arrive, and no "100 Continue" for a body whose
token is refused."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from uvicorn.config import Config
from uvicorn.server import ServerState

from tests.conftest import TOKEN, make_settings
from tests.helpers import ScriptedEngine, audit_records
from tether.server import http_protocol
from tether.server.app import build_app
from tether.server.http_protocol import MAX_HEAD_BYTES, BoundedHttpToolsProtocol
from tether.server.paths import recorded_path
from tether.server.runner import bind_socket, uvicorn_config
from tether.settings import Settings


class _Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = b""
        self.closed = False
        self.ended = False
        self.unread = 100_000  # what its buffer holds that the client has not read
        self.reading = False  # the client reads a little of it each time it is looked at

    def get_write_buffer_size(self) -> int:
        if self.reading:
            self.unread -= 100
        return self.unread

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 4000), "sockname": ("127.0.0.1", 8000)}.get(name)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.ended:  # as asyncio's and uvloop's transports refuse it
            raise RuntimeError("Cannot call write() after write_eof()")
        self.written += bytes(data)

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.ended = True

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def _app(scope: Any, receive: Any, send: Any) -> None:
    size, more = 0, True
    while more:
        message = await receive()
        size, more = size + len(message.get("body", b"")), message.get("more_body", False)
    answer = str(size).encode()
    headers = [(b"content-length", str(len(answer)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": answer})


async def _stream(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    for piece in (b"one", b"two", b"three"):
        await send({"type": "http.response.body", "body": piece, "more_body": True})
        await asyncio.sleep(0)
    await send({"type": "http.response.body", "body": b""})


_DATE = b"Mon, 07 Dec 2026 01:53:08 GMT"


async def _serve(*reads: bytes, app: Any = _app) -> bytes:
    transport = await _connection(*reads, app=app)
    return transport.written


def _connected(
    app: Any = _app, keep_alive_s: float = 5, server_header: bool = True
) -> tuple[BoundedHttpToolsProtocol, _Transport]:
    """A connection made to the protocol, in the running event loop, with the headers
    uvicorn's server gives every answer (as it sets them once a second)."""
    config = Config(
        app=app,
        lifespan="off",
        log_level="warning",
        timeout_keep_alive=keep_alive_s,  # type: ignore[arg-type]
        server_header=server_header,
    )
    config.load()
    loop = asyncio.get_running_loop()
    state = ServerState()
    state.default_headers = [(b"date", _DATE), *config.encoded_headers]
    protocol = BoundedHttpToolsProtocol(config=config, server_state=state, app_state={}, _loop=loop)
    transport = _Transport()
    protocol.connection_made(transport)
    return protocol, transport


async def _connection(
    *reads: bytes, app: Any = _app, wait_s: float = 0.0, keep_alive_s: float = 5
) -> _Transport:
    """The transport after ``reads``, and ``wait_s`` of the client's silence."""
    protocol, transport = _connected(app, keep_alive_s)
    for data in reads:
        protocol.data_received(data)
        await asyncio.sleep(0)
    for _ in range(20):
        await asyncio.sleep(0)
    await asyncio.sleep(wait_s)
    if transport.closed:  # as asyncio's transport tells its protocol once closed
        protocol.connection_lost(None)
        await asyncio.sleep(0.01)
    return transport


def _post(size: int) -> tuple[bytes, bytes]:
    head = f"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\n\r\n".encode()
    return head, b"b" * size


def test_a_body_past_the_bound_in_the_same_read_as_its_head_is_served() -> None:
    head, body = _post(2 * MAX_HEAD_BYTES)
    written = asyncio.run(_serve(head + body))
    assert written.startswith(b"HTTP/1.1 200 "), written[:200]
    assert written.endswith(str(len(body)).encode())


def test_the_last_read_of_a_body_past_the_bound_is_no_part_of_a_head() -> None:
    head, body = _post(4 * MAX_HEAD_BYTES)
    written = asyncio.run(_serve(head, body[:1000], body[1000:]))
    assert written.startswith(b"HTTP/1.1 200 "), written[:200]


def test_a_pipelined_request_after_a_long_body_is_served_too() -> None:
    head, body = _post(2 * MAX_HEAD_BYTES)
    second = b"GET /y HTTP/1.1\r\nHost: x\r\n"
    written = asyncio.run(_serve(head + body + second, b"\r\n"))
    assert written.count(b"HTTP/1.1 200 ") == 2, written[:400]


def test_a_head_dripped_over_many_reads_is_still_refused() -> None:
    drip = [b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: "] + [b"a" * 1000] * 100
    written = asyncio.run(_serve(*drip))
    assert written.startswith(b"HTTP/1.1 431 "), written[:200]


def test_a_long_head_after_a_served_request_is_refused() -> None:
    head, body = _post(10)
    drip = [head + body + b"GET / HTTP/1.1\r\nX-Big: "] + [b"a" * 1000] * 100
    written = asyncio.run(_serve(*drip))
    assert written.startswith(b"HTTP/1.1 200 ") and b"HTTP/1.1 431 " in written, written[:400]


def test_a_long_head_sent_while_an_answer_streams_is_refused_after_it() -> None:
    """The 431 went out inside the answer being streamed, whose next piece then failed:
    no write after the end of the server's side."""
    big = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 2 * MAX_HEAD_BYTES
    written = asyncio.run(_serve(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", big, app=_stream))
    answer, _, refusal = written.partition(b"0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 ") and b"three" in answer, written[:400]
    assert refusal.startswith(b"HTTP/1.1 431 "), written[:400]


def test_a_request_that_cannot_be_read_after_a_good_one_is_refused_after_its_answer() -> None:
    """A request whose Content-Length fell short left bytes that read as a bad next
    request: its 400 went out, and the connection closed, before the good one's answer."""
    request = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n"
    written = asyncio.run(_serve(request + b"abcdefg\r\n\r\n", app=_stream))
    answer, _, refusal = written.partition(b"0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 ") and b"three" in answer, written[:400]
    assert refusal.startswith(b"HTTP/1.1 400 "), written[:400]
    assert b"invalid_http_request" in refusal


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_stream_to_an_http_1_0_client_is_unchunked_and_ended_by_closing(method: str) -> None:
    """HTTP/1.0 has no chunked transfer coding: its client read the chunk sizes as text."""
    request = f"{method} / HTTP/1.0\r\nHost: x\r\nContent-Length: 0\r\n\r\n".encode()
    written = asyncio.run(_serve(request, app=_stream))
    head, _, body = written.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), head
    assert b"transfer-encoding" not in head.lower() and b"connection: close" in head.lower()
    assert body == b"onetwothree"


def test_an_answer_of_known_length_to_an_http_1_0_client_is_as_before() -> None:
    head, body = _post(5)
    written = asyncio.run(_serve(head.replace(b"HTTP/1.1", b"HTTP/1.0") + body))
    assert written.startswith(b"HTTP/1.1 200 ") and b"content-length: 1\r\n" in written
    assert written.endswith(b"\r\n\r\n5")


def _expecting(token: str | None) -> bytes:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 20\r\n"
        "Expect: 100-continue\r\n\r\n"
    ).encode()


@pytest.mark.parametrize("token", [None, "tth_not-a-token"])
def test_a_body_is_not_asked_for_when_the_token_is_refused(
    tmp_path: Path, token: str | None
) -> None:
    app = build_app(make_settings(tmp_path), TOKEN, lambda: ScriptedEngine("x"))
    written = asyncio.run(_serve(_expecting(token), app=app))
    assert written.startswith(b"HTTP/1.1 401 "), written[:200]
    assert b"100 Continue" not in written and b"connection: close" in written.lower()


def test_a_body_is_asked_for_when_the_token_is_valid(tmp_path: Path) -> None:
    app = build_app(make_settings(tmp_path), TOKEN, lambda: ScriptedEngine("x"))
    written = asyncio.run(_serve(_expecting(TOKEN), app=app))
    assert written.startswith(b"HTTP/1.1 100 Continue\r\n\r\n"), written[:200]


@pytest.mark.parametrize(
    "reads",
    [
        [b"GET /v1/mod"],
        [b"POST /x HTTP/1.1\r\nHost: x\r\n"],
        # The next request's head, begun after an answer: uvicorn's keep-alive timer
        # stops at its first byte.
        [b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n", b"GET /b HTTP/1.1\r\n"],
    ],
)
def test_a_head_that_stops_arriving_gets_408_and_its_connection_closes(
    monkeypatch: pytest.MonkeyPatch, reads: list[bytes]
) -> None:
    """The connection was held until the server stopped."""
    monkeypatch.setattr(http_protocol, "READ_TIMEOUT_S", 0.05)
    transport = asyncio.run(_connection(*reads, wait_s=0.5))
    assert transport.closed
    refusal = transport.written[transport.written.find(b"HTTP/1.1 408 ") :]
    assert refusal.startswith(b"HTTP/1.1 408 "), transport.written[:400]
    assert b'"code": "request_timeout"' in refusal and b"connection: close" in refusal


def test_a_connection_that_sends_nothing_is_closed_as_an_idle_one_is() -> None:
    transport = asyncio.run(_connection(wait_s=0.5, keep_alive_s=0.05))
    assert transport.closed and transport.written == b""


def test_a_body_that_stops_arriving_closes_its_connection_and_its_request_hears_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(http_protocol, "READ_TIMEOUT_S", 0.05)
    heard: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        while (message := await receive())["type"] == "http.request":
            pass
        heard.append(message["type"])

    head, body = _post(100)
    transport = asyncio.run(_connection(head + body[:10], app=app, wait_s=0.5))
    assert transport.closed and transport.written == b""
    assert heard == ["http.disconnect"]


def test_a_request_that_arrived_whole_is_answered_however_long_it_takes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(http_protocol, "READ_TIMEOUT_S", 0.05)

    async def slow(scope: Any, receive: Any, send: Any) -> None:
        await asyncio.sleep(0.3)  # a long prompt's reading, a wait in the queue
        await _app(scope, receive, send)

    head, body = _post(5)
    transport = asyncio.run(_connection(head + body, app=slow, wait_s=0.5))
    assert transport.written.startswith(b"HTTP/1.1 200 "), transport.written[:200]
    assert not transport.closed


def test_a_head_past_the_bound_that_comes_whole_in_one_read_is_refused() -> None:
    """Reads that ended a request were not counted, so a 70 KB head sent at once (as
    most clients send a head) was served."""
    big = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (MAX_HEAD_BYTES + 1000) + b"\r\n\r\n"
    written = asyncio.run(_serve(big))
    assert written.startswith(b"HTTP/1.1 431 "), written[:200]
    assert b"request_header_too_large" in written and b"connection: close" in written


def test_a_head_past_the_bound_with_its_body_in_one_read_is_refused() -> None:
    head, body = _post(1000)
    big = head.replace(b"Host: x", b"Host: x\r\nX-Big: " + b"a" * MAX_HEAD_BYTES)
    written = asyncio.run(_serve(big + body))
    assert written.startswith(b"HTTP/1.1 431 ") and written.count(b"HTTP/1.1 ") == 1


def test_nothing_pipelined_after_a_head_past_the_bound_is_served() -> None:
    big = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * MAX_HEAD_BYTES + b"\r\n\r\n"
    written = asyncio.run(_serve(big + b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n"))
    assert written.startswith(b"HTTP/1.1 431 ") and written.count(b"HTTP/1.1 ") == 1


@pytest.mark.parametrize(
    "request_",
    [
        b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
        b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"GET /x HTTP/1.1\r\nHost: x\r\nX-Bad: a\x00b\r\n\r\n",
    ],
)
def test_what_http_cannot_read_is_answered_in_the_openai_shape(request_: bytes) -> None:
    """uvicorn answered "Invalid HTTP request received." as plain text."""
    transport = asyncio.run(_connection(request_))
    head, _, body = transport.written.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ") and b"application/json" in head, head
    error = json.loads(body)["error"]
    assert error["code"] == "invalid_http_request" and "Content-Length" in error["message"]
    assert transport.closed


def test_a_client_that_reads_none_of_its_answer_is_cut_off_and_its_request_hears_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An answer the client did not read waited on it for as long as it kept the
    connection: its request, its record and its token's allowance with it."""
    monkeypatch.setattr(http_protocol, "WRITE_TIMEOUT_S", 0.05)
    heard: list[str] = []

    async def run() -> _Transport:
        protocol, transport = _connected()

        async def app(scope: Any, receive: Any, send: Any) -> None:
            await receive()
            await send({"type": "http.response.start", "status": 200, "headers": []})
            protocol.pause_writing()  # the client's window is full
            await send({"type": "http.response.body", "body": b"x", "more_body": True})
            heard.append((await receive())["type"])

        protocol.app = app
        head, body = _post(1)
        protocol.data_received(head + body)
        await asyncio.sleep(0.5)
        if transport.closed:
            protocol.connection_lost(None)
        await asyncio.sleep(0.05)
        return transport

    transport = asyncio.run(run())
    assert transport.closed
    assert heard == ["http.disconnect"]


def test_a_client_that_reads_its_answer_slowly_is_not_cut_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(http_protocol, "WRITE_TIMEOUT_S", 0.3)

    async def run() -> _Transport:
        protocol, transport = _connected()
        for _ in range(30):  # it reads a little at a time: the buffer drains, then fills
            protocol.pause_writing()
            await asyncio.sleep(0.02)
            protocol.resume_writing()
        await asyncio.sleep(0.02)
        return transport

    assert not asyncio.run(run()).closed


def test_a_client_that_reads_its_answer_steadily_but_slowly_is_not_cut_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Cut off when its buffer had not drained to the low mark within the bound, a client
    reading less than that per bound was taken for one that reads nothing."""
    monkeypatch.setattr(http_protocol, "WRITE_TIMEOUT_S", 0.05)

    async def run() -> tuple[bool, bool]:
        protocol, transport = _connected()
        transport.reading = True
        protocol.pause_writing()  # and the buffer never drains below the low mark
        await asyncio.sleep(0.5)
        kept = not transport.closed
        transport.reading = False  # it stops reading
        await asyncio.sleep(0.5)
        return kept, transport.closed

    assert asyncio.run(run()) == (True, True)


def test_a_head_that_trickles_in_gets_408_once_its_time_is_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each read started the wait again: a byte sent every 59 s held the connection for
    as long as 64 KiB of head took, days."""
    monkeypatch.setattr(http_protocol, "READ_TIMEOUT_S", 0.2)

    async def run() -> _Transport:
        protocol, transport = _connected()
        protocol.data_received(b"GET / HTTP/1.1\r\n")
        for _ in range(100):  # a header byte every 10 ms, for a second
            if transport.closed:
                break
            protocol.data_received(b"x")
            await asyncio.sleep(0.01)
        return transport

    transport = asyncio.run(run())
    assert transport.closed
    assert transport.written.startswith(b"HTTP/1.1 408 "), transport.written[:200]


@contextmanager
def _listening(tmp_path: Path, model_id: str = "scripted") -> Iterator[tuple[str, int]]:
    """tether's app served as ``tether serve`` serves it (its protocol, its uvicorn
    settings), on a loopback port of its own: where."""
    settings = make_settings(tmp_path)
    app = build_app(settings, TOKEN, lambda: ScriptedEngine("Hello there", model_id=model_id))
    with _serving(app, settings) as address:
        yield address


@contextmanager
def _serving(app: Any, settings: Settings) -> Iterator[tuple[str, int]]:
    config = uvicorn_config(app, settings, None, "warning", json_lines=False)
    server = uvicorn.Server(config)
    sock = bind_socket("127.0.0.1", 0)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        # Serving once the headers of every answer are set, on the server's first tick.
        while not (server.started and server.server_state.default_headers):
            assert thread.is_alive(), "the server did not start"
            threading.Event().wait(0.01)
        yield sock.getsockname()[:2]
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def _exchange(address: tuple[str, int], request: bytes) -> bytes:
    """``request`` sent on a connection of its own, and what came back until it closed."""
    with socket.create_connection(address, timeout=30) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def _head(answer: bytes) -> dict[str, str]:
    lines = answer.partition(b"\r\n\r\n")[0].decode().split("\r\n")[1:]
    return {name.lower(): value.strip() for name, _, value in (h.partition(":") for h in lines)}


_CLOSING = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
_BAD_HEAD = b"GET / HTTP/1.1\r\nHost: x\r\nX-Bad: a\x00b\r\n\r\n"


def test_what_http_cannot_read_is_answered_with_the_date_and_server_of_every_answer(
    tmp_path: Path,
) -> None:
    """The answers the protocol writes itself had neither, unlike all the app's."""
    with _listening(tmp_path) as address:
        refused = _exchange(address, _BAD_HEAD)
        served = _exchange(
            address, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
    assert refused.startswith(b"HTTP/1.1 400 ") and served.startswith(b"HTTP/1.1 200 ")
    assert {"date", "server"} <= _head(served).keys()
    assert _head(refused)["server"] == _head(served)["server"]
    assert _head(refused)["date"].endswith(" GMT")


def _refused(kind: str, server_header: bool) -> bytes:
    async def run() -> bytes:
        protocol, transport = _connected(server_header=server_header)
        if kind == "408":
            protocol.data_received(b"GET /v1/mod")
            protocol._read_timed_out()  # as its timer would, READ_TIMEOUT_S later
        elif kind == "431":
            protocol.data_received(b"GET / HTTP/1.1\r\nX-Big: " + b"a" * (MAX_HEAD_BYTES + 1))
        else:
            protocol.data_received(_BAD_HEAD)
        return transport.written

    return asyncio.run(run())


@pytest.mark.parametrize("kind", ["400", "408", "431"])
@pytest.mark.parametrize("server_header", [True, False])
def test_the_protocols_own_answers_carry_the_headers_every_answer_does(
    kind: str, server_header: bool
) -> None:
    written = _refused(kind, server_header)
    assert written.startswith(f"HTTP/1.1 {kind} ".encode()), written[:200]
    head = _head(written)
    assert head["date"] == _DATE.decode()
    assert head.get("server") == ("uvicorn" if server_header else None)
    assert head["connection"] == "close" and head["content-type"] == "application/json"


# What `curl --http2` adds to a request on http://.
_H2C = (
    b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
    b"HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n"
)


def _chat(*headers: bytes) -> bytes:
    body = json.dumps({"messages": [{"role": "user", "content": "hi"}]}).encode()
    return (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
        + f"Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n".encode()
        + b"".join(headers)
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )


def test_a_request_asking_for_h2c_is_answered_over_http_1_1_with_its_body(
    tmp_path: Path,
) -> None:
    """`curl --http2` asks to upgrade to h2c: the body of its POST was taken for the new
    protocol's (400 "body: missing"), and the connection read nothing more after it."""
    with _listening(tmp_path) as address:
        written = _exchange(address, _chat(_H2C) + _CLOSING.replace(b"/", b"/healthz", 1))
    first, _, second = written.partition(b"HTTP/1.1 200 OK\r\n")[2].partition(b"HTTP/1.1 ")
    assert written.startswith(b"HTTP/1.1 200 "), written[:400]
    assert json.loads(first.partition(b"\r\n\r\n")[2])["choices"][0]["message"]["content"]
    assert second.startswith(b"200 ") and second.endswith(b'{"status":"alive"}'), written


async def _told(scope: Any, receive: Any, send: Any) -> None:
    """An app that answers with the headers it was given and the size of the body."""
    size, more = 0, True
    while more:
        message = await receive()
        size, more = size + len(message.get("body", b"")), message.get("more_body", False)
    told = {"headers": [[n.decode(), v.decode()] for n, v in scope["headers"]], "body": size}
    answer = json.dumps(told).encode()
    headers = [(b"content-length", str(len(answer)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": answer})


def _answers(written: bytes) -> list[dict[str, Any]]:
    return [json.loads(part.partition(b"\r\n\r\n")[2]) for part in written.split(b"HTTP/1.1 ")[1:]]


@pytest.mark.parametrize(
    "reads",
    [
        [b"POST /x HTTP/1.1\r\nHost: x\r\n" + _H2C + b"Content-Length: 5\r\n\r\nhello"],
        # The head in one read, the body in the next: no part of it was read before.
        [b"POST /x HTTP/1.1\r\nHost: x\r\n" + _H2C + b"Content-Length: 5\r\n\r\n", b"hel", b"lo"],
        [b"POST /x HTTP/1.1\r\nHost: x\r\n" + _H2C + b"Transfer-Encoding: chunked\r\n\r\n",
         b"5\r\nhello\r\n0\r\n\r\n"],
    ],
)  # fmt: skip
def test_a_declined_upgrade_leaves_the_body_to_its_request_and_the_headers_out(
    reads: list[bytes],
) -> None:
    transport = asyncio.run(
        _connection(*reads, b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n", app=_told)
    )
    first, second = _answers(transport.written)
    assert first["body"] == 5 and second["body"] == 0
    names = {name for name, _ in first["headers"]}
    # Named in Connection, they were this hop's: what is left of Connection goes on.
    assert names == {"host", "content-length"} or names == {"host", "transfer-encoding"}
    assert not transport.closed


def test_a_declined_upgrade_keeps_what_else_its_connection_header_says() -> None:
    request = b"GET /x HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, close\r\nUpgrade: h2c\r\n\r\n"
    transport = asyncio.run(_connection(request, app=_told))
    (answer,) = _answers(transport.written)
    assert ["connection", "close"] in answer["headers"] and transport.closed


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_http2_gets_its_answer_over_http_1_1(tmp_path: Path) -> None:
    with _listening(tmp_path) as (host, port):
        url = f"http://{host}:{port}"
        body = json.dumps({"messages": [{"role": "user", "content": "hi"}]})
        done = subprocess.run(
            ["curl", "-sS", "--max-time", "30", "-w", " %{http_version} %{num_connects}\n",
             "--http2", "-H", f"Authorization: Bearer {TOKEN}",
             "-H", "Content-Type: application/json", "-d", body, f"{url}/v1/chat/completions",
             "--next", "-w", " %{http_version} %{num_connects}\n", "--http2", f"{url}/healthz"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    chat, _, health = done.stdout.partition("\n")
    assert chat.startswith('{"id":"chatcmpl-') and chat.endswith(" 1.1 1"), done.stdout
    # Asked on the connection the first answer came on, which was kept.
    assert health.startswith('{"status":"alive"}') and health.endswith(" 1.1 0\n"), done.stdout


_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def _frames(data: bytes) -> list[tuple[int, bytes]]:
    """The HTTP/2 frames in ``data``: each one's type and payload."""
    frames = []
    while data:
        size = int.from_bytes(data[:3], "big")
        frames.append((data[3], data[9 : 9 + size]))
        data = data[9 + size :]
    return frames


def test_a_client_that_begins_in_http_2_is_told_in_http_2_to_use_http_1_1(
    tmp_path: Path,
) -> None:
    """`curl --http2-prior-knowledge` was answered a 400 in HTTP/1.1, which it read as a
    broken frame ("Empty reply from server")."""
    settings = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"  # the client's, empty
    with _listening(tmp_path) as address:
        written = _exchange(address, _PREFACE + settings)
    (first, _), (kind, payload) = _frames(written)
    assert first == 0x4 and kind == 0x7, written  # the server's SETTINGS, then GOAWAY
    assert int.from_bytes(payload[4:8], "big") == 0xD  # HTTP_1_1_REQUIRED
    assert b"HTTP/1.1" in payload[8:]


def test_the_http_2_preface_is_recognised_over_several_reads() -> None:
    transport = asyncio.run(_connection(_PREFACE[:5], _PREFACE[5:]))
    assert [kind for kind, _ in _frames(transport.written)] == [0x4, 0x7]
    assert transport.ended


def _get(address: tuple[str, int], path: str) -> tuple[int, Any]:
    request = f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
    answer = _exchange(address, request.encode() + b"Connection: close\r\n\r\n")
    return int(answer.split(b" ", 2)[1]), json.loads(answer.partition(b"\r\n\r\n")[2])


@pytest.mark.parametrize(
    "path", ["/v1%2Fmodels", "/v1%2fmodels", "/v1%2Fmodels/org%2Fmodel", "/v1/tokens%2Fx"]
)
def test_an_encoded_slash_is_no_step_of_a_routes_path(tmp_path: Path, path: str) -> None:
    """uvicorn decodes %2F before routing: /v1%2Fmodels was served as /v1/models, which a
    proxy's rule on /v1/models (or on /v1/tokens/) does not take it for."""
    with _listening(tmp_path, model_id="org/model") as address:
        status, body = _get(address, path)
    assert status == 404, body
    message = body["error"]["message"]
    assert message.startswith(f"no route GET {path.replace('%2f', '%2F')};"), message
    assert "%2F" in message.partition(";")[2] and body["error"]["type"] == "invalid_request_error"


def test_an_encoded_slash_in_a_parameter_that_takes_slashes_is_served(tmp_path: Path) -> None:
    """The OpenAI SDKs send a model id's slash encoded: models.retrieve("org/model")."""
    with _listening(tmp_path, model_id="org/model") as address:
        encoded, plain = (
            _get(address, "/v1/models/org%2Fmodel"),
            _get(address, "/v1/models/org/model"),
        )
        queried = _get(address, "/healthz?next=%2Fv1%2Fmodels")
    assert encoded == plain and encoded[0] == 200 and encoded[1]["id"] == "org/model"
    assert queried == (200, {"status": "alive"})


def test_a_path_no_route_takes_is_recorded_with_its_encoded_slashes() -> None:
    scope = {"type": "http", "path": "/v1/models", "raw_path": b"/v1%2fmodels"}
    assert recorded_path(scope) == "/v1%2Fmodels"


def test_options_asterisk_answers_for_the_server_as_a_whole(tmp_path: Path) -> None:
    """A proxy's health check (HAProxy's `option httpchk OPTIONS *`) asks the server as a
    whole, and takes a 2xx for alive: it got 404 for "/*", a path no one asked for."""
    settings = make_settings(tmp_path)
    app = build_app(settings, TOKEN, lambda: ScriptedEngine("Hello there"))
    with _serving(app, settings) as address:
        answer = _exchange(address, _CLOSING.replace(b"GET /", b"OPTIONS *", 1))
        other = _exchange(address, _CLOSING.replace(b"GET /", b"GET *", 1))
        records = audit_records(app)
    head = _head(answer)
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"\r\n\r\n"), answer
    assert head["content-length"] == "0" and {"GET", "POST"} <= set(head["allow"].split(", "))
    # Asterisk-form is OPTIONS's alone: any other method's is no route's, named as sent.
    assert other.startswith(b"HTTP/1.1 404 "), other
    assert json.loads(other.partition(b"\r\n\r\n")[2])["error"]["message"].startswith(
        "no route GET *;"
    )
    assert records == []  # a probe, every few seconds, holds nothing of anyone's


def test_many_declined_upgrades_in_one_read_are_each_answered() -> None:
    """Each declined upgrade's request was read again inside the reading of the one before:
    a client's thousand pipelined requests went past Python's recursion limit, and the
    connection was dropped with a traceback instead of answers."""
    request = b"GET /x HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
    count = 1200

    async def run() -> _Transport:
        protocol, transport = _connected(_told)
        protocol.data_received(request * count + _CLOSING)
        for _ in range(100 * count):  # each answer starts the next request's
            if transport.closed:
                break
            await asyncio.sleep(0)
        return transport

    transport = asyncio.run(run())
    answers = _answers(transport.written)
    assert len(answers) == count + 1, transport.written[-300:]
    assert all(["upgrade", "h2c"] not in answer["headers"] for answer in answers)


def test_http_2_s_preface_after_a_request_follows_its_answer() -> None:
    """Only a connection that begins with it is HTTP/2's: after a request, the preface is
    a bad next request, refused after the answer. The GOAWAY went out first, the answer's
    write then failed (the connection's end was sent), and the answer was lost."""
    transport = asyncio.run(_connection(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n" + _PREFACE))
    first, second = transport.written.split(b"HTTP/1.1 ")[1:]
    assert first.startswith(b"200 ") and first.endswith(b"\r\n\r\n0"), transport.written
    assert second.startswith(b"400 ") and b"invalid_http_request" in second, transport.written


def test_an_encoded_percent_sign_is_not_said_to_be_an_encoded_slash(tmp_path: Path) -> None:
    """/v1%252Fmodels names "v1%2Fmodels", with no encoded slash in it: the 404 said
    "an encoded slash, %2F, is part of a name", of a slash the client never sent."""
    with _listening(tmp_path) as address:
        status, body = _get(address, "/v1%252Fmodels")
    assert status == 404 and "encoded slash" not in body["error"]["message"], body


def test_a_body_over_the_limit_still_arriving_hears_its_413(tmp_path: Path) -> None:
    """The 413 for a declared length over server.max_body_mb went out as the body was
    still being sent, and the connection closed with it unread: the client's system
    reset the connection and dropped the answer, so an asyncio client (httpx's, the
    command line's, the OpenAI SDK's async one) was told it could not reach the server."""
    import httpx

    settings = make_settings(tmp_path, TETHER_SERVER_MAX_BODY_MB=str(4096 / 2**20))
    app = build_app(settings, TOKEN, lambda: ScriptedEngine("x"))
    body = {"prompt": "x" * (32 * 2**20), "max_tokens": 2}

    async def post(url: str) -> httpx.Response:
        async with httpx.AsyncClient(timeout=30) as client:
            return await client.post(url, json=body, headers={"Authorization": f"Bearer {TOKEN}"})

    with _serving(app, settings) as (host, port):
        response = asyncio.run(post(f"http://{host}:{port}/v1/completions"))
    assert response.status_code == 413, response.text[:200]
    assert response.json()["error"]["code"] == "request_too_large"


def _refusing(answered: asyncio.Event | None = None) -> Any:
    """An app that answers 413 with ``Connection: close`` without reading the body, once
    ``answered`` is set (at once without it)."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if answered is not None:
            await answered.wait()
        headers = [(b"content-length", b"2"), (b"connection", b"close")]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": b"no"})

    return app


def test_an_answer_whose_body_has_all_arrived_is_written_to_the_connection_itself() -> None:
    """Only a request whose body is still arriving has its answer's closing looked at:
    the answer to one read whole goes to the connection's transport, with nothing between."""

    async def served() -> tuple[Any, _Transport]:
        protocol, transport = _connected()
        head, body = _post(10)
        protocol.data_received(head)
        protocol.data_received(body)
        return protocol.cycle, transport

    cycle, transport = asyncio.run(served())
    assert cycle.transport is transport


def test_the_answer_to_a_body_still_arriving_reaches_all_of_its_connection() -> None:
    """What the answer's transport does not itself decide (its buffer's size, its limits)
    is the connection's: the first version subclassed asyncio's Transport, and each of
    Transport's methods that it did not define itself raised NotImplementedError."""

    async def arriving() -> tuple[Any, _Transport]:
        protocol, transport = _connected(_refusing(asyncio.Event()))
        head, body = _post(10)
        protocol.data_received(head + body[:5])
        return protocol.cycle.transport, transport

    answering, transport = asyncio.run(arriving())
    assert answering.get_write_buffer_size() == transport.get_write_buffer_size()
    assert answering.can_write_eof()


def test_an_answer_that_closes_while_its_body_arrives_in_a_shutdown_closes_at_once() -> None:
    """Read and dropped for 30 s, the rest of the body held the server's shutdown, which
    waits for every connection to close, past its grace."""

    async def stopped() -> _Transport:
        answered = asyncio.Event()
        protocol, transport = _connected(_refusing(answered))
        head, body = _post(10**6)
        protocol.data_received(head + body[:1000])
        await asyncio.sleep(0)
        protocol.shutdown()
        answered.set()
        for _ in range(10):
            await asyncio.sleep(0)
        return transport

    transport = asyncio.run(stopped())
    assert transport.written.startswith(b"HTTP/1.1 413 "), transport.written[:200]
    assert transport.closed


def test_a_body_that_cannot_be_read_after_its_answer_began_adds_nothing_to_it() -> None:
    """A chunked body broken while its request was answered, whose answer then ended the
    connection with the rest still coming: the 400 that waited for that answer was written
    after the server's end of the connection, which its transport refuses, and the app's
    last send failed."""
    failed: list[BaseException] = []
    answered = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        try:
            await _refusing(answered)(scope, receive, send)
        except Exception as exc:
            failed.append(exc)

    async def broken() -> _Transport:
        protocol, transport = _connected(app)
        head = b"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        protocol.data_received(head + b"5\r\nhello\r\n")
        await asyncio.sleep(0)
        protocol.data_received(b"zz\r\n")  # not a chunk's size
        answered.set()
        for _ in range(10):
            await asyncio.sleep(0)
        return transport

    transport = asyncio.run(broken())
    assert not failed, failed
    assert transport.written.startswith(b"HTTP/1.1 413 "), transport.written[:200]
    assert b"HTTP/1.1 400 " not in transport.written


def test_the_rest_of_a_body_after_its_answer_is_read_longer_than_a_short_keep_alive() -> None:
    """The keep-alive wait armed as the answer ended closed the connection while the rest
    of the body was still read (server.keep_alive_s under 30 s): it was reset again."""

    async def answered() -> tuple[BoundedHttpToolsProtocol, _Transport]:
        protocol, transport = _connected(_refusing(), keep_alive_s=1)
        head, body = _post(10**6)
        protocol.data_received(head + body[:1000])
        for _ in range(10):
            await asyncio.sleep(0)
        return protocol, transport

    protocol, transport = asyncio.run(answered())
    assert transport.written.startswith(b"HTTP/1.1 413 "), transport.written[:200]
    assert transport.ended and not transport.closed
    assert protocol.timeout_keep_alive_task is None  # only the lingering close is waited for


def test_a_client_that_closes_while_the_rest_of_its_body_is_read_ends_the_wait() -> None:
    """The 30 s wait for the rest of a refused body outlived a client that closed first:
    its timer held the closed connection until it ran."""

    async def closed_by_client() -> asyncio.TimerHandle | None:
        protocol, transport = _connected(_refusing())
        head, body = _post(10**6)
        protocol.data_received(head + body[:1000])
        for _ in range(10):
            await asyncio.sleep(0)
        assert transport.ended and not transport.closed
        waiting = protocol._close_timer
        assert waiting is not None and not waiting.cancelled()
        protocol.connection_lost(None)
        return waiting

    waiting = asyncio.run(closed_by_client())
    assert waiting is not None and waiting.cancelled()
