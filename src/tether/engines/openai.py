"""The gateway engine: any OpenAI-compatible upstream (vLLM, Ollama, llama.cpp, tether).

Requests spread over the healthy upstreams (``upstream.balance``): each goes to the one
with the fewest requests in flight, except that requests whose prompts begin alike keep
going to the same upstream (rendezvous hashing of the prompt's head) while it is not
busier than the least busy by more than ``upstream.affinity_slack``, so an editor's
requests meet the KV cache that holds its file. A connection failure, a 5xx, a 429, a
refusal of tether's key, or an answer that is not one (an HTML page, a stream cut short)
before any of its text was passed on fails over to the next. An upstream that took a
request and failed it goes last in line while a completion of its own says whether it or
the request was at fault. An upstream that failed is checked in the background each
``upstream.health_interval_s`` until it answers, so it comes back by itself, and readiness
never waits on a hung one.
Chunks are passed on as they arrive, never buffered. The transport is aiohttp: on this
path every fraction of a millisecond is added to each request, and its C HTTP parser
costs about half of httpx's.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import math
import os
import re
import ssl
import statistics
import time
from collections import Counter, deque
from collections.abc import AsyncGenerator, AsyncIterator, Collection
from dataclasses import dataclass, field, replace
from typing import Any, Literal
from urllib.parse import urlsplit

import aiohttp
import httpx
import pydantic_core

from tether import __version__, direct
from tether.credentials import url_shown, without_credentials
from tether.engines.base import (
    EngineInfo,
    EngineStats,
    GenerationChunk,
    GenerationRequest,
    UpstreamOutcome,
    UpstreamStats,
)
from tether.errors import (
    ConfigError,
    ContextLengthError,
    EngineUnavailableError,
    OverloadedError,
    RequestError,
    UpstreamTimeoutError,
)
from tether.settings import EngineSettings, UpstreamSettings
from tether.sse import json_events


@dataclass
class Upstream:
    base_url: str
    healthy: bool = True
    heard_at: float = 0.0  # when it last answered a request or a health check
    last_error: str = ""
    outstanding: int = 0  # requests sent to it and not finished
    outcomes: Counter[UpstreamOutcome] = field(default_factory=Counter)
    timeouts_in_a_row: int = 0  # answers it began and left hanging, since its last answer
    hung: bool = False  # out of service for hanging: back once it answers a probe
    probe: asyncio.Task[str] | None = None  # the probe of a hung one, while it runs
    # It failed a request it took (a 5xx, a broken answer): last in line, still in service,
    # while a completion of its own tells whether the request or the upstream was at fault.
    suspect: bool = False
    trial: asyncio.Task[None] | None = None  # that completion, while it runs

    @property
    def name(self) -> str:
        return without_credentials(self.base_url)

    def stats(self) -> UpstreamStats:
        return UpstreamStats(self.name, self.healthy, self.outstanding, dict(self.outcomes))


def _answering(upstream: Upstream) -> None:
    """``upstream`` answers: heard from, and a slow answer before it was no hang. Counted
    at its first text, as an answer the pipeline stops early (a filled hole, a stop string
    it found) is not read to its end."""
    upstream.timeouts_in_a_row, upstream.hung = 0, False
    upstream.heard_at = time.monotonic()
    if upstream.probe is not None and upstream.probe.done():
        upstream.probe = None  # its verdict is of a hang now over, not of the next one


@dataclass
class _Attempt:
    """One sending of a request: whether it went on a pooled connection."""

    pooled: bool = False


async def _note_pooled(
    session: aiohttp.ClientSession, context: Any, params: aiohttp.TraceConnectionReuseconnParams
) -> None:
    if isinstance(context.trace_request_ctx, _Attempt):
        context.trace_request_ctx.pooled = True


_POOLED = aiohttp.TraceConfig()
_POOLED.on_connection_reuseconn.append(_note_pooled)
_POOLED.freeze()

log = logging.getLogger(__name__)

AFFINITY_CHARS = 512  # how much of a prompt's head decides where it goes
SHORT_AFFINITY = 32  # the head that decides for a prompt shorter than that
TIMEOUTS_TO_DOWN = 2  # answers an upstream leaves hanging in a row before it is taken out
IDLE_CHECK_INTERVALS = 5  # health intervals an idle upstream in service goes unchecked
# Tokens a chat template may add per message, and a server around a plain prompt: more
# than ChatML's five or Llama 3's seven.
CHAT_FRAMING_TOKENS = 16
# Without the upstream's tokenizer, a text's tokens are its characters over a ratio learnt
# from the prompt_tokens upstreams report: the least seen lately, less a margin (one file's
# parts differ: JavaScript ran from 2.9 to 3.2 characters a token), so that a window cut by
# it fits. Before the first report, 2.5 (code takes 2.8-4 in common tokenizers); never
# more than 4, so that an upstream reporting too few tokens cannot make cuts overflow.
DEFAULT_CHARS_PER_TOKEN, MAX_CHARS_PER_TOKEN, MARGIN = 2.5, 4.0, 0.8
# What an answer cut before its upstream counted it is charged: its characters over the
# median ratio of the answers (else prompts) counted lately, with no margin; before any,
# the middle of code's 2.8-4.
LIKELY_CHARS_PER_TOKEN, MIN_CHARS_PER_TOKEN = 3.4, 0.25
LEARN_FROM_CHARS = 200  # a shorter prompt's count is mostly the template's framing
LEARNT_RATIOS = 64
# Every upstream busy is logged at most this often, with how many requests it refused since:
# under overload each refusal logged its own line (2,661 in 40 s), burying everything else.
BUSY_LOG_INTERVAL_S = 10.0
# What an upstream counts beyond the estimate of a prompt's text (its chat template's
# framing, a default system prompt: SmolLM2's adds about 30 tokens), before it has said.
DEFAULT_EXCESS_TOKENS = 64
SHORTEST_SECRET = 8  # a credential taken out of the upstreams' text
MAX_TOKEN_COUNT = 2**31 - 1  # more than any model's window: a count above it is garbage
_JSON = {"Content-Type": "application/json"}
# Refusals that say the gateway is set up wrong for that upstream (a wrong key or path),
# not that the request is bad: another upstream may take it, and waiting mends nothing.
_CREDENTIALS_REFUSED = (401, 403, 407)
_NO_API = (404, 405)
_NOT_OURS_TO_FIX = frozenset({*_CREDENTIALS_REFUSED, *_NO_API})
_NO_SUCH_MODEL = "HTTP 404: it does not serve model"
_SETTINGS_TO_FIX = "not to be retried (x-should-retry: false)"


class _Unanswered(str):
    """Why an upstream failed a completion, where it left it unanswered: a hang."""


def refusal_reason(status: int) -> str:
    """What an upstream's refusal says about the gateway's settings."""
    if status in _CREDENTIALS_REFUSED:
        return (
            f"HTTP {status}: it refuses tether's credentials; check upstream.api_key (or the "
            "user and password in its URL)"
        )
    if status in _NO_API:
        return f"HTTP {status}: no OpenAI API there; upstream.base_urls should end in /v1"
    return f"HTTP {status}"


# Why a certificate did not verify (OpenSSL's X509_V_ERR_* codes), in words that name no
# host: its own message quotes the name or address it was checked against.
_CERTIFICATE_PROBLEMS = {
    9: "is not valid yet",
    10: "has expired",
    18: "is self-signed",
    19: "has a self-signed certificate in its chain",
    20: "is from an issuer not trusted here",
    62: "is for another host name",
    64: "is for another IP address",
}
# aiohttp errors whose text names nothing of the network: the rest are named by type.
_PLAIN_ERRORS = (
    aiohttp.ServerDisconnectedError,
    aiohttp.ServerTimeoutError,
    aiohttp.ClientPayloadError,
)


def _failure_of(exc: BaseException) -> str:
    """What failed, without the upstream's address (aiohttp names host, port and the IP
    it tried): the upstream is named apart, for operators, and a client told why no
    upstream answered must not learn the network behind the gateway."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        cause = exc.os_error
        if isinstance(cause, ssl.SSLCertVerificationError):
            problem = _CERTIFICATE_PROBLEMS.get(cause.verify_code, "does not verify")
            return f"cannot connect: its certificate {problem}"
        if isinstance(cause, ssl.SSLError):  # a TLS failure: OpenSSL's reason, no address
            return f"cannot connect: TLS failed ({cause.reason or type(cause).__name__})"
        if cause.errno is not None and cause.errno > 0:
            return f"cannot connect: {os.strerror(cause.errno)}"
        return f"cannot connect: {type(cause).__name__}"  # a name that does not resolve
    if isinstance(exc, aiohttp.ServerFingerprintMismatch):
        return "its certificate does not match the pinned fingerprint"
    if isinstance(exc, aiohttp.ClientResponseError):  # its text holds the URL
        return f"HTTP {exc.status}: {exc.message}"
    if isinstance(exc, aiohttp.ClientError) and not isinstance(exc, _PLAIN_ERRORS):
        return type(exc).__name__
    return str(exc) or type(exc).__name__


