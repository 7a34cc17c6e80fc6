"""The least a Python gateway can do: a floor to read tether's gateway overhead against.

Run as ``python -m bench.bare_proxy PORT UPSTREAM`` (UPSTREAM ending in ``/v1``). A
measuring instrument for ``gateway_overhead.py``, not a gateway: it serves
``/v1/completions`` only, on the same server stack as tether (uvicorn with httptools and
uvloop, a Starlette route, aiohttp to the upstream), and does only what every gateway must:
it reads the request, sends it on as it came (a plain request plainly, as tether sends it,
whose upstream's stream would cost both) and answers with the upstream's body. A streamed
request is read as events, its text joined into one body: this floor is for plain
requests. No authentication, governance, audit, traces, usage, metrics or access log.
"""

from __future__ import annotations

import json
import sys

import aiohttp
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


class BareProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.session: aiohttp.ClientSession | None = None

    async def completions(self, request: Request) -> JSONResponse:
        if self.session is None:  # made on the server's loop
            self.session = aiohttp.ClientSession()
        body = await request.json()
        text: list[str] = []
        usage = None
        async with self.session.post(f"{self.upstream}/completions", json=body) as response:
            if not body.get("stream"):
                return JSONResponse(await response.json(), status_code=response.status)
            async for line in response.content:
                if not line.startswith(b"data: {"):
                    continue
                event = json.loads(line[6:])
                text.extend(choice.get("text") or "" for choice in event.get("choices", ()))
                usage = event.get("usage") or usage
        return JSONResponse(
            {
                "object": "text_completion",
                "model": body.get("model"),
                "choices": [{"index": 0, "text": "".join(text), "finish_reason": "length"}],
                "usage": usage,
            }
        )


async def health(_: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


def main() -> None:
    port, upstream = int(sys.argv[1]), sys.argv[2].rstrip("/")
    proxy = BareProxy(upstream)
    app = Starlette(
        routes=[
            Route("/health", health),
            Route("/v1/completions", proxy.completions, methods=["POST"]),
        ]
    )
    uvicorn.run(
        app, host="127.0.0.1", port=port, log_level="warning", loop="uvloop", http="httptools"
    )


if __name__ == "__main__":
    main()
