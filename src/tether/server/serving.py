"""The one serving path of every generation endpoint: a task in, JSON or events out.

Errors that happen before the first token (queue full, prompt too long) become real
HTTP statuses because the stream is primed before the response starts; a stream whose
first token takes longer than ``server.stream_keepalive_s`` (waiting for a sequence, a
long prompt read, a slow upstream) starts with keepalive comments instead, and reports a
later error inside it. A client that goes away cancels generation: a watcher on the ASGI
receive channel cancels the stream (``EventStream``) or the plain request's work. A
server that shuts down ends what is left when its grace is over (``Drain``): a stream with
an error event, the rest with a 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from fastapi import Request
from fastapi.responses import JSONResponse, Response

from tether.engines.base import Tokenizer, too_many_characters
from tether.engines.grammar import json_grammar
from tether.errors import CancelledGeneration, ContextLengthError, PolicyBlockedError, RequestError
from tether.pipeline import AnswerChunk, Completion, Pipeline, Prepared, Task, collect
from tether.pipeline.governance import OFF_LOOP_CHARS, govern_texts, is_large
from tether.server.auth import token_store
from tether.server.draining import Drain
from tether.server.errors import sse_error, status_of
from tether.server.event_stream import EventStream, until_disconnect
from tether.server.metrics import Metrics
from tether.settings import Settings
from tether.tokens import Principal

T = TypeVar("T")
_DONE = b"data: [DONE]\n\n"
# A comment line, which SSE clients skip: bytes on the wire while an answer is held.
_KEEPALIVE = b": keepalive\n\n"


@dataclass
class ServerState:
    settings: Settings
    pipeline: Pipeline
    metrics: Metrics


def state_of(request: Request) -> ServerState:
    state: ServerState = request.app.state.tether
    return state


class AnswerFormat(Protocol):
    """How one API family shapes a whole answer."""

    def final(self, prepared: Prepared, completion: Completion) -> dict[str, Any]: ...


class StreamFormat(AnswerFormat, Protocol):
    """How one API family shapes an answer as server-sent events, too."""

    sends_done: bool  # whether the stream ends with ``data: [DONE]``

    def events(
        self, prepared: Prepared, chunk: AnswerChunk, first: bool, include_usage: bool
    ) -> list[dict[str, Any]]: ...

    def frame(self, payload: dict[str, Any]) -> bytes:
        """One of ``events`` as it goes on the wire."""
        ...

    def holding(self) -> bool:
        """Whether the answer is held back, none of it yet to send (while it may be a
        tool call)."""
        ...

    def failure(self, exc: BaseException) -> bytes:
        """The events that end a stream ``exc`` cut short, [DONE] apart."""
        ...


def _sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


class DataEvents:
    """Events as the chat and completions APIs and llama.cpp's server send them: a
    ``data:`` line each, and a failure one event with the error."""

    def frame(self, payload: dict[str, Any]) -> bytes:
        return _sse(payload)

    def failure(self, exc: BaseException) -> bytes:
        return sse_error(exc)

    def holding(self) -> bool:
        return False


def token_id_of(request: Request) -> str | None:
    """The id of the token a request came with; None before it was checked."""
    principal: Principal | None = getattr(request.state, "principal", None)
    return principal.token_id if principal is not None else None


def drain_of(request: Request) -> Drain:
    drain: Drain = request.app.state.drain
    return drain


async def cancel_on_disconnect(request: Request, work: Awaitable[T]) -> T:
    """``work``, awaited in this task; CancelledGeneration if the client goes away first
    (the cancellation reaches the engine, which frees the sequence, or the queue), and
    ShuttingDownError if the server's grace for shutting down runs out first."""
    drain = drain_of(request)
    task = asyncio.current_task()
    assert task is not None  # a request always runs in a task
    gone = False

    async def watch() -> None:
        nonlocal gone
        await until_disconnect(request.receive)
        gone = True
        task.cancel()

    watcher = asyncio.create_task(watch())
    try:
        with drain.covering(token_id_of(request)):
            try:
                return await work
            except asyncio.CancelledError:
                revoked = drain.was_revoked(task)  # known only while covered
                if not (gone or drain.expired or revoked):
                    raise
                task.uncancel()  # the cancellation was ours, and it is handled
                if gone:
                    raise CancelledGeneration(
                        "the client closed the connection; generation stopped"
                    ) from None
                raise (drain.revoked_error() if revoked else drain.error()) from None
    finally:
        # Cancelled before it can run again: a disconnect read later cannot reach here.
        watcher.cancel()


async def _prepare(request: Request, task: Task, *, stream: bool) -> tuple[Prepared, int]:
    """The prepared request, and its worst case in tokens: its prompt and ``max_tokens``."""
    pipeline = state_of(request).pipeline

    def prepare() -> tuple[Prepared, int]:
        prepared = _prepared(request, task, stream=stream)
        prompt = pipeline.prompt_tokens_bound(prepared.generation)
        return prepared, prompt + prepared.generation.params.max_tokens

    return await _off_loop(request, task, prepare)