def _needs_settings(why: str) -> bool:
    """Whether a failure is one of settings (a key, a path, a model, a certificate) that
    waiting will not mend."""
    refused = tuple(f"HTTP {s}:" for s in _NOT_OURS_TO_FIX)
    if why.startswith(refused) or why.startswith(_NO_SUCH_MODEL):
        return True
    said = why.startswith("HTTP 5") and f", {_SETTINGS_TO_FIX}:" in why  # a gateway in front
    return said or "certificate" in why.lower()


def checked_url(url: str, api_key: str | None) -> str:
    """``url`` without its trailing slash, if tether can send requests there."""
    try:
        parts = urlsplit(url)
    except ValueError:
        parts = None
    shown = url_shown(url)
    try:
        port = parts.port if parts is not None else None
    except ValueError:  # out of range
        raise ConfigError(
            f"upstream.base_urls: {shown!r} names a port above 65535; give the upstream's port"
        ) from None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"upstream.base_urls: {shown!r} is not an http(s) URL; give one such as "
            "http://127.0.0.1:8000/v1"
        )
    if port == 0:
        raise ConfigError(f"upstream.base_urls: {shown!r} names port 0; give the upstream's port")
    if parts.query or parts.fragment:
        raise ConfigError(
            f"upstream.base_urls: {shown!r} has a query string or fragment, which the API's "
            "paths (/models, /chat/completions) would be added after; give the base URL "
            "alone, ending in /v1, and a key in upstream.api_key"
        )
    if api_key and (parts.username or parts.password):
        raise ConfigError(
            f"upstream.base_urls: {shown!r} carries a user name and password and "
            "upstream.api_key is set too; keep one of them (an upstream takes one "
            "Authorization header)"
        )
    return url.rstrip("/")


def _context_window(model: dict[str, Any]) -> int:
    """The upstream's context window as its model listing tells it: vLLM's
    ``max_model_len``, or tether's ``meta.n_ctx``; 0 when it does not say."""
    meta = model.get("meta")
    for value in (model.get("max_model_len"), meta.get("n_ctx") if isinstance(meta, dict) else 0):
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return 0


def _first_listing(
    urls: list[str], headers: dict[str, str], timeout: float
) -> tuple[list[dict[str, Any]], list[str]]:
    """The models the first upstream that lists any lists, and why each before it did
    not; no models and every reason when none does."""
    errors: list[str] = []
    for url in urls:
        shown = without_credentials(url)
        try:
            response = direct.request(
                "GET", f"{url}/models", headers=headers, timeout=timeout, always_direct=True
            )
            response.raise_for_status()
            models = [dict(m) for m in response.json().get("data") or []]
            if models:
                return models, errors
            errors.append(f"{shown}: lists no models")
        except httpx.HTTPStatusError as exc:
            errors.append(f"{shown}: {refusal_reason(exc.response.status_code)}")
        except (httpx.HTTPError, ValueError, AttributeError, TypeError) as exc:
            errors.append(f"{shown}: {exc}")
    return [], errors


def _discover_model(urls: list[str], headers: dict[str, str], timeout: float) -> dict[str, Any]:
    models, errors = _first_listing(urls, headers, timeout)
    if models:
        return models[0]
    raise ConfigError(
        "cannot learn the model name from any upstream (" + "; ".join(errors) + "); "
        "start the upstream first, fix the URL or key, or set upstream.model"
    )


def _listing_of(
    model_id: str, urls: list[str], headers: dict[str, str], timeout: float
) -> dict[str, Any]:
    """How the upstreams list ``model_id`` (its window among it), or the bare id when
    none answers yet: the health checks learn the rest later."""
    models, _ = _first_listing(urls, headers, timeout)
    return next((m for m in models if m.get("id") == model_id), {"id": model_id})


