"""How the gateway meets upstreams that fail: refusals, garbage, slowness, and recovery."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest

from tests.engines.test_balance import _ask, _engine, upstreams
from tether.engines import openai as openai_engine
from tether.engines.base import GenerationChunk, GenerationRequest, SamplingParams
from tether.engines.openai import OpenAIEngine
from tether.errors import (
    ConfigError,
    EngineUnavailableError,
    OverloadedError,
    RequestError,
    UpstreamTimeoutError,
)
from tether.server.errors import error_response

T = TypeVar("T")


async def _trials_done(engine: OpenAIEngine) -> None:
    """Wait for the completions sent to upstreams that failed a request."""
    await asyncio.gather(*(u.trial for u in engine._upstreams if u.trial is not None))


def _run(urls: list[str], body: Callable[[OpenAIEngine], Awaitable[T]], **settings: object) -> T:
    async def run() -> T:
        engine = _engine(urls, **settings)
        try:
            return await body(engine)
        finally:
            await engine.close()

    return asyncio.run(run())


def test_a_failed_upstream_comes_back_by_itself() -> None:
    with upstreams(2) as (first, second):

        async def body(engine: OpenAIEngine) -> tuple[set[str], set[str]]:
            first.refuse = (500, {})
            files = [f"{i:03d} # a file\n" for i in range(12)]  # heads differ: keys differ
            while_down = {await _ask(engine, head) for head in files}
            first.refuse = None
            await asyncio.sleep(0.5)  # a few health intervals; no readiness probe called
            after = {await _ask(engine, head) for head in files}
            return while_down, after

        while_down, after = _run([first.base_url, second.base_url], body, health_interval_s=0.05)
    assert while_down == {"replica 1"}
    assert after == {"replica 0", "replica 1"}, after


def test_an_upstream_in_service_is_judged_by_its_answers_not_probed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Some servers (llama-cpp-python's) end the answer they stream when any other request
    arrives: a health check of an upstream in use would cut its streams."""
    monkeypatch.setattr(openai_engine, "IDLE_CHECK_INTERVALS", 10**6)  # only the busy here
    with upstreams(2, piece_delay_s=0.02) as (first, second):
        started: list[int] = []  # listings before the checks: the window asked at start

        async def body(engine: OpenAIEngine) -> list[str]:
            started.extend((first.model_lists, second.model_lists))
            assert await engine.health()  # the first round checks each upstream once
            # Sixteen heads: all on one replica by chance once in 30,000 runs (six: 1 in 32).
            return [await _ask(engine, f"{i:03d} # a file\n") for i in range(16)]

        answers = _run([first.base_url, second.base_url], body, health_interval_s=0.01)
    assert set(answers) == {"replica 0", "replica 1"}
    checks = (first.model_lists - started[0], second.model_lists - started[1])
    assert checks == (1, 1)


def test_readiness_does_not_wait_on_a_hung_upstream() -> None:
    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await asyncio.sleep(3600)  # accepts, never answers
        finally:
            writer.close()  # on cancellation, when the test's loop ends

    async def run(good: str) -> tuple[bool, bool]:
        server = await asyncio.start_server(hang, "127.0.0.1", 0)
        hung = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1"
        engine = _engine([good, hung], connect_timeout_s=0.5, health_interval_s=60.0)
        try:
            first = await engine.health()  # the one call that waits for a round of checks
            later = await asyncio.wait_for(engine.health(), timeout=0.25)
            return first, later
        finally:
            await engine.close()
            server.close()

    with upstreams(1) as (good,):
        assert asyncio.run(run(good.base_url)) == (True, True)


def test_a_busy_upstream_passes_the_request_on_and_all_busy_is_a_429() -> None:
    with upstreams(2) as (first, second):
        first.refuse = (429, {"Retry-After": "7"})

        async def body(engine: OpenAIEngine) -> tuple[set[str], int, str]:
            served = {await _ask(engine, f"file {i}\n", stream=False) for i in range(8)}
            second.refuse = (429, {"Retry-After": "3"})
            first.refusal = second.refusal = "32 requests wait already (engine.max_queue)"
            with pytest.raises(OverloadedError) as busy:
                await _ask(engine, "anything\n")
            return served, busy.value.retry_after_s, busy.value.message

        served, retry_after, message = _run([first.base_url, second.base_url], body)
    assert served == {"replica 1"}
    assert retry_after == 7
    # In words too: a stream that waited has begun with a 200, and has no Retry-After header.
    assert "retry in 7 s" in message, message
    # What the upstreams said of their limit reaches the client, once.
    assert message.count("32 requests wait already (engine.max_queue)") == 1, message


