"""The gateway spreads requests over several real upstreams, keeping alike prompts together."""

from __future__ import annotations

import asyncio
import itertools
import json
import ssl
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from tests.helpers import free_port, make_certificate
from tests.stub_upstream import StubUpstream, stub_upstream
from tether.credentials import without_credentials
from tether.engines.base import GenerationChunk, GenerationRequest, SamplingParams
from tether.engines.openai import OpenAIEngine
from tether.errors import EngineUnavailableError
from tether.settings import EngineSettings, UpstreamSettings


@contextmanager
def upstreams(count: int, piece_delay_s: float = 0.0) -> Iterator[list[StubUpstream]]:
    with ExitStack() as stack:
        yield [
            stack.enter_context(stub_upstream(f"replica {i}", piece_delay_s)) for i in range(count)
        ]


def _engine(urls: list[str], **settings: object) -> OpenAIEngine:
    settings.setdefault("model", "stub-model")
    upstream = UpstreamSettings(base_urls=urls, **settings)  # type: ignore[arg-type]
    return OpenAIEngine(upstream, EngineSettings())


async def _ask(engine: OpenAIEngine, prompt: str, stream: bool = True) -> str:
    request = GenerationRequest(params=SamplingParams(max_tokens=8), prompt=prompt, stream=stream)
    return "".join([chunk.text async for chunk in engine.generate(request)])


def test_alike_prompts_stay_on_one_upstream_and_different_ones_spread() -> None:
    # Rendezvous hashing spreads keys uniformly at random (the upstreams' ports are random
    # too): with 90 files, fewer than 15 on one upstream of three happens about once in
    # two thousand runs; with 30 files and a floor of 4 it was about once in a hundred.
    files = [f"# file {i}\nimport os\n\n\ndef handler_{i}(event):\n" for i in range(90)]

    async def run() -> tuple[list[set[str]], Counter[str]]:
        with upstreams(3) as replicas:
            engine = _engine([r.base_url for r in replicas])
            try:
                # An editor typing in each file: its requests grow at the end.
                kept = []
                for head in files[:5]:
                    kept.append({await _ask(engine, head + "    " + "x" * n) for n in range(4)})
                spread = Counter([await _ask(engine, head) for head in files])
                return kept, spread
            finally:
                await engine.close()

    kept, spread = asyncio.run(run())
    assert all(len(answers) == 1 for answers in kept)  # one file, one upstream
    assert set(spread) == {"replica 0", "replica 1", "replica 2"}
    assert min(spread.values()) >= 15  # 90 files over 3 upstreams, none starved


def test_conversations_after_one_long_system_prompt_still_spread() -> None:
    """A team's editor config sends one system prompt first in every conversation: with
    it in the key, all of them went to one upstream."""
    system = {"role": "system", "content": "You are our team's assistant. " * 40}

    async def run() -> Counter[str]:
        with upstreams(3) as replicas:
            engine = _engine([r.base_url for r in replicas])
            try:
                answers = []
                for i in range(60):
                    user = {"role": "user", "content": f"Question {i}: how do I parse file {i}?"}
                    request = GenerationRequest(
                        params=SamplingParams(max_tokens=8), messages=[system, user]
                    )
                    answers.append("".join([c.text async for c in engine.generate(request)]))
                return Counter(answers)
            finally:
                await engine.close()

    spread = asyncio.run(run())
    assert len(spread) == 3 and min(spread.values()) >= 8, spread


def test_each_conversation_keeps_to_one_upstream_as_its_turns_grow() -> None:
    """Every turn resends the history: a key taken from all of it changed each time the
    history passed a power of two, and most conversations moved mid-way."""

    async def run() -> list[set[str]]:
        with upstreams(3) as replicas:
            engine = _engine([r.base_url for r in replicas])
            try:
                where = []
                for i in range(12):
                    history: list[dict[str, str]] = []
                    answers = set()
                    for turn in range(5):
                        history.append({"role": "user", "content": f"Chat {i}, turn {turn}?"})
                        request = GenerationRequest(
                            params=SamplingParams(max_tokens=8), messages=list(history)
                        )
                        text = "".join([c.text async for c in engine.generate(request)])
                        answers.add(text)
                        history.append({"role": "assistant", "content": text * 20})
                    where.append(answers)
                return where
            finally:
                await engine.close()

    where = asyncio.run(run())
    assert all(len(answers) == 1 for answers in where), where
    assert len(set().union(*where)) > 1  # and the conversations still spread


