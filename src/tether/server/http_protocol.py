"""uvicorn's httptools protocol, with a bound on a request's head (its line and headers),
a bound on how long a request may take to arrive, and answers an HTTP/1.0 client can read.

httptools keeps a header line however long it is until it ends: one connection that sent
a 20 MB header had it all held in memory, and parsed, before any token was checked (h11,
uvicorn's other protocol, stops at 16 KiB). Past ``MAX_HEAD_BYTES`` a request gets 431 in
the OpenAI error shape and its connection is closed.

uvicorn closes a connection idle between requests (``server.keep_alive_s``), but waits
for ever for a request: a connection that never sent a byte, or stopped halfway through a
request's line, headers or body (a client that crashed, a network that dropped it), held
its descriptor, and a started body its request, until the server stopped. One that sends
nothing is closed as an idle one is; one whose request's head has not all come
``READ_TIMEOUT_S`` after it began, with a 408 in the OpenAI error shape, and one silent for
as long in the middle of a body (as nginx's ``client_header_timeout`` and
``client_body_timeout``, whose default it takes).

An answer that closes its connection while its request's body is still arriving (the 413
for a declared length over ``server.max_body_mb``) closes it once the client has had time
to send the rest and read the answer, which is dropped meanwhile, as nginx's lingering
close does: closed at once, with the client's bytes unread, the connection was reset, and
a client still sending (an asyncio one: httpx's, the OpenAI SDK's async client) lost the
answer and said it could not reach the server.

A client that reads none of its answer for ``WRITE_TIMEOUT_S`` while more waits to be sent
(its transport's buffer full) has its connection closed (nginx's ``send_timeout``): the
request then ends as one whose client left, recorded as far as it went.

uvicorn sends an answer of unknown length (a stream) in chunked transfer coding, which
HTTP/1.0 does not have: an HTTP/1.0 client (``curl --http1.0``, a proxy that speaks 1.0 to
its upstream) read each chunk's size as part of the events. To such a client it is sent
as it comes, and ended by closing the connection, as HTTP/1.0 frames it.

A request that asks to upgrade its connection to a protocol the server does not take
(``curl --http2`` asks for h2c: ``Connection: Upgrade, HTTP2-Settings``, ``Upgrade:
h2c``) is answered over HTTP/1.1, as HTTP lets a server do and nginx does: httptools
takes every such request as the last of its connection, its body the new protocol's,
so the app read no body ("body: missing"), and what came after on the connection was
never read. Its request is read again without the upgrade's headers, body and all.
A client that starts HTTP/2 without asking (``curl --http2-prior-knowledge``, a proxy set
to speak h2c to its upstream) read the 400 in HTTP/1.1 as a broken frame ("Empty reply
from server"): it is told, in HTTP/2, that HTTP/1.1 is required (a GOAWAY frame with
HTTP_1_1_REQUIRED), and its connection closed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import struct
from collections import deque
from collections.abc import Callable
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

log = logging.getLogger("tether.server")

# As nginx's largest default (4 buffers of 8 KiB, 32 KiB) and then some: a bearer token, a
# dashboard's cookies and a browser's headers are far below it.
MAX_HEAD_BYTES = 64 * 1024
REFUSED_READ_S = 5.0  # how long the rest of a refused head is read before the connection closes
# How long the rest of a body is read and dropped after an answer that closes its connection
# (nginx's lingering_time): the client sends it all before it reads the answer.
REFUSED_BODY_READ_S = 30.0
READ_TIMEOUT_S = 60.0  # the longest silence in the middle of a request
WRITE_TIMEOUT_S = 60.0  # the longest a client may leave the answer it is sent unread
# What a declined upgrade's request is read again without: the headers that ask for it.
_UPGRADE_HEADERS = frozenset({b"upgrade", b"http2-settings"})


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True  # reading a request's line and headers
        self._head_bytes = 0
        self._refused = False
        # A refusal that waits for the answer being sent on this connection, which it
        # would otherwise cut short or go inside.
        self._refusal_waiting: Callable[[], None] | None = None
        self._ended_in_read = False  # a request ended in the read being parsed
        self._arriving = False  # a request has begun and not all of it has arrived
        self._parsed_head = 0  # the size of the head being parsed, as the parser gives it
        self._head_over = False  # that size is over the bound
        self._read_timer: asyncio.TimerHandle | None = None
        self._write_timer: asyncio.TimerHandle | None = None
        # Closes a connection whose client was given time to read its answer; a client that
        # closes first ends the wait, which would otherwise hold the connection for it.
        self._close_timer: asyncio.TimerHandle | None = None
        self._unread = 0  # what the transport held unsent when the write timer was set
        # The head of a request whose upgrade is declined, without the upgrade, to be
        # read again with its body once the parser has stopped at the upgrade.
        self._declined: bytes | None = None
        self._stopping = False  # the server is shutting down

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # One that sends nothing is closed too, as one idle after an answer is: a proxy
        # that opens connections ahead of its requests keeps them as long.
        self._wait_for_request(self.timeout_keep_alive)

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_waiting()
        for timer in (self._write_timer, self._close_timer):
            if timer is not None:
                timer.cancel()
        self._write_timer = self._close_timer = None
        super().connection_lost(exc)

    def shutdown(self) -> None:
        self._stopping = True
        super().shutdown()

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._write_timer is None:
            self._unread = self.transport.get_write_buffer_size()
            self._write_timer = self.loop.call_later(WRITE_TIMEOUT_S, self._write_timed_out)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None

    def _write_timed_out(self) -> None:
        """The client has read nothing of its answer for a while: an answer blocked on it
        held its request (its stream, a gateway's upstream, its token's allowance) and
        delayed its record for as long as the client kept the connection, for ever."""
        self._write_timer = None
        if self.transport.is_closing():
            return
        unread = self.transport.get_write_buffer_size()
        if unread < self._unread:
            # It read some (nothing more is written while writing is paused): a slow
            # reader, which the buffer's draining to its low mark would not show in time.
            self._unread = unread
            self._write_timer = self.loop.call_later(WRITE_TIMEOUT_S, self._write_timed_out)
            return
        log.warning(
            "closed a connection whose client read none of its answer for %g s", WRITE_TIMEOUT_S
        )
        self.transport.abort()  # what waits to be written never would be

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # the rest of a refused head: read and dropped until the client closes
        self._ended_in_read = False
        self._parse(data)
        if self._head_over:
            self._refuse_head()
            return
        if self._arriving and not self._in_head:
            self._wait_for_request()  # each read of a body starts the wait again
            self._answer_through_protocol()
        # Counted once parsed, and only while the head is still unfinished. A read in
        # which a request ended holds that request's body (or all of it) and at most the
        # start of the next head, where it is not known where one ends: such a read is
        # not counted here, and the head it ends is held to the bound by its parsed size.
        if not self._in_head or self._ended_in_read:
            return
        self._head_bytes += len(data)
        if self._head_bytes > MAX_HEAD_BYTES and not self._refused:
            self._refuse_head()

    def _parse(self, data: bytes) -> None:
        """uvicorn's ``data_received``, but an upgrade that is not taken is declined."""
        self._unset_keepalive_if_required()
        # What is left to feed the parser, in order. A declined upgrade's head goes back in
        # front of what followed it, here rather than by a call of its own: a read holding
        # a thousand such requests would otherwise go past Python's recursion limit.
        pending: deque[bytes | memoryview] = deque([data])
        while pending:
            chunk = pending.popleft()
            try:
                self.parser.feed_data(chunk)
            except httptools.HttpParserError:
                # HTTP/2's connection preface, where a connection begins (no request was
                # read before it); after one, it is a bad request, answered in its turn.
                if self.cycle is None and self.parser.get_method() == b"PRI":
                    self._refuse_http2()
                    return
                msg = "Invalid HTTP request received."
                self.logger.warning(msg)
                self.send_400_response(msg)
                return
            except httptools.HttpParserUpgrade as upgrade:
                if self._declined is not None:
                    # What follows the head in this read is the request's body, and after
                    # it the connection's next requests: read after the head again, by a
                    # parser that has not stopped.
                    head, self._declined = self._declined, None
                    self.parser = _new_parser(self)
                    self._in_head = True
                    pending.extendleft([memoryview(chunk)[upgrade.args[0] :], head])
                elif self._should_upgrade():
                    self.handle_websocket_upgrade()
                    return
                else:
                    self._unsupported_upgrade_warning()
                    return

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arriving = True
        # The whole head within the bound, as nginx's client_header_timeout has it: reads
        # of a byte each, each under the bound, held the connection for days.
        self._wait_for_request()
        self._parsed_head = len(b"GET  HTTP/1.1\r\n\r\n")

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        self._parsed_head += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        super().on_header(name, value)
        self._parsed_head += len(name) + len(value) + len(b": \r\n")

    def on_headers_complete(self) -> None:
        self._in_head = False
        if self._head_over or self._parsed_head > MAX_HEAD_BYTES:
            # A head that came whole in one read with its end, which the count of reads
            # leaves out, is refused by its parsed size: its request is not started, what
            # follows it (a pipelined request too) is dropped, and the refusal goes out
            # once this read is parsed.
            self._head_over = True
            return
        if self._declines_upgrade():
            return  # its request starts once it is read again, without the upgrade
        super().on_headers_complete()
        if self.scope.get("http_version") == "1.0" and self.cycle is not None:
            _framed_by_close(self.cycle)

    def _declines_upgrade(self) -> bool:
        """Whether the request whose headers are read asks for an upgrade that is not
        taken (of those the parser stops at, all but websocket's where a websocket
        library is installed, and CONNECT): if so, its head without the upgrade is kept,
        to be read again."""
        if not self.parser.should_upgrade() or self._should_upgrade():
            return False
        method = self.parser.get_method()
        if method == b"CONNECT":
            return False  # no upgrade to leave out: a tunnel, refused as it was
        if self._get_upgrade() == b"websocket":
            self._unsupported_upgrade_warning()  # uvicorn's: no websocket library
        version = self.parser.get_http_version().encode()
        lines = [method + b" " + self.url + b" HTTP/" + version]
        for name, value in self.headers:
            if name in _UPGRADE_HEADERS:
                continue
            if name == b"connection":
                tokens = [t.strip() for t in value.split(b",")]
                value = b", ".join(t for t in tokens if t and t.lower() not in _UPGRADE_HEADERS)
                if not value:
                    continue
            lines.append(name + b": " + value)
        self._declined = b"\r\n".join(lines) + b"\r\n\r\n"
        return True

    def on_body(self, body: bytes) -> None:
        if not self._head_over and self._declined is None:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._head_over or self._declined is not None:
            return
        self._in_head, self._head_bytes = True, 0  # the next request's head comes next
        self._arriving = False
        self._stop_waiting()
        self._ended_in_read = True
        super().on_message_complete()
        if self.cycle is not None:  # its body has all arrived: its answer closes as any
            self.cycle.transport = self.transport

    def _answer_through_protocol(self) -> None:
        """Have the answer to the request whose body is still arriving close its connection
        through the protocol. Only then: an answer to a request read whole (most are, in
        the read of their head) writes to the connection itself, with nothing between."""
        cycle = self.cycle
        # The cycle is the request's being read (a declined upgrade's head is read again).
        if cycle is not None and cycle.scope is self.scope and cycle.transport is self.transport:
            cycle.transport = _AnswerTransport(self, cycle)  # type: ignore[assignment]

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._refusal_waiting is not None and not self._answering():
            send, self._refusal_waiting = self._refusal_waiting, None
            if not self.transport.is_closing():
                send()
        if self._refused:
            # Not idle between requests: the rest of what was refused is read until the
            # connection's own close (server.keep_alive_s may be shorter).
            self._unset_keepalive_if_required()

    def _wait_for_request(self, wait_s: float | None = None) -> None:
        self._stop_waiting()
        wait_s = READ_TIMEOUT_S if wait_s is None else wait_s
        self._read_timer = self.loop.call_later(wait_s, self._read_timed_out)

    def _stop_waiting(self) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None

    def _read_timed_out(self) -> None:
        self._read_timer = None
        if self.transport.is_closing() or self._refused:
            return
        # Not read by the server (a pipelined request waits), or the next request's head
        # comes while an answer is still sent: not the client's silence, or not yet.
        if self.flow.read_paused or (self._in_head and self._answering()):
            self._wait_for_request()
            return
        if self._arriving and self._in_head:
            log.warning("closed a connection whose request's head was not whole in time, with 408")
            message = (
                f"the request's line and headers did not all arrive within {READ_TIMEOUT_S:g} "
                "s; send the whole request without pausing"
            )
            error = {"message": message, "type": "invalid_request_error", "param": None}
            body = json.dumps({"error": {**error, "code": "request_timeout"}}).encode()
            self._write_own(b"408 Request Timeout", body)
        elif self._arriving:
            # The body stopped: its request, waiting for the rest, hears that its client
            # is gone (499) as the connection closes.
            log.warning("closed a connection whose request's body stopped arriving")
        self.transport.close()

    def send_400_response(self, msg: str) -> None:
        """What HTTP's parser could not read is answered in the OpenAI error shape too,
        not as uvicorn's line of plain text, and after the answers to the requests read
        before it (a Content-Length that fell short leaves bytes that read as a bad next
        request): sent at once, it went out before them, and closed their connection."""
        self._refused = True  # the parser cannot go on: what follows is dropped
        if self._answering():
            self._refusal_waiting = self._send_invalid
            return
        self._send_invalid()

    def _send_invalid(self) -> None:
        message = (
            "the request is not valid HTTP/1.1: its request line, a header, or its framing "
            "(one Content-Length matching the body, or Transfer-Encoding: chunked alone, "
            "not both) could not be read; send one well-formed request"
        )
        error = {"message": message, "type": "invalid_request_error", "param": None}
        body = json.dumps({"error": {**error, "code": "invalid_http_request"}}).encode()
        self._write_own(b"400 Bad Request", body)
        self.transport.close()

    def _write_own(self, status: bytes, body: bytes) -> None:
        """An answer the protocol writes itself, in the OpenAI error shape, closing its
        connection: with the headers uvicorn gives every answer of the app's (``date``,
        and ``server`` unless the server's settings leave it out), as nginx's own
        refusals have them."""
        head = [b"HTTP/1.1 ", status, b"\r\n"]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head += [
            b"content-type: application/json\r\n",
            b"content-length: ", str(len(body)).encode(), b"\r\n",
            b"connection: close\r\n\r\n",
        ]  # fmt: skip
        self.transport.write(b"".join(head) + body)

    def _answering(self) -> bool:
        """Whether an answer is being sent, or waits to be, on this connection."""
        return bool(self.pipeline) or (self.cycle is not None and not self.cycle.response_complete)

    def _refuse_head(self) -> None:
        log.warning("refused a request whose head is over %d bytes with 431", MAX_HEAD_BYTES)
        self._refused = True
        # Written now, the refusal would go inside an earlier request's answer, whose
        # next write would then fail: it follows that answer.
        if self._answering():
            self._refusal_waiting = self._send_refusal
            return
        self._send_refusal()

    def _refuse_http2(self) -> None:
        """Tell a client that began with HTTP/2's preface, in frames it reads, that
        HTTP/1.1 is required: the server's preface (a SETTINGS frame), then GOAWAY."""
        log.warning("refused a connection that began in HTTP/2: tether speaks HTTP/1.1")
        self._refused = True
        said = b"tether speaks HTTP/1.1 only: send the request in HTTP/1.1"
        goaway = struct.pack(">II", 0, _HTTP_1_1_REQUIRED) + said
        self.transport.write(_h2_frame(_SETTINGS, b"") + _h2_frame(_GOAWAY, goaway))
        self._close_when_read()

    def _send_refusal(self) -> None:
        self._unset_keepalive_if_required()
        self._write_own(b"431 Request Header Fields Too Large", _head_too_large_body())
        self._close_when_read()

    def _close_when_read(self, wait_s: float = REFUSED_READ_S) -> None:
        """Close the connection once the client has had time to read what was written."""
        # Closed at once with the client's bytes unread, the connection would be reset and
        # the answer lost: it ends its side, and reads what is still sent for a while.
        if self.transport.can_write_eof():
            self.transport.write_eof()
        closing = self.loop.call_later(wait_s, self.transport.close)
        if self._close_timer is not None:  # the sooner of two closes holds
            later = max(self._close_timer, closing, key=lambda timer: timer.when())
            later.cancel()
            closing = min(self._close_timer, closing, key=lambda timer: timer.when())
        self._close_timer = closing

    def _close_answered(self, cycle: RequestResponseCycle) -> None:
        """Close the connection for ``cycle``: at once, unless its whole answer has gone
        out while its request's body is still arriving, whose rest is then read and
        dropped until the client has read the answer. In a shutdown it closes at once: the
        server waits for every connection to close, and would wait for this one past its
        grace."""
        if self._stopping:
            self.transport.close()
            return
        if cycle.response_complete and cycle is self.cycle and self._arriving and not self._in_head:
            if not self.transport.is_closing():
                self._refused = True  # what the client still sends is dropped
                # A refusal of what came after (a broken chunk) cannot follow the end.
                self._refusal_waiting = None
                self._stop_waiting()
                self._close_when_read(REFUSED_BODY_READ_S)
            return
        self.transport.close()


