"""Turn a pipeline ``Task`` into an HTTP answer: JSON, or server-sent events.

Errors that happen before the first token (queue full, prompt too long) become real
HTTP statuses because the stream is primed before the response starts. A client that
goes away cancels generation: streams through Starlette's disconnect handling, plain
requests through a watcher on the ASGI receive channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from tether.engines.base import GenerationChunk
from tether.errors import CancelledGeneration, PolicyBlockedError
from tether.pipeline import Completion, Pipeline, Prepared, Task
from tether.server.errors import sse_error
from tether.server.metrics import Metrics
from tether.settings import Settings

T = TypeVar("T")


@dataclass
class ServerState:
    settings: Settings
    pipeline: Pipeline
    metrics: Metrics


def state_of(request: Request) -> ServerState:
    state: ServerState = request.app.state.tether
    return state


class Formatter(Protocol):
    """How one API family shapes answers."""

    sends_done: bool

    def final(self, prepared: Prepared, completion: Completion) -> dict[str, Any]: ...

    def events(
        self, prepared: Prepared, chunk: GenerationChunk, first: bool, include_usage: bool
    ) -> list[dict[str, Any]]: ...


def _sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


async def _until_disconnect(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def cancel_on_disconnect(request: Request, work: Awaitable[T]) -> T:
    job = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_until_disconnect(request))
    try:
        await asyncio.wait({job, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if not job.done():
        job.cancel()
        with contextlib.suppress(asyncio.CancelledError, CancelledGeneration):
            await job
        raise CancelledGeneration("the client closed the connection; generation stopped")
    return job.result()


async def serve_task(
    request: Request,
    task: Task,
    formatter: Formatter,
    *,
    stream: bool,
    include_usage: bool = False,
    on_prepared: Callable[[Prepared], None] | None = None,
) -> Response:
    state = state_of(request)
    route = request.scope["route"].path
    started = time.perf_counter()
    try:
        prepared = state.pipeline.prepare(
            task,
            stream=stream,
            principal=getattr(request.state, "principal", None),
            endpoint=route,
        )
    except PolicyBlockedError as exc:
        request.state.policy_findings = exc.findings  # for the audit record of the refusal
        raise
    request.state.request_id = prepared.id
    if on_prepared is not None:
        on_prepared(prepared)
    chunks = state.metrics.observe(route, started, state.pipeline.stream(prepared))
    if not stream:
        completion = await cancel_on_disconnect(request, state.pipeline.collect(prepared, chunks))
        return JSONResponse(formatter.final(prepared, completion))

    try:
        first = await anext(chunks)
    except StopAsyncIteration:
        first = GenerationChunk(text="", finish_reason="stop")

    async def events() -> AsyncIterator[bytes]:
        try:
            for payload in formatter.events(prepared, first, True, include_usage):
                yield _sse(payload)
            async for chunk in chunks:
                for payload in formatter.events(prepared, chunk, False, include_usage):
                    yield _sse(payload)
        except Exception as exc:  # the status line is gone; report inside the stream
            yield sse_error(exc)
        finally:
            await chunks.aclose()
        if formatter.sends_done:
            yield b"data: [DONE]\n\n"

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
