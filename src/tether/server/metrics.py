"""Prometheus metrics, in a registry of the app's own (several apps may share a process)."""

from __future__ import annotations

import collections
import dataclasses
import time
from collections.abc import AsyncGenerator, Callable, Iterator
from contextlib import aclosing
from typing import TYPE_CHECKING, get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tether.engines.base import EngineStats, UpstreamOutcome
from tether.hooklimit import stuck_calls
from tether.limits import Limits
from tether.pipeline.result import AnswerChunk, Completion
from tether.server.paths import route_template
from tether.usage.ledger import UsageRecord

if TYPE_CHECKING:
    from tether.pipeline import Prepared

# Prometheus's default edges between 50 ms and 1 s, where an editor's completions fall, and
# longer ones for generations of whole files.
_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 10, 30, 60, 120)
# Principals named in metric labels; the ones after are counted as OTHER_PRINCIPALS. A
# token per CI job would otherwise add series for ever: each one costs the server and
# every Prometheus that scrapes it. The usage ledger keeps every principal apart.
MAX_PRINCIPAL_LABELS = 1000
OTHER_PRINCIPALS = "(other)"


class UpstreamCollector:
    """A gateway's upstreams, read from the engine at scrape time: whether each is in
    service, its requests in flight, what became of the requests sent to it, and how
    many requests went on to another upstream after one failed."""

    def __init__(self, engine_stats: Callable[[], EngineStats]) -> None:
        self._engine_stats = engine_stats

    def describe(self) -> list[Metric]:
        return []  # the upstreams are known only once the engine runs

    def collect(self) -> Iterator[Metric]:
        stats = self._engine_stats()
        if not stats.upstreams:
            return
        up = GaugeMetricFamily(
            "tether_upstream_up", "1 while the upstream is in service", labels=["upstream"]
        )
        in_flight = GaugeMetricFamily(
            "tether_upstream_in_flight", "Requests at the upstream now", labels=["upstream"]
        )
        requests = CounterMetricFamily(
            "tether_upstream_requests",
            "Requests sent to the upstream, by outcome: answered, broken (the answer broke "
            "off or was malformed), busy (429), refused (401/403/404/405/407: a setting to "
            "fix), failed (5xx or no connection), timed_out, rejected (another 4xx: the "
            "request's fault), cancelled (not read to the end)",
            labels=["upstream", "outcome"],
        )
        for upstream in stats.upstreams:
            up.add_metric([upstream.name], 1.0 if upstream.up else 0.0)
            in_flight.add_metric([upstream.name], upstream.in_flight)
            # Every outcome from the start, at 0 until it happens: a series that first
            # appears at 1 reads as no increase, and an upstream's first failure would
            # pass unseen by rate() and increase().
            for outcome in sorted(get_args(UpstreamOutcome)):
                requests.add_metric([upstream.name, outcome], upstream.outcomes.get(outcome, 0))
        failovers = CounterMetricFamily(
            "tether_upstream_failovers",
            "Requests sent on to another upstream after one failed or was busy",
        )
        failovers.add_metric([], stats.failovers)
        yield from (up, in_flight, requests, failovers)


class EngineTotalsCollector:
    """The engine's running totals, read at scrape time: counters, so that ``rate()`` and
    ``increase()`` read a restart as one (as gauges, a restart read as a fall)."""

    def __init__(self, engine_stats: Callable[[], EngineStats]) -> None:
        self._engine_stats = engine_stats

    def describe(self) -> list[Metric]:
        return []  # read from the engine, which runs only once the app has started

    def collect(self) -> Iterator[Metric]:
        stats = self._engine_stats()
        prompt = CounterMetricFamily(
            "tether_engine_prompt_tokens", "Prompt tokens sent to the engine since start"
        )
        prompt.add_metric([], stats.prompt_tokens)
        cached = CounterMetricFamily(
            "tether_engine_cached_prompt_tokens",
            "Prompt tokens reused from the KV cache instead of evaluated again",
        )
        cached.add_metric([], stats.cached_prompt_tokens)
        steps = CounterMetricFamily(
            "tether_engine_step_seconds",
            "Seconds the engine's steps spent since start: in llama.cpp's decode, and in "
            "tether's own scheduling and sampling around it",
            labels=["part"],
        )
        steps.add_metric(["decode"], stats.decode_seconds)
        steps.add_metric(["scheduler"], stats.scheduler_seconds)
        drafts = CounterMetricFamily(
            "tether_engine_draft_tokens",
            "Tokens suggestions drafted from their prompts since start, and those the model kept",
            labels=["outcome"],
        )
        drafts.add_metric(["drafted"], stats.drafted_tokens)
        drafts.add_metric(["accepted"], stats.accepted_tokens)
        yield from (prompt, cached, steps, drafts)


