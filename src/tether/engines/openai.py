"""The gateway engine: any OpenAI-compatible upstream (vLLM, Ollama, llama.cpp, tether).

Requests spread over the healthy upstreams (``upstream.balance``): each goes to the one
with the fewest requests in flight, except that requests whose prompts begin alike keep
going to the same upstream (rendezvous hashing of the prompt's head) while it is not
busier than the least busy by more than ``upstream.affinity_slack``, so an editor's
requests meet the KV cache that holds its file. A connection failure or 5xx before the
first byte fails over to the next, and an upstream that failed is tried again once its
health check passes, so tether recovers without a restart. Chunks are passed on as they
arrive, never buffered. The transport is aiohttp: on this path every fraction of a
millisecond is added to each request, and its C HTTP parser costs about half of httpx's.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import httpx

from tether import __version__
from tether.engines.base import EngineInfo, EngineStats, GenerationChunk, GenerationRequest
from tether.errors import ConfigError, EngineUnavailableError, RequestError
from tether.settings import EngineSettings, UpstreamSettings
from tether.sse import json_events


@dataclass
class Upstream:
    base_url: str
    healthy: bool = True
    checked_at: float = 0.0
    last_error: str = ""
    outstanding: int = 0  # requests sent to it and not finished


AFFINITY_CHARS = 512  # how much of a prompt's head decides where it goes


def _discover_model(urls: list[str], headers: dict[str, str], timeout: float) -> dict[str, Any]:
    errors = []
    for url in urls:
        try:
            response = httpx.get(f"{url}/models", headers=headers, timeout=timeout)
            response.raise_for_status()
            models = response.json().get("data") or []
            if models:
                return dict(models[0])
            errors.append(f"{url}: lists no models")
        except (httpx.HTTPError, ValueError) as exc:
            errors.append(f"{url}: {exc}")
    raise ConfigError(
        "cannot learn the model name from any upstream (" + "; ".join(errors) + "); "
        "start the upstream first or set upstream.model"
    )


class OpenAIEngine:
    name = "openai"

    def __init__(self, upstream: UpstreamSettings, engine: EngineSettings) -> None:
        self._settings = upstream
        self._upstreams = [Upstream(url.rstrip("/")) for url in upstream.base_urls]
        self._headers = {"Authorization": f"Bearer {upstream.api_key}"} if upstream.api_key else {}
        model: dict[str, Any] = {"id": upstream.model} if upstream.model else {}
        if not model:
            model = _discover_model(
                [u.base_url for u in self._upstreams], self._headers, upstream.connect_timeout_s
            )
        self._upstream_model = str(model["id"])
        self._info = EngineInfo(
            engine=self.name,
            engine_version=f"tether-gateway {__version__}",
            model_id=engine.model_id or self._upstream_model,
            n_ctx=int(model.get("max_model_len") or 0),
            accepts_messages=True,
        )
        self._session: aiohttp.ClientSession | None = None  # made in the event loop
        self._in_flight = 0

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                headers=self._headers,
                timeout=aiohttp.ClientTimeout(
                    total=None,
                    connect=self._settings.connect_timeout_s,
                    sock_read=self._settings.read_timeout_s,
                ),
                connector=aiohttp.TCPConnector(limit=256),
            )
        return self._session

    def info(self) -> EngineInfo:
        return self._info

    def count_tokens(self, text: str) -> int | None:
        return None

    def stats(self) -> EngineStats:
        return EngineStats(queue_depth=0, in_flight=self._in_flight)

    async def _check(self, upstream: Upstream) -> bool:
        timeout = aiohttp.ClientTimeout(total=self._settings.connect_timeout_s)
        try:
            async with self._client().get(
                f"{upstream.base_url}/models", timeout=timeout
            ) as response:
                upstream.healthy = response.status < 500
                upstream.last_error = "" if upstream.healthy else f"HTTP {response.status}"
        except (TimeoutError, aiohttp.ClientError) as exc:
            upstream.healthy, upstream.last_error = False, str(exc) or type(exc).__name__
        upstream.checked_at = time.monotonic()
        return upstream.healthy

    def upstream_status(self) -> list[dict[str, Any]]:
        """Each upstream as the last health check saw it (for the dashboard)."""
        return [
            {
                "url": u.base_url,
                "healthy": u.healthy,
                "in_flight": u.outstanding,
                "last_error": u.last_error,
            }
            for u in self._upstreams
        ]

    async def health(self) -> bool:
        """True when at least one upstream answers; checks at most once per interval."""
        now = time.monotonic()
        stale = [
            u
            for u in self._upstreams
            if now - u.checked_at >= self._settings.health_interval_s or not u.healthy
        ]
        if stale:
            await asyncio.gather(*(self._check(u) for u in stale))
        return any(u.healthy for u in self._upstreams)

    def _order(self, key: str) -> list[Upstream]:
        """Where to send a request whose prompt begins with ``key``: the first choice, then
        failover in order."""
        healthy = [u for u in self._upstreams if u.healthy]
        down = [u for u in self._upstreams if not u.healthy]
        if self._settings.balance == "in-order" or len(healthy) < 2:
            return healthy + down
        least = min(u.outstanding for u in healthy)
        ranked = sorted(healthy, key=lambda u: _weight(key, u.base_url), reverse=True)
        # The least busy upstream always qualifies, so there is a first choice.
        first = next(u for u in ranked if u.outstanding <= least + self._settings.affinity_slack)
        rest = sorted((u for u in healthy if u is not first), key=lambda u: u.outstanding)
        return [first, *rest, *down]

    def _body(self, request: GenerationRequest) -> tuple[str, dict[str, Any]]:
        params = request.params
        body: dict[str, Any] = {
            "model": self._upstream_model,
            "max_tokens": params.max_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "seed": params.seed,
            "stream": request.stream,
        }
        if request.stream:  # vLLM refuses stream_options on a plain request
            body["stream_options"] = {"include_usage": True}
        if params.stop:
            body["stop"] = list(params.stop)
        if request.messages is not None:
            return "/chat/completions", {**body, "messages": request.messages}
        return "/completions", {**body, "prompt": request.prompt}

    async def _post(self, url: str, body: dict[str, Any]) -> aiohttp.ClientResponse:
        """POST, once more on a fresh connection when a pooled one turns out to have been
        closed by the upstream meanwhile (its keep-alive ran out): that says nothing about
        the upstream's health."""
        try:
            return await self._client().post(url, json=body)
        except aiohttp.ServerDisconnectedError:
            return await self._client().post(url, json=body)

    async def _open(
        self, path: str, body: dict[str, Any], key: str
    ) -> tuple[Upstream, aiohttp.ClientResponse]:
        """The first upstream that takes the request, counted as outstanding, and its
        response; the caller un-counts it when done."""
        failures = []
        for upstream in self._order(key):
            upstream.outstanding += 1
            try:
                response = await self._post(upstream.base_url + path, body)
            except (TimeoutError, aiohttp.ClientError) as exc:
                upstream.outstanding -= 1
                upstream.healthy, upstream.last_error = False, str(exc) or type(exc).__name__
                failures.append(f"{upstream.base_url}: {upstream.last_error}")
                continue
            except BaseException:
                upstream.outstanding -= 1
                raise
            if response.status >= 500:
                upstream.outstanding -= 1
                response.release()
                upstream.healthy, upstream.last_error = False, f"HTTP {response.status}"
                failures.append(f"{upstream.base_url}: HTTP {response.status}")
                continue
            if response.status >= 400:
                upstream.outstanding -= 1
                message = await _message(response)
                raise RequestError(f"the upstream refused the request: {message}")
            return upstream, response
        raise EngineUnavailableError(
            "no upstream is answering (" + "; ".join(failures) + "); retry later, the "
            "upstreams are checked again on every request"
        )

    async def generate(self, request: GenerationRequest) -> AsyncGenerator[GenerationChunk, None]:
        path, body = self._body(request)
        self._in_flight += 1
        try:
            upstream, response = await self._open(path, body, _affinity_key(request))
            try:
                if request.stream:
                    async for chunk in self._relay(response):
                        yield chunk
                else:
                    yield await self._whole(response)
            finally:
                upstream.outstanding -= 1
                response.close()  # early exit: drop the connection so the upstream stops
        finally:
            self._in_flight -= 1

    async def _relay(self, response: aiohttp.ClientResponse) -> AsyncIterator[GenerationChunk]:
        """Pass an upstream event stream on, chunk by chunk, as it arrives."""
        held: GenerationChunk | None = None  # the finishing chunk waits for the usage event
        pieces = 0  # fallback count for upstreams that send no usage (one token per chunk)
        try:
            async for event in json_events(response.content):
                if "error" in event:
                    raise EngineUnavailableError(f"the upstream failed: {event['error']}")
                if event.get("usage") and held is not None:
                    held.prompt_tokens = event["usage"].get("prompt_tokens")
                    held.completion_tokens = event["usage"].get("completion_tokens")
                    held.cached_tokens = _cached_tokens(event["usage"])
                for choice in event.get("choices") or []:
                    text = _text_of(choice, "delta")
                    finish = choice.get("finish_reason")
                    if finish is not None:
                        held = GenerationChunk(text=text, finish_reason=finish)
                    elif text:
                        pieces += 1
                        yield GenerationChunk(text=text)
        except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
            raise EngineUnavailableError(f"the upstream stream broke: {exc!r}") from exc
        held = held or GenerationChunk(text="", finish_reason="stop")
        if held.completion_tokens is None:
            held.completion_tokens = pieces + (1 if held.text else 0)
        yield held

    async def _whole(self, response: aiohttp.ClientResponse) -> GenerationChunk:
        """One answer from a plain (non-streaming) upstream response."""
        try:
            answer = json.loads(await response.read())
        except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
            raise EngineUnavailableError(f"the upstream answer broke off: {exc}") from exc
        choice = (answer.get("choices") or [{}])[0]
        usage = answer.get("usage") or {}
        return GenerationChunk(
            text=_text_of(choice, "message"),
            finish_reason=choice.get("finish_reason") or "stop",
            prompt_tokens=usage.get("prompt_tokens"),
            completion_tokens=usage.get("completion_tokens"),
            cached_tokens=_cached_tokens(usage),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def _affinity_key(request: GenerationRequest) -> str:
    """The head of what the model reads: alike for an editor's requests on one file and
    for the turns of one conversation."""
    if request.messages is not None:
        text = "\n".join(str(m.get("content") or "") for m in request.messages)
    else:
        text = request.prompt or ""
    # Cut at a power of two, so a prompt that grows at its end (typing) keeps its key.
    return text[: 1 << (min(len(text), AFFINITY_CHARS).bit_length() - 1)] if text else ""


def _weight(key: str, url: str) -> int:
    """Rendezvous hashing: each key ranks the upstreams its own way, the same every time,
    and losing one upstream moves only the keys it ranked first."""
    digest = hashlib.blake2b(f"{url}\0{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def _text_of(choice: dict[str, Any], chat_key: str) -> str:
    """Text of a completions choice, or content of a chat ``message`` / ``delta``."""
    text = choice.get("text")
    if text is None:
        text = (choice.get(chat_key) or {}).get("content")
    return str(text or "")


async def _message(response: aiohttp.ClientResponse) -> str:
    body = await response.read()
    response.release()
    try:
        error = json.loads(body).get("error")
        return str(error.get("message") if isinstance(error, dict) else error)
    except (ValueError, AttributeError):
        return body[:500].decode("utf-8", "replace")


def _cached_tokens(usage: dict[str, Any]) -> int | None:
    """OpenAI's ``prompt_tokens_details.cached_tokens``, which vLLM sends too."""
    details = usage.get("prompt_tokens_details") or {}
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    return cached if isinstance(cached, int) else None
