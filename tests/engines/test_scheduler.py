"""The embedded engine's continuous batching, over the real default model."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_settings
from tether.engines import scheduler as scheduler_module
from tether.engines.base import (
    GenerationChunk,
    GenerationRequest,
    SamplingParams,
    SequenceState,
)
from tether.engines.llamacpp import LlamaCppEngine
from tether.engines.scheduler import Scheduler
from tether.engines.stops import StopMatcher
from tether.errors import (
    ContextLengthError,
    EngineUnavailableError,
    OverloadedError,
    RequestError,
)
from tether.models import default_model_path


def _engine(tmp_path: Path, **env: str) -> LlamaCppEngine:
    settings = make_settings(tmp_path, **env)
    return LlamaCppEngine(settings.engine, default_model_path(), settings.data.home / "cache")


def _request(prompt: str, max_tokens: int = 24, **params: object) -> GenerationRequest:
    return GenerationRequest(
        params=SamplingParams(max_tokens=max_tokens, **params),  # type: ignore[arg-type]
        prompt=prompt,
    )


async def _text(chunks: AsyncIterator[GenerationChunk]) -> tuple[str, GenerationChunk]:
    parts, last = [], None
    async for chunk in chunks:
        parts.append(chunk.text)
        last = chunk
    assert last is not None
    return "".join(parts), last


def test_stop_matcher_holds_back_what_may_start_a_stop_and_cuts_at_the_first() -> None:
    stops = StopMatcher(("\nclass", "END"))
    assert stops.feed("x = 1\ncl") == "x = 1"  # "\ncl" may begin "\nclass"
    assert stops.feed("ose()") == "\nclose()"  # it did not: it goes out whole
    assert stops.feed(" E") == " "
    assert stops.feed("NDING") == ""
    assert stops.stopped and stops.matched == "END" and stops.flush() == ""
    both = StopMatcher(("b c", "a b"))
    assert both.feed("x a b c") == "x " and both.matched == "a b"  # the earlier cut
    unfinished = StopMatcher(("STOP",))
    assert unfinished.feed("ab ST") == "ab "
    assert unfinished.flush() == "ST"  # the stream ended before the stop could complete


def test_sampled_answers_do_not_depend_on_the_rest_of_the_batch(tmp_path: Path) -> None:
    """Four sequences at once, each with its own seed: each answer is the one it gets alone."""
    prompts = [f"# A note about topic {i}.\n" for i in range(4)]

    async def run() -> tuple[list[str], list[str]]:
        engine = _engine(tmp_path, TETHER_ENGINE_N_PARALLEL="4")
        try:
            requests = [_request(p, 32, temperature=0.9, seed=i) for i, p in enumerate(prompts)]
            alone = [(await _text(engine.generate(r)))[0] for r in requests]
            together = await asyncio.gather(*(_text(engine.generate(r)) for r in requests))
            return alone, [text for text, _ in together]
        finally:
            await engine.close()

    alone, together = asyncio.run(run())
    assert len(set(alone)) == 4  # different seeds and prompts: four different answers
    assert together == alone


def test_a_long_prompt_is_read_in_chunks_while_a_stream_keeps_going(tmp_path: Path) -> None:
    long_prompt = "def f(values):\n" + "    values.append(len(values))\n" * 40

    async def run() -> tuple[int, int]:
        engine = _engine(tmp_path, TETHER_ENGINE_N_PARALLEL="2", TETHER_ENGINE_N_BATCH="16")
        try:
            assert engine.count_tokens(long_prompt) > 200  # more than a dozen steps of 16
            streaming = engine.generate(_request("Once upon a time", 200, temperature=0))
            await streaming.__anext__()  # the stream runs
            events: list[str] = []

            async def drain() -> None:
                async for _ in streaming:
                    events.append("stream")

            async def long_one() -> None:
                async for chunk in engine.generate(_request(long_prompt, 4, temperature=0)):
                    if chunk.text:
                        events.append("long")

            await asyncio.gather(drain(), long_one())
            first_long = events.index("long")
            return first_long, len(events)
        finally:
            await engine.close()

    before_first_long, total = asyncio.run(run())
    # Reading 200+ prompt tokens 15 at a time takes a dozen steps; the stream got a token
    # in each of them instead of waiting for the whole prompt.
    assert before_first_long >= 10, (before_first_long, total)


def test_the_engine_says_how_much_of_a_long_prompt_it_has_taken_in(tmp_path: Path) -> None:
    long_prompt = "def f(values):\n" + "    values.append(len(values))\n" * 20

    async def run() -> tuple[list[GenerationChunk], int]:
        engine = _engine(tmp_path, TETHER_ENGINE_N_PARALLEL="1", TETHER_ENGINE_N_BATCH="64")
        try:
            chunks = [c async for c in engine.generate(_request(long_prompt, 4, temperature=0))]
            return chunks, engine.count_tokens(long_prompt)
        finally:
            await engine.close()

    chunks, prompt = asyncio.run(run())
    assert prompt > 128  # three steps of 64 at least
    reads = [c.read_tokens for c in chunks if c.read_tokens is not None]
    first_text = next(i for i, c in enumerate(chunks) if c.read_tokens is None)
    # Before any text, and one a step: each as far as that step reads, up to the prompt.
    assert all(c.read_tokens is not None and not c.text for c in chunks[:first_text])
    assert len(reads) == first_text
    assert reads == sorted(reads) and reads[-1] == prompt, reads
    assert all(b - a <= 64 for a, b in zip([0, *reads], reads, strict=False)), reads
    assert chunks[-1].prompt_tokens == prompt


def test_each_step_of_a_prompt_is_told_at_once_even_between_text_sends(tmp_path: Path) -> None:
    long_prompt = "def f(values):\n" + "    values.append(len(values))\n" * 20

    async def run() -> tuple[list[int], int]:
        engine = _engine(
            tmp_path,
            TETHER_ENGINE_N_PARALLEL="1",
            TETHER_ENGINE_N_BATCH="64",
            TETHER_ENGINE_STREAM_INTERVAL_MS="1000",
        )
        try:
            chunks = [c async for c in engine.generate(_request(long_prompt, 4, temperature=0))]
            reads = [c.read_tokens for c in chunks if c.read_tokens is not None]
            return reads, engine.count_tokens(long_prompt)
        finally:
            await engine.close()

    reads, prompt = asyncio.run(run())
    # Steps a second apart at most would join text: not the counts of the prompt read,
    # or a caller who left during the last steps was charged an earlier step's count.
    assert len(reads) == -(-prompt // 64) and reads[-1] == prompt, (reads, prompt)


def test_a_cancelled_stream_leaves_the_batch_at_once(tmp_path: Path) -> None:
    async def run() -> float:
        engine = _engine(tmp_path, TETHER_ENGINE_N_PARALLEL="1")
        try:
            stream = engine.generate(_request("Once upon a time", 1000, temperature=0))
            await stream.__anext__()
            await stream.aclose()  # the client went away
            started = time.perf_counter()
            while engine.stats().in_flight:
                await asyncio.sleep(0.005)
                assert time.perf_counter() - started < 5
            left = time.perf_counter() - started  # not the next answer: a loaded machine
            # The sequence is free for the next request.
            _, last = await _text(engine.generate(_request("Hello", 4, temperature=0)))
            assert last.finish_reason in ("stop", "length")
            return left
        finally:
            await engine.close()

    assert asyncio.run(run()) < 5


def test_the_next_request_reuses_the_prompt_prefix_in_the_kv_cache(tmp_path: Path) -> None:
    source = "import os\n\n\ndef walk(root):\n" + "    # list every file under root\n" * 20

    async def run() -> tuple[int, int, int, int | None]:
        engine = _engine(tmp_path, TETHER_ENGINE_N_PARALLEL="2")
        try:
            await _text(engine.generate(_request(source, 4, temperature=0)))
            before = engine.stats().cached_prompt_tokens
            typed = _request(source + "    for", 4, temperature=0)
            chunks = [c async for c in engine.generate(typed)]
            reused = engine.stats().cached_prompt_tokens - before
            first, second = engine.count_tokens(source), engine.count_tokens(source + "    for")
            return reused, first, second, chunks[-1].cached_tokens
        finally:
            await engine.close()

    reused, first, second, reported = asyncio.run(run())
    assert reused >= first - 2 and reused < second
    assert reported == reused  # the request's own usage says what it found cached


def test_a_request_sent_while_a_warm_up_reads_its_context_finds_it_cached(
    tmp_path: Path,
) -> None:
    """llama.vim warms the cache with the context of its next request (n_predict 0), and
    sends that request while the warm-up may still be reading: it waits for the warm-up's
    sequence and reads only what follows, as llama-server's shared slot has it, rather
    than read the whole context again in another sequence at the same time."""
    context = "".join(f"def helper_{i}(x):\n    return x * {i}\n\n" for i in range(60))

    async def run() -> tuple[int, int | None]:
        engine = _engine(tmp_path, TETHER_ENGINE_N_PARALLEL="2")
        try:
            warm_up = asyncio.ensure_future(_text(engine.generate(_request(context, 0))))
            await asyncio.sleep(0)  # it holds its sequence and has begun reading
            typed = _request(context + "def main():\n    return", 4, temperature=0)
            _, last = await _text(engine.generate(typed))
            await warm_up
            return engine.count_tokens(context), last.cached_tokens
        finally:
            await engine.close()

    read, cached = asyncio.run(run())
    assert read > 600 and cached is not None and cached >= read - 2


def test_each_request_has_its_own_context_window_and_the_queue_is_bounded(
    tmp_path: Path,
) -> None:
    async def run() -> None:
        engine = _engine(
            tmp_path,
            TETHER_ENGINE_N_PARALLEL="1",
            TETHER_ENGINE_N_CTX="256",
            TETHER_ENGINE_MAX_QUEUE="0",
        )
        try:
            assert engine.info().n_ctx == 256 and engine.info().n_seq == 1
            with pytest.raises(ContextLengthError, match="maximum context length is 256 tokens"):
                await _text(engine.generate(_request("word " * 200, 100)))
            # A default max_tokens is lowered to what fits; the answer ends there.
            request = GenerationRequest(
                params=SamplingParams(max_tokens=1000, max_tokens_explicit=False, temperature=0),
                prompt="word " * 200,
            )
            _, last = await _text(engine.generate(request))
            assert last.finish_reason in ("stop", "length")
            assert (last.prompt_tokens or 0) + (last.completion_tokens or 0) <= 256
            busy = engine.generate(_request("Once upon a time", 200, temperature=0))
            await busy.__anext__()
            with pytest.raises(OverloadedError):
                await _text(engine.generate(_request("Hello", 4)))
            assert [s.busy for s in engine.sequences()] == [True]
            await busy.aclose()
            while engine.stats().in_flight:
                await asyncio.sleep(0.005)
            assert [s.busy for s in engine.sequences()] == [False]
        finally:
            await engine.close()

    asyncio.run(run())


def test_greedy_picks_what_llama_cpps_greedy_sampler_picks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Greedy decoding takes the argmax of the logits itself; the bytes are llama.cpp's."""
    prompts = ["def fibonacci(n):\n", "The capital of France", "SELECT * FROM", "# Notes\n\n-"]

    async def answers(engine: LlamaCppEngine) -> list[str]:
        return [(await _text(engine.generate(_request(p, 48, temperature=0))))[0] for p in prompts]

    async def run() -> tuple[list[str], list[str]]:
        engine = _engine(tmp_path)
        try:
            ours = await answers(engine)
            llama = engine._scheduler._llama

            def c_greedy(self: Scheduler, params: SamplingParams, grammar: object = None) -> object:
                chain = llama.llama_sampler_chain_init(llama.llama_sampler_chain_default_params())
                llama.llama_sampler_chain_add(chain, llama.llama_sampler_init_greedy())
                return chain

            monkeypatch.setattr(Scheduler, "_sampler", c_greedy)
            return ours, await answers(engine)
        finally:
            await engine.close()

    ours, theirs = asyncio.run(run())
    assert all(ours) and ours == theirs


