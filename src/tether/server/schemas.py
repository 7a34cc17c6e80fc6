"""Wire schemas: what clients send, validated leniently (unknown fields are logged).

Each request converts itself into a pipeline ``Task``; the strict internal types live in
``tether.engines.base`` and ``tether.pipeline``.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tether.engines.base import SamplingParams
from tether.errors import RequestError
from tether.pipeline import (
    ChatTask,
    CompletionTask,
    ContextSnippet,
    FimInput,
    FimTask,
    Task,
)

log = logging.getLogger("tether.server")

OPENAI_COMPLETIONS_DEFAULT_MAX_TOKENS = 16


class WireModel(BaseModel):
    model_config = ConfigDict(extra="allow")

    @model_validator(mode="after")
    def _log_unknown(self) -> WireModel:
        if self.model_extra:
            log.debug("ignoring unknown fields %s", sorted(self.model_extra))
        return self


class StreamOptions(WireModel):
    include_usage: bool = False


def _stops(stop: str | list[str] | None) -> tuple[str, ...]:
    if stop is None:
        return ()
    stops = [stop] if isinstance(stop, str) else stop
    return tuple(s for s in stops if s)


class SamplingFields(WireModel):
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    seed: int | None = Field(None, ge=0, le=2**32 - 1)
    stop: str | list[str] | None = Field(None, max_length=16)
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(1, ge=1)
    model: str | None = None

    def _check_unsupported(self) -> None:
        if self.n != 1:
            raise RequestError(
                f"n={self.n} is not supported: tether returns one choice per request; "
                "send n=1 (or omit it) and repeat the request with other seeds",
                param="n",
            )

    def sampling(
        self, max_tokens: int | None, default_max: int, default_seed: int
    ) -> SamplingParams:
        self._check_unsupported()
        return SamplingParams(
            max_tokens=max_tokens if max_tokens is not None else default_max,
            max_tokens_explicit=max_tokens is not None,
            temperature=self.temperature,
            top_p=self.top_p,
            seed=self.seed if self.seed is not None else default_seed,
            stop=_stops(self.stop),
        )

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class CompletionRequest(SamplingFields):
    prompt: str | list[str]
    suffix: str | None = None
    max_tokens: int | None = Field(None, ge=1)
    echo: bool = False
    logprobs: int | None = None
    best_of: int | None = None

    def to_task(self, default_seed: int) -> Task:
        if isinstance(self.prompt, list):
            if len(self.prompt) != 1:
                raise RequestError(
                    "prompt must be one string; send one request per prompt", param="prompt"
                )
            prompt = self.prompt[0]
        else:
            prompt = self.prompt
        if self.echo:
            raise RequestError("echo is not supported; omit it", param="echo")
        if self.logprobs is not None:
            raise RequestError("logprobs is not supported; omit it", param="logprobs")
        if self.best_of not in (None, 1):
            raise RequestError("best_of is not supported; omit it", param="best_of")
        params = self.sampling(self.max_tokens, OPENAI_COMPLETIONS_DEFAULT_MAX_TOKENS, default_seed)
        if self.suffix is not None:
            return FimTask(params, FimInput(prefix=prompt, suffix=self.suffix), self.model)
        return CompletionTask(params, prompt, self.model)


class ContentPart(WireModel):
    type: str
    text: str | None = None


class ChatMessage(WireModel):
    role: Literal["system", "user", "assistant", "developer", "tool"]
    content: str | list[ContentPart] | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        parts = []
        for part in self.content:
            if part.type != "text" or part.text is None:
                raise RequestError(
                    f"content parts of type {part.type!r} are not supported; send text only",
                    param="messages",
                )
            parts.append(part.text)
        return "".join(parts)


class ChatRequest(SamplingFields):
    messages: list[ChatMessage]
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool = False

    def to_task(self, default_max: int, default_seed: int) -> Task:
        if self.logprobs:
            raise RequestError("logprobs is not supported; omit it", param="logprobs")
        limit = self.max_completion_tokens or self.max_tokens
        messages = [
            {"role": "system" if m.role == "developer" else m.role, "content": m.text()}
            for m in self.messages
        ]
        return ChatTask(self.sampling(limit, default_max, default_seed), messages, self.model)


class FimRequest(SamplingFields):
    """Mistral / DeepSeek ``/v1/fim/completions``."""

    prompt: str
    suffix: str = ""
    max_tokens: int | None = Field(None, ge=1)
    random_seed: int | None = Field(None, ge=0, le=2**32 - 1)

    def to_task(self, default_max: int, default_seed: int) -> Task:
        if self.seed is None and self.random_seed is not None:
            self.seed = self.random_seed
        return FimTask(
            self.sampling(self.max_tokens, default_max, default_seed),
            FimInput(prefix=self.prompt, suffix=self.suffix),
            self.model,
        )


class InfillExtra(WireModel):
    filename: str = ""
    text: str


class InfillRequest(WireModel):
    """llama.cpp server ``POST /infill``."""

    input_prefix: str = ""
    input_suffix: str = ""
    input_extra: list[InfillExtra] = Field(default_factory=list)
    prompt: str = ""
    n_predict: int | None = Field(None, ge=-1)
    temperature: float = Field(0.8, ge=0.0, le=2.0)
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    seed: int | None = Field(None, ge=-1, le=2**32 - 1)
    stop: list[str] = Field(default_factory=list)
    stream: bool = False
    model: str | None = None

    def to_task(self, default_max: int, default_seed: int) -> Task:
        limit = self.n_predict if self.n_predict and self.n_predict > 0 else None
        seed = self.seed if self.seed is not None and self.seed >= 0 else default_seed
        params = SamplingParams(
            max_tokens=limit or default_max,
            max_tokens_explicit=limit is not None,
            temperature=self.temperature,
            top_p=self.top_p,
            seed=seed,
            stop=_stops(self.stop),
        )
        fim = FimInput(
            prefix=self.input_prefix + self.prompt,
            suffix=self.input_suffix,
            context=tuple(ContextSnippet(e.text, e.filename) for e in self.input_extra),
        )
        return FimTask(params, fim, self.model)


class TabbySnippet(WireModel):
    filepath: str = ""
    body: str


class TabbySegments(WireModel):
    prefix: str
    suffix: str | None = None
    filepath: str | None = None
    git_url: str | None = None
    declarations: list[TabbySnippet] | None = None
    relevant_snippets_from_changed_files: list[TabbySnippet] | None = None
    relevant_snippets_from_recently_opened_files: list[TabbySnippet] | None = None
    clipboard: str | None = None


class TabbyCompletionRequest(WireModel):
    language: str | None = None
    segments: TabbySegments
    user: str | None = None
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    seed: int | None = Field(None, ge=0, le=2**32 - 1)

    def to_task(self, default_max: int, default_seed: int) -> Task:
        segments = self.segments
        snippets = [
            *(segments.declarations or []),
            *(segments.relevant_snippets_from_changed_files or []),
            *(segments.relevant_snippets_from_recently_opened_files or []),
        ]
        params = SamplingParams(
            max_tokens=default_max,
            max_tokens_explicit=False,
            temperature=self.temperature if self.temperature is not None else 0.1,
            seed=self.seed if self.seed is not None else default_seed,
        )
        fim = FimInput(
            prefix=segments.prefix,
            suffix=segments.suffix or "",
            language=self.language or "",
            context=tuple(ContextSnippet(s.body, s.filepath) for s in snippets),
        )
        return FimTask(params, fim)


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
