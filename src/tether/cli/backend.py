"""Where CLI commands send their work: the embedded pipeline, or a running server.

Both return the same ``Completion``, so a command does not care which one it has.
"""

from __future__ import annotations

import asyncio
import ssl
import time
import uuid
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import Any, Protocol
from urllib.parse import quote

import click
import httpx
from click.core import ParameterSource

from tether.audit.events import sign_in_now
from tether.audit.handoff import HandOff
from tether.audit.handover import YieldingLog
from tether.audit.log import audit_folder
from tether.audit.relay import ServerRelay
from tether.audit.witness import Witness
from tether.cli.common import run_until_terminated
from tether.direct import transport_for
from tether.errors import (
    AuditLogHeldError,
    AuthError,
    ContextLengthError,
    EngineUnavailableError,
    ForbiddenError,
    NotFoundError,
    OverloadedError,
    PolicyBlockedError,
    RequestError,
)
from tether.pipeline import ChatTask, Completion, CompletionTask, FimTask, Pipeline, Task
from tether.pipeline.result import Findings
from tether.server.runtime import (
    default_runtime_dir,
    find_runtime_record,
    find_server_of,
    live_records,
    trust_for,
)
from tether.settings import Settings
from tether.sse import json_events
from tether.traces import Trace

OnText = Callable[[str], None]


def trace_url(trace_id: str) -> str:
    """The server's address of trace ``trace_id``, the id escaped: an id is a name, never
    a path (``../tokens``) or a query."""
    if not trace_id.strip() or trace_id in (".", ".."):
        raise RequestError(f"{trace_id!r} is not a trace id; tether explain --recent lists them")
    return f"/v1/traces/{quote(trace_id, safe='')}"


class Backend(Protocol):
    async def run(self, task: Task, on_text: OnText | None = None) -> Completion: ...

    async def describe(self) -> dict[str, Any]:
        """Who answers: model, engine, templates, fingerprint (``Pipeline.describe``)."""
        ...

    async def trace(self, trace_id: str) -> Trace:
        """The trace of an answer this backend gave."""
        ...

    async def close(self) -> None: ...


class InProcessBackend:
    """The embedded engine behind the same pipeline the server runs, recording its answers
    in the same traces and audit log."""

    def __init__(self, settings: Settings) -> None:
        from tether.engines.registry import build_engine
        from tether.pipeline.recording import AuditRecorder, TraceRecorder
        from tether.plugins import build_manager
        from tether.store import FunctionStore
        from tether.traces import TraceStore

        self.settings = settings
        self.audit = open_audit_log(settings)
        plugins = build_manager(settings)
        self.engine = build_engine(settings, plugins)
        self.store = FunctionStore.open(settings)
        self.pipeline = Pipeline(self.engine, settings, plugins, retriever=self.store.retriever)
        # Suggestions made on the command line can be explained later, like the server's.
        self.traces = TraceStore.from_settings(settings)
        self.tracer = TraceRecorder(self.traces, self.engine.info(), self.pipeline.templates)
        self.pipeline.recorders.append(self.tracer)
        self.auditor = None if self.audit is None else AuditRecorder(self.audit, self.engine.info())
        if self.auditor is not None:
            self.pipeline.recorders.append(self.auditor)

    async def run(self, task: Task, on_text: OnText | None = None) -> Completion:
        try:
            prepared = self.pipeline.prepare(task)
        except PolicyBlockedError as exc:  # refused before the engine: recorded as the server does
            if self.auditor is not None:
                request_id = f"cli-{uuid.uuid4().hex}"
                self.auditor.record_request(request_id, None, "cli", 400, exc.findings)
            raise
        return await self.pipeline.complete(prepared, on_text)

    async def describe(self) -> dict[str, Any]:
        return self.pipeline.describe()

    async def trace(self, trace_id: str) -> Trace:
        self.tracer.flush()
        found = self.traces.get(trace_id)
        if found is None:
            raise NotFoundError(f"no trace {trace_id!r}; is traces.enabled false?")
        return found

    async def close(self) -> None:
        self.tracer.close()
        self.traces.close()
        self.store.close()
        await self.engine.close()
        if self.audit is not None:
            self.audit.close()  # a last checkpoint covers this command's records
        if isinstance(self.audit, (HandOff, YieldingLog)) and self.audit.handed:
            sign_in_now(self.settings)  # the command that kept the log may be done


