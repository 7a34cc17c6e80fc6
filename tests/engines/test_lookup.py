"""Prompt lookup: drafts from the sequence's own text, and the engine that checks them."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

from fastapi.testclient import TestClient

from tests.conftest import TOKEN, make_settings
from tests.helpers import ScriptedEngine
from tether.engines.base import GenerationRequest, SamplingParams
from tether.engines.llamacpp import SCHEDULER, LlamaCppEngine, prompt_lookup_of, scheduler_name
from tether.engines.lookup import PromptLookup
from tether.models import default_model_path
from tether.server.app import build_app
from tether.settings import EngineSettings


def test_a_draft_is_what_followed_the_newest_tokens_and_continues_where_it_left_off() -> None:
    lookup = PromptLookup([1, 2, 3, 4, 5, 6, 7, 8, 9, 1, 2, 3])
    assert lookup.draft(4) == [4, 5, 6, 7]  # "1 2 3" was followed by 4 5 6 7 …
    lookup.accepted(2)  # 4 and 5 were kept, and the model chose 6 itself
    for token in (4, 5, 6):
        lookup.append(token)
    assert lookup.draft(3) == [7, 8, 9]  # goes on from there, not from another "4 5 6"


def test_a_draft_takes_the_nearest_place_after_the_copy_went_astray() -> None:
    lookup = PromptLookup([4, 8, 9, 1, 2, 3, 50, 7, 1, 2, 3, 60, 4, 8, 9])
    assert lookup.draft(2) == [1, 2]
    lookup.accepted(2)  # both kept; the model chose 3 itself
    for token in (1, 2, 3):
        lookup.append(token)
    assert lookup.draft(1) == [50]
    lookup.accepted(0)  # the model chose 99 instead: the copy went astray
    for token in (99, 1, 2, 3):
        lookup.append(token)
    # "1 2 3" was followed by 50, 60 and (in the answer) 99: the place after the copy's.
    assert lookup.draft(1) == [60]


def test_a_draft_may_come_from_the_answer_so_far() -> None:
    lookup = PromptLookup([1, 2, 3])
    for token in (4, 5, 6, 7, 8, 4, 5, 6):
        lookup.append(token)
    assert lookup.draft(3) == [7, 8, 4]


def test_no_draft_without_a_match_or_room() -> None:
    lookup = PromptLookup([1, 2, 3, 4])
    assert lookup.draft(0) == []
    lookup.append(9)
    assert lookup.draft(4) == []  # "3 4 9" was never seen
    assert PromptLookup([1, 2]).draft(4) == []


def test_drafting_is_on_where_it_leaves_answers_alone() -> None:
    assert prompt_lookup_of(EngineSettings()) == 8  # q8_0 cache: the same bytes
    assert prompt_lookup_of(EngineSettings(kv_type="f16")) == 0
    assert prompt_lookup_of(EngineSettings(kv_type="f16", prompt_lookup=4)) == 4
    assert prompt_lookup_of(EngineSettings(prompt_lookup=0)) == 0
    # What changes an answer's bytes names another scheduler in fingerprints: the cache's
    # type (f16 and q8_0 answers part within a few hundred characters), and drafting that
    # may flip a near-tie; the default's name is as it always was, so its manifests verify.
    assert scheduler_name(EngineSettings()) == SCHEDULER
    assert scheduler_name(EngineSettings(kv_type="f16")).endswith(", f16 cache")
    assert "lookup" in scheduler_name(EngineSettings(kv_type="f16", prompt_lookup=4))
    assert "lookup" not in scheduler_name(EngineSettings(prompt_lookup=4))


SOURCE = '''def mean(values):
    """The arithmetic mean of values."""
    total = 0
    for value in values:
        total += value
    return total / len(values)


def spread(values):
    """The largest value less the smallest."""
    return max(values) - min(values)
'''
# Two copies of a module ask, without a chat template, for a third: the model copies.
COPYING = (
    "# stats.py\n"
    + SOURCE
    + "\n\n# stats_copy.py (identical to stats.py)\n"
    + SOURCE
    + "\n\n# stats_copy2.py (identical to stats.py)\n"
)


def _copy(max_tokens: int, copies: bool, **params: object) -> GenerationRequest:
    sampling = SamplingParams(max_tokens=max_tokens, **params)  # type: ignore[arg-type]
    return GenerationRequest(sampling, prompt=COPYING, copies_prompt=copies)


async def _answer(engine: LlamaCppEngine, request: GenerationRequest) -> tuple[str, int | None]:
    parts, last = [], None
    async for chunk in engine.generate(request):
        parts.append(chunk.text)
        last = chunk
    assert last is not None
    return "".join(parts), last.completion_tokens


def _with_engine(
    tmp_path: Path, sequences: int, body: Callable[[LlamaCppEngine], Awaitable[None]]
) -> None:
    """Run ``body`` on an embedded engine with ``sequences`` sequences, then close it."""
    settings = make_settings(tmp_path, TETHER_ENGINE_N_PARALLEL=str(sequences))

    async def run() -> None:
        engine = LlamaCppEngine(settings.engine, default_model_path(), tmp_path / "cache")
        try:
            await body(engine)
        finally:
            await engine.close()

    asyncio.run(run())


def test_drafted_answers_are_the_bytes_of_plain_decoding_alone_and_in_a_batch(
    tmp_path: Path,
) -> None:
    kinds: list[dict[str, float]] = [{"temperature": 0}, {"temperature": 0.7, "seed": 3}]

    async def body(engine: LlamaCppEngine) -> None:
        for params in kinds:
            plain = await _answer(engine, _copy(96, False, **params))
            drafted = await _answer(engine, _copy(96, True, **params))
            assert drafted == plain
            busy = await asyncio.gather(
                _answer(engine, _copy(96, True, **params)),
                _answer(engine, _copy(40, False, temperature=0.9, seed=1)),
                _answer(engine, _copy(96, True, **params)),
            )
            assert busy[0] == busy[2] == plain
        stats = engine.stats()
        # The model copies: most drafted tokens are kept, several a step.
        assert stats.accepted_tokens > 200
        assert stats.accepted_tokens > stats.drafted_tokens / 2

    _with_engine(tmp_path, 3, body)


def test_drafting_stops_at_max_tokens_and_at_a_stop_string(tmp_path: Path) -> None:

    async def body(engine: LlamaCppEngine) -> None:
        for max_tokens in (1, 5, 13):
            text, tokens = await _answer(engine, _copy(max_tokens, True, temperature=0))
            assert (text, tokens) == await _answer(engine, _copy(max_tokens, False, temperature=0))
            assert tokens == max_tokens
        stop = ("total +=",)
        drafted = await _answer(engine, _copy(96, True, temperature=0, stop=stop))
        plain = await _answer(engine, _copy(96, False, temperature=0, stop=stop))
        assert drafted == plain and "total +=" not in drafted[0]
        # What a stopped draft left in the KV cache does not leak into the next answer.
        assert await _answer(engine, _copy(96, True, temperature=0)) == await _answer(
            engine, _copy(96, False, temperature=0)
        )

    _with_engine(tmp_path, 1, body)


def test_a_drafting_stream_cancelled_midway_leaves_nothing_behind(tmp_path: Path) -> None:

    async def body(engine: LlamaCppEngine) -> None:
        plain = await _answer(engine, _copy(96, False, temperature=0))
        for chunks_read in (1, 7):
            stream = engine.generate(_copy(96, True, temperature=0))
            for _ in range(chunks_read):
                await stream.__anext__()
            await stream.aclose()  # the editor went away while drafts were in flight
            while engine.stats().in_flight:
                await asyncio.sleep(0.005)
            # The one sequence held drafted cells; the next answer is still plain's.
            assert await _answer(engine, _copy(96, True, temperature=0)) == plain

    _with_engine(tmp_path, 1, body)


def test_suggestions_ask_the_engine_to_draft_and_chats_do_not(tmp_path: Path) -> None:
    engine = ScriptedEngine("```python\nx = 2\n```\n")
    with TestClient(build_app(make_settings(tmp_path), TOKEN, lambda: engine)) as client:
        client.headers["Authorization"] = f"Bearer {TOKEN}"
        body = {"path": "a.py", "source": "x = 1\n", "instruction": "make it 2"}
        assert client.post("/v1/suggestions", json=body).status_code == 200
        chat = {"messages": [{"role": "user", "content": "x = 1"}]}
        assert client.post("/v1/chat/completions", json=chat).status_code == 200
    assert [r.copies_prompt for r in engine.requests] == [True, False]
