"""Without the upstream's tokenizer, the gateway counts tokens at a ratio learnt from the
prompt_tokens its upstreams report: the window cuts of editor requests then fit."""

from __future__ import annotations

import asyncio

import pytest

from tests.engines.test_balance import _engine, upstreams
from tether.engines.base import GenerationRequest, SamplingParams
from tether.engines.openai import OpenAIEngine
from tether.errors import ContextLengthError, RequestError


async def _ask(engine: OpenAIEngine, prompt: str, stream: bool) -> None:
    request = GenerationRequest(SamplingParams(max_tokens=4), prompt=prompt, stream=stream)
    async for _ in engine.generate(request):
        pass


def test_the_ratio_is_learnt_from_reported_counts_and_only_ever_cautious() -> None:
    with upstreams(1) as (stub,):

        async def body() -> list[int]:
            engine = _engine([stub.base_url])
            counts = [engine.count_tokens("x" * 300)]  # before any report: 2.5 characters a token
            stub.prompt_tokens = 300
            await _ask(engine, "y" * 600, stream=True)  # 2 characters a token, less a margin: 1.6
            counts.append(engine.count_tokens("x" * 300))
            stub.prompt_tokens = 10
            await _ask(engine, "y" * 600, stream=False)  # 60: the least seen lately stays
            counts.append(engine.count_tokens("x" * 300))
            await _ask(engine, "y" * 50, stream=True)  # too short to learn from
            counts.append(engine.count_tokens("x" * 300))
            await engine.close()
            fresh = _engine([stub.base_url])
            await _ask(fresh, "y" * 600, stream=False)  # reports 60: capped at 4
            counts.append(fresh.count_tokens("x" * 300))
            await fresh.close()
            return counts

        assert asyncio.run(body()) == [120, 188, 188, 188, 75]


@pytest.mark.parametrize(
    "refusal",
    [
        "the prompt is 300 tokens, more than the context window: this model's maximum "
        "context length is 256 tokens; shorten the prompt",  # tether
        "the prompt is 300 tokens, the context window 256; shorten the prompt",  # tether, before
        "request (300 tokens) exceeds the available context size (256 tokens), try "
        "increasing it",  # llama.cpp's server
        "This model's maximum context length is 256 tokens. However, you requested 308 "
        "tokens (300 in the messages, 8 in the completion).",  # vLLM
        "This model's maximum context length is 256 tokens. However, your request has 300 "
        "input tokens.",  # vLLM, later
        "This model's maximum context length is 256 tokens. However, your messages resulted "
        "in 300 tokens. Please reduce the length of the messages.",  # OpenAI
    ],
    ids=["tether", "tether-before", "llama.cpp", "vllm", "vllm-later", "openai"],
)
def test_a_refusal_for_length_is_named_so_and_teaches_the_ratio(refusal: str) -> None:
    with upstreams(1) as (stub,):
        stub.refuse, stub.refusal = (400, {}), refusal

        async def body() -> tuple[ContextLengthError, int]:
            engine = _engine([stub.base_url])
            try:
                with pytest.raises(ContextLengthError) as refused:
                    await _ask(engine, "y" * 600, stream=True)  # 300 tokens: 2 a token
                return refused.value, engine.count_tokens("x" * 300)
            finally:
                await engine.close()

        error, count = asyncio.run(body())
    assert error.prompt_tokens == 300 and refusal in error.message
    assert count == 188  # 2 characters a token, less the margin


def test_a_refusal_for_anything_else_stays_a_plain_bad_request() -> None:
    with upstreams(1) as (stub,):
        stub.refuse = (400, {})
        assert not isinstance(_refusal(stub.base_url, "y" * 600), ContextLengthError)


def test_a_refusal_for_one_token_of_prompt_is_named_for_length_too() -> None:
    refusal = (
        "the prompt is 1 token and max_tokens is 1500, together more than the context "
        "window of 1024; shorten the prompt or lower max_tokens"  # tether, singular
    )
    with upstreams(1) as (stub,):
        stub.refuse, stub.refusal = (400, {}), refusal
        error = _refusal(stub.base_url, "hi")
    assert isinstance(error, ContextLengthError)
    assert error.prompt_tokens == 1 and refusal in error.message


@pytest.mark.parametrize(
    "refusal",
    [
        "max_tokens is 600, no less than the context window, which holds the prompt too: "
        "this model's maximum context length is 512 tokens; ask for fewer than 512 tokens",
        "Your input exceeds the context window of this model. Please adjust your input and "
        "try again.",  # OpenAI's Responses API
    ],
    ids=["tether-max-tokens", "openai-responses"],
)
def test_a_refusal_for_the_window_that_counts_no_prompt_is_named_for_length_too(
    refusal: str,
) -> None:
    """A tether in front of a tether relayed its refusal of a max_tokens no window holds
    as a plain bad request, its code (context_length_exceeded) lost on the way."""
    with upstreams(1) as (stub,):
        stub.refuse, stub.refusal = (400, {}), refusal
        error = _refusal(stub.base_url, "hi")
    assert isinstance(error, ContextLengthError) and refusal in error.message
    assert error.prompt_tokens is None


def _refusal(url: str, prompt: str) -> RequestError:
    """What a gateway in front of ``url`` raises for a plain request of ``prompt``."""

    async def body() -> RequestError:
        engine = _engine([url])
        try:
            with pytest.raises(RequestError) as refused:
                await _ask(engine, prompt, stream=False)
            return refused.value
        finally:
            await engine.close()

    return asyncio.run(body())


def _default_bound_asked(prompt_tokens: int, *, explicit: bool = False) -> tuple[object, list[int]]:
    """Ask a gateway in front of a tether-like upstream with a window of 512 for a
    prompt of 600 bytes (too many to be sure of any room by its bytes) of
    ``prompt_tokens`` tokens, with the default bound (256) or, ``explicit``, the client's:
    the answer or the refusal, and the max_tokens of each request the upstream got."""
    with upstreams(1) as (stub,):
        stub.max_model_len = stub.window = 512
        stub.prompt_tokens = prompt_tokens

        async def body() -> object:
            engine = _engine([stub.base_url])
            params = SamplingParams(max_tokens=256, max_tokens_explicit=explicit)
            request = GenerationRequest(params, prompt="y" * 600, stream=True)
            try:
                return "".join([chunk.text async for chunk in engine.generate(request)])
            except ContextLengthError as exc:
                return exc
            finally:
                await engine.close()

        outcome = asyncio.run(body())
        return outcome, [r["max_tokens"] for r in stub.requests]


def test_a_default_bound_the_window_refuses_is_asked_again_with_what_it_holds() -> None:
    """A client that sent no max_tokens was refused by a tether upstream for a prompt that
    fits its window, and told to lower a max_tokens it never sent: the embedded engine
    cuts the default to what the window holds after the prompt, and so does the gateway,
    with the count the refusal gave."""
    answer, sent = _default_bound_asked(300)
    assert answer == "replica 0"
    assert sent == [256, 212]


def test_a_prompt_that_fills_the_window_by_itself_is_refused_without_naming_max_tokens() -> None:
    error, sent = _default_bound_asked(600)
    assert isinstance(error, ContextLengthError) and error.param is None
    assert "shorten the prompt" in error.message and "max_tokens" not in error.message
    assert sent == [256]  # no bound would do: it is not asked again


def test_the_clients_own_max_tokens_is_never_changed() -> None:
    error, sent = _default_bound_asked(300, explicit=True)
    assert isinstance(error, ContextLengthError) and error.param == "max_tokens"
    assert sent == [256]
