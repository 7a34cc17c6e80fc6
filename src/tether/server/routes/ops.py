"""Operations: liveness, readiness (and llama.cpp's ``/health``) and Prometheus metrics, no
token needed."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.routing import BaseRoute, Match, NoMatchFound
from starlette.types import Receive, Scope, Send

from tether.errors import EngineUnavailableError
from tether.server.errors import _leaf_routes, error_response
from tether.server.openapi import errors
from tether.server.routing import ApiRoute
from tether.server.serving import state_of

router = APIRouter(route_class=ApiRoute, tags=["operations"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "alive"}


class ServerOptions(BaseRoute):
    """``OPTIONS *``: HTTP's question to the server as a whole (RFC 9110, 9.3.7), which
    proxies ask as a health check (HAProxy's ``option httpchk OPTIONS *``, Apache's
    ``hcmethod=OPTIONS *``) and take a 2xx for alive: 200, no body, and in ``Allow`` the
    methods the server serves, with no token, as ``/healthz``. It was a 404 for "/*"."""

    path = "*"  # as the access log and metrics name it

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        asked = scope["type"] == "http" and scope["path"] == "*" and scope["method"] == "OPTIONS"
        return (Match.FULL, {"route": self}) if asked else (Match.NONE, {})

    def url_path_for(self, name: str, /, **path_params: Any) -> Any:
        raise NoMatchFound(name, path_params)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        methods = {"OPTIONS"}
        for route in _leaf_routes(scope["app"].router.routes):
            methods |= getattr(route, "methods", None) or set()
        await Response(headers={"Allow": ", ".join(sorted(methods))})(scope, receive, send)


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    ready, body = await readiness(request)
    if ready:
        return JSONResponse(body)
    # As every other 503 says: a client (or a load balancer) waiting on it asks again then.
    return JSONResponse(body, status_code=503, headers={"Retry-After": "1"})


@router.get("/health", responses=errors(503))
@router.get("/v1/health", responses=errors(503))
async def health(request: Request) -> JSONResponse:
    """llama.cpp server's check, which its clients and launch scripts wait on:
    ``{"status": "ok"}`` once ready, else 503 in the error shape (``/readyz`` says why)."""
    ready, body = await readiness(request)
    return JSONResponse({"status": "ok"}) if ready else not_ready(body)


def not_ready(body: dict[str, str]) -> JSONResponse:
    """A 503 in the error shape that says why the server is not ready (``readiness``)."""
    why = body["reason"]
    return error_response(EngineUnavailableError(f"not ready: {why}; see /readyz", retry_after_s=1))


async def readiness(request: Request) -> tuple[bool, dict[str, str]]:
    state = state_of(request)
    info = state.pipeline.engine.info()
    ready = await state.pipeline.engine.health()
    body = {
        "status": "ready" if ready else "unavailable",
        "model": info.model_id,
        "engine": info.engine,
    }
    audit = getattr(request.app.state, "audit", None)
    if audit is not None and audit.problem:
        # Serving unaudited requests would break the log's promise: send traffic elsewhere.
        ready, body["status"], body["audit"] = False, "unavailable", audit.problem
    if not ready:  # said once here, for the 503s and for `tether doctor`
        body["reason"] = body.get("audit") or _unanswered(state.pipeline.engine, info.engine)
    return ready, body


def _unanswered(engine: object, name: str) -> str:
    """Why the engine is not ready: a gateway's says which upstreams are down, and why, by
    their place in its settings: this is told to anyone who asks, who must not learn the
    network behind the gateway from it."""
    said = f"the {name} engine is not answering"
    upstreams: list[dict[str, Any]] = getattr(engine, "upstream_status", list)()
    down = [
        f"upstream.base_urls[{i}]: {u['last_error'] or 'down'}"
        for i, u in enumerate(upstreams)
        if not u["healthy"]
    ]
    return f"{said} ({'; '.join(down)})" if down else said


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"description": "Prometheus text format", "content": {"text/plain": {}}}},
)
async def metrics(request: Request) -> Response:
    return Response(state_of(request).metrics.render(), media_type=CONTENT_TYPE_LATEST)