def open_audit_log(settings: Settings) -> YieldingLog | ServerRelay | HandOff | None:
    """Where answers made in this process are recorded: the audit log, until a server
    that starts on this data directory asks for it; while the server that writes this
    data directory keeps it, that server; while another command keeps it, a folder of the
    log's that command signs in from. None when audit.enabled is off."""
    if not settings.audit.enabled:
        return None
    try:
        return YieldingLog.open(settings, _unrecorded)
    except AuditLogHeldError:
        runtime_dir = settings.server.runtime_dir or default_runtime_dir()
        server = find_server_of(runtime_dir, settings.data.home)
        if server is not None:
            return ServerRelay(server, on_failure=_unrecorded)
        return HandOff(audit_folder(settings), settings.audit.content, on_failure=_unrecorded)


def _unrecorded(why: str) -> None:
    click.echo(f"warning: this answer is traced but not in the audit log: {why}", err=True)


LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def server_url(url: str) -> str:
    """``url`` without its trailing slash or ``/v1``, if it is an http or https URL with
    a host: OpenAI clients take the base URL with ``/v1``, and tether's routes add it."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        parsed = None
    if (
        parsed is None
        or parsed.scheme not in ("http", "https")
        or not parsed.host
        or not (parsed.port is None or 0 < parsed.port < 65536)
    ):
        raise RequestError(
            f"{_server_source()}{url!r} is not a server URL; give one such as "
            "http://127.0.0.1:8421",
            param="server",
        )
    base = url.rstrip("/")
    return base.removesuffix("/v1") if parsed.path.rstrip("/").endswith("/v1") else base


def _server_source() -> str:
    """Where the command's server URL came from, as the user gave it: ``--server`` or
    ``TETHER_SERVER=`` (a variable set long ago and forgotten is hard to find otherwise)."""
    ctx = click.get_current_context(silent=True)
    source = ctx.get_parameter_source("server") if ctx is not None else None
    return "TETHER_SERVER=" if source is ParameterSource.ENVIRONMENT else "--server "


def _same_server(a: str, b: str) -> bool:
    """Whether two URLs name the same server; the names of this machine's loopback
    (``localhost``, ``127.0.0.1``, ``[::1]``) are one."""
    try:
        first, second = httpx.URL(a), httpx.URL(b)
    except httpx.InvalidURL:
        return False  # a runtime file written by hand, perhaps
    if (first.scheme, first.port, first.host) == (second.scheme, second.port, second.host):
        return True
    return (
        (first.scheme, first.port) == (second.scheme, second.port)
        and first.host in LOOPBACK_HOSTS
        and second.host in LOOPBACK_HOSTS
    )


def credentials(
    settings: Settings, url: str, token: str | None
) -> tuple[str | None, ssl.SSLContext | bool]:
    """The token to send to the server at ``url``, and how to check its certificate.

    None when no token is known: --token, the runtime file of a server at that address,
    server.token. Whether the server needs one, and whether it is there at all, is for
    the first request to tell.
    """
    runtime_dir = settings.server.runtime_dir or default_runtime_dir()
    record = find_runtime_record(runtime_dir, url) or next(
        (r for r in live_records(runtime_dir) if _same_server(r.url, url)), None
    )
    chosen = token or (record.token if record else None) or settings.server.fixed_token()
    chosen = chosen.strip() if chosen else None  # as the server reads it: a pasted newline
    # A header carries printable ASCII only; a token pasted with a curly quote, an accent or
    # a line break inside is a mistyped token, not a reason to fail inside the HTTP client.
    if chosen and not (chosen.isascii() and chosen.isprintable()):
        raise AuthError(
            "the token holds characters no token has (tokens are printable ASCII, such as "
            "tth_ and 43 letters, digits, '-' or '_'): check that it was copied whole and "
            "nothing else with it (--token, TETHER_TOKEN, server.token)"
        )
    return chosen or None, trust_for(record)


def certificate_problem(exc: BaseException) -> str | None:
    """Why a server's certificate did not verify, where that is why ``exc`` came: the
    server is there, and restarting it mends nothing."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return str(seen.verify_message or seen.reason or seen)
        seen = seen.__cause__ or seen.__context__
    return None