class _AnswerTransport:
    """The connection as the answer to a request whose body is still arriving uses it
    (uvicorn's request cycle): closing goes through the protocol, which knows whether the
    body has all arrived, and all else to the connection's transport."""

    def __init__(self, protocol: BoundedHttpToolsProtocol, cycle: RequestResponseCycle) -> None:
        self._protocol = protocol
        self._cycle = cycle
        self._transport = protocol.transport
        self.write = protocol.transport.write  # each write of the answer, without a call more

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def close(self) -> None:
        self._protocol._close_answered(self._cycle)


_SETTINGS, _GOAWAY = 0x4, 0x7  # HTTP/2's frame types (RFC 9113, 6.5 and 6.8)
_HTTP_1_1_REQUIRED = 0xD  # its error code for "use HTTP/1.1 instead"


def _h2_frame(kind: int, payload: bytes) -> bytes:
    """An HTTP/2 frame of the connection (stream 0), without flags."""
    return struct.pack(">I", len(payload))[1:] + struct.pack(">BBI", kind, 0, 0) + payload


def _new_parser(protocol: HttpToolsProtocol) -> httptools.HttpRequestParser:
    """A request parser for ``protocol``, as uvicorn makes its own."""
    parser = httptools.HttpRequestParser(protocol)
    parser.set_dangerous_leniencies(lenient_data_after_close=True)
    return parser