def test_more_sequences_than_batch_tokens_all_answer(tmp_path: Path) -> None:
    async def run() -> list[str]:
        engine = _engine(
            tmp_path, TETHER_ENGINE_N_PARALLEL="20", TETHER_ENGINE_N_BATCH="16",
            TETHER_ENGINE_N_CTX="256",
        )  # fmt: skip
        try:
            requests = [_request(f"Item {i}:", 6, temperature=0) for i in range(20)]
            answers = await asyncio.gather(*(_text(engine.generate(r)) for r in requests))
            return [text for text, _ in answers]
        finally:
            await engine.close()

    answers = asyncio.run(run())
    assert len(answers) == 20 and all(answers)


def test_a_fault_in_a_step_fails_its_requests_and_the_engine_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def run() -> str:
        engine = _engine(tmp_path, TETHER_ENGINE_N_PARALLEL="2")
        try:
            sample = Scheduler._next_token

            def broken(self: Scheduler, running: object) -> None:
                monkeypatch.setattr(Scheduler, "_next_token", sample)  # once
                raise RuntimeError("injected")

            monkeypatch.setattr(Scheduler, "_next_token", broken)
            with pytest.raises(EngineUnavailableError, match="injected"):
                await _text(engine.generate(_request("Hello", 8, temperature=0)))
            text, _ = await _text(engine.generate(_request("Hello", 8, temperature=0)))
            return text
        finally:
            await engine.close()

    assert asyncio.run(run())


