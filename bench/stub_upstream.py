"""An instant OpenAI-compatible upstream: answers at once, so timing it measures the gateway.

Run as ``python -m bench.stub_upstream PORT [DELAY_MS]``. A measuring instrument for
``gateway_overhead.py``, not a model: every completion is the same short text, as one JSON
answer or, when asked to stream, as events (a piece per token, then the finish and usage).
``DELAY_MS`` has each completion wait that long first, as a model's work would: a gateway
that sleeps through it wakes with its caches cold, which an instant answer never shows.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

ANSWER = {
    "id": "cmpl-stub",
    "object": "text_completion",
    "created": 0,
    "model": "stub",
    "choices": [{"index": 0, "text": " return n", "finish_reason": "length", "logprobs": None}],
    "usage": {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9},
}


async def models(_: Request) -> JSONResponse:
    return JSONResponse({"object": "list", "data": [{"id": "stub", "object": "model"}]})


async def events() -> AsyncIterator[str]:
    header = {key: ANSWER[key] for key in ("id", "object", "created", "model")}
    for piece in (" return", " n"):
        choice = {"index": 0, "text": piece, "finish_reason": None, "logprobs": None}
        yield f"data: {json.dumps({**header, 'choices': [choice]})}\n\n"
    finish = {"index": 0, "text": "", "finish_reason": "length", "logprobs": None}
    yield f"data: {json.dumps({**header, 'choices': [finish]})}\n\n"
    yield f"data: {json.dumps({**header, 'choices': [], 'usage': ANSWER['usage']})}\n\n"
    yield "data: [DONE]\n\n"


DELAY_S = float(sys.argv[2]) / 1000 if __name__ == "__main__" and len(sys.argv) > 2 else 0.0


async def completions(request: Request) -> Response:
    asked = await request.json()
    if DELAY_S:
        await asyncio.sleep(DELAY_S)
    if asked.get("stream"):
        return StreamingResponse(events(), media_type="text/event-stream")
    return JSONResponse(ANSWER)


app = Starlette(
    routes=[
        Route("/v1/models", models),
        Route("/v1/completions", completions, methods=["POST"]),
    ]
)

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
