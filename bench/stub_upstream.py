"""An instant OpenAI-compatible upstream: answers at once, so timing it measures the gateway.

Run as ``python -m bench.stub_upstream PORT``. A measuring instrument for
``gateway_overhead.py``, not a model: every completion is the same short text.
"""

from __future__ import annotations

import sys

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
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


async def completions(request: Request) -> JSONResponse:
    await request.json()
    return JSONResponse(ANSWER)


app = Starlette(
    routes=[
        Route("/v1/models", models),
        Route("/v1/completions", completions, methods=["POST"]),
    ]
)

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