def test_a_fault_after_a_request_ended_in_the_same_step_hands_its_sequence_back_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two requests join in one step: the first ends there (it only reads its prompt),
    then the second's token fails. The first keeps its answer, the second gets the error,
    and each sequence goes back once."""

    async def run() -> tuple[Any, int, list[bool]]:
        engine = _engine(tmp_path, TETHER_ENGINE_N_PARALLEL="2")
        scheduler = engine._scheduler
        try:
            sample = Scheduler._next_token

            def broken(self: Scheduler, running: Any) -> None:
                if running.job.params.max_tokens > 0:
                    raise RuntimeError("injected")
                sample(self, running)

            monkeypatch.setattr(Scheduler, "_next_token", broken)
            read_only = engine.generate(_request("Hello there", 0, temperature=0))
            failing = engine.generate(_request("Hello again", 8, temperature=0))
            with scheduler._wake:  # the scheduler takes both in one step
                both = asyncio.gather(_text(read_only), _text(failing), return_exceptions=True)
                await asyncio.sleep(0.05)
            outcomes = await asyncio.wait_for(both, 30)
            monkeypatch.setattr(Scheduler, "_next_token", sample)
            return outcomes, engine.stats().in_flight, [s.busy for s in engine.sequences()]
        finally:
            await engine.close()

    (read, failed), in_flight, busy = asyncio.run(run())
    assert isinstance(read, tuple) and read[1].finish_reason == "length"
    assert isinstance(failed, EngineUnavailableError) and "injected" in str(failed)
    assert in_flight == 0 and busy == [False, False]  # once each: not -1, not stuck


def test_a_first_token_reaches_its_caller_before_the_next_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first text is the time to first token: it is not held for the next step, and
    the next step waits until the caller has it, so that its event loop does not wait
    for a core behind llama.cpp's compute threads."""
    monkeypatch.setattr(scheduler_module, "HANDOVER_WAIT_S", 60.0)  # no slow machine times out
    at_step: list[tuple[int, int]] = []  # (calls in the outbox, chunks the caller has)
    received: list[GenerationChunk] = []

    async def run() -> None:
        engine = _engine(tmp_path, TETHER_ENGINE_N_PARALLEL="1")
        scheduler = engine._scheduler
        step = scheduler._step
        loop = asyncio.get_running_loop()

        def watched_step() -> None:
            at_step.append((sum(len(c) for c in scheduler._outbox.values()), len(received)))
            if len(at_step) == 1:  # the caller's loop is busy as the first text comes out
                loop.call_soon_threadsafe(time.sleep, 0.5)
            step()

        scheduler._step = watched_step  # type: ignore[method-assign]
        try:
            async for chunk in engine.generate(_request("def add(a, b):\n", 6, temperature=0)):
                if chunk.read_tokens is None:  # text, not word of how much of the prompt was read
                    received.append(chunk)
        finally:
            await engine.close()

    asyncio.run(run())
    assert received and received[0].text
    # Step 1 reads the prompt and samples the first token; step 2 begins with it delivered.
    assert len(at_step) >= 2 and at_step[1] == (0, 1), at_step


