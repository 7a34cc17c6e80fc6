"""Where CLI commands send their work: the embedded pipeline, or a running server.

Both return the same ``Completion``, so a command does not care which one it has.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

import httpx

from tether.engines.base import GenerationChunk
from tether.errors import AuthError, EngineUnavailableError, RequestError, TetherError
from tether.pipeline import Completion, Pipeline, Task
from tether.server.runtime import default_runtime_dir, find_runtime_record
from tether.settings import Settings

OnText = Callable[[str], None]


class Backend(Protocol):
    async def run(self, task: Task, on_text: OnText | None = None) -> Completion: ...

    async def close(self) -> None: ...


class InProcessBackend:
    def __init__(self, settings: Settings) -> None:
        from tether.engines.registry import build_engine
        from tether.pipeline.recording import TraceRecorder
        from tether.traces import TraceStore

        self.engine = build_engine(settings)
        self.pipeline = Pipeline(self.engine, settings)
        # Suggestions made on the command line can be explained later, like the server's.
        self.traces = TraceStore.from_settings(settings)
        self.tracer = TraceRecorder(self.traces, self.engine.info(), self.pipeline.templates)
        self.pipeline.recorders.append(self.tracer)

    async def run(self, task: Task, on_text: OnText | None = None) -> Completion:
        prepared = self.pipeline.prepare(task)

        async def chunks() -> AsyncIterator[GenerationChunk]:
            async for chunk in self.pipeline.stream(prepared):
                if on_text is not None and chunk.text:
                    on_text(chunk.text)
                yield chunk

        return await self.pipeline.collect(prepared, chunks())

    async def close(self) -> None:
        self.tracer.close()
        self.traces.close()
        await self.engine.close()


def resolve_token(settings: Settings, url: str, token: str | None) -> str:
    if token:
        return token
    record = find_runtime_record(settings.server.runtime_dir or default_runtime_dir(), url)
    if record is not None:
        return record.token
    if settings.server.token:
        return settings.server.token
    raise AuthError(
        f"no token for {url}: no runtime file of a server at that address; pass --token "
        "or set TETHER_TOKEN"
    )


def _raise_for_error(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    try:
        message = response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = response.text[:500]
    if response.status_code in (401, 403):
        raise AuthError(f"the server refused the token: {message}")
    if response.status_code >= 500:
        raise EngineUnavailableError(f"the server failed ({response.status_code}): {message}")
    raise RequestError(f"the server refused the request ({response.status_code}): {message}")


def _body_for(task: Task) -> tuple[str, dict[str, Any]]:
    params = task.params
    body: dict[str, Any] = {
        "temperature": params.temperature,
        "top_p": params.top_p,
        "seed": params.seed,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if params.max_tokens_explicit:
        body["max_tokens"] = params.max_tokens
    if params.stop:
        body["stop"] = list(params.stop)
    if task.kind == "chat":
        return "/v1/chat/completions", {**body, "messages": task.messages}
    if task.kind == "fim" and task.fim is not None:
        return "/v1/fim/completions", {**body, "prompt": task.fim.prefix, "suffix": task.fim.suffix}
    return "/v1/completions", {**body, "prompt": task.prompt}


class HttpBackend:
    def __init__(self, settings: Settings, url: str, token: str | None) -> None:
        self.url = url.rstrip("/")
        self.client = httpx.AsyncClient(
            base_url=self.url,
            headers={"Authorization": f"Bearer {resolve_token(settings, self.url, token)}"},
            timeout=httpx.Timeout(300.0, connect=5.0),
        )

    async def run(self, task: Task, on_text: OnText | None = None) -> Completion:
        path, body = _body_for(task)
        started = time.perf_counter()
        parts: list[str] = []
        meta: dict[str, Any] = {}
        last = GenerationChunk(text="")
        try:
            async with self.client.stream("POST", path, json=body) as response:
                if response.status_code >= 400:
                    await response.aread()
                    _raise_for_error(response)
                async for line in response.aiter_lines():
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    event = json.loads(line[6:])
                    if "error" in event:
                        raise RequestError(event["error"]["message"])
                    meta = event
                    if event.get("usage"):
                        last.prompt_tokens = event["usage"]["prompt_tokens"]
                        last.completion_tokens = event["usage"]["completion_tokens"]
                    for choice in event.get("choices", []):
                        text = choice.get("text") or (choice.get("delta") or {}).get("content")
                        if text:
                            parts.append(text)
                            if on_text is not None:
                                on_text(text)
                        if choice.get("finish_reason"):
                            last.finish_reason = choice["finish_reason"]
        except httpx.HTTPError as exc:
            raise EngineUnavailableError(
                f"cannot reach the server at {self.url}: {exc}; is `tether serve` running?"
            ) from exc
        return Completion(
            id=meta.get("id", ""),
            created=meta.get("created", 0),
            model=meta.get("model", ""),
            system_fingerprint=meta.get("system_fingerprint", ""),
            seed=task.params.seed,
            text="".join(parts),
            finish_reason=last.finish_reason or "stop",
            prompt_tokens=last.prompt_tokens or 0,
            completion_tokens=last.completion_tokens or 0,
            timings={"generate_s": time.perf_counter() - started},
        )

    async def get(self, path: str) -> Any:
        return await self.call("GET", path)

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        """One plain JSON request; None for an empty answer."""
        try:
            response = await self.client.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise EngineUnavailableError(f"cannot reach the server at {self.url}: {exc}") from exc
        _raise_for_error(response)
        return response.json() if response.content else None

    async def close(self) -> None:
        await self.client.aclose()


def open_backend(settings: Settings, server: str | None, token: str | None) -> Backend:
    if server:
        return HttpBackend(settings, server, token)
    return InProcessBackend(settings)


__all__ = ["Backend", "HttpBackend", "InProcessBackend", "TetherError", "open_backend"]