class WebhookCollector:
    """The audit webhook's spool, read at scrape time: batches the receiver has not yet
    taken, and how long the oldest has waited. The server serves on while a receiver is
    down or refuses, so this is where an operator sees records pile up."""

    def __init__(self) -> None:
        self.backlog: Callable[[], tuple[int, float]] | None = None  # set while it runs

    def describe(self) -> list[Metric]:
        return []  # only with a webhook configured

    def collect(self) -> Iterator[Metric]:
        if self.backlog is None:
            return
        batches, waited = self.backlog()
        pending = GaugeMetricFamily(
            "tether_audit_webhook_pending_batches",
            "Spooled batches of audit records the webhook has not yet delivered",
        )
        pending.add_metric([], batches)
        oldest = GaugeMetricFamily(
            "tether_audit_webhook_oldest_pending_seconds",
            "How long the oldest undelivered batch has waited; 0 when none waits",
        )
        oldest.add_metric([], waited)
        yield from (pending, oldest)


class PluginCollector:
    """Third-party plugins' hooks, read at scrape time: the calls that failed (the request
    failed with them, naming the plugin), and those still running past their time, which
    Python cannot stop and only a restart is rid of."""

    def __init__(self, failures: Callable[[], dict[tuple[str, str, str], int]]) -> None:
        self._failures = failures

    def describe(self) -> list[Metric]:
        return []  # labelled by the plugins that fail, known only then

    def collect(self) -> Iterator[Metric]:
        failed = CounterMetricFamily(
            "tether_plugin_failures",
            "Calls of a third-party plugin's hook that failed their request, by plugin, hook "
            "and kind: error (it raised, or broke what it was given) or timeout (it ran past "
            "plugins.hook_timeout_s, or was not called for its calls stuck so)",
            labels=["plugin", "hook", "kind"],
        )
        for (plugin, hook, kind), count in sorted(self._failures().items()):
            failed.add_metric([plugin, hook, kind], count)
        stuck = GaugeMetricFamily(
            "tether_plugin_calls_stuck",
            "Calls of a third-party plugin's hook still running past plugins.hook_timeout_s "
            "in this process: Python cannot stop them, and each holds a thread",
            labels=["plugin", "hook"],
        )
        held = collections.Counter((call.plugin, call.hook) for call in stuck_calls())
        for (plugin, hook), count in sorted(held.items()):
            stuck.add_metric([plugin, hook], count)
        yield from (failed, stuck)