def test_every_upstream_busy_is_logged_once_in_a_while_with_a_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Under overload each 429 logged its own line: thousands a minute."""
    with upstreams(1) as (only,):
        only.refuse = (429, {"Retry-After": "1"})

        async def body(engine: OpenAIEngine) -> None:
            for _ in range(20):
                with pytest.raises(OverloadedError):
                    await _ask(engine, "anything\n")
            engine._busy_logged_at -= openai_engine.BUSY_LOG_INTERVAL_S  # the interval passes
            with pytest.raises(OverloadedError):
                await _ask(engine, "anything\n")

        with caplog.at_level("WARNING", logger=openai_engine.log.name):
            _run([only.base_url], body)
    lines = [r.getMessage() for r in caplog.records if "busy" in r.getMessage()]
    assert len(lines) == 2, lines
    assert lines[0].startswith("every upstream was busy, 1 request(s) refused"), lines
    assert lines[1].startswith("every upstream was busy, 20 request(s) refused"), lines
    assert only.base_url.removesuffix("/v1") in lines[1]


def test_a_gateway_upstream_that_says_not_to_retry_is_not_retried_through_this_one() -> None:
    """A tether gateway as the upstream, whose own upstreams refuse its key, answers 503
    with x-should-retry: false: this gateway said "retry later" and dropped the reason."""
    with upstreams(1) as (inner,):
        inner.refuse = (503, {"x-should-retry": "false"})
        inner.refusal = "no upstream takes the request (check upstream.api_key)"

        async def body(engine: OpenAIEngine) -> EngineUnavailableError:
            with pytest.raises(EngineUnavailableError) as refused:
                await _ask(engine, "anything\n")
            return refused.value

        error = _run([inner.base_url], body)
    headers = error_response(error).headers
    assert headers["x-should-retry"] == "false" and "retry-after" not in headers
    assert "check upstream.api_key" in error.message and "retry later" not in error.message


def test_a_refused_key_is_the_gateways_fault_not_the_clients() -> None:
    with upstreams(2) as (first, second):
        first.refuse = (401, {})

        async def body(engine: OpenAIEngine) -> tuple[set[str], EngineUnavailableError, str, bool]:
            served = {await _ask(engine, f"file {i}\n") for i in range(6)}
            second.refuse = (401, {})
            with pytest.raises(EngineUnavailableError) as refused:
                await _ask(engine, "anything\n")
            ready = await engine.health()
            return served, refused.value, engine.upstream_status()[0]["last_error"], ready

        served, error, last_error, ready = _run([first.base_url, second.base_url], body)
    message = error.message
    assert error.retry_after_s is None  # no Retry-After: asking again would not help
    # The OpenAI SDKs retried it three times all the same: every 5xx, unless told not to.
    headers = error_response(error).headers
    assert headers["x-should-retry"] == "false" and "retry-after" not in headers
    assert served == {"replica 1"}
    assert "upstream.api_key" in message and "upstream.api_key" in last_error
    assert "does not pass by itself" in message and "retry later" not in message
    assert "127.0.0.1" not in message  # where the upstreams are is the operator's business
    assert not ready


def test_a_bad_request_is_still_the_clients_to_fix() -> None:
    with upstreams(2) as (first, second):
        first.refuse = second.refuse = (400, {})
        with pytest.raises(RequestError, match="the upstream refused the request: refused"):
            _run([first.base_url, second.base_url], lambda engine: _ask(engine, "x"))
        assert len(first.requests) + len(second.requests) == 1  # not tried everywhere


@pytest.mark.parametrize(
    ("kind", "body", "stream"),
    [
        ("text/html", b"<html>Welcome to nginx</html>", True),
        ("application/json", b"[1, 2, 3]", False),
        ("application/json", b'{"choices": ["x"]}', False),
        ("application/json", b'{"choices": null}', False),
        ("application/json", b'{"object": "error"}', True),
        ("text/event-stream", b'data: {"choices": "x"}\n\n', True),
        # cut before its end: no finish_reason, no [DONE]
        (
            "text/event-stream",
            b'data: {"choices": [{"text": "x", "finish_reason": null}]}\n\n',
            True,
        ),
    ],
)
def test_an_answer_that_is_not_openai_shaped_is_an_upstream_failure(
    kind: str, body: bytes, stream: bool
) -> None:
    with upstreams(1) as (stub,):
        stub.raw = (kind, body)
        with pytest.raises(EngineUnavailableError, match="upstream"):
            _run([stub.base_url], lambda engine: _ask(engine, "x", stream=stream))


def test_a_stream_answered_as_one_json_answer_is_passed_on() -> None:
    answer = {"choices": [{"text": "whole", "finish_reason": "length"}], "usage": {}}
    with upstreams(1) as (stub,):
        stub.raw = ("application/json", json.dumps(answer).encode())
        assert _run([stub.base_url], lambda engine: _ask(engine, "x", stream=True)) == "whole"


def test_a_slow_upstream_times_out_once_and_stays_in_service() -> None:
    with upstreams(2) as (first, second):
        first.answer_delay_s = second.answer_delay_s = 1.0

        async def body(engine: OpenAIEngine) -> list[bool]:
            with pytest.raises(UpstreamTimeoutError, match=r"upstream\.read_timeout_s"):
                await _ask(engine, "x", stream=False)
            return [u["healthy"] for u in engine.upstream_status()]

        healthy = _run([first.base_url, second.base_url], body, read_timeout_s=0.2)
    assert healthy == [True, True]
    assert len(first.requests) + len(second.requests) == 1  # not sent on to the other


def test_an_upstream_that_hangs_twice_in_a_row_is_taken_out_of_service() -> None:
    """One slow answer stays in service; a replica that leaves every answer hanging used
    to keep its share of the requests (each a timeout) while the other sat idle."""
    with upstreams(2) as (hung, good):
        hung.answer_delay_s = 5.0

        async def body(engine: OpenAIEngine) -> tuple[list[str], int]:
            outcomes = []
            for n in range(20):  # fewer than 2 on the hung one: about 1 in 50,000
                try:
                    await _ask(engine, f"prompt {n} " * 20, stream=False)
                    outcomes.append("ok")
                except UpstreamTimeoutError:
                    outcomes.append("timeout")
            return outcomes, engine.upstream_status()[0]["healthy"]

        outcomes, hung_healthy = _run(
            [hung.base_url, good.base_url], body, read_timeout_s=0.2, health_interval_s=30
        )
    # Two timeouts take it out; every request after the second is answered by the other.
    assert outcomes.count("timeout") == 2, outcomes
    assert hung_healthy is False


def test_an_upstream_taken_out_for_hanging_is_back_only_once_it_answers() -> None:
    """It still lists its models while its generation is stuck: listing them used to
    bring it back at every check, to leave two more requests hanging each time."""
    with upstreams(2) as (hung, good):
        hung.answer_delay_s = 2.0

        async def body(engine: OpenAIEngine) -> tuple[list[str], list[bool], str, bool]:
            outcomes = []
            for n in range(24):
                try:
                    await _ask(engine, f"prompt {n} " * 20, stream=False)
                    outcomes.append("ok")
                except UpstreamTimeoutError:
                    outcomes.append("timeout")
                await asyncio.sleep(0.05)  # a health interval: a check between requests
            seen = [engine.upstream_status()[0]["healthy"]]
            why = engine.upstream_status()[0]["last_error"]
            hung.answer_delay_s = 0.0
            await asyncio.sleep(2.0)  # the probes still hanging run out; the next answers
            seen.append(engine.upstream_status()[0]["healthy"])
            return outcomes, seen, why, hung.model_lists > 3

        # A timeout well above what the good one takes on a busy machine, and below the
        # hung one's delay: only the hung one's requests time out.
        outcomes, seen, why, checked = _run(
            [hung.base_url, good.base_url], body, read_timeout_s=0.5, health_interval_s=0.05
        )
    assert outcomes.count("timeout") == 2, outcomes  # taken out once, and kept out
    assert checked and "one-token completion" in why
    assert seen == [False, True]


def test_the_probe_of_a_hung_upstream_holds_up_no_other_check() -> None:
    """The probe may wait out the whole read timeout; the others' checks go on meanwhile."""
    with upstreams(2) as (hung, flaky):
        hung.answer_delay_s, flaky.refuse = 6.0, (500, {})

        async def body(engine: OpenAIEngine) -> float:
            for n in range(2):  # each fails over from the refusing one and waits out 2 s
                with pytest.raises(UpstreamTimeoutError):
                    await _ask(engine, f"prompt {n}", stream=False)
            await asyncio.sleep(0.3)  # both down; a probe of the hung one is under way
            flaky.refuse = None
            began = time.monotonic()
            while not engine.upstream_status()[1]["healthy"]:
                await asyncio.sleep(0.01)
            return time.monotonic() - began

        back_after = _run(
            [hung.base_url, flaky.base_url], body, read_timeout_s=2.0, health_interval_s=0.05
        )
    assert back_after < 1.0  # a check held up by the probe waited until it ran out


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("ftp://127.0.0.1/v1", "is not an http(s) URL"),
        ("127.0.0.1:8000/v1", "is not an http(s) URL"),
        ("http://127.0.0.1:99999/v1", "names a port above 65535"),
        ("http://127.0.0.1:0/v1", "names port 0"),
        ("http://user:secret@127.0.0.1:8000/v1", "keep one of them"),
        # The API's paths would go after the query ("/v1?key=secret/models"): a 404.
        ("http://127.0.0.1:8000/v1?key=secret", "has a query string or fragment"),
        ("http://127.0.0.1:8000/v1#secret", "has a query string or fragment"),
        ("http://user:secret@[::1/v1?key=secret", "is not an http(s) URL"),  # unreadable
    ],
)
def test_an_upstream_url_tether_cannot_use_is_refused_at_start(url: str, says: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(says)) as refused:
        _engine([url], api_key="sk-x")
    assert "secret" not in refused.value.message  # a password is never shown


