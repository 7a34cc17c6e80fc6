"""The least a Python gateway can do: a floor to read tether's gateway overhead against.

Run as ``python -m bench.bare_proxy PORT UPSTREAM`` (UPSTREAM ending in ``/v1``). A
measuring instrument for ``gateway_overhead.py``, not a gateway: it serves
``/v1/completions`` only, on the same server stack as tether (uvicorn with httptools and
uvloop, a Starlette route, aiohttp to the upstream), and does only what every gateway must:
it reads a plain request, sends it on as it came (plainly, as tether sends it: an
upstream's stream would cost both) and answers with the upstream's body. No
authentication, governance, audit, traces, usage, metrics or access log.
"""

from __future__ import annotations

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
        if body.get("stream"):
            return JSONResponse({"error": "the floor answers plain requests only"}, 400)
        async with self.session.post(f"{self.upstream}/completions", json=body) as response:
            return JSONResponse(await response.json(), status_code=response.status)


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