def _head_too_large_body() -> bytes:
    message = (
        f"the request's line and headers are over {MAX_HEAD_BYTES // 1024} KiB; send "
        "shorter ones (a long value belongs in the body)"
    )
    error = {"message": message, "type": "invalid_request_error", "param": None}
    return json.dumps({"error": {**error, "code": "request_header_too_large"}}).encode()


def _framed_by_close(cycle: RequestResponseCycle) -> None:
    """Send ``cycle``'s answer, if of unknown length, unchunked: its connection closes at
    its end (HTTP/1.0 keeps none alive). Set before the app runs, which the protocol has
    only scheduled."""
    send = cycle.send
    unframed = False

    async def framed(message: Any) -> None:  # an ASGI send event
        nonlocal unframed
        if message["type"] == "http.response.start":
            names = {name.lower() for name, _ in message.get("headers", [])}
            unframed = (
                not names & {b"content-length", b"transfer-encoding"}
                and cycle.scope["method"] != "HEAD"
                and message["status"] not in (204, 304)
            )
            if unframed:
                cycle.chunked_encoding = False  # and so no transfer-encoding header
        elif unframed and message["type"] == "http.response.body":
            # The protocol counts a body against its Content-Length: here, each piece's own.
            cycle.expected_content_length = len(message.get("body", b""))
        await send(message)

    cycle.send = framed  # type: ignore[method-assign]