def test_a_model_the_upstream_does_not_serve_is_named_and_keeps_it_out() -> None:
    with upstreams(1) as (stub,):

        async def body(engine: OpenAIEngine) -> tuple[str, int | None, bool, bool]:
            with pytest.raises(EngineUnavailableError) as refused:
                await _ask(engine, "x")
            await asyncio.sleep(0.3)  # several health checks: /models answers 200
            ready = await engine.health()
            return refused.value.message, refused.value.retry_after_s, ready, stub.model_lists > 1

        message, retry_after, ready, checked = _run(
            [stub.base_url], body, model="no-such-model", health_interval_s=0.05
        )
    assert "does not serve model 'no-such-model'" in message and "upstream.model" in message
    assert retry_after is None  # a setting to fix: asking again would not help
    assert checked and not ready  # answering /models does not bring it back


@pytest.mark.parametrize("stream", [False, True])
def test_an_upstream_that_answers_garbage_is_taken_out_and_another_answers(stream: bool) -> None:
    """A 200 that is not an answer (a proxy's HTML page) used to be the client's 503
    though another replica was there to answer."""
    with upstreams(2) as (first, second):
        first.raw = ("text/html", b"<html>502 Bad Gateway</html>")

        async def body(engine: OpenAIEngine) -> tuple[str, list[bool], set[str], int]:
            engine._settings.balance = "in-order"  # the first is asked first
            answer = await _ask(engine, "x", stream=stream)
            await _trials_done(engine)
            healthy = [u["healthy"] for u in engine.upstream_status()]
            after = {await _ask(engine, f"file {i}\n", stream=stream) for i in range(4)}
            return answer, healthy, after, engine.stats().failovers

        answer, healthy, after, failovers = _run(
            [first.base_url, second.base_url], body, health_interval_s=60.0
        )
    assert answer == "replica 1"
    assert healthy == [False, True]
    assert after == {"replica 1"}
    # The request, then the completion of its own that took it out.
    assert [r["prompt"] for r in first.requests] == ["x", "Hi"] and failovers == 1


