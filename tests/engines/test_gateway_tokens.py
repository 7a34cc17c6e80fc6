"""Without the upstream's tokenizer, the gateway counts tokens at a ratio learnt from the
prompt_tokens its upstreams report: the window cuts of editor requests then fit."""

from __future__ import annotations

import asyncio

from tests.engines.test_balance import _engine, upstreams
from tether.engines.base import GenerationRequest, SamplingParams
from tether.engines.openai import OpenAIEngine


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