def test_a_file_typed_from_its_first_line_moves_at_most_once() -> None:
    """Growing at its end from 32 to 700 characters, its key changes once, at 512 (below
    32, a prompt costs an upstream nothing worth keeping)."""
    text = "".join(f"value_{i} = compute({i})\n" for i in range(40))[:700]

    async def run() -> list[str]:
        with upstreams(3) as replicas:
            engine = _engine([r.base_url for r in replicas])
            try:
                return [await _ask(engine, text[:n]) for n in range(32, 700, 6)]
            finally:
                await engine.close()

    answers = asyncio.run(run())
    moves = sum(a != b for a, b in itertools.pairwise(answers))
    assert moves <= 1, answers


def test_one_long_prompt_the_estimate_missed_does_not_swell_every_later_bound() -> None:
    """What a request holds against a budget is its estimate plus what upstreams counted
    beyond one: learnt from short prompts (the template's framing), not from a long one
    whose characters the ratio read wrong (CJK), which added thousands to every request."""

    async def run() -> tuple[int, int]:
        with upstreams(1) as (replica,):
            engine = _engine([replica.base_url])
            short = GenerationRequest(
                params=SamplingParams(max_tokens=8), messages=[{"role": "user", "content": "hi"}]
            )
            try:
                replica.prompt_tokens = 40  # "hi" in a chat template
                [_ async for _ in engine.generate(short)]
                before = engine.prompt_tokens_bound(short)
                replica.prompt_tokens = 10_000  # one character a token
                long = GenerationRequest(
                    params=SamplingParams(max_tokens=8), prompt="\u6f22" * 10_000
                )
                [_ async for _ in engine.generate(long)]
                return before, engine.prompt_tokens_bound(short)
            finally:
                await engine.close()

    before, after = asyncio.run(run())
    assert before >= 40  # the framing is held
    assert after <= 2 * before, (before, after)


def test_a_busy_upstream_gives_way_to_the_least_busy() -> None:
    async def run() -> tuple[Counter[str], int]:
        with upstreams(3, piece_delay_s=0.05) as replicas:
            engine = _engine([r.base_url for r in replicas], affinity_slack=1)
            try:
                answers = await asyncio.gather(*(_ask(engine, "same file\n") for _ in range(9)))
                left = sum(u.outstanding for u in engine._upstreams)
                return Counter(answers), left
            finally:
                await engine.close()

    served, left = asyncio.run(run())
    assert len(served) == 3 and max(served.values()) <= 5, served
    assert left == 0  # every request un-counted when done


def test_in_order_keeps_to_the_first_and_a_dead_upstream_fails_over() -> None:
    dead = f"http://127.0.0.1:{free_port()}/v1"

    async def run() -> tuple[set[str], set[str]]:
        with upstreams(2) as replicas:
            in_order = _engine([r.base_url for r in replicas], balance="in-order")
            balanced = _engine([dead, *(r.base_url for r in replicas)])
            try:
                first = {await _ask(in_order, f"file {i}\n", stream=False) for i in range(10)}
                around = {await _ask(balanced, f"file {i}\n") for i in range(20)}
                return first, around
            finally:
                await in_order.close()
                await balanced.close()

    first, around = asyncio.run(run())
    assert first == {"replica 0"}
    assert around == {"replica 0", "replica 1"}  # the dead one is skipped, none lost


def test_no_upstream_answering_is_told_without_their_addresses() -> None:
    """Any token holder reads the error: it says what failed, not the network behind."""
    ports = [free_port(), free_port()]

    async def run() -> str:
        engine = _engine([f"http://127.0.0.1:{port}/v1" for port in ports])
        try:
            with pytest.raises(EngineUnavailableError) as down:
                await _ask(engine, "x = 1\n")
            return down.value.message
        finally:
            await engine.close()

    message = asyncio.run(run())
    assert "no upstream is answering (cannot connect: Connection refused)" in message
    assert "127.0.0.1" not in message and not any(str(port) in message for port in ports)


def test_an_untrusted_certificate_is_told_without_the_name_it_was_checked_for(
    tmp_path: Path,
) -> None:
    """OpenSSL's message quotes the host or address the certificate was checked against."""
    cert, key = make_certificate(tmp_path)

    async def run() -> tuple[str, int]:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)

        async def drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.close()

        server = await asyncio.start_server(drop, "127.0.0.1", 0, ssl=context)
        port = server.sockets[0].getsockname()[1]
        engine = _engine([f"https://127.0.0.1:{port}/v1"])
        try:
            with pytest.raises(EngineUnavailableError) as down:
                await _ask(engine, "x = 1\n")
            return down.value.message, port
        finally:
            await engine.close()
            server.close()

    message, port = asyncio.run(run())
    assert "(cannot connect: its certificate is self-signed)" in message, message
    assert "127.0.0.1" not in message and str(port) not in message
    assert "fix the gateway's upstream settings" in message  # waiting will not mend it


