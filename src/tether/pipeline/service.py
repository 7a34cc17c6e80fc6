"""The request pipeline shared by the server and the CLI: render, generate, collect.

Routers and CLI commands build a ``Task``, and this module turns it into an engine
request and the engine's chunks into an answer. Governance, context gathering and
auditing hook in here as they arrive, so every entry point gets them at once.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from typing import Literal

from tether.engines.base import Engine, GenerationChunk, GenerationRequest, SamplingParams
from tether.errors import RequestError, UnknownModelError
from tether.pipeline.chat import render_chat
from tether.pipeline.fim import FimInput, render_fim, resolve_template
from tether.settings import Settings

TaskKind = Literal["completion", "chat", "fim"]


@dataclass(frozen=True)
class Task:
    kind: TaskKind
    params: SamplingParams
    prompt: str | None = None
    messages: list[dict[str, str]] | None = None
    fim: FimInput | None = None
    model: str | None = None


@dataclass(frozen=True)
class Prepared:
    id: str
    created: int
    model: str
    system_fingerprint: str
    template: str
    generation: GenerationRequest

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


def _id(kind: TaskKind) -> str:
    prefix = "chatcmpl" if kind == "chat" else "cmpl"
    return f"{prefix}-{uuid.uuid4().hex}"


class Pipeline:
    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings
        info = engine.info()
        self.model_id = info.model_id
        identity = f"{info.model_sha256 or info.model_id}|{info.engine}|{info.engine_version}"
        self.system_fingerprint = "fp_" + hashlib.sha256(identity.encode()).hexdigest()[:12]
        self.fim_template_name, self.fim_template = resolve_template(
            settings.engine.fim_template, info.fim_tokens
        )

    def check_model(self, requested: str | None) -> None:
        if requested and requested != self.model_id:
            raise UnknownModelError(
                f"model {requested!r} is not served here; use {self.model_id!r} "
                "(GET /v1/models lists the models)",
                param="model",
            )

    def prepare(self, task: Task, *, stream: bool = True) -> Prepared:
        self.check_model(task.model)
        info = self.engine.info()
        params = task.params
        template = "raw"
        prompt: str | None = task.prompt
        messages: list[dict[str, str]] | None = None
        if task.kind == "chat":
            if not task.messages:
                raise RequestError(
                    "messages is empty; send at least one {role, content} message",
                    param="messages",
                )
            if info.accepts_messages:
                messages, template = task.messages, "upstream"
            else:
                template = "model-chat" if info.chat_template else "chatml"
                prompt = render_chat(
                    task.messages,
                    info.chat_template,
                    bos_token=info.bos_token,
                    eos_token=info.eos_token,
                )
        elif task.kind == "fim":
            if task.fim is None:
                raise RequestError("a FIM request needs a prefix", param="prompt")
            rendered = render_fim(task.fim, self.fim_template_name, self.fim_template)
            prompt, template = rendered.prompt, f"fim:{rendered.template}"
            params = replace(params, stop=(*params.stop, *rendered.stop))
        elif prompt is None:
            raise RequestError("prompt is required", param="prompt")
        return Prepared(
            id=_id(task.kind),
            created=int(time.time()),
            model=self.model_id,
            system_fingerprint=self.system_fingerprint,
            template=template,
            generation=GenerationRequest(
                params=params, prompt=prompt, messages=messages, stream=stream
            ),
        )

    def stream(self, prepared: Prepared) -> AsyncIterator[GenerationChunk]:
        return self.engine.generate(prepared.generation)

    async def complete(self, task: Task) -> Completion:
        prepared = self.prepare(task, stream=False)
        return await self.collect(prepared)

    async def collect(
        self, prepared: Prepared, chunks: AsyncIterator[GenerationChunk] | None = None
    ) -> Completion:
        """Gather a whole answer from ``chunks`` (by default, a fresh stream)."""
        started = time.perf_counter()
        first: float | None = None
        parts: list[str] = []
        last = GenerationChunk(text="")
        async for chunk in chunks if chunks is not None else self.stream(prepared):
            if first is None:
                first = time.perf_counter()
            parts.append(chunk.text)
            last = chunk
        ended = time.perf_counter()
        return Completion(
            id=prepared.id,
            created=prepared.created,
            model=prepared.model,
            system_fingerprint=prepared.system_fingerprint,
            seed=prepared.seed,
            text="".join(parts),
            finish_reason=last.finish_reason or "stop",
            prompt_tokens=last.prompt_tokens or 0,
            completion_tokens=last.completion_tokens or 0,
            timings={
                "ttft_s": (first or ended) - started,
                "total_s": ended - started,
            },
        )