# Routes every tether server answers: a 404 or 405 there means another kind of server.
_ALWAYS_SERVED = ("/v1/models", "/v1/chat/completions", "/v1/completions", "/v1/fim/completions")


def _error_message(response: httpx.Response) -> str | None:
    """The message of an OpenAI-shaped error body, or None when the body is not one."""
    try:
        message = response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return None
    return message if isinstance(message, str) else None


def _is_json(response: httpx.Response) -> bool:
    try:
        response.json()
    except ValueError:
        return False
    return True


# What a reverse proxy in front of tether (nginx, Caddy) answers of its own, with a page or
# nothing, never tether's JSON error: what it means, and what to change. A 502 or a 504 is
# a gateway's answer by definition; tether's own 413, 429, 503 and 504 are JSON.
_PROXY_ANSWERS = {
    413: "refused the request as too large; raise the proxy's body limit to the server's "
    "server.max_body_mb or more (nginx: client_max_body_size, 1m by default), or send less",
    429: "refused the request by a rate limit of its own (nginx: limit_req, with "
    "limit_req_status 429); try again later, or raise the proxy's limit",
    502: "could not reach the tether server behind it; check that `tether serve` runs and "
    "the address the proxy passes requests to (the proxy's error log says why)",
    503: "has no tether server to pass the request to, or refused it by a limit of its own "
    "(nginx's limit_req and limit_conn answer 503); check that `tether serve` runs and the "
    "address the proxy passes requests to, or the proxy's limits (its error log says which)",
    504: "gave up waiting for the tether server's answer; raise the proxy's read timeout "
    "(nginx: proxy_read_timeout, 60s by default) above the longest the server may take: a "
    "wait in its queue and a long prompt's reading, or a whole answer not streamed",
}


def proxy_answer(response: httpx.Response) -> str | None:
    """What ``response`` means when a proxy in front of the server made it, not tether;
    None when it is tether's (everything it answers is JSON: its errors, and /readyz's
    checks while it is not ready) or no proxy's status."""
    meaning = _PROXY_ANSWERS.get(response.status_code)
    if meaning is None or _is_json(response):
        return None
    return f"a proxy answered {response.status_code} {response.reason_phrase}: it {meaning}"


def _raise_for_error(response: httpx.Response) -> None:
    """The server's OpenAI-shaped error as the exception it came from."""
    if response.status_code < 400:
        return
    try:
        error = response.json()["error"]
        message, code = error["message"], error.get("code")
    except (ValueError, KeyError, TypeError, AttributeError):
        message, code = response.text[:500] or response.reason_phrase, None
    status = response.status_code
    if code == "context_length_exceeded":  # the prompt, not the server: told apart by callers
        raise ContextLengthError(f"the server refused the request ({status}): {message}")
    if code == "policy_blocked":
        raise PolicyBlockedError(f"the server refused the request ({status}): {message}")
    if status == 401:
        raise AuthError(f"the server refused the token: {message}")
    if status == 403:
        raise ForbiddenError(f"the server does not allow it: {message}")
    if status == 404:
        raise NotFoundError(message)
    if status == 429:  # the token's own limit, or a busy server: either passes in time
        held = code == "rate_limit_exceeded"
        said = "the server refused it for now" if held else "the server is busy"
        raise OverloadedError(f"{said}: {message}")
    if status >= 500:
        raise EngineUnavailableError(f"the server failed ({status}): {message}")
    raise RequestError(f"the server refused the request ({status}): {message}")


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
    match task:
        case ChatTask(messages=messages):
            return "/v1/chat/completions", {**body, "messages": messages}
        case FimTask(fim=fim):
            context = [{"filename": c.filename, "text": c.text} for c in fim.context]
            fields = {"prompt": fim.prefix, "suffix": fim.suffix, "language": fim.language}
            return "/v1/fim/completions", {**body, **fields, "context": context}
        case CompletionTask(prompt=prompt):
            return "/v1/completions", {**body, "prompt": prompt}


