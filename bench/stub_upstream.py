"""An instant OpenAI-compatible upstream: answers at once, so timing it measures the gateway.

Run as ``python -m bench.stub_upstream PORT [DELAY_MS [TOKEN_GAP_MS]]``. A measuring
instrument for ``gateway_overhead.py``, not a model: every completion is the same short
text, as one JSON answer or, when asked to stream, as events (a piece per token, then the
finish and usage). ``DELAY_MS`` has each completion wait that long first, as a model's
work would: a gateway that sleeps through it wakes with its caches cold, which an instant
answer never shows. A streamed chat completion is a longer answer, code, a word an event
(``max_tokens`` of them), ``TOKEN_GAP_MS`` apart, as a model decodes
(``gateway_stream_cpu.py``).
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
GAP_S = float(sys.argv[3]) / 1000 if __name__ == "__main__" and len(sys.argv) > 3 else 0.0
# Code without a secret, as a model writes it: the words the gateway's checks read.
CODE = (
    "def total(items, rate):\n"
    '    """The sum of the items\' prices, with tax at rate."""\n'
    "    subtotal = sum(item.price * item.count for item in items)\n"
    "    return round(subtotal * (1 + rate), 2)\n\n\n"
)
WORDS = CODE.replace("\n", "\n ").split(" ")


async def chat_events(pieces: int) -> AsyncIterator[str]:
    header = {"id": "chatcmpl-stub", "object": "chat.completion.chunk", "created": 0}
    header["model"] = "stub"

    def event(delta: dict[str, str], finish: str | None = None) -> str:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return f"data: {json.dumps({**header, 'choices': [choice]})}\n\n"

    yield event({"role": "assistant", "content": ""})
    for index in range(pieces):
        if GAP_S:
            await asyncio.sleep(GAP_S)
        word = WORDS[index % len(WORDS)]
        yield event({"content": word if word.endswith("\n") else word + " "})
    yield event({}, "length")
    usage = {"prompt_tokens": 9, "completion_tokens": pieces, "total_tokens": pieces + 9}
    yield f"data: {json.dumps({**header, 'choices': [], 'usage': usage})}\n\n"
    yield "data: [DONE]\n\n"


async def chat(request: Request) -> Response:
    asked = await request.json()
    if not asked.get("stream"):
        return JSONResponse({"error": {"message": "this stub streams chat only"}}, 400)
    pieces = int(asked.get("max_tokens") or 256)
    return StreamingResponse(chat_events(pieces), media_type="text/event-stream")


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
        Route("/v1/chat/completions", chat, methods=["POST"]),
    ]
)

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