def _prepared(request: Request, task: Task, *, stream: bool) -> Prepared:
    """``task`` prepared by the pipeline as this request's (its principal, route and id)."""
    prepared = state_of(request).pipeline.prepare(
        task,
        principal=getattr(request.state, "principal", None),
        endpoint=request.scope["route"].path,
        request_id=request.state.request_id,
        stream=stream,
    )
    # The ledger's model for a request that fails before its answer names one.
    request.state.usage_model = prepared.model
    return prepared


async def _off_loop(request: Request, task: Task, work: Callable[[], T]) -> T:
    """``work`` (which prepares ``task``) in the pipeline's step, off the event loop for a
    large task; a blocked prompt's findings kept for the audit record of the refusal."""
    try:
        return await state_of(request).pipeline.run_step(work, large=is_large(task))
    except PolicyBlockedError as exc:
        request.state.policy_findings = exc.findings
        raise


def tokenizer_of(request: Request) -> Tokenizer:
    """The engine's own tokenizer, for a route that counts or spells tokens; a 400 saying
    so where the engine has none (a gateway: its upstream's is not at hand)."""
    engine = state_of(request).pipeline.engine
    if not isinstance(engine, Tokenizer):
        route = request.url.path  # /tokenize, /v1/responses/input_tokens, ...
        raise RequestError(
            f"the {engine.info().engine} engine has no tokenizer of its own: it serves an "
            f"upstream's model. Ask the upstream's {route}, or serve the embedded "
            "llamacpp engine"
        )
    return engine


async def prompt_tokens(request: Request, task: Task) -> int:
    """The tokens ``task``'s prompt takes, as the engine counts a request's: prepared as a
    request to generate is (the model checked, the policy applied, the store's snippets
    and the template added), counted by the engine's own tokenizer, nothing generated.
    A blocked prompt is refused as it would be; what the policy found goes into the
    request's audit record."""
    tokenizer = tokenizer_of(request)
    n_ctx = state_of(request).pipeline.engine.info().n_ctx

    if task.params.response_format is not None:  # refused as that request would be
        await asyncio.to_thread(json_grammar, task.params.response_format)

    def count() -> int:
        prepared = _prepared(request, task, stream=False)
        request.state.policy_findings = prepared.review.findings
        prompt = prepared.generation.shown_text()
        try:
            return len(tokenizer.token_ids(prompt, add_special=True, parse_special=True))
        except ContextLengthError:  # refused as the engine refuses such a prompt
            raise ContextLengthError(too_many_characters(len(prompt), n_ctx)) from None

    return await _off_loop(request, task, count)


async def governed_texts(request: Request, kind: str, parts: dict[str, str]) -> dict[str, str]:
    """``parts`` as the prompt policy leaves them, for a request that reads text without
    generating (``/v1/embeddings``, ``/tokenize``): a blocked value is refused, a redacted
    one is read as the model would see it, and the findings go into the request's audit
    record."""
    pipeline = state_of(request).pipeline
    principal: Principal | None = getattr(request.state, "principal", None)

    def govern() -> dict[str, str]:
        try:
            review = govern_texts(
                pipeline.plugins, kind, parts, principal.name if principal else None
            )
        except PolicyBlockedError as exc:
            request.state.policy_findings = exc.findings
            raise
        request.state.policy_findings = review.findings
        return review.parts

    return await pipeline.run_step(govern, large=sum(map(len, parts.values())) > OFF_LOOP_CHARS)


async def _held(
    request: Request, worst: int, chunks: AsyncGenerator[AnswerChunk, None]
) -> AsyncGenerator[AnswerChunk, None]:
    """``chunks``, with ``worst`` tokens held against the caller's token (its tpm and daily
    budget) until they end, fail or are closed: requests sent at once are each counted
    before they run, not all after, so together they pass a budget by one answer at most."""
    principal: Principal | None = getattr(request.state, "principal", None)
    async with contextlib.aclosing(chunks):
        if principal is None:
            async for chunk in chunks:
                yield chunk
            return
        release = token_store(request).hold(principal, worst)
        try:
            async for chunk in chunks:
                yield chunk
        finally:
            release()


def _observed(
    request: Request, prepared: Prepared, worst: int
) -> AsyncGenerator[AnswerChunk, None]:
    state = state_of(request)

    def note_usage(completion: Completion) -> None:  # for the access log and the ledger
        request.state.usage = (completion.prompt_tokens, completion.completion_tokens)
        request.state.completion = completion
        request.state.task_kind = prepared.task.kind
        fim = getattr(prepared.task, "fim", None)
        request.state.language = getattr(fim, "language", "") or None

    # A client gone before the end is charged for what was generated until then, too.
    chunks = _held(request, worst, state.pipeline.stream(prepared, on_unfinished=note_usage))
    return state.metrics.observe(prepared.endpoint, prepared.started, chunks, note_usage)


