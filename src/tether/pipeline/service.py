"""The request pipeline shared by the server and the CLI.

Routers and CLI commands build a ``Task``; this module governs it (plugins may rewrite or
block the prompt before anything is tokenized), fits the context, renders the prompt,
generates, and reviews the answer (plugins add findings, may redact or block it).
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

import pluggy

from tether.engines.base import Engine, GenerationChunk, GenerationRequest
from tether.errors import RequestError, UnknownModelError
from tether.findings import Finding
from tether.pipeline.chat import render_chat
from tether.pipeline.fim import comment_marker, render_fim, resolve_template
from tether.pipeline.governance import check_answer, govern, reviewed
from tether.pipeline.reviews import PromptReview
from tether.pipeline.task import Task, TaskKind
from tether.plugins import build_manager
from tether.settings import Settings
from tether.templates import PromptTemplates
from tether.tokens import Principal


@dataclass(frozen=True)
class Prepared:
    id: str
    created: int
    model: str
    system_fingerprint: str
    template: str
    generation: GenerationRequest
    task: Task  # after governance: what the engine is actually shown
    review: PromptReview
    principal: Principal | None = None
    endpoint: str = ""
    timings: dict[str, float] = field(default_factory=dict)  # per stage, seconds

    @property
    def seed(self) -> int:
        return self.generation.params.seed


@dataclass
class Completion:
    id: str
    created: int
    model: str
    system_fingerprint: str
    seed: int
    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    timings: dict[str, float] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    # What the engine wrote, when it differs from ``text`` (pseudonyms put back): the form
    # that may be kept in traces and logs.
    engine_text: str | None = None


def _id(kind: TaskKind) -> str:
    prefix = "chatcmpl" if kind == "chat" else "cmpl"
    return f"{prefix}-{uuid.uuid4().hex}"


class Pipeline:
    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        plugins: pluggy.PluginManager | None = None,
        recorders: Sequence[Recorder] = (),
    ) -> None:
        self.engine = engine
        self.recorders = list(recorders)
        self.settings = settings
        self.plugins = plugins or build_manager(settings)
        info = engine.info()
        self.model_id = info.model_id
        identity = f"{info.model_sha256 or info.model_id}|{info.engine}|{info.engine_version}"
        self.system_fingerprint = "fp_" + hashlib.sha256(identity.encode()).hexdigest()[:12]
        self.fim_template_name, self.fim_template = resolve_template(
            settings.engine.fim_template, info.fim_tokens
        )
        self.templates = PromptTemplates(settings.templates.dir)

    def check_model(self, requested: str | None) -> None:
        if requested and requested != self.model_id:
            raise UnknownModelError(
                f"model {requested!r} is not served here; use {self.model_id!r} "
                "(GET /v1/models lists the models)",
                param="model",
            )

    def _with_preamble(self, messages: list[dict[str, str]]) -> list[dict[str, str]]:
        """Put the ``chat.j2`` house rules in front, in the system message."""
        preamble = self.templates.render("chat", messages=messages).strip()
        if not preamble:
            return messages
        if messages and messages[0]["role"] == "system":
            first = {**messages[0], "content": preamble + "\n\n" + messages[0]["content"]}
            return [first, *messages[1:]]
        return [{"role": "system", "content": preamble}, *messages]

    def _tokens(self, text: str) -> int:
        counted = self.engine.count_tokens(text)
        # Engines without a local tokenizer get an estimate: about four characters a token.
        return counted if counted is not None else len(text) // 4 + 1

    def _fit_context(self, task: Task) -> Task:
        """Let ``compress_context`` fit the client's context snippets into what is left."""
        fim = task.fim
        if fim is None or not fim.context:
            return task
        n_ctx = self.engine.info().n_ctx
        if not n_ctx:
            return task
        used = self._tokens(fim.prefix + fim.suffix) + task.params.max_tokens + 16
        kept = self.plugins.hook.compress_context(
            snippets=list(fim.context),
            budget_tokens=max(0, n_ctx - used),
            count_tokens=self._tokens,
        )
        return replace(task, fim=replace(fim, context=tuple(kept)))

    def prepare(
        self,
        task: Task,
        *,
        stream: bool = True,
        principal: Principal | None = None,
        endpoint: str = "",
    ) -> Prepared:
        self.check_model(task.model)
        if task.kind == "chat" and not task.messages:
            raise RequestError(
                "messages is empty; send at least one {role, content} message", param="messages"
            )
        if task.kind == "fim" and task.fim is None:
            raise RequestError("a FIM request needs a prefix", param="prompt")
        if task.kind == "completion" and task.prompt is None:
            raise RequestError("prompt is required", param="prompt")
        started = time.perf_counter()
        task, review = govern(self.plugins, task, principal.name if principal else None)
        governed = time.perf_counter()
        task = self._fit_context(task)
        info = self.engine.info()
        params = task.params
        prompt: str | None = task.prompt
        messages: list[dict[str, str]] | None = None
        template = "raw"
        if task.kind == "chat":
            assert task.messages is not None
            chat = self._with_preamble(task.messages)
            task = replace(task, messages=chat)
            if info.accepts_messages:
                messages, template = chat, "upstream"
            else:
                template = "model-chat" if info.chat_template else "chatml"
                prompt = render_chat(
                    chat,
                    info.chat_template,
                    bos_token=info.bos_token,
                    eos_token=info.eos_token,
                )
        elif task.kind == "fim":
            assert task.fim is not None
            context = self.templates.render(
                "fim",
                snippets=[{"filename": s.filename, "text": s.text} for s in task.fim.context],
                language=task.fim.language,
                comment=comment_marker(task.fim.language),
            )
            rendered = render_fim(task.fim, self.fim_template_name, self.fim_template, context)
            prompt, template = rendered.prompt, f"fim:{rendered.template}"
            params = replace(params, stop=(*params.stop, *rendered.stop))
        return Prepared(
            id=_id(task.kind),
            created=int(time.time()),
            model=self.model_id,
            system_fingerprint=self.system_fingerprint,
            template=template,
            generation=GenerationRequest(
                params=params, prompt=prompt, messages=messages, stream=stream
            ),
            task=task,
            review=review,
            principal=principal,
            endpoint=endpoint,
            timings={"govern_s": governed - started, "render_s": time.perf_counter() - governed},
        )

    def stream(self, prepared: Prepared) -> AsyncIterator[GenerationChunk]:
        restore = prepared.review.restore if prepared.review.restorers else None
        chunks = reviewed(
            self.engine.generate(prepared.generation),
            restore,
            lambda text: check_answer(self.plugins, prepared.task, text),
        )
        return self._recorded(prepared, chunks) if self.recorders else chunks

    async def _recorded(
        self, prepared: Prepared, chunks: AsyncIterator[GenerationChunk]
    ) -> AsyncIterator[GenerationChunk]:
        """Pass chunks on; the last one is recorded (audit, trace) before it goes out."""
        tally = _Tally()
        try:
            async for chunk in chunks:
                tally.add(chunk)
                if chunk.finish_reason is not None:
                    completion = tally.completion(prepared)
                    for recorder in self.recorders:
                        recorder.record(prepared, completion)
                yield chunk
        finally:
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                await aclose()

    async def collect(
        self, prepared: Prepared, chunks: AsyncIterator[GenerationChunk] | None = None
    ) -> Completion:
        """Gather a whole answer from ``chunks`` (by default, a fresh stream)."""
        tally = _Tally()
        async for chunk in chunks if chunks is not None else self.stream(prepared):
            tally.add(chunk)
        return tally.completion(prepared)