def test_a_first_token_waits_for_a_busy_event_loop_only_so_long(tmp_path: Path) -> None:
    """A caller whose event loop is busy elsewhere does not hold up decoding."""
    steps_by_then: list[int] = []

    async def run() -> str:
        engine = _engine(tmp_path, TETHER_ENGINE_N_PARALLEL="1")
        scheduler = engine._scheduler
        submit = scheduler.submit

        def submit_then_busy(job: object) -> None:
            submit(job)  # type: ignore[arg-type]
            # This loop cannot take the first text meanwhile; on a loaded machine the steps
            # take longer, so it waits for them (or gives up) rather than for a fixed time.
            deadline = time.monotonic() + 60
            while scheduler.stats.steps < 3 and time.monotonic() < deadline:
                time.sleep(0.01)
            steps_by_then.append(scheduler.stats.steps)

        scheduler.submit = submit_then_busy  # type: ignore[method-assign]
        try:
            text, _ = await _text(engine.generate(_request("def add(a, b):\n", 8, temperature=0)))
            return text
        finally:
            await engine.close()

    assert asyncio.run(run())
    # The prompt's step, then the tokens after the first: decoded while the loop was busy.
    assert steps_by_then[0] >= 3, steps_by_then


def test_text_between_sends_goes_as_one_chunk_and_the_answer_is_the_same(tmp_path: Path) -> None:
    """With a stream interval, the first text goes at once and the tokens after it join
    into fewer chunks; with none, each token's text is its own chunk."""

    async def chunks(interval_ms: str) -> list[GenerationChunk]:
        engine = _engine(
            tmp_path, TETHER_ENGINE_N_PARALLEL="1", TETHER_ENGINE_STREAM_INTERVAL_MS=interval_ms
        )
        try:
            request = _request("def fibonacci(n):\n", 12, temperature=0)
            chunks = [chunk async for chunk in engine.generate(request)]
            return [chunk for chunk in chunks if chunk.read_tokens is None]
        finally:
            await engine.close()

    each_token = asyncio.run(chunks("0"))
    started = time.monotonic()
    joined = asyncio.run(chunks("1000"))
    seconds = time.monotonic() - started
    assert each_token[-1].completion_tokens == joined[-1].completion_tokens == 12
    assert "".join(c.text for c in joined) == "".join(c.text for c in each_token)
    assert len(each_token) >= 12  # the first text, one per later token, the end
    # The first text, then the rest together (once a second at most), then the end: three
    # chunks when the twelve tokens take under a second, as they do on an idle machine.
    assert joined[0].text == each_token[0].text and joined[0].prompt_tokens is not None
    assert 3 <= len(joined) <= 3 + int(seconds), (seconds, joined)
    assert joined[-1].finish_reason == "length", joined