class Metrics:
    def __init__(
        self,
        engine_stats: Callable[[], EngineStats],
        plugin_failures: Callable[[], dict[tuple[str, str, str], int]],
    ) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(PluginCollector(plugin_failures))
        self.registry.register(UpstreamCollector(engine_stats))
        self.registry.register(EngineTotalsCollector(engine_stats))
        self.webhook = WebhookCollector()
        self.registry.register(self.webhook)
        self._principals: set[str] = set()  # those named in labels
        self.requests = Counter(
            "tether_requests",
            "HTTP requests by route and status",
            ["route", "status"],
            registry=self.registry,
        )
        # By status too: a refusal takes a millisecond, and mixed with the answers of its
        # route it moved their quantiles (half of them refused: a p50 of 10 ms).
        self.latency = Histogram(
            "tether_request_duration_seconds",
            "Time from request to last byte, by route and status",
            ["route", "status"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.ttft = Histogram(
            "tether_time_to_first_token_seconds",
            "Time from request to first generated text",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.stream_errors = Counter(
            "tether_stream_errors",
            "Streams that failed or were cut (shutdown, a revoked token) after they started "
            "(their status was already 200), by route",
            ["route"],
            registry=self.registry,
        )
        self.tokens = Counter(
            "tether_tokens",
            "Tokens processed, by kind (prompt or completion)",
            ["kind"],
            registry=self.registry,
        )
        self.rate_limited = Counter(
            "tether_rate_limited_requests",
            "Requests refused because their token was over a limit, by limit",
            ["limit"],
            registry=self.registry,
        )
        self.principal_tokens = Counter(
            "tether_principal_tokens",
            "Tokens (prompt + completion) used, by principal",
            ["principal"],
            registry=self.registry,
        )
        self.usage_requests = Counter(
            "tether_usage_requests",
            "API requests by principal, model and endpoint (the usage ledger's rows)",
            ["principal", "model", "endpoint"],
            registry=self.registry,
        )
        self.usage_tokens = Counter(
            "tether_usage_tokens",
            "Tokens by principal, model and kind (prompt, cached, completion)",
            ["principal", "model", "kind"],
            registry=self.registry,
        )
        self.usage_bytes = Counter(
            "tether_usage_bytes",
            "Request and response body bytes by principal and direction (in, out)",
            ["principal", "direction"],
            registry=self.registry,
        )
        # The label values known in advance are shown from the start, at 0: a series that
        # first appears at 1 reads as no increase to rate() and increase(), so a server's
        # first refusal, or its first answer's tokens, would pass unseen.
        for limit in dataclasses.fields(Limits):
            self.rate_limited.labels(limit.name)
        for kind in ("prompt", "completion"):
            self.tokens.labels(kind)
        self.in_flight = Gauge(
            "tether_http_requests_in_flight",
            "HTTP requests being served",
            registry=self.registry,
        )
        queue = Gauge(
            "tether_queue_depth", "Requests waiting for a free sequence", registry=self.registry
        )
        queue.set_function(lambda: engine_stats().queue_depth)
        generating = Gauge(
            "tether_generations_in_flight",
            "Generations running in the engine",
            registry=self.registry,
        )
        generating.set_function(lambda: engine_stats().in_flight)

    def principal(self, name: str) -> str:
        """``name`` as metric labels give it: itself, or past the first
        MAX_PRINCIPAL_LABELS principals, OTHER_PRINCIPALS."""
        if name in self._principals:
            return name
        if len(self._principals) >= MAX_PRINCIPAL_LABELS:
            return OTHER_PRINCIPALS
        self._principals.add(name)
        return name

    def count_principal_tokens(self, name: str, tokens: int) -> None:
        self.principal_tokens.labels(self.principal(name)).inc(tokens)

    def count_usage(self, row: UsageRecord) -> None:
        who, model = self.principal(row.principal or ""), row.model or ""
        self.usage_requests.labels(who, model, row.endpoint).inc()
        if row.prompt_tokens or row.completion_tokens:
            self.usage_tokens.labels(who, model, "prompt").inc(row.prompt_tokens)
            self.usage_tokens.labels(who, model, "cached").inc(row.cached_tokens)
            self.usage_tokens.labels(who, model, "completion").inc(row.completion_tokens)
        self.usage_bytes.labels(who, "in").inc(row.bytes_in)
        self.usage_bytes.labels(who, "out").inc(row.bytes_out)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    async def observe(
        self,
        route: str,
        started: float,
        chunks: AsyncGenerator[AnswerChunk, None],
        on_completion: Callable[[Completion], None] | None = None,
    ) -> AsyncGenerator[AnswerChunk, None]:
        """Pass chunks through, recording time to first token."""
        first = True
        # Closing us must reach the engine at once, not when the GC gets to it.
        async with aclosing(chunks):
            async for chunk in chunks:
                if first:
                    self.ttft.labels(route).observe(time.perf_counter() - started)
                    first = False
                if chunk.completion is not None and on_completion is not None:
                    on_completion(chunk.completion)
                yield chunk

    def record(self, prepared: Prepared, completion: Completion) -> None:
        """Count an answer's tokens: as a pipeline recorder, so that an answer whose client
        left midway counts what it used, as the usage ledger and token limits do."""
        self.tokens.labels("prompt").inc(completion.prompt_tokens)
        self.tokens.labels("completion").inc(completion.completion_tokens)


class MetricsMiddleware:
    """Pure ASGI, so it neither buffers streams nor hides client disconnects."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.metrics.in_flight.dec()
            path = route_template(scope) or "unmatched"
            self.metrics.requests.labels(path, str(status)).inc()
            self.metrics.latency.labels(path, str(status)).observe(time.perf_counter() - started)