@pytest.mark.parametrize("replicas", [1, 2])
def test_a_request_every_upstream_fails_takes_none_out_of_service(replicas: int) -> None:
    """vLLM answers 500 to some inputs: one such request took every upstream out of
    service, and the gateway's readiness failed for as long as a client kept sending it.
    Each upstream answers a completion of its own, so each stays in service."""
    with upstreams(replicas) as stubs:
        for stub in stubs:
            stub.poison = "poison"

        async def body(engine: OpenAIEngine) -> tuple[bool, list[bool], str]:
            assert await engine.health()
            with pytest.raises(EngineUnavailableError):
                await _ask(engine, "poison", stream=False)
            await _trials_done(engine)
            healthy = [u["healthy"] for u in engine.upstream_status()]
            return await engine.health(), healthy, await _ask(engine, "x", stream=False)

        ready, healthy, answer = _run([s.base_url for s in stubs], body, health_interval_s=60.0)
    assert ready and healthy == [True] * replicas and answer.startswith("replica")


def test_an_upstream_whose_chats_fail_is_tried_with_a_chat_and_taken_out() -> None:
    """Tried with a plain completion, which it answered, an upstream that failed every
    chat stayed in service, and nearly half the chats paid a failed round trip."""
    with upstreams(2) as (first, second):
        first.poison = '"messages"'  # every chat fails there; plain completions do not

        async def body(engine: OpenAIEngine) -> tuple[list[bool], str, list[str]]:
            engine._settings.balance = "in-order"  # the first is asked first
            request = GenerationRequest(
                params=SamplingParams(max_tokens=8), messages=[{"role": "user", "content": "x"}]
            )
            answered = [chunk.text async for chunk in engine.generate(request)]
            await _trials_done(engine)
            status = engine.upstream_status()
            return [u["healthy"] for u in status], status[0]["last_error"], answered

        healthy, why, answered = _run(
            [first.base_url, second.base_url], body, health_interval_s=60.0
        )
    assert "".join(answered) == "replica 1" and healthy == [False, True]
    assert why == "HTTP 500; then a one-token completion: HTTP 500", why
    assert [list(r) for r in first.requests][-1] == ["model", "max_tokens", "messages"]


def test_an_upstream_on_trial_goes_last_and_its_trial_ends_with_the_engine() -> None:
    with upstreams(2) as (first, second):
        first.poison, first.answer_delay_s = "poison", 30.0  # its trial is left hanging

        async def body(engine: OpenAIEngine) -> tuple[set[str], float]:
            engine._settings.balance = "in-order"  # the first is asked first
            assert await _ask(engine, "poison", stream=False) == "replica 1"
            engine._settings.balance = "least-outstanding"
            answers = {await _ask(engine, f"{i:03d} # a file\n") for i in range(6)}
            started = time.monotonic()
            await engine.close()
            return answers, time.monotonic() - started

        answers, closing_s = _run([first.base_url, second.base_url], body)
        first.answer_delay_s = 0.0
    assert answers == {"replica 1"}  # none went to the one on trial
    assert closing_s < 2.0  # its trial did not hold the close