def test_each_sequence_reports_the_request_it_holds(tmp_path: Path) -> None:
    """What llama.cpp's /slots shows: the request on a sequence, how much of its prompt was
    found cached and read, and how far it has generated; nothing on a free sequence."""
    source = "import os\n\n\ndef walk(root):\n" + "    # list every file under root\n" * 20
    typed = _request(source + "    for", 500, temperature=0, seed=7)

    async def run() -> tuple[list[SequenceState], list[SequenceState], GenerationChunk, int]:
        engine = _engine(tmp_path, TETHER_ENGINE_N_PARALLEL="2")
        try:
            assert [s.busy for s in engine.sequences()] == [False, False]
            await _text(engine.generate(_request(source, 4, temperature=0)))
            stream = engine.generate(typed)
            first = await stream.__anext__()
            while first.read_tokens is not None:  # the prompt is read: then the first text
                first = await stream.__anext__()
            during = engine.sequences()
            await stream.aclose()
            while engine.stats().in_flight:
                await asyncio.sleep(0.005)
            return during, engine.sequences(), first, engine.count_tokens(typed.prompt or "")
        finally:
            await engine.close()

    during, after, first, prompt_tokens = asyncio.run(run())
    held, free = during
    assert held.busy and held.id == 0 and held.task == 1  # the second request, on the cache
    assert held.params == typed.params and not held.drafting
    assert held.prompt_tokens == prompt_tokens == first.prompt_tokens
    assert held.cached_tokens == first.cached_tokens and held.cached_tokens > 100
    assert held.cached_tokens + held.read_tokens == prompt_tokens  # read before a token
    assert 1 <= held.generated < 500
    assert free == SequenceState(id=1, n_ctx=2048, busy=False)
    assert after == [SequenceState(id=0, n_ctx=2048, busy=False), free]


