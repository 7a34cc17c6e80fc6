"""Marks the moments of each request a gateway serves, for ``bench/gateway_path.py``.

Python imports this module at start-up when its folder is on ``PYTHONPATH`` and
``BENCH_MARKS_FILE`` names where to write: it wraps the steps every request passes (the
HTTP parser, the ASGI app, the upstream's write and answer, the response's writes) and,
in tether, its own steps, and notes the time of each, relative to the moment the request
began. One request at a time: the bench sends them in turn.
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import time
from collections.abc import Callable
from typing import Any

_FILE = os.environ.get("BENCH_MARKS_FILE")
_DUMP_EVERY = 100
_marks: dict[str, float] = {}
_rows: list[dict[str, float]] = []


def _mark(name: str) -> None:
    if "begin" in _marks and name not in _marks:
        _marks[name] = time.perf_counter()


def _dump() -> None:
    if _FILE:
        with open(_FILE, "w", encoding="utf-8") as out:
            json.dump(_rows, out)


def _before(owner: Any, attribute: str, name: str) -> None:
    """Mark ``name`` as ``owner.attribute`` (sync or async) is called."""
    wrapped = getattr(owner, attribute)

    @functools.wraps(wrapped)
    def marking(*args: Any, **kwargs: Any) -> Any:
        _mark(name)
        return wrapped(*args, **kwargs)

    setattr(owner, attribute, marking)


def _after(owner: Any, attribute: str, name: str, *, awaited: bool = False) -> None:
    """Mark ``name`` as ``owner.attribute`` returns."""
    wrapped: Callable[..., Any] = getattr(owner, attribute)

    @functools.wraps(wrapped)
    def marking(*args: Any, **kwargs: Any) -> Any:
        result = wrapped(*args, **kwargs)
        _mark(name)
        return result

    @functools.wraps(wrapped)
    async def marking_awaited(*args: Any, **kwargs: Any) -> Any:
        result = await wrapped(*args, **kwargs)
        _mark(name)
        return result

    setattr(owner, attribute, marking_awaited if awaited else marking)


def _begins(protocol: type) -> None:
    wrapped = protocol.__dict__.get("on_message_begin")
    if wrapped is None:
        return

    def beginning(self: Any) -> None:
        _marks.setdefault("begin", time.perf_counter())
        wrapped(self)

    protocol.on_message_begin = beginning  # type: ignore[attr-defined]


def _install() -> None:
    import aiohttp.client_proto
    import aiohttp.http_writer
    import uvicorn.protocols.http.httptools_impl as httptools_impl

    _begins(httptools_impl.HttpToolsProtocol)
    _before(httptools_impl.RequestResponseCycle, "run_asgi", "asgi")
    for write in ("_write", "_writelines"):
        _before(aiohttp.http_writer.StreamWriter, write, "upstream_written")
    answered = aiohttp.client_proto.ResponseHandler.data_received

    def data_received(self: Any, data: bytes) -> None:
        if "upstream_written" in _marks:
            _mark("upstream_answered")
        answered(self, data)

    aiohttp.client_proto.ResponseHandler.data_received = data_received  # type: ignore[method-assign]
    send: Callable[..., Any] = httptools_impl.RequestResponseCycle.send

    async def sending(self: Any, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            _mark("response_start")
        await send(self, message)
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            _mark("sent")
            if "upstream_answered" in _marks:
                begin = _marks["begin"]
                _rows.append({k: (v - begin) * 1000 for k, v in _marks.items()})
                if len(_rows) % _DUMP_EVERY == 0:
                    _dump()
            _marks.clear()

    httptools_impl.RequestResponseCycle.send = sending  # type: ignore[method-assign,assignment]
    try:
        import tether.server.http_protocol
    except ImportError:  # the floor
        return
    import fastapi.routing

    import tether.default_plugins.compliance as compliance
    import tether.pipeline.recording as recording
    import tether.pipeline.service as service
    import tether.server.auth as auth
    import tether.server.routing as routing

    _begins(tether.server.http_protocol.BoundedHttpToolsProtocol)
    _before(routing.ApiRoute, "handle", "routed")
    _after(auth.TokenCheck, "__call__", "authenticated", awaited=True)
    _before(fastapi.routing, "run_endpoint_function", "validated")
    _after(service.Pipeline, "prepare", "prepared")
    _before(compliance.CompliancePlugin, "check_completion", "checking")
    _after(compliance.CompliancePlugin, "check_completion", "checked")
    _after(recording.TraceRecorder, "record", "recorded")


if _FILE:
    _install()
    atexit.register(_dump)