def test_the_upstreams_usage_is_passed_on_with_its_cached_tokens() -> None:
    async def run() -> list[tuple[int | None, int | None]]:
        with upstreams(1) as (replica,):
            engine = _engine([replica.base_url])
            try:
                seen = []
                for stream in (True, False):
                    request = GenerationRequest(
                        params=SamplingParams(max_tokens=8), prompt="x", stream=stream
                    )
                    last = [chunk async for chunk in engine.generate(request)][-1]
                    seen.append((last.prompt_tokens, last.cached_tokens))
                return seen
            finally:
                await engine.close()

    assert asyncio.run(run()) == [(7, 3), (7, 3)]


_ANSWER = json.dumps(
    {"choices": [{"text": "ok", "finish_reason": "stop"}],
     "usage": {"prompt_tokens": 1, "completion_tokens": 1}}
).encode()  # fmt: skip


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    """Read one request; its method."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(next((line.split(b":")[1] for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length")), b"0"))  # fmt: skip
    await reader.readexactly(length)
    return head.split(b" ", 1)[0]


def _serve_until(
    drops: Callable[[int], bool],
) -> tuple[Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]], list[int]]:
    """A handler that answers each request on a kept-alive connection, except that it
    closes the connection on the nth POST on it where ``drops(n)``; and the POSTs read,
    by connection (those that had any)."""
    posts: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        mine: int | None = None
        try:
            while True:
                if await _read_request(reader) == b"POST":
                    if mine is None:
                        mine = len(posts)
                        posts.append(0)
                    posts[mine] += 1
                    if drops(posts[mine]):
                        break
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (len(_ANSWER), _ANSWER))  # fmt: skip
                await writer.drain()
        except asyncio.IncompleteReadError:
            pass  # the client closed it
        writer.close()

    return handle, posts


def test_a_pooled_connection_the_upstream_closed_is_retried_not_held_against_it() -> None:
    """A kept-alive connection is closed as the second request goes out on it (its
    keep-alive ran out): the request is sent again on a fresh one, and the upstream stays
    in service."""
    handle, read = _serve_until(lambda n: n == 2)

    async def run() -> tuple[list[str], bool]:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        engine = _engine([f"http://127.0.0.1:{port}/v1"])
        try:
            texts = [await _ask(engine, "x", stream=False) for _ in range(2)]
            return texts, engine.upstream_status()[0]["healthy"]
        finally:
            await engine.close()
            server.close()

    texts, healthy = asyncio.run(run())
    assert (texts, healthy, read) == (["ok", "ok"], True, [2, 1])


def test_a_fresh_connection_closed_on_the_request_is_not_sent_it_again() -> None:
    """An upstream that closes a new connection on the request crashed on it, or refuses
    it: sent again, a request that crashes upstreams reached each replica twice."""
    handle, read = _serve_until(lambda n: True)

    async def run() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        engine = _engine([f"http://127.0.0.1:{port}/v1"])
        try:
            with pytest.raises(EngineUnavailableError):
                await _ask(engine, "x", stream=False)
        finally:
            await engine.close()
            server.close()

    asyncio.run(run())
    assert read == [1]


def test_each_upstream_tried_gets_the_prompt_as_sent() -> None:
    prompt = "# naïve Ωmega 🚀\n" + "x = '\\u00e9'\n" * 50_000  # non-ASCII, a megabyte
    with upstreams(2) as replicas:
        for replica in replicas:
            replica.refuse = (503, {})

        async def run() -> None:
            engine = _engine([r.base_url for r in replicas])
            try:
                with pytest.raises(EngineUnavailableError):
                    await _ask(engine, prompt, stream=False)
            finally:
                await engine.close()

        asyncio.run(run())
    for replica in replicas:
        (request,) = [r for r in replica.requests if r.get("prompt") != "Hi"]  # not a trial
        assert request["prompt"] == prompt and request["max_tokens"] == 8


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://user:secret@127.0.0.1:8000/v1", "http://127.0.0.1:8000/v1"),
        ("https://token@api.example.com/v1", "https://api.example.com/v1"),
        ("http://user:p@ss@host/v1", "http://host/v1"),  # an unescaped @ in the password
        ("http://host:8000/v1", "http://host:8000/v1"),
    ],
)
def test_upstream_urls_are_shown_without_credentials(url: str, shown: str) -> None:
    assert without_credentials(url) == shown


def test_nothing_to_predict_is_answered_without_an_upstream() -> None:
    with upstreams(1) as (replica,):

        async def run() -> list[GenerationChunk]:
            engine = _engine([replica.base_url])
            request = GenerationRequest(params=SamplingParams(max_tokens=0), prompt="x")
            try:
                return [chunk async for chunk in engine.generate(request)]
            finally:
                await engine.close()

        (only,) = asyncio.run(run())
    assert (only.text, only.finish_reason, only.completion_tokens) == ("", "length", 0)
    assert replica.requests == []