def test_a_sequence_cache_saved_erased_and_restored_serves_the_same_answer(
    tmp_path: Path,
) -> None:
    """llama.cpp's slot save, erase and restore: a cache restored into another sequence is
    found by the next request with that prompt, which answers as before; a save waits for
    the request holding its sequence; a file that does not load leaves the sequence empty."""
    prompt = "def fibonacci(n):\n    " + "# the nth Fibonacci number\n    " * 8
    saved_at = tmp_path / "fib.bin"

    async def run() -> None:
        engine = _engine(tmp_path, TETHER_ENGINE_N_PARALLEL="2")
        try:
            first, last = await _text(engine.generate(_request(prompt, 8, temperature=0)))
            assert last.prompt_tokens and last.completion_tokens == 8
            saved = await engine.save_sequence(0, saved_at)  # the lowest free id took it
            assert saved.tokens == last.prompt_tokens + 7  # the last token is not decoded
            assert saved.bytes == saved_at.stat().st_size and saved_at.stat().st_mode & 0o077 == 0
            assert await engine.erase_sequence(0) == saved.tokens
            assert await engine.erase_sequence(0) == 0
            restored = await engine.restore_sequence(1, saved_at)
            assert (restored.tokens, restored.bytes) == (saved.tokens, saved.bytes)
            stream = engine.generate(_request(prompt, 8, temperature=0))
            head = await stream.__anext__()
            assert head.cached_tokens == last.prompt_tokens - 1  # all it can reuse
            again, _ = await _text(_chain(head, stream))
            assert again == first

            # Greedy, this prompt repeats its comment past 400 tokens: it never ends early.
            long = engine.generate(_request(prompt, 400, temperature=0))
            await long.__anext__()  # on sequence 1, whose cache it reuses
            saving = asyncio.ensure_future(engine.save_sequence(1, tmp_path / "later.bin"))
            for _ in range(11):  # at least a token each
                await long.__anext__()
            assert not saving.done()  # the request holds the sequence
            await long.aclose()
            assert (await saving).tokens >= last.prompt_tokens + 11  # 12 generated, 11 decoded

            (tmp_path / "junk.bin").write_bytes(b"not a sequence" * 100)
            with pytest.raises(RequestError, match="not a sequence saved by this model"):
                await engine.restore_sequence(1, tmp_path / "junk.bin")
            assert await engine.erase_sequence(1) == 0
            with pytest.raises(RequestError, match="sequences 0 to 1"):
                await engine.erase_sequence(2)
            assert engine.stats().in_flight == 0
        finally:
            await engine.close()

    asyncio.run(run())


async def _chain(
    head: GenerationChunk, rest: AsyncIterator[GenerationChunk]
) -> AsyncIterator[GenerationChunk]:
    yield head
    async for chunk in rest:
        yield chunk