async def _kept_alive(
    chunks: AsyncIterator[AnswerChunk],
    holding: Callable[[], bool],
    every: float,
    step: asyncio.Future[AnswerChunk] | None = None,
) -> AsyncGenerator[AnswerChunk | None, None]:
    """``chunks``, and a None each ``every`` seconds with nothing sent while ``step`` (the
    first chunk, still awaited) is pending or they are held (``holding()``): a proxy or
    client with a read timeout would cut a stream silent while it waits for a sequence or
    a long call is written, however fast its tokens come. The next chunk is awaited in a
    task of its own only then, so that the wait can be left for a keepalive without
    cancelling the engine's step."""
    loop = asyncio.get_running_loop()
    due = loop.time() + every
    while step is not None or holding():
        if step is None:
            step = asyncio.ensure_future(anext(chunks))
        try:
            while not (await asyncio.wait((step,), timeout=max(due - loop.time(), 0)))[0]:
                due = loop.time() + every
                yield None
        finally:
            await _settled(step)
        try:
            chunk = step.result()
        except StopAsyncIteration:
            return
        step = None
        yield chunk
    async for chunk in chunks:
        yield chunk


async def _settled(step: asyncio.Future[Any]) -> None:
    """``step`` cancelled if it still runs (the stream was cut: the engine stops at its
    step) and waited for; its end or failure, had the stream been cut as it ended, is then
    nothing left to report: seen, not logged."""
    if not step.done():
        step.cancel()
        await asyncio.wait((step,))
    if not step.cancelled():
        step.exception()


async def answer_task(
    request: Request, task: Task, formatter: AnswerFormat, *, in_pieces: bool = False
) -> JSONResponse:
    """The whole answer at once, as JSON; ``in_pieces``: asked of the engine in pieces all
    the same, for an answer that reports when its first piece came (llama.cpp's timings),
    which an upstream's answer read whole cannot say."""
    prepared, worst = await _prepare(request, task, stream=in_pieces)
    chunks = _observed(request, prepared, worst)
    completion = await cancel_on_disconnect(request, collect(chunks))
    return JSONResponse(formatter.final(prepared, completion))


async def serve_task(
    request: Request,
    task: Task,
    formatter: StreamFormat,
    *,
    stream: bool,
    include_usage: bool = False,
    in_pieces: bool = False,
) -> Response:
    """As JSON, or as server-sent events when the client asked for a stream."""
    if not stream:
        return await answer_task(request, task, formatter, in_pieces=in_pieces)
    prepared, worst = await _prepare(request, task, stream=True)
    chunks = _observed(request, prepared, worst)
    state = state_of(request)
    every = state.settings.server.stream_keepalive_s
    # The pipeline always ends with a chunk that finishes. A client that leaves while its
    # request waits for a sequence or its prompt is read stops it there. An error before
    # the first chunk is a real HTTP status; one that comes after ``every`` seconds of
    # waiting, once the stream has begun with keepalives, is reported inside it.
    step = asyncio.ensure_future(anext(chunks))
    try:
        await cancel_on_disconnect(request, asyncio.wait((step,), timeout=every))
        first = step.result() if step.done() else None
    except BaseException:
        await _settled(step)
        await chunks.aclose()  # stop the engine now, not when the collector gets to it
        raise
    stream_errors = state.metrics.stream_errors.labels(prepared.endpoint)

    async def events() -> AsyncIterator[bytes]:
        pending = first is None  # nothing of the answer sent yet
        async with contextlib.aclosing(chunks):
            try:
                rest: AsyncGenerator[AnswerChunk | None, None] = chunks
                if first is None:  # still waited for: kept alive until it comes
                    rest = _kept_alive(chunks, formatter.holding, every, step)
                else:
                    for payload in formatter.events(prepared, first, True, include_usage):
                        yield formatter.frame(payload)
                    if formatter.holding():  # held from its start if at all
                        rest = _kept_alive(chunks, formatter.holding, every)
                async with contextlib.aclosing(rest):
                    async for chunk in rest:
                        if chunk is None:
                            yield _KEEPALIVE
                            continue
                        for payload in formatter.events(prepared, chunk, pending, include_usage):
                            yield formatter.frame(payload)
                        pending = False
            except Exception as exc:  # the status line is gone; report inside the stream
                stream_errors.inc()
                if pending:  # nothing answered: recorded with the status it would have had
                    request.state.failed_status = status_of(exc)
                yield formatter.failure(exc)
        if formatter.sends_done:
            yield _DONE

    done = _DONE if formatter.sends_done else b""
    return EventStream(
        events(),
        drain=drain_of(request),
        # Made when the stream is cut: a format may number its events.
        drained=lambda: formatter.failure(Drain.error()) + done,
        revoked=lambda: formatter.failure(Drain.revoked_error()) + done,
        token_id=token_id_of(request),
        on_cut=stream_errors.inc,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