READ_TIMEOUT_S = 30.0  # the most a server may stay silent on a GET: it generates nothing
GENERATE_TIMEOUT_S = 300.0  # the most between two chunks of an answer, or before the first
# A server answers a generation with its first chunk (a suggestion with its whole rewrite),
# after a wait for a free sequence and the prompt's reading: past this, a note says what
# the silence may be, once.
WAIT_NOTICE_S = 10.0


def _well_formed(event: dict[str, Any]) -> bool:
    """Whether a streamed event has the shape ``HttpBackend.run`` reads: OpenAI's."""
    if "error" in event:
        error = event["error"]
        return isinstance(error, dict) and isinstance(error.get("message"), str)
    choices = event.get("choices", [])
    if not isinstance(choices, list) or not isinstance(event.get("usage") or {}, dict):
        return False
    for choice in choices:
        if not isinstance(choice, dict) or not isinstance(choice.get("delta") or {}, dict):
            return False
        texts = (choice.get("text"), (choice.get("delta") or {}).get("content"))
        if not all(t is None or isinstance(t, str) for t in texts):
            return False
    return True


class HttpBackend:
    """A running tether server; use it as ``async with HttpBackend(...) as backend``."""

    def __init__(self, settings: Settings, url: str, token: str | None) -> None:
        self.url = server_url(url)
        secret, verify = credentials(settings, self.url, token)
        self.has_token = secret is not None
        self._said_waiting = False
        self._known_tether = False  # its /v1/models read as tether's
        self._checking = asyncio.Lock()  # requests sent at once ask it once
        self.client = httpx.AsyncClient(
            base_url=self.url,
            headers={"Authorization": f"Bearer {secret}"} if secret else {},
            timeout=httpx.Timeout(GENERATE_TIMEOUT_S, connect=5.0),
            verify=verify,
            transport=transport_for(self.url, verify),
        )

    async def __aenter__(self) -> HttpBackend:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def not_tether(self, path: str, what: str) -> RequestError:
        return RequestError(
            f"the server at {self.url} is not a tether server: it answered {path} with "
            f"{what}; check --server (or TETHER_SERVER): `tether serve` prints its address, "
            "such as http://127.0.0.1:8421",
            param="server",
        )

    def _raise_for_error(self, response: httpx.Response) -> None:
        status = response.status_code
        path = response.request.url.path
        proxied = proxy_answer(response)
        if proxied is not None:  # the server may be tether: the proxy in front says why not
            said = f"the server at {self.url} did not answer {path}: {proxied}"
            if status == 413:
                raise RequestError(said)
            if status == 429:  # passes in time, as tether's own 429
                raise OverloadedError(said)
            raise EngineUnavailableError(said)
        # A tether server answers every error in the OpenAI shape, and always has these
        # routes: a web page, a bare 404 or a missing route is another program's answer.
        if status >= 400 and (
            _error_message(response) is None
            or (status in (404, 405) and path.endswith(_ALWAYS_SERVED))
        ):
            kind = response.headers.get("content-type", "").split(";")[0] or "no content type"
            raise self.not_tether(path, f"{status} {response.reason_phrase} ({kind})")
        if response.status_code == 401 and not self.has_token:
            raise AuthError(
                f"the server at {self.url} needs a token and none is known for that address "
                "(no runtime file of a server there, no server.token); pass --token or set "
                "TETHER_TOKEN"
            )
        _raise_for_error(response)

    def _unreachable(self, exc: httpx.HTTPError) -> EngineUnavailableError:
        if isinstance(exc, httpx.TimeoutException) and not isinstance(exc, httpx.ConnectTimeout):
            waited = exc.request.extensions.get("timeout", {}).get("read") or 0.0
            return EngineUnavailableError(
                f"the server at {self.url} took the connection but said nothing for "
                f"{waited:g} s: it is stuck, overloaded, or not an HTTP server; check "
                "its log or `tether doctor`, restart it, or check --server"
            )
        refused = certificate_problem(exc)
        if refused is not None:
            return EngineUnavailableError(
                f"the server at {self.url} answers, but its certificate did not verify "
                f"({refused}); give the CA that issued it in SSL_CERT_FILE, or an address "
                "the certificate names in --server"
            )
        return EngineUnavailableError(
            f"cannot reach the server at {self.url} ({type(exc).__name__}: {exc}); is "
            "`tether serve` running there? (`tether doctor` checks)"
        )

    async def run(self, task: Task, on_text: OnText | None = None) -> Completion:
        path, body = _body_for(task)
        started = time.perf_counter()
        parts: list[str] = []
        meta: dict[str, Any] = {}
        usage: dict[str, Any] = {}
        finish: str | None = None
        notice = self._note_a_long_wait()
        try:
            async with self._checking:
                if not self._known_tether:
                    # Asked before the first prompt leaves: another OpenAI-compatible server
                    # answers a chat too, with no policy on the prompt and no audit record.
                    await self.models()
            async with self.client.stream("POST", path, json=body) as response:
                notice.cancel()
                if response.status_code >= 400:
                    await response.aread()
                    self._raise_for_error(response)
                kind = response.headers.get("content-type", "")
                if not kind.startswith("text/event-stream"):
                    raise self.not_tether(path, f"{kind or 'no content type'}, not an event stream")
                async for event in self._events(path, response):
                    if "error" in event:
                        raise RequestError(event["error"]["message"])
                    meta = {**meta, **event}
                    usage = event.get("usage") or usage
                    for choice in event.get("choices", []):
                        text = choice.get("text") or (choice.get("delta") or {}).get("content")
                        if text:
                            parts.append(text)
                            if on_text is not None:
                                on_text(text)
                        finish = choice.get("finish_reason") or finish
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from exc
        finally:
            notice.cancel()
        if finish is None:
            # tether ends every answer with a finish reason: without one the stream was cut
            # (the server stopped or restarted, a proxy closed it) and the text is partial.
            raise EngineUnavailableError(
                f"the server at {self.url} ended its answer to {path} before finishing it "
                f"({len(parts)} pieces of text, no finish reason): it may have stopped or "
                "restarted, or a proxy cut the stream; check its log and try again"
            )
        return Completion(
            id=meta.get("id", ""),
            created=meta.get("created", 0),
            model=meta.get("model", ""),
            system_fingerprint=meta.get("system_fingerprint", ""),
            seed=task.params.seed,
            text="".join(parts),
            finish_reason=finish,
            prompt_tokens=usage.get("prompt_tokens", 0),
            completion_tokens=usage.get("completion_tokens", 0),
            timings={"generate": time.perf_counter() - started},
            findings=Findings.from_records((meta.get("tether") or {}).get("findings") or []),
            blocked=finish == "content_filter",
            engine_text="".join(parts),
            traced=bool((meta.get("tether") or {}).get("trace_id")),
            truncated=(meta.get("tether") or {}).get("truncated") is True,
        )

    def _note_a_long_wait(self) -> asyncio.TimerHandle:
        """A note on stderr if no answer has begun after ``WAIT_NOTICE_S``, unless the
        returned handle is cancelled first; once per backend, as an evaluation's many
        requests would each say it."""

        def say() -> None:
            if self._said_waiting:
                return
            self._said_waiting = True
            click.echo(
                f"note: no answer yet from the server at {self.url} after {WAIT_NOTICE_S:g} s: "
                "it may still be working on this request, or busy with requests sent before it; "
                f"waiting up to {GENERATE_TIMEOUT_S:g} s for it (`tether doctor` checks the "
                "server)",
                err=True,
            )

        return asyncio.get_running_loop().call_later(WAIT_NOTICE_S, say)

    async def _events(self, path: str, response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
        try:
            async for event in json_events(response.aiter_lines()):
                if not _well_formed(event):
                    raise self.not_tether(path, f"an event of another shape: {event!r:.200}")
                yield event
        except (ValueError, UnicodeDecodeError) as exc:
            raise self.not_tether(path, f"events that are not JSON ({exc})") from None

    async def models(self) -> list[dict[str, Any]]:
        """The entries of /v1/models, each with its ``id``."""
        answer = await self.call("GET", "/v1/models")
        entries = answer.get("data") if isinstance(answer, dict) else None
        if (
            not isinstance(entries, list)
            or not entries
            or not all(isinstance(e, dict) and "id" in e for e in entries)
        ):
            raise self.not_tether("/v1/models", "JSON without the list of models tether gives")
        if not isinstance(entries[0].get("meta"), dict):
            # An OpenAI-compatible server (vLLM, Ollama) lists models too, without it.
            raise self.not_tether("/v1/models", "a model without tether's description (meta)")
        self._known_tether = True
        return entries

    async def describe(self) -> dict[str, Any]:
        return {**(await self.models())[0]["meta"], "server": self.url}

    async def trace(self, trace_id: str) -> Trace:
        return (await self.witnessed_trace(trace_id))[0]

    async def witnessed_trace(self, trace_id: str) -> tuple[Trace, Witness | None]:
        """The trace, and the server's audit log's word on it (None: it has no record)."""
        path = trace_url(trace_id)
        answer = await self.call("GET", path)
        try:
            return Trace.from_dict(answer), Witness.from_dict(answer.get("audit"))
        except (AttributeError, TypeError):  # not an object, or without a trace's fields
            raise self.not_tether(path, "JSON that is not a trace") from None

    async def traces(self, limit: int) -> list[dict[str, Any]]:
        """The server's latest ``limit`` traces, newest first, as /v1/traces lists them."""
        answer = await self.call("GET", f"/v1/traces?limit={limit}")
        entries = answer.get("data") if isinstance(answer, dict) else None
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise self.not_tether("/v1/traces", "JSON without the list of traces tether gives")
        return entries

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        """One plain JSON request; None for an empty answer."""
        # A read answers at once; only a POST may wait on the engine (a suggestion, which
        # answers once the whole rewrite is made).
        reading = method == "GET"
        timeout = httpx.Timeout(READ_TIMEOUT_S, connect=5.0) if reading else None
        notice = None if reading else self._note_a_long_wait()
        try:
            response = await self.client.request(
                method, path, json=body, timeout=timeout or httpx.USE_CLIENT_DEFAULT
            )
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from exc
        finally:
            if notice is not None:
                notice.cancel()
        self._raise_for_error(response)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            kind = response.headers.get("content-type", "").split(";")[0] or "no content type"
            raise self.not_tether(response.request.url.path, f"{kind}, not JSON") from None

    async def close(self) -> None:
        await self.client.aclose()


def call_server(
    settings: Settings,
    server: str,
    token: str | None,
    method: str,
    path: str,
    body: Any = None,
) -> Any:
    """One JSON request to a running server, from synchronous command code."""

    async def request() -> Any:
        async with HttpBackend(settings, server, token) as backend:
            return await backend.call(method, path, body)

    return run_until_terminated(request)


def server_trace(
    settings: Settings, server: str, token: str | None, trace_id: str
) -> tuple[Trace, Witness | None]:
    """The trace ``trace_id`` of a running server and its audit log's word on it, from
    synchronous command code."""

    async def request() -> tuple[Trace, Witness | None]:
        async with HttpBackend(settings, server, token) as backend:
            return await backend.witnessed_trace(trace_id)

    return run_until_terminated(request)


def server_traces(
    settings: Settings, server: str, token: str | None, limit: int
) -> list[dict[str, Any]]:
    """A running server's latest traces, from synchronous command code."""

    async def request() -> list[dict[str, Any]]:
        async with HttpBackend(settings, server, token) as backend:
            return await backend.traces(limit)

    return run_until_terminated(request)


def server_models(settings: Settings, server: str, token: str | None) -> list[dict[str, Any]]:
    """The entries of the server's /v1/models, from synchronous command code."""

    async def request() -> list[dict[str, Any]]:
        async with HttpBackend(settings, server, token) as backend:
            return await backend.models()

    return run_until_terminated(request)


def open_backend(settings: Settings, server: str | None, token: str | None) -> Backend:
    if server:
        return HttpBackend(settings, server, token)
    return InProcessBackend(settings)