def test_a_grammar_checked_a_token_at_a_time_keeps_the_answer_it_would_mask_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Greedy text in a grammar is the argmax where the grammar allows it: checking that
    one token gives the bytes masking the whole vocabulary each step gives, for less."""
    import json

    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "lines": {"type": "integer"}},
        "required": ["name", "lines"],
    }
    answer_format = json.dumps(
        {"type": "json_schema", "json_schema": {"name": "f", "schema": schema}}
    )
    prompts = ["A Python function as JSON:\n", "Describe the sort function in JSON.\n"]

    async def answers(engine: LlamaCppEngine) -> list[str]:
        return [
            (
                await _text(
                    engine.generate(_request(p, 48, temperature=0, response_format=answer_format))
                )
            )[0]
            for p in prompts
        ]

    async def run() -> tuple[list[str], list[str]]:
        engine = _engine(tmp_path)
        try:
            checked = await answers(engine)
            monkeypatch.setattr(Scheduler, "_allows", lambda self, grammar, token: False)
            return checked, await answers(engine)
        finally:
            await engine.close()

    checked, masked = asyncio.run(run())
    assert all(text.startswith("{") for text in checked) and checked == masked


def test_a_schema_parsed_as_the_engine_closes_is_refused_not_read_from_freed_memory(
    tmp_path: Path,
) -> None:
    """A request's grammar is parsed in a thread with the model's vocabulary: one still
    parsing as the server stopped would read the vocabulary after close freed it."""
    import json

    from tether.errors import ShuttingDownError

    answer_format = json.dumps({"type": "json_object"})
    engine = _engine(tmp_path)
    asyncio.run(engine.close())
    with pytest.raises(ShuttingDownError):
        engine._grammar(answer_format)


def test_a_grammars_answer_spells_a_control_tokens_text_with_text(tmp_path: Path) -> None:
    """llama.cpp's grammar reads a control token (``<filename>``) as its text, which the
    answer spells as nothing: a value kept to a pattern that begins with that text came
    out without it, the pattern broken."""
    import json
    import re

    pattern = r"^<filename>[a-z]+\.py$"
    items = {"type": "string", "pattern": pattern}
    schema = {"type": "array", "items": items, "minItems": 2, "maxItems": 3}
    answer_format = json.dumps(
        {"type": "json_schema", "json_schema": {"name": "f", "schema": schema}}
    )
    prompt = 'Files: ["<filename>a.py", "<filename>b.py", "<filename>c.py"]\n'
    prompt += "The same files again, as JSON: "

    async def run() -> list[tuple[str, GenerationChunk]]:
        engine = _engine(tmp_path)
        try:
            return [
                await _text(
                    engine.generate(_request(prompt, 48, response_format=answer_format, **p))
                )
                for p in ({"temperature": 0.0}, {"temperature": 1.0, "seed": 1})
            ]
        finally:
            await engine.close()

    for text, last in asyncio.run(run()):
        assert last.finish_reason == "stop", text
        files = json.loads(text)
        assert files and all(re.fullmatch(pattern, name) for name in files), text


def test_a_grammar_is_parsed_before_its_sequence_starts_and_cloned_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Parsing a large grammar took the scheduler's thread milliseconds, which every
    running stream waited on: the request's thread parses it and the sequence clones
    that. The answers, greedy and seeded, are the bytes of a grammar parsed afresh."""
    import json

    schema = {
        "type": "object",
        "properties": {"name": {"type": "string", "maxLength": 20}, "pure": {"type": "boolean"}},
        "required": ["name", "pure"],
    }
    answer_format = json.dumps(
        {"type": "json_schema", "json_schema": {"name": "f", "schema": schema}}
    )
    requests = [
        _request("A Python function as JSON:\n", 40, response_format=answer_format, **p)
        for p in ({"temperature": 0.0}, {"temperature": 0.9, "seed": 3})
    ]

    def not_here(*args: object) -> object:
        raise AssertionError("the scheduler's thread parsed a grammar")

    async def answers(engine: LlamaCppEngine) -> list[str]:
        return [(await _text(engine.generate(r)))[0] for r in requests]

    async def run() -> tuple[list[str], list[str]]:
        engine = _engine(tmp_path)
        try:
            walked_in: list[str] = []  # the threads that walked the vocabulary for a ban
            walk = engine._scheduler.find_unspelled

            def recorded() -> frozenset[int]:
                walked_in.append(threading.current_thread().name)
                return walk()

            with monkeypatch.context() as patched:
                patched.setattr(scheduler_module, "grammar_sampler", not_here)
                patched.setattr(engine._scheduler, "find_unspelled", recorded)
                cloned = await answers(engine)
            assert len(engine._grammars) == 1
            assert walked_in and "tether-llama" not in walked_in
            # Let go of while the requests waited: the sequence parses it itself.
            monkeypatch.setattr(engine._grammars, "clone", lambda grammar: None)
            return cloned, await answers(engine)
        finally:
            await engine.close()

    cloned, parsed = asyncio.run(run())
    assert all(text.startswith("{") for text in cloned) and cloned == parsed