class Recorder(Protocol):
    """Keeps a record of each finished request: the audit log, the trace store."""

    def record(self, prepared: Prepared, completion: Completion) -> None: ...


class _Tally:
    """What a stream of chunks adds up to, and when its first text came."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.first: float | None = None
        self.parts: list[str] = []
        self.last = GenerationChunk(text="")

    def add(self, chunk: GenerationChunk) -> None:
        if self.first is None:
            self.first = time.perf_counter()
        self.parts.append(chunk.text)
        self.last = chunk

    def completion(self, prepared: Prepared) -> Completion:
        ended = time.perf_counter()
        last = self.last
        text = last.reviewed_text if last.reviewed_text is not None else "".join(self.parts)
        finish = last.finish_reason or "stop"
        if last.blocked:
            text, finish = "", "content_filter"
        return Completion(
            id=prepared.id,
            created=prepared.created,
            model=prepared.model,
            system_fingerprint=prepared.system_fingerprint,
            seed=prepared.seed,
            text=text,
            finish_reason=finish,
            prompt_tokens=last.prompt_tokens or 0,
            completion_tokens=last.completion_tokens or 0,
            timings={
                **prepared.timings,
                "ttft_s": (self.first or ended) - self.started,
                "generate_s": ended - self.started,
            },
            findings=[*prepared.review.findings, *(last.findings or [])],
            engine_text=last.engine_text,
        )
