from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from tether.default_plugins.policy import PolicyPlugin
from tether.engines.base import GenerationChunk
from tether.pipeline.governance import reviewed
from tether.pipeline.reviews import CompletionReview, PromptReview
from tether.policy import Scanner

EMAIL = "dana.kowalski@globex-corp.com"


async def _chunks(*texts: str) -> AsyncIterator[GenerationChunk]:
    for text in texts[:-1]:
        yield GenerationChunk(text=text)
    yield GenerationChunk(text=texts[-1], finish_reason="stop")


def _collect(stream: AsyncIterator[GenerationChunk]) -> list[GenerationChunk]:
    async def run() -> list[GenerationChunk]:
        return [chunk async for chunk in stream]

    return asyncio.run(run())


def test_pseudonyms_come_back_even_split_across_chunks() -> None:
    review = PromptReview(kind="chat", parts={"messages[0]": f"mail {EMAIL} and {EMAIL}"})
    PolicyPlugin(Scanner()).govern_prompt(review)
    placeholder = review.parts["messages[0]"].split()[1]
    assert EMAIL not in review.parts["messages[0]"] and placeholder.startswith("<")
    cut = len(placeholder) // 2
    chunks = _collect(
        reviewed(
            _chunks("Write to ", placeholder[:cut], placeholder[cut:] + " today", "."),
            review.restore,
            lambda text: CompletionReview(kind="chat", text=text),
        )
    )
    assert "".join(c.text for c in chunks) == f"Write to {EMAIL} today."
    assert all(placeholder not in c.text for c in chunks)


def test_findings_and_block_land_on_the_last_chunk() -> None:
    def check(text: str) -> CompletionReview:
        return CompletionReview(kind="completion", text=text.upper(), blocked="eval" in text)

    chunks = _collect(reviewed(_chunks("x = ", "eval(y)"), None, check))
    assert [c.text for c in chunks] == ["x = ", "eval(y)"]
    assert chunks[-1].blocked and chunks[-1].reviewed_text == "X = EVAL(Y)"