def test_a_trial_left_unanswered_is_a_hang_and_another_failure_keeps_one() -> None:
    """A trial that timed out took the upstream out as failed, to come back on its model
    listing alone; one that failed otherwise cleared a hang found meanwhile."""
    with upstreams(1) as (stub,):
        stub.poison = "poison"

        async def body(engine: OpenAIEngine) -> tuple[bool, bool]:
            with pytest.raises(EngineUnavailableError):
                await _ask(engine, "poison", stream=False)
            (upstream,) = engine._upstreams
            upstream.hung = True  # two answers it left hanging meanwhile, say
            stub.refuse = (500, {})  # the trial fails, but not by leaving it unanswered
            await _trials_done(engine)
            kept = upstream.hung
            upstream.hung, upstream.healthy, stub.refuse = False, True, None
            stub.answer_delay_s = 1.0  # past the read timeout: the trial is left unanswered
            with pytest.raises(EngineUnavailableError):
                await _ask(engine, "poison", stream=False)
            await _trials_done(engine)
            stub.answer_delay_s = 0.0
            return kept, upstream.hung

        kept, hung = _run([stub.base_url], body, read_timeout_s=0.3, health_interval_s=60.0)
    assert kept and hung


def test_when_every_upstream_answers_garbage_the_client_learns_why() -> None:
    with upstreams(2) as (first, second):
        first.raw = second.raw = ("application/json", b"<html>502 Bad Gateway</html>")

        async def body(engine: OpenAIEngine) -> tuple[int | None, str, list[bool]]:
            with pytest.raises(EngineUnavailableError) as broken:
                await _ask(engine, "x", stream=False)
            await _trials_done(engine)
            healthy = [u["healthy"] for u in engine.upstream_status()]
            return broken.value.retry_after_s, broken.value.message, healthy

        retry_after, message, healthy = _run(
            [first.base_url, second.base_url], body, health_interval_s=60.0
        )
    assert retry_after == 60
    assert "the upstream answer broke off" in message
    assert healthy == [False, False]
    assert len(first.requests) == len(second.requests) == 2  # the request, and a trial


def test_a_stream_that_stalls_is_a_timeout_and_an_error_event_is_its_message() -> None:
    with upstreams(1, piece_delay_s=0.5) as (stub,):
        stub.answer = "a longer answer, in several pieces"
        with pytest.raises(UpstreamTimeoutError, match="middle of its answer"):
            _run([stub.base_url], lambda engine: _ask(engine, "x"), read_timeout_s=0.2)
    with upstreams(1) as (stub,):
        stub.raw = ("text/event-stream", b'data: {"error": {"message": "out of memory"}}\n\n')
        with pytest.raises(EngineUnavailableError) as failed:
            _run([stub.base_url], lambda engine: _ask(engine, "x"))
    assert failed.value.message == "the upstream failed: out of memory"


@pytest.mark.parametrize("counted_apart", [False, True], ids=["in-the-finish", "after-it"])
def test_an_answer_finished_and_counted_ends_without_waiting_for_the_close(
    counted_apart: bool,
) -> None:
    """An upstream that sent its finish and usage, then neither ``[DONE]`` nor a close,
    held the answer until upstream.read_timeout_s, then failed it as stalled."""
    finish = {"index": 0, "text": " there", "finish_reason": "stop"}
    usage = {"prompt_tokens": 3, "completion_tokens": 2}
    sent: list[dict[str, object]] = [{"choices": [{"index": 0, "text": "hello"}]}]
    sent += (
        [{"choices": [finish]}, {"choices": [], "usage": usage}]
        if counted_apart
        else [{"choices": [finish], "usage": usage}]
    )
    with upstreams(1) as (stub,):
        stub.raw = (
            "text/event-stream",
            b"".join(b"data: %s\n\n" % json.dumps(e).encode() for e in sent),
        )
        stub.hold_open_s = 30

        async def answer(engine: OpenAIEngine) -> list[GenerationChunk]:
            request = GenerationRequest(SamplingParams(max_tokens=8), prompt="x", stream=True)
            return [chunk async for chunk in engine.generate(request)]

        chunks = _run([stub.base_url], answer, read_timeout_s=3)
    assert "".join(c.text for c in chunks) == "hello there"
    assert (chunks[-1].finish_reason, chunks[-1].completion_tokens) == ("stop", 2)


@pytest.mark.parametrize(
    "line", [b'error: {"code": 500, "message": "out of memory"}', b"error: out of memory"]
)
def test_an_error_line_of_an_older_llama_cpp_server_is_its_message(line: bytes) -> None:
    """llama.cpp's server wrote a failure midway as an ``error:`` line, not as data: the
    client was told the stream ended early, and the upstream's words were lost."""
    with upstreams(1) as (stub,):
        piece = b'data: {"choices": [{"index": 0, "text": "hel"}]}\n\n'
        stub.raw = ("text/event-stream", piece + line + b"\n\n")
        with pytest.raises(EngineUnavailableError) as failed:
            _run([stub.base_url], lambda engine: _ask(engine, "x"))
    assert failed.value.message == "the upstream failed: out of memory"