class OpenAIEngine:
    name = "openai"

    def __init__(self, upstream: UpstreamSettings, engine: EngineSettings) -> None:
        self._settings = upstream
        self._upstreams = [Upstream(checked_url(u, upstream.api_key)) for u in upstream.base_urls]
        self._headers = {"Authorization": f"Bearer {upstream.api_key}"} if upstream.api_key else {}
        self._secrets = gateway_secrets(upstream.api_key, [u.base_url for u in self._upstreams])
        urls = [u.base_url for u in self._upstreams]
        if upstream.model:  # named: an upstream that is down now does not stop the start
            model = _listing_of(upstream.model, urls, self._headers, upstream.connect_timeout_s)
        else:
            model = _discover_model(urls, self._headers, upstream.connect_timeout_s)
        self._upstream_model = str(model["id"])
        self._info = EngineInfo(
            engine=self.name,
            engine_version=f"tether-gateway {__version__}",
            model_id=engine.model_id or self._upstream_model,
            n_ctx=_context_window(model),
            accepts_messages=True,
        )
        self._session: aiohttp.ClientSession | None = None  # made in the event loop
        self._watcher: asyncio.Task[None] | None = None  # the background health checks
        self._checked = asyncio.Event()  # set once the watcher's first round is done
        self._in_flight = 0
        self._failovers = 0
        self._busy_logged_at = -math.inf  # when every upstream busy was last logged
        self._busy_unlogged = 0  # requests refused so since
        self._ratios: deque[float] = deque(maxlen=LEARNT_RATIOS)  # characters per token
        self._answer_ratios: deque[float] = deque(maxlen=LEARNT_RATIOS)  # the same, answers
        # How many more tokens than estimated the upstreams counted in prompts lately.
        self._excess: deque[int] = deque(maxlen=LEARNT_RATIOS)
        # The same against the likely count, for chats and for plain prompts apart: what an
        # upstream adds around a prompt it counts (a chat template, a default system prompt).
        self._framing: dict[bool, deque[int]] = {
            chat: deque(maxlen=LEARNT_RATIOS) for chat in (True, False)
        }

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                headers=self._headers,
                timeout=aiohttp.ClientTimeout(
                    total=None,
                    connect=self._settings.connect_timeout_s,
                    sock_read=self._settings.read_timeout_s,
                ),
                # No pool limit of ours: a request waiting for a pooled connection timed out
                # as a connect would, and took a healthy upstream out of service. The
                # upstreams bound their own load (429) and the clients bound ours.
                connector=aiohttp.TCPConnector(limit=0),
                trace_configs=[_POOLED],
            )
        return self._session

    def info(self) -> EngineInfo:
        return self._info

    def count_tokens(self, text: str) -> int:
        return math.ceil(len(text) / self.chars_per_token())

    def chars_per_token(self) -> float:
        if not self._ratios:
            return DEFAULT_CHARS_PER_TOKEN
        return min(max(min(self._ratios) * MARGIN, 1.0), MAX_CHARS_PER_TOKEN)

    def likely_tokens(self, text: str) -> int:
        return self._likely(len(text))

    def _likely(self, chars: int) -> int:
        """The tokens ``chars`` characters of text most likely take."""
        learnt = self._answer_ratios or self._ratios
        ratio = statistics.median(learnt) if learnt else LIKELY_CHARS_PER_TOKEN
        # Within what tokenizers make of text (byte-level ones spend up to 4 tokens on an
        # emoji or a rare CJK character): an upstream's odd counts, or answers made to skew
        # them, move a charge this far at most, never to 0 or without bound.
        ratio = min(max(ratio, MIN_CHARS_PER_TOKEN), MAX_CHARS_PER_TOKEN)
        return math.ceil(chars / ratio)

    def likely_prompt_tokens(self, request: GenerationRequest) -> int:
        """What an upstream most likely counted for ``request``'s prompt, which it did not
        report (the client left, the stream broke): its text's likely tokens, plus the
        framing upstreams counted beyond those lately. The text alone charged a chat that
        SmolLM2's upstream counted 39 tokens for 24."""
        likely = self._likely(len(request.shown_text()))
        framing = self._framing[request.messages is not None]
        return likely + max(0, round(statistics.median(framing))) if framing else likely

    def prompt_tokens_bound(self, request: GenerationRequest) -> int:
        """The estimate of the prompt's tokens, plus the most an upstream has counted
        beyond such an estimate lately: requests sent at once each hold their prompt
        against a budget before any is counted, and an estimate short of the upstream's
        count would let them pass it by more than one answer."""
        excess = max(self._excess) if self._excess else DEFAULT_EXCESS_TOKENS
        return self.count_tokens(request.shown_text()) + max(0, excess)

    def _learn(self, request: GenerationRequest, prompt_tokens: int | None) -> None:
        if request.messages is not None:
            chars = sum(len(str(m.get("content") or "")) for m in request.messages)
        else:
            chars = len(request.prompt or "")
        if prompt_tokens and chars < LEARN_FROM_CHARS:
            # A short prompt's count is mostly the template's framing, which is what the
            # excess stands for; a long one's miss is the ratio's, learnt below, and
            # would charge one odd prompt's error (CJK text) to every later request.
            self._excess.append(prompt_tokens - self.count_tokens(request.shown_text()))
            framed = prompt_tokens - self._likely(len(request.shown_text()))
            self._framing[request.messages is not None].append(framed)
        if prompt_tokens and chars >= LEARN_FROM_CHARS:
            self._ratios.append(chars / prompt_tokens)

    def _learn_answer(self, chars: int, tokens: int) -> None:
        if tokens and chars >= LEARN_FROM_CHARS:
            self._answer_ratios.append(chars / tokens)

    def stats(self) -> EngineStats:
        return EngineStats(
            queue_depth=0,
            in_flight=self._in_flight,
            upstreams=tuple(u.stats() for u in self._upstreams),
            failovers=self._failovers,
        )

    # -- health ---------------------------------------------------------------------------

    async def _check(self, upstream: Upstream) -> bool:
        timeout = aiohttp.ClientTimeout(total=self._settings.connect_timeout_s)
        last = upstream.last_error
        refused_model = last if last.startswith(_NO_SUCH_MODEL) else ""
        try:
            # Probed first, while out of service: no request goes there meanwhile.
            if upstream.hung and (why := self._probe_verdict(upstream)):
                upstream.healthy, upstream.last_error = False, why
                return False
            async with self._client().get(
                f"{upstream.base_url}/models", timeout=timeout
            ) as response:
                # A 429 is a busy upstream, not a broken one; any other refusal (a wrong
                # key, a wrong path) means no request of ours can succeed there.
                upstream.healthy = response.status < 400 or response.status == 429
                upstream.last_error = "" if upstream.healthy else refusal_reason(response.status)
                if (
                    upstream.healthy
                    and response.status < 400
                    and (refused_model or not self._info.n_ctx)
                ):
                    listed = await self._listed_model(response)
                    if listed is not None and not self._info.n_ctx:
                        # A model named in upstream.model, or an upstream down at the
                        # start: its window is learnt from the first listing that says it.
                        self._info = replace(self._info, n_ctx=_context_window(listed))
                    if refused_model:
                        # Back only once it lists the model it refused: answering /models
                        # says nothing about that.
                        upstream.healthy = listed is not None
                        upstream.last_error = "" if upstream.healthy else refused_model
            if upstream.healthy and (why := await self._not_ready(upstream, timeout)):
                upstream.healthy, upstream.last_error = False, why
        except Exception as exc:  # whatever fails, the upstream is down
            upstream.healthy, upstream.last_error = False, _failure_of(exc)
        if upstream.healthy:
            upstream.heard_at = time.monotonic()
        return upstream.healthy

    async def _not_ready(self, upstream: Upstream, timeout: aiohttp.ClientTimeout) -> str:
        """Why an upstream that lists its model cannot answer yet, or "": a tether (its own
        upstreams down) or a llama.cpp server (its model loading) still lists it, and says
        so only in /v1/health with a 503. Servers without that check answer 404 there."""
        async with self._client().get(f"{upstream.base_url}/health", timeout=timeout) as response:
            if response.status != 503:
                return ""
            message, _ = await _message(response, self._secrets)
            return f"HTTP 503 from its /health: {message[:200]}"

    def _probe_verdict(self, upstream: Upstream) -> str:
        """Why an upstream taken out for hanging is still out, or "" once it answered a
        one-token completion in time. Listing its models says nothing about that: one
        whose generation is stuck came back at every check, to leave two more requests
        hanging for the read timeout each. The probe runs beside the checks, which do not
        wait on it: it may take the whole read timeout."""
        probe = upstream.probe
        if probe is not None and not probe.done():
            return upstream.last_error or "a one-token completion sent to it is unanswered"
        upstream.probe = None
        why = probe.result() if probe is not None else upstream.last_error or "it hung"
        if not why:
            upstream.hung = False
            return ""
        stuck = self._fails_a_completion(upstream, any_answer=True)
        upstream.probe = asyncio.get_running_loop().create_task(stuck)
        return why

    async def _fails_a_completion(
        self, upstream: Upstream, path: str = "/completions", *, any_answer: bool = False
    ) -> str:
        """Why ``upstream`` fails a one-token completion at ``path`` (a chat's, or a plain
        one), or "" where it answers one; with ``any_answer``, any answer, a refusal too,
        will do: it shows the upstream is not stuck."""
        body: dict[str, Any] = {"model": self._upstream_model, "max_tokens": 1}
        if path == "/chat/completions":
            body["messages"] = [{"role": "user", "content": "Hi"}]
        else:
            body["prompt"] = "Hi"
        timeout = aiohttp.ClientTimeout(
            total=self._settings.read_timeout_s, sock_connect=self._settings.connect_timeout_s
        )
        try:
            async with self._client().post(
                upstream.base_url + path, json=body, timeout=timeout
            ) as response:
                answer = await response.read()
                if any_answer:
                    return ""
                if response.status >= 300 and response.status != 429:  # busy is no failure
                    return f"HTTP {response.status}"
                if response.status < 300:
                    _choices(json.loads(answer), required=True)
        except aiohttp.ConnectionTimeoutError:
            return "connect timed out"
        except (aiohttp.ServerTimeoutError, TimeoutError):
            return _Unanswered(
                "it leaves a one-token completion without an answer for "
                f"{self._settings.read_timeout_s:g} s (upstream.read_timeout_s)"
            )
        except aiohttp.ClientError as exc:
            return _failure_of(exc)
        except (ValueError, EngineUnavailableError):
            return "its answer is not an OpenAI completion"
        return ""

    async def _listed_model(self, response: aiohttp.ClientResponse) -> dict[str, Any] | None:
        """The entry of the served model in an upstream's /models listing, if there."""
        try:
            listed = (await response.json(content_type=None)).get("data") or []
            return next((dict(m) for m in listed if m.get("id") == self._upstream_model), None)
        except (ValueError, AttributeError, TypeError):
            return None

    async def _watch(self, every_one_first: bool) -> None:
        """Check every upstream once, first, or (started by a failure) wait an interval;
        then each interval check those that are down, for as long as the engine runs.

        An upstream in service is judged by its answers: a request that fails marks it
        down. Checking it as well would cost more than a request: llama-cpp-python's
        server, for one, ends the answer it is streaming when any other request arrives.
        An upstream that just failed is not checked at once either: one that answers
        /models but not completions (garbage, a model it lacks) would be back in a
        moment, to fail the next request too. One in service but idle, with nothing
        heard from it for IDLE_CHECK_INTERVALS intervals, is checked: with no request of
        ours there, nothing is cut, and a gateway nobody uses does not stay ready on
        upstreams that are gone.
        """
        if every_one_first:
            await asyncio.gather(*(self._check(u) for u in self._upstreams))
        self._checked.set()  # a failure has told readiness what it needs
        while True:
            await asyncio.sleep(self._settings.health_interval_s)
            await asyncio.gather(*(self._check(u) for u in (*self._down(), *self._quiet())))

    def _quiet(self) -> list[Upstream]:
        """The upstreams in service with no request in flight, unheard for a while."""
        silent_s = self._settings.health_interval_s * IDLE_CHECK_INTERVALS
        now = time.monotonic()
        return [
            u
            for u in self._upstreams
            if u.healthy and not u.outstanding and now - u.heard_at >= silent_s
        ]

    def _down(self) -> list[Upstream]:
        return [u for u in self._upstreams if not u.healthy]

    def _start_watching(self, every_one_first: bool = False) -> None:
        """Start the checks: when readiness is first asked (every upstream once, first) or
        when an upstream fails (only those down): never beside a request that could be
        the one a check cuts short."""
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.get_running_loop().create_task(self._watch(every_one_first))

    def upstream_status(self) -> list[dict[str, Any]]:
        """Each upstream as the last health check saw it (for the dashboard)."""
        return [
            {
                "url": u.name,
                "healthy": u.healthy,
                "in_flight": u.outstanding,
                "last_error": u.last_error,
            }
            for u in self._upstreams
        ]

    async def health(self) -> bool:
        """True when at least one upstream answers, as the background checks last saw it;
        only the very first call waits for a round of checks."""
        self._start_watching(every_one_first=True)
        await self._checked.wait()
        return any(u.healthy for u in self._upstreams)

    # -- requests -------------------------------------------------------------------------

    def _order(self, key: str) -> list[Upstream]:
        """Where to send a request whose prompt begins with ``key``: the first choice, then
        failover in order."""
        healthy = [u for u in self._upstreams if u.healthy and not u.suspect]
        # Those on trial, then those out of service: tried only when no other took it.
        later = [u for u in self._upstreams if u.healthy and u.suspect]
        later += [u for u in self._upstreams if not u.healthy]
        if self._settings.balance == "in-order" or len(healthy) < 2:
            return healthy + later
        least = min(u.outstanding for u in healthy)
        ranked = sorted(healthy, key=lambda u: _weight(key, u.base_url), reverse=True)
        # The least busy upstream always qualifies, so there is a first choice.
        first = next(u for u in ranked if u.outstanding <= least + self._settings.affinity_slack)
        rest = sorted((u for u in healthy if u is not first), key=lambda u: u.outstanding)
        return [first, *rest, *later]

    def _body(self, request: GenerationRequest) -> tuple[str, dict[str, Any]]:
        params = request.params
        body: dict[str, Any] = {
            "model": self._upstream_model,
            "max_tokens": self._bound(request),
            "temperature": params.temperature,
            "top_p": params.top_p,
            "seed": params.seed,
            # Whole where the pipeline wants it whole: an upstream's stream costs it and the
            # gateway time on every token (a llama.cpp server: 5 ms on 8 tokens), for a time
            # to the first token no one reads. The routes that show one ask for pieces.
            "stream": request.stream,
        }
        if request.stream:  # vLLM refuses stream_options on a plain request
            body["stream_options"] = {"include_usage": True}
        # A JSON answer ends where its JSON does, as on the embedded engine: a stop string
        # met inside it would cut it short.
        if params.stop and not params.response_format:
            body["stop"] = list(params.stop)
        if params.response_format:  # the upstream keeps the answer to it, as it can
            body["response_format"] = json.loads(params.response_format)
        if request.messages is not None:
            return "/chat/completions", {**body, "messages": _as_upstream_takes(request.messages)}
        return "/completions", {**body, "prompt": request.prompt}

    def _bound(self, request: GenerationRequest) -> int:
        """``max_tokens`` to send: a bound the client did not set itself (llama.cpp's
        ``n_predict``, a default) is cut, as the embedded engine cuts it, to what surely
        fits the upstream's window: a token spans at least a byte of the prompt."""
        params, n_ctx = request.params, self._info.n_ctx
        if params.max_tokens_explicit or not n_ctx:
            return params.max_tokens
        if request.messages is not None:
            text = "".join(str(m.get("content") or "") for m in request.messages)
            framing = CHAT_FRAMING_TOKENS * (len(request.messages) + 1)
        else:
            text, framing = request.prompt or "", CHAT_FRAMING_TOKENS
        room = n_ctx - len(text.encode()) - framing
        return max(1, min(params.max_tokens, room if room > 0 else n_ctx // 2))

    async def _post(self, url: str, body: bytes) -> aiohttp.ClientResponse:
        """POST, once more on a fresh connection when a pooled one turns out to have been
        closed by the upstream meanwhile (its keep-alive ran out): that says nothing about
        the upstream's health. A fresh connection closed on the request is the upstream's
        answer to it (it crashed on it): sent again, each replica took it twice."""
        attempt = _Attempt()
        try:
            return await self._client().post(
                url, data=body, headers=_JSON, trace_request_ctx=attempt
            )
        except aiohttp.ClientConnectorError:
            raise  # no connection was made: the upstream itself is not there
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
            if not attempt.pooled:
                raise
            return await self._client().post(url, data=body, headers=_JSON)

    async def _open(
        self,
        path: str,
        encoded: bytes,
        key: str,
        broken: list[tuple[Upstream, str]],
        formatted: bool = False,
    ) -> tuple[Upstream, aiohttp.ClientResponse]:
        """The first upstream that takes the request, counted as outstanding, and its
        response; the caller un-counts it when done. Those in ``broken`` (answers that
        broke before reaching the client) are not asked again. ``formatted``: the request
        asks for a response_format, which an upstream may fail rather than refuse."""
        failures = list(broken)
        busy: list[int] = []  # Retry-After of each upstream that answered 429
        for upstream in self._order(key):
            if any(upstream is u for u, _ in broken):
                continue
            if failures:
                self._failovers += 1
            upstream.outstanding += 1
            try:
                response = await self._post(upstream.base_url + path, encoded)
            except (aiohttp.ServerTimeoutError, TimeoutError) as exc:
                upstream.outstanding -= 1
                if isinstance(exc, aiohttp.ConnectionTimeoutError):
                    upstream.outcomes["failed"] += 1
                    failures.append((upstream, self._mark_down(upstream, "connect timed out")))
                    continue
                upstream.outcomes["timed_out"] += 1
                self._note_timeout(upstream)
                # It took the request and is still at it: sending it elsewhere too would
                # only multiply the load that made it slow.
                raise UpstreamTimeoutError(
                    f"the upstream sent nothing for {self._settings.read_timeout_s:g} s "
                    "(upstream.read_timeout_s): it may be reading a long prompt, serving the "
                    "requests queued before it or, asked for the answer whole, still writing "
                    "it; stream the answer, ask for fewer tokens, or raise the timeout"
                ) from exc
            except aiohttp.ClientError as exc:
                upstream.outstanding -= 1
                upstream.outcomes["failed"] += 1
                why = _failure_of(exc)
                failures.append((upstream, self._mark_down(upstream, why)))
                continue
            except BaseException:
                upstream.outstanding -= 1
                upstream.outcomes["cancelled"] += 1
                raise
            status = response.status
            if status < 400:
                if not upstream.healthy:  # tried last, it answers: back before its next check
                    upstream.healthy, upstream.last_error = True, ""
                return upstream, response
            upstream.outstanding -= 1
            if status == 429:
                upstream.outcomes["busy"] += 1
                busy.append(_retry_after(response))
                message, _ = await _message(response, self._secrets)  # a tether's says which limit
                failures.append((upstream, f"HTTP 429, busy: {message[:200]}"))
            elif status >= 500 and response.headers.get("x-should-retry") == "false":
                # A gateway in front of its own upstreams (a tether) that says only a change
                # of settings mends it: its reason goes on, and so does that verdict, or
                # clients heard "retry later" and the SDKs sent it three times.
                upstream.outcomes["failed"] += 1
                message, _ = await _message(response, self._secrets)
                why = f"HTTP {status}, {_SETTINGS_TO_FIX}: {message[:300]}"
                failures.append((upstream, self._mark_down(upstream, why)))
            elif status >= 500:
                if formatted:
                    # llama-cpp-python's server answers a json_schema it does not take with a
                    # 500 that names response_format: the request's to change, not a failure.
                    message, _ = await _message(response, self._secrets)
                    if "response_format" in message:
                        upstream.outcomes["rejected"] += 1
                        said = message.split("\n\n", 1)[0][:300]  # not the traceback after it
                        raise RequestError(
                            "the upstream cannot keep the answer to this response_format "
                            f"(HTTP {status}: {said}); ask for another, such as "
                            '{"type": "json_object"}, or none',
                            param="response_format",
                        )
                    why = refusal_reason(status)
                else:
                    why = await self._refusal_of(response)
                upstream.outcomes["failed"] += 1
                failures.append((upstream, self._suspect(upstream, why, path)))
            elif status in _NOT_OURS_TO_FIX:
                upstream.outcomes["refused"] += 1
                why = await self._refusal_of(response)
                failures.append((upstream, self._mark_down(upstream, why)))
            else:
                upstream.outcomes["rejected"] += 1
                message, param = await _message(response, self._secrets)
                text = f"the upstream refused the request: {message}"
                counted = _PROMPT_TOO_LONG.search(message)
                if counted is not None:
                    raise ContextLengthError(text, param=param, prompt_tokens=_first_int(counted))
                if _WINDOW_FULL.search(message):  # still the window's: its code says so
                    raise ContextLengthError(text, param=param)
                raise RequestError(text, param=param)
        told = "; ".join(f"{u.name}: {w}" for u, w in failures)
        if busy and len(busy) == len(failures):
            self._log_busy(told)
            said = "; ".join(dict.fromkeys(why for _, why in failures))
            # The wait in words too: a stream that waited began with a 200, and no header.
            raise OverloadedError(
                f"every upstream is busy ({said}); retry in {max(busy)} s",
                retry_after_s=max(busy),
            )
        log.warning("no upstream took the request: %s", told)
        reasons = "; ".join(dict.fromkeys(why for _, why in failures)) or "none is configured"
        if failures and all(_needs_settings(why) for _, why in failures):
            # No Retry-After: a client that retries on it would only be refused again.
            raise EngineUnavailableError(
                f"no upstream takes the request ({reasons}); this does not pass by itself: "
                "fix the gateway's upstream settings, or the upstreams'",
                passes=False,
            )
        raise EngineUnavailableError(
            f"no upstream is answering ({reasons}); retry later: the upstreams are checked "
            f"every {self._settings.health_interval_s:g} s and come back by themselves",
            retry_after_s=self._retry_after_s,
        )

    def _log_busy(self, told: str) -> None:
        """Log that every upstream was busy (``told``: what each said), at most once every
        ``BUSY_LOG_INTERVAL_S``, counting the requests refused so in between."""
        self._busy_unlogged += 1
        now = time.monotonic()
        if now - self._busy_logged_at < BUSY_LOG_INTERVAL_S:
            return
        log.warning(
            "every upstream was busy, %d request(s) refused with 429 since this was last "
            "logged: %s",
            self._busy_unlogged,
            told,
        )
        self._busy_logged_at, self._busy_unlogged = now, 0

    @property
    def _retry_after_s(self) -> int:
        """When an upstream that failed may be back: its next health check."""
        return max(1, math.ceil(self._settings.health_interval_s))

    async def _refusal_of(self, response: aiohttp.ClientResponse) -> str:
        """Why an upstream refused: a 404 that names the model is a wrong upstream.model,
        not a wrong URL."""
        if response.status != 404:
            response.release()
            return refusal_reason(response.status)
        message, _ = await _message(response, self._secrets)
        if self._upstream_model in message or "model" in message.lower():
            return (
                f"{_NO_SUCH_MODEL} {self._upstream_model!r} ({message[:200]}); "
                "set upstream.model to a model it lists, or leave it unset"
            )
        return refusal_reason(404)

    def _note_timeout(self, upstream: Upstream) -> None:
        """One slow answer is kept in service; a second in a row, with none answered
        between, says the upstream hangs: new requests go elsewhere until a health check
        finds it answering (before, a hung replica took its share forever)."""
        upstream.timeouts_in_a_row += 1
        if upstream.timeouts_in_a_row >= TIMEOUTS_TO_DOWN:
            upstream.timeouts_in_a_row, upstream.hung = 0, True
            self._mark_down(
                upstream,
                f"it left {TIMEOUTS_TO_DOWN} answers in a row without a byte for "
                f"{self._settings.read_timeout_s:g} s (upstream.read_timeout_s)",
            )

    def _suspect(self, upstream: Upstream, why: str, path: str) -> str:
        """``upstream`` took a request and failed it (a 5xx, an answer that broke off): the
        request may be at fault as much as the upstream (vLLM answers 500 to some inputs).
        Taken out of service on one request's account, every upstream was out, and the
        gateway not ready, for as long as one client kept sending it. It goes last in line
        while a one-token completion is sent to it at the request's ``path`` (an upstream
        whose chats fail may answer plain completions): out of service if that fails too,
        or if the upstream cannot be asked for one there."""
        upstream.suspect = True
        if upstream.trial is None or upstream.trial.done():
            trial = self._tried(upstream, why, path)
            upstream.trial = asyncio.get_running_loop().create_task(trial)
        return why

    async def _tried(self, upstream: Upstream, why: str, path: str) -> None:
        """Send ``upstream`` a completion of its own, after it failed a request (``why``)."""
        failed = await self._fails_a_completion(upstream, path)
        upstream.suspect = False
        if failed:
            log.warning("upstream %s failed a completion of its own too: %s", upstream.name, failed)
            if isinstance(failed, _Unanswered):  # a hang: back once a probe is answered,
                upstream.hung = True  # not when its listing is
            self._mark_down(upstream, f"{why}; then a one-token completion: {failed}")

    def _mark_down(self, upstream: Upstream, why: str) -> str:
        """Take ``upstream`` out of service until a health check finds it back; ``why``."""
        upstream.healthy, upstream.last_error = False, why
        self._start_watching()
        return why

    async def generate(self, request: GenerationRequest) -> AsyncGenerator[GenerationChunk, None]:
        if request.params.max_tokens <= 0:
            # Nothing to predict (llama.cpp's n_predict 0, to warm a cache): OpenAI-compatible
            # servers refuse max_tokens 0, and there is no cache of ours to warm.
            yield GenerationChunk(text="", finish_reason="length", completion_tokens=0)
            return
        path, body = self._body(request)
        # Once for every upstream tried, by pydantic's serializer: about 3x faster than
        # json.dumps, which matters for a prompt of a megabyte on the event loop.
        encoded, key = pydantic_core.to_json(body), _affinity_key(request)
        # The prompt goes to an upstream now, which reads it: a client that leaves before
        # the first text is charged what it most likely took, as the embedded engine
        # charges what it read (before, nothing: an always-leaving client spent no budget).
        yield GenerationChunk(text="", read_tokens=self.likely_prompt_tokens(request))
        broken: list[tuple[Upstream, str]] = []  # answers that broke before the client saw any
        refitted = False
        self._in_flight += 1
        try:
            while True:
                try:
                    upstream, response = await self._open(
                        path, encoded, key, broken, request.params.response_format is not None
                    )
                except ContextLengthError as exc:  # its count teaches the ratio for the next cut
                    self._learn(request, exc.prompt_tokens)
                    bound = (
                        None
                        if refitted
                        else _refit(request, body["max_tokens"], exc, self._info.n_ctx)
                    )
                    if bound is None:
                        if not request.params.max_tokens_explicit and exc.param == "max_tokens":
                            exc.param = None  # a field the client did not send
                        raise
                    # The client set no bound: the one estimated from the prompt's bytes
                    # was too much, and the refusal's count says what the window holds, as
                    # the embedded engine knows it. Asked again with that, the prompt fits.
                    refitted, body["max_tokens"] = True, bound
                    encoded = pydantic_core.to_json(body)
                    continue
                outcome: UpstreamOutcome = "cancelled"
                passed_on = False
                try:
                    if request.stream and response.content_type != "application/json":
                        async for chunk in self._relay(response):
                            if chunk.finish_reason is not None:
                                self._learn(request, chunk.prompt_tokens)
                            if not passed_on:
                                _answering(upstream)
                            passed_on = True
                            yield chunk
                    else:  # asked for, or an upstream that does not stream
                        whole = await self._whole(response)
                        self._learn(request, whole.prompt_tokens)
                        _answering(upstream)
                        passed_on = True
                        yield whole
                    outcome = "answered"
                    return
                except RequestError:
                    outcome = "rejected"  # an error event that blames the request
                    raise
                except UpstreamTimeoutError:
                    outcome = "timed_out"  # still at it, as before its first byte
                    self._note_timeout(upstream)
                    raise
                except EngineUnavailableError as exc:
                    # It took the request and answered with something that is not an
                    # answer: on trial. While none of its text was passed on, another
                    # upstream may answer.
                    outcome = "broken"
                    broken.append((upstream, self._suspect(upstream, exc.message, path)))
                    if passed_on or len(broken) == len(self._upstreams):
                        exc.retry_after_s = exc.retry_after_s or self._retry_after_s
                        raise
                finally:
                    upstream.outstanding -= 1
                    upstream.outcomes[outcome] += 1
                    response.close()  # early exit: drop the connection so the upstream stops
        finally:
            self._in_flight -= 1

    async def _relay(self, response: aiohttp.ClientResponse) -> AsyncIterator[GenerationChunk]:
        """Pass an upstream event stream on, chunk by chunk, as it arrives."""
        held: GenerationChunk | None = None  # the finishing chunk waits for the usage event
        usage: dict[str, Any] = {}
        pieces = 0  # fallback count for upstreams that send no usage (one token per chunk)
        chars = 0
        events = 0
        try:
            async for event in json_events(response.content):
                events += 1
                if "error" in event:
                    message, param = _error_text(event["error"])
                    message = without_secrets(message, self._secrets)
                    if _is_the_requests_fault(event["error"]):
                        # Another upstream would refuse it too: neither failover nor
                        # taking this one out of service mends it.
                        raise RequestError(
                            f"the upstream refused the request: {message}", param=param
                        )
                    raise EngineUnavailableError(f"the upstream failed: {message}")
                # The last usage sent counts: OpenAI sends it in an event of its own after
                # the finish, some servers in the finishing event, vLLM in every event.
                counted = isinstance(event.get("usage"), dict)
                if counted:
                    usage = event["usage"]
                for choice in _choices(event, required=False):
                    text = _text_of(choice, "delta")
                    finish = choice.get("finish_reason")
                    if finish is not None:
                        held = GenerationChunk(
                            text=text, finish_reason=_finish(finish), stop_word=_stop_word(choice)
                        )
                    elif text:
                        pieces += 1
                        chars += len(text)
                        yield GenerationChunk(text=text)
                if held is not None and counted:
                    # Finished and counted: all that may follow is [DONE], which an
                    # upstream that holds the connection open may never send.
                    break
        except TimeoutError as exc:
            raise self._stalled() from exc
        except (aiohttp.ClientError, ValueError) as exc:
            raise EngineUnavailableError(_broke_off("stream", exc)) from exc
        if not events:
            raise EngineUnavailableError(
                f"the upstream answered {response.content_type or 'with no content type'} "
                "without a single event; is upstream.base_urls an OpenAI-compatible API?"
            )
        if held is None:
            # Every OpenAI-compatible server ends an answer with a finish_reason; a stream
            # cut before it (the upstream died) may look like a clean end to the transport.
            raise EngineUnavailableError("the upstream's stream ended before its answer did")
        held.prompt_tokens = _count(usage.get("prompt_tokens"))
        held.completion_tokens = _count(usage.get("completion_tokens"))
        held.cached_tokens = _cached_tokens(usage)
        if held.completion_tokens is None:
            # A piece is a token, as upstreams stream them; the finishing event may hold
            # the whole answer, whose characters tell its tokens.
            last = self._likely(len(held.text)) if held.text else 0
            held.completion_tokens = pieces + last
        else:
            self._learn_answer(chars + len(held.text), held.completion_tokens)
        yield held

    async def _whole(self, response: aiohttp.ClientResponse) -> GenerationChunk:
        """One answer from a plain (non-streaming) upstream response."""
        try:
            answer = json.loads(await response.read())
        except TimeoutError as exc:
            raise self._stalled() from exc
        except (aiohttp.ClientError, ValueError) as exc:
            raise EngineUnavailableError(_broke_off("answer", exc)) from exc
        choices = _choices(answer, required=True)
        choice = choices[0]
        usage = answer.get("usage")
        usage = usage if isinstance(usage, dict) else {}
        return GenerationChunk(
            text=_text_of(choice, "message"),
            finish_reason=_finish(choice.get("finish_reason")),
            stop_word=_stop_word(choice),
            prompt_tokens=_count(usage.get("prompt_tokens")),
            completion_tokens=_count(usage.get("completion_tokens")),
            cached_tokens=_cached_tokens(usage),
        )

    def _stalled(self) -> UpstreamTimeoutError:
        return UpstreamTimeoutError(
            f"the upstream stopped sending for {self._settings.read_timeout_s:g} s in the "
            "middle of its answer (upstream.read_timeout_s); retry, or raise the timeout"
        )

    async def close(self) -> None:
        trials = (u.trial for u in self._upstreams)
        for task in (self._watcher, *(u.probe for u in self._upstreams), *trials):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task  # its checks in flight close their connections
        if self._session is not None:
            await self._session.close()


# Between a tool's result and the user's own text sent in one turn with it: a blank line
# alone would read as more of the result's text.
_OWN_TEXT = "\n\n---\n\n"


def _as_upstream_takes(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    """``messages`` as an OpenAI-compatible upstream takes them. It is sent the calls as
    the text the model wrote them in, and the functions in the system message, not as
    ``tools``: a ``tool`` message, which it takes only after an assistant's ``tool_calls``
    and with the ``tool_call_id`` it answers (OpenAI refuses it with a 400), goes as the
    user's, its text naming the call it answers. Templates that alternate user and
    assistant turns (Mistral's, Gemma's) refuse two user turns in a row, so a result goes
    in one turn with the results and the user's text beside it: the results of an answer's
    several calls one after another, the user's text set apart from them by a rule. The
    user's own turns side by side are sent as the client sent them."""
    if not any(message["role"] == "tool" for message in messages):
        return messages
    sent: list[dict[str, str]] = []
    with_results = False  # whether the last turn sent holds a result
    last_result = False  # and ends with one
    for message in messages:
        role, text = message["role"], message["content"]
        result = role == "tool"
        follows_user = bool(sent) and sent[-1]["role"] == "user"
        joins = follows_user and (result or (role == "user" and with_results))
        if not joins:
            sent.append({**message, "role": "user"} if result else message)
            with_results = last_result = result
            continue
        before = sent[-1]["content"]
        between = "\n\n" if result and last_result else _OWN_TEXT
        sent[-1] = {**sent[-1], "content": between.join(filter(None, [before, text]))}
        with_results, last_result = True, result
    return sent


# How upstreams that count the prompt say it is too long: tether ("the prompt is 2715
# tokens"), llama.cpp's server ("request (2715 tokens) exceeds the available context
# size"), vLLM ("2707 in the messages", "has 2715 input tokens"), OpenAI ("your messages
# resulted in 2715 tokens").
_PROMPT_TOO_LONG = re.compile(
    r"prompt is (\d+) tokens?\b|request \((\d+) tokens\) exceeds|(\d+) in the (?:messages|prompt)"
    r"|has (\d+) input tokens|messages resulted in (\d+) tokens"
)
# A refusal for the window that counts no prompt: tether's for a max_tokens no window
# holds, or OpenAI's phrase, which every refusal for the window of these upstreams has.
_WINDOW_FULL = re.compile(r"maximum context length is \d+|exceeds the context window", re.I)


# The window an upstream names in its refusal: tether's, vLLM's and OpenAI's phrase, and
# llama.cpp's server's ("exceeds the available context size (512 tokens)").
_WINDOW_SIZE = re.compile(r"maximum context length is (\d+)|available context size \((\d+) tokens")


def _refit(
    request: GenerationRequest, sent: int, refusal: ContextLengthError, n_ctx: int
) -> int | None:
    """The ``max_tokens`` to ask again with when an upstream refused, for the window, a
    bound the client did not set (a default, which the embedded engine cuts to what the
    window holds after the prompt), or None where no bound would do: the client's own,
    a refusal that counts no prompt, or a prompt that fills the window by itself. The
    window is the one the refusal names, else ``n_ctx``, the upstreams' as the gateway
    learnt it."""
    if request.params.max_tokens_explicit or refusal.prompt_tokens is None:
        return None
    named = _WINDOW_SIZE.search(refusal.message)
    window = _first_int(named) if named is not None else n_ctx
    room = window - refusal.prompt_tokens
    if room <= 0 or room >= sent:
        return None
    return min(request.params.max_tokens, room)


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _first_int(match: re.Match[str]) -> int:
    return int(next(group for group in match.groups() if group is not None))


# Instructions a team's every conversation may begin with: after the first request each
# upstream's cache holds them anyway, so they say nothing of which upstream to choose.
_SHARED_ROLES = frozenset({"system", "developer"})


def _affinity_key(request: GenerationRequest) -> str:
    """The head of what the model reads: alike for an editor's requests on one file and
    for the turns of one conversation.

    A chat's key is its first message after the system messages, which every turn
    resends unchanged: a team-wide system prompt in the key sent every conversation to
    one upstream, and the turns joined into it changed the key as they grew. A prompt
    grows at its end as its file is typed in, so its key is a head of fixed length: the
    first ``AFFINITY_CHARS`` once it has them, before that the first ``SHORT_AFFINITY``
    (cut at every power of two, it moved four times on the way).
    """
    if request.messages is not None:
        own = [m for m in request.messages if m.get("role") not in _SHARED_ROLES]
        first = next(iter(own or request.messages), {})
        return str(first.get("content") or "")[:AFFINITY_CHARS]
    text = request.prompt or ""
    return text[: AFFINITY_CHARS if len(text) >= AFFINITY_CHARS else SHORT_AFFINITY]


def _weight(key: str, url: str) -> int:
    """Rendezvous hashing: each key ranks the upstreams its own way, the same every time,
    and losing one upstream moves only the keys it ranked first."""
    digest = hashlib.blake2b(f"{url}\0{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def _choices(answer: object, *, required: bool) -> list[dict[str, Any]]:
    """The ``choices`` of an answer or event, checked: an upstream that sends something
    else is broken, and the client hears so rather than an empty answer."""
    choices = answer.get("choices") if isinstance(answer, dict) else None
    if isinstance(choices, list) and all(isinstance(c, dict) for c in choices):
        if choices or not required:
            return choices
    elif choices is None and not required:
        return []
    raise EngineUnavailableError(
        f"the upstream's answer is not an OpenAI completion: {str(answer)[:200]}"
    )


def _text_of(choice: dict[str, Any], chat_key: str) -> str:
    """Text of a completions choice, or content of a chat ``message`` / ``delta``."""
    text = choice.get("text")
    if text is None:
        part = choice.get(chat_key)
        text = part.get("content") if isinstance(part, dict) else None
    return _unicode(text) if isinstance(text, str) else ""


def _unicode(text: str) -> str:
    """``text`` with each lone surrogate that JSON's ``\\ud800`` escapes let through as
    U+FFFD, as a bad byte reads from the embedded engine: such a string cannot be encoded,
    for the client, its audit record or its trace."""
    return text if text.isascii() else _LONE_SURROGATE.sub("\ufffd", text)


def _finish(reason: object) -> Literal["stop", "length", "content_filter"]:
    """The upstream's finish reason, as one of tether's (vLLM also says "abort")."""
    if reason == "length" or reason == "content_filter":
        return reason
    return "stop"


def _stop_word(choice: dict[str, Any]) -> str | None:
    """The stop string that ended the answer, as vLLM and tether tell it (``stop_reason``;
    a number there is a stop token, not a string)."""
    reason = choice.get("stop_reason")
    return _unicode(reason) if isinstance(reason, str) and reason else None


def _count(value: object) -> int | None:
    """A token count an upstream reports, if it can be one: a negative one no counter of
    ours takes, and a huge one would be charged, spending the token's budget for the day,
    and overflow the usage ledger's integers."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_TOKEN_COUNT:
        return value
    return None


def _broke_off(what: Literal["stream", "answer"], exc: Exception) -> str:
    """Why an upstream's stream or answer could not be read to its end, in plain words for
    the client and the upstream's status; aiohttp's own text reads as an HTTP status ("400,
    message='Not enough data...'") and names its internals, so it goes to the server log,
    with the exception's type, for operators."""
    log.warning("the upstream %s broke off: %s: %s", what, type(exc).__name__, exc)
    if isinstance(exc, aiohttp.ClientPayloadError | aiohttp.ServerDisconnectedError):
        if what == "stream":
            return "the upstream closed its stream before the end of the answer"
        return "the upstream answer broke off: the upstream closed the connection before its end"
    if isinstance(exc, UnicodeDecodeError):
        return f"the upstream {what} broke off: it is not UTF-8 text"
    if isinstance(exc, json.JSONDecodeError):
        part = "an event in it" if what == "stream" else "it"
        return f"the upstream {what} broke off: {part} is not JSON ({exc.msg})"
    if isinstance(exc, OSError) and exc.strerror:
        return f"the upstream {what} broke off: the connection failed ({exc.strerror})"
    return f"the upstream {what} broke off ({type(exc).__name__})"


def _retry_after(response: aiohttp.ClientResponse) -> int:
    """The upstream's Retry-After in whole seconds (1 when it gives none, or a date)."""
    try:
        return max(1, math.ceil(float(response.headers.get("Retry-After", ""))))
    except ValueError:
        return 1


async def _message(
    response: aiohttp.ClientResponse, secrets: Collection[str] = ()
) -> tuple[str, str | None]:
    """An upstream's refusal: its message and the parameter it names, if any."""
    try:
        body = await response.read()
    except (aiohttp.ClientError, TimeoutError) as exc:
        # The refusal broke off or stalled: its status still says what it is.
        response.close()
        return f"HTTP {response.status}, its message cut off ({type(exc).__name__})", None
    response.release()
    try:
        error = json.loads(body).get("error")
    except (ValueError, AttributeError):
        return _page_text(response.content_type, body, secrets), None
    message, param = _error_text(error)
    return without_secrets(message, secrets), param


_TITLE = re.compile(rb"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)


def _page_text(content_type: str, body: bytes, secrets: Collection[str] = ()) -> str:
    """A refusal that is not JSON, as text, without ``secrets`` (taken out before it is
    cut: a secret across the cut kept its first half): a proxy's HTML page by its title (a
    413's whole page of markup read as the client's error message)."""
    if "html" in content_type or body.lstrip()[:1] == b"<":
        title = _TITLE.search(body[:65536])
        named = title.group(1).decode("utf-8", "replace").strip() if title else ""
        named = without_secrets(" ".join(named.split()), secrets)
        return f"an HTML page: {named[:200]}" if named else "an HTML page"
    return without_secrets(body[:65536].decode("utf-8", "replace"), secrets)[:500]


def gateway_secrets(api_key: str | None, urls: Collection[str]) -> tuple[str, ...]:
    """The gateway's own credentials: its key, and the passwords in its upstreams' URLs."""
    passwords = (urlsplit(url).password for url in urls)
    return tuple(secret for secret in (api_key, *passwords) if secret)


def without_secrets(text: str, secrets: Collection[str]) -> str:
    """``text`` without the gateway's own credentials, which an upstream or a proxy may
    echo back in an error: it goes to the client. One shorter than ``SHORTEST_SECRET``
    is left: taken out, it would mangle every word it is part of."""
    for secret in secrets:
        if len(secret) >= SHORTEST_SECRET:
            text = text.replace(secret, "***")
    return text


def _error_text(error: object) -> tuple[str, str | None]:
    """The message and parameter of an OpenAI-shaped ``error``, or it as text."""
    if isinstance(error, dict):
        param = error.get("param")
        message = _unicode(str(error.get("message") or error))
        return message, _unicode(param) if isinstance(param, str) else None
    return _unicode(str(error)), None


def _is_the_requests_fault(error: object) -> bool:
    """Whether an error event says the request is at fault (vLLM's ``code`` 400, OpenAI's
    and tether's ``invalid_request_error``), not the upstream."""
    if not isinstance(error, dict):
        return False
    code = error.get("code")
    if isinstance(code, int) and 400 <= code < 500 and code not in (408, 429):
        return True
    return error.get("type") in ("invalid_request_error", "BadRequestError")


def _cached_tokens(usage: dict[str, Any]) -> int | None:
    """OpenAI's ``prompt_tokens_details.cached_tokens``, which vLLM sends too."""
    details = usage.get("prompt_tokens_details") or {}
    return _count(details.get("cached_tokens")) if isinstance(details, dict) else None