@pytest.mark.parametrize(
    "error",
    [
        {"object": "error", "message": "bad logit_bias", "type": "BadRequestError", "code": 400},
        {"message": "bad logit_bias", "type": "invalid_request_error", "param": "logit_bias"},
    ],
)
def test_an_error_event_that_blames_the_request_takes_no_upstream_out(
    error: dict[str, object],
) -> None:
    """Another replica would refuse it too: failing over would take every one out."""
    with upstreams(2) as (first, second):
        first.raw = second.raw = (
            "text/event-stream",
            b"data: " + json.dumps({"error": error}).encode() + b"\n\n",
        )

        async def body(engine: OpenAIEngine) -> tuple[str, list[bool], int]:
            with pytest.raises(RequestError) as refused:
                await _ask(engine, "x")
            healthy = [u["healthy"] for u in engine.upstream_status()]
            rejected = sum(u.outcomes.get("rejected", 0) for u in engine.stats().upstreams)
            return refused.value.message, healthy, rejected

        message, healthy, rejected = _run([first.base_url, second.base_url], body)
    assert message == "the upstream refused the request: bad logit_bias"
    assert healthy == [True, True] and rejected == 1
    assert len(first.requests) + len(second.requests) == 1


def test_a_refusal_keeps_the_parameter_it_names_and_a_stop_word_is_passed_on() -> None:
    with upstreams(1) as (stub,):
        stub.refuse = (400, {})
        with pytest.raises(RequestError) as refused:
            _run([stub.base_url], lambda engine: _ask(engine, "x"))
        assert refused.value.param == "prompt"
        stub.refuse, stub.stop_reason = None, "\n\n"

        async def body(engine: OpenAIEngine) -> list[str | None]:
            ends = []
            for stream in (True, False):
                request = GenerationRequest(
                    params=SamplingParams(max_tokens=8), prompt="x", stream=stream
                )
                ends.append([chunk async for chunk in engine.generate(request)][-1].stop_word)
            return ends

        assert _run([stub.base_url], body) == ["\n\n", "\n\n"]


def test_a_named_model_s_window_is_learnt_from_the_upstream_now_or_later() -> None:
    """upstream.model lets a gateway start while its upstreams are down; its context
    window used to stay unknown (0) for good, so nothing was cut to fit."""
    with upstreams(1) as (up,):
        up.max_model_len = 4096
        at_start = _engine([up.base_url])  # model named: "stub-model"
        assert at_start.info().n_ctx == 4096
        up.refuse = (503, {})

        async def later() -> int:
            engine = _engine([up.base_url])
            try:
                assert engine.info().n_ctx == 0  # nothing answered yet
                up.refuse = None
                assert await engine.health()
                return engine.info().n_ctx
            finally:
                await engine.close()

        assert asyncio.run(later()) == 4096


def test_an_idle_gateway_learns_that_its_upstream_is_gone() -> None:
    """With no request of ours there, an upstream in service is checked now and then: a
    gateway nobody used stayed ready after its upstreams died."""
    with upstreams(1) as (up,):

        async def body(engine: OpenAIEngine) -> tuple[bool, bool, bool]:
            ready = await engine.health()
            up.refuse = (503, {})  # gone, while nobody asks
            interval = 0.02 * openai_engine.IDLE_CHECK_INTERVALS
            await asyncio.sleep(interval * 3)
            gone = await engine.health()
            up.refuse = None
            await asyncio.sleep(interval * 3)
            return ready, gone, await engine.health()

        ready, gone, back = _run([up.base_url], body, health_interval_s=0.02)
    assert (ready, gone, back) == (True, False, True)


def test_an_upstream_that_lists_its_model_but_says_it_is_not_ready_stays_out() -> None:
    """A tether upstream whose own upstreams are down, or a llama.cpp server loading its
    model, still lists the model: a gateway in front of it kept calling itself ready and
    put it back in service after each request it failed."""
    with upstreams(1) as (up,):

        async def body(engine: OpenAIEngine) -> tuple[bool, str, bool, bool]:
            up.not_ready = True
            ready = await engine.health()
            why = engine.upstream_status()[0]["last_error"]
            up.not_ready = False
            await asyncio.sleep(0.2)  # a few health intervals
            return ready, why, await engine.health(), up.requests == []

        ready, why, back, asked_nothing = _run([up.base_url], body, health_interval_s=0.02)
    assert (ready, back, asked_nothing) == (False, True, True)
    assert why == "HTTP 503 from its /health: not ready: the engine is not answering"


@pytest.mark.parametrize("status", [400, 404])
@pytest.mark.parametrize("stalls", [False, True])
def test_a_refusal_whose_body_breaks_off_is_still_a_refusal(status: int, stalls: bool) -> None:
    """An upstream that died or stalled in the middle of its refusal's body was an
    internal error (500) for the client, with a traceback in the log."""

    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(
                f"HTTP/1.1 {status} Refused\r\nContent-Type: application/json\r\n"
                "Content-Length: 100\r\n\r\n".encode()
                + b'{"error": {"mess'
            )
            await writer.drain()
            if stalls:
                await asyncio.sleep(3600)
        finally:
            writer.close()

    async def run() -> Exception:
        server = await asyncio.start_server(refuse, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1"
        engine = _engine([url], read_timeout_s=0.2, connect_timeout_s=0.5)
        try:
            with pytest.raises(Exception) as caught:
                await _ask(engine, "x", stream=False)
            assert sum(u.outstanding for u in engine._upstreams) == 0
            return caught.value
        finally:
            await engine.close()
            server.close()

    error = asyncio.run(run())
    if status == 400:  # the request's fault, as its status says
        assert isinstance(error, RequestError), repr(error)
        assert "HTTP 400, its message cut off" in error.message
    else:  # a wrong path: a setting to fix
        assert isinstance(error, EngineUnavailableError), repr(error)
        assert "upstream.base_urls should end in /v1" in error.message


def test_more_streams_than_a_connection_pool_holds_all_reach_the_upstream() -> None:
    """Past 256 streams at once, the gateway's own connection pool made the next request
    wait, timed that wait as a connect, and took healthy upstreams out of service (503)."""
    streams = 260  # the pool holds 256
    release = asyncio.Event()

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n")
            await release.wait()  # every stream open at once
            event = {"choices": [{"text": "x", "finish_reason": "stop"}]}
            writer.write(b"data: " + json.dumps(event).encode() + b"\n\ndata: [DONE]\n\n")
            await writer.drain()
        finally:
            writer.close()

    async def run() -> tuple[list[str | BaseException], bool]:
        server = await asyncio.start_server(answer, "127.0.0.1", 0, backlog=streams)
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1"
        # Hundreds of connects, made by this one event loop, take seconds on a busy
        # machine: the timeout leaves them room, and the streams are held open past it,
        # which a request waiting its turn would meet.
        engine = _engine([url], connect_timeout_s=6.0)
        try:
            asks = [asyncio.create_task(_ask(engine, f"{i}")) for i in range(streams)]
            await asyncio.sleep(7.5)  # past the connect timeout of any waiting its turn
            release.set()
            answers = await asyncio.gather(*asks, return_exceptions=True)
            return answers, bool(engine.upstream_status()[0]["healthy"])
        finally:
            await engine.close()
            server.close()

    answers, healthy = asyncio.run(run())
    assert [a for a in answers if a != "x"] == [] and healthy


@pytest.mark.parametrize("stream", [True, False])
def test_a_lone_surrogate_from_the_upstream_becomes_a_replacement_character(
    stream: bool,
) -> None:
    """JSON lets an upstream send half a UTF-16 pair (``\\ud800``): passed on, no UTF-8
    encoder takes it, and a plain answer was a 500."""
    event = (
        b'{"choices": [{"text": "a\\ud800b", "finish_reason": "stop", "stop_reason": "\\udfff"}]}'
    )
    with upstreams(1) as (stub,):
        if stream:
            stub.raw = ("text/event-stream", b"data: " + event + b"\n\ndata: [DONE]\n\n")
        else:
            stub.raw = ("application/json", event)

        async def body(engine: OpenAIEngine) -> list[GenerationChunk]:
            request = GenerationRequest(
                params=SamplingParams(max_tokens=8), prompt="x", stream=stream
            )
            return [chunk async for chunk in engine.generate(request)]

        chunks = _run([stub.base_url], body)
        assert "".join(c.text for c in chunks) == "a\ufffdb"
        assert chunks[-1].stop_word == "\ufffd"
        stub.raw = None
        stub.refuse, stub.refusal = (400, {}), "bad \ud800"
        with pytest.raises(RequestError) as refused:
            _run([stub.base_url], lambda engine: _ask(engine, "x", stream=stream))
        assert (
            refused.value.message.encode()
            == "the upstream refused the request: bad \ufffd".encode()
        )


def test_an_answer_stopped_early_between_two_slow_ones_keeps_the_upstream_in_service() -> None:
    """An answer the pipeline stops at its first pieces (an infill that filled its hole)
    is an answer: two slow ones around it are not two in a row, which took it out."""
    with upstreams(1) as (up,):

        async def body(engine: OpenAIEngine) -> bool:
            up.answer_delay_s = 0.5
            with pytest.raises(UpstreamTimeoutError):
                await _ask(engine, "x")
            up.answer_delay_s = 0.0
            request = GenerationRequest(params=SamplingParams(max_tokens=8), prompt="x")
            async with contextlib.aclosing(engine.generate(request)) as chunks:
                first = await anext(chunks)
                assert first.read_tokens is not None  # the prompt went: it is charged
                assert (await anext(chunks)).text  # the first text: the rest is not read
            up.answer_delay_s = 0.5
            with pytest.raises(UpstreamTimeoutError):
                await _ask(engine, "x")
            return bool(engine.upstream_status()[0]["healthy"])

        assert _run([up.base_url], body, read_timeout_s=0.2)


@pytest.mark.parametrize("stream", [True, False])
def test_an_upstream_that_closes_mid_answer_is_said_so_in_plain_words(
    stream: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """aiohttp's own text for a cut chunked body ("ClientPayloadError(... TransferEncoding
    Error: 400, message='Not enough data ...')") reads as an HTTP status: the client hears
    that the upstream closed it early, and the server log keeps the exception's type."""
    event = b'data: {"choices": [{"index": 0, "text": "def", "finish_reason": null}]}\n\n'
    kind = b"text/event-stream" if stream else b"application/json"

    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (await reader.readline()) not in (b"\r\n", b""):
            pass  # the request's headers; its body is left unread
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: " + kind + b"\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
            + f"{len(event) + 100:x}\r\n".encode()  # a chunk longer than what follows
            + event
        )
        await writer.drain()
        writer.close()

    async def run() -> str:
        server = await asyncio.start_server(cut, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1"
        engine = _engine([url], health_interval_s=60.0)
        try:
            with pytest.raises(EngineUnavailableError) as broken:
                await _ask(engine, "x", stream=stream)
            return broken.value.message
        finally:
            await engine.close()
            server.close()

    message = asyncio.run(run())
    assert "closed" in message and "before" in message, message
    for internal in ("ClientPayloadError", "TransferEncodingError", "400", "Not enough data"):
        assert internal not in message
    assert "ClientPayloadError" in caplog.text  # the operator's log names it


def test_what_a_cut_answer_is_charged_stays_within_what_tokenizers_make_of_text() -> None:
    """An upstream's counts (or answers made to skew them) could make a gateway charge a
    cut answer nothing, or ten thousand times its characters."""
    engine = _engine(["http://127.0.0.1:9/v1"])
    assert engine.likely_tokens("x" * 340) == 100  # before any count: 3.4 characters a token
    for _ in range(40):
        engine._learn_answer(200, openai_engine.MAX_TOKEN_COUNT)
    assert engine.likely_tokens("x" * 4000) == 16000  # 4 tokens a character at most
    for _ in range(80):
        engine._learn_answer(10**6, 1)
    assert engine.likely_tokens("x" * 4000) == 1000  # and 4 characters a token at least


def test_an_upstream_that_echoes_the_gateways_key_does_not_pass_it_to_the_client() -> None:
    """An upstream's or a proxy's error text went to the client as it was, the
    Authorization header it echoed too."""
    key = "sk-gateway-key-0123456789"
    with upstreams(1) as (stub,):
        stub.refuse, stub.refusal = (400, {}), f"bad request: Authorization=Bearer {key}"
        with pytest.raises(RequestError) as refused:
            _run([stub.base_url], lambda engine: _ask(engine, "x"), api_key=key)
    assert key not in refused.value.message
    assert refused.value.message.endswith("Authorization=Bearer ***")


def test_a_refusal_in_an_html_page_is_told_by_its_title() -> None:
    page = b"<html><head><title>413 Request Entity\n Too Large</title></head><body>" + (
        b"<p>nginx</p>" * 40
    )
    assert openai_engine._page_text("text/html", page) == (
        "an HTML page: 413 Request Entity Too Large"
    )
    assert openai_engine._page_text("text/plain", b"<!doctype html><p>x") == "an HTML page"
    assert openai_engine._page_text("text/plain", b"upstream busy") == "upstream busy"
    # A key of a few letters is not taken out of every word that holds them.
    assert openai_engine.without_secrets("upstream busy", ["bus"]) == "upstream busy"


# What llama-cpp-python's server answers a json_schema response_format (HTTP 500).
_NO_JSON_SCHEMA = (
    "1 validation error:\n  {'type': 'literal_error', 'loc': ('body', 'response_format', "
    "'type'), 'msg': \"Input should be 'text' or 'json_object'\", 'input': 'json_schema'}"
)


def test_an_upstream_that_fails_a_response_format_refuses_the_request_not_itself() -> None:
    """llama-cpp-python's server fails a json_schema with a 500 that names it: the client
    heard that no upstream answered and to retry later (which the SDKs did, to the same
    end), and the upstream was put on trial as a failing one."""
    schema = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}
    with upstreams(1) as (stub,):
        stub.poison, stub.refusal = '"json_schema"', _NO_JSON_SCHEMA

        async def body(engine: OpenAIEngine) -> tuple[list[BaseException], list[str]]:
            refusals: list[BaseException] = []
            for format_ in (json.dumps(schema), None):
                params = SamplingParams(max_tokens=8, response_format=format_)
                request = GenerationRequest(
                    params=params, messages=[{"role": "user", "content": "x"}]
                )
                try:
                    answer = "".join([chunk.text async for chunk in engine.generate(request)])
                except RequestError as exc:
                    refusals.append(exc)
            await _trials_done(engine)
            return refusals, [answer]

        refusals, answers = _run([stub.base_url], body)
    (refused,) = refusals
    assert isinstance(refused, RequestError) and refused.param == "response_format"
    assert "the upstream cannot keep the answer to this response_format (HTTP 500: " in str(
        refused.message
    )
    assert "Input should be 'text' or 'json_object'" in str(refused.message)
    assert answers == ["replica 0"]  # still in service, with no trial of its own
    assert len(stub.requests) == 2
