"""The ``Engine`` protocol and the plain data that crosses it."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

FinishReason = Literal["stop", "length", "content_filter"]


@dataclass(frozen=True)
class FimTokens:
    """The model's own fill-in-the-middle markers, as text."""

    prefix: str
    suffix: str
    middle: str


@dataclass(frozen=True)
class EngineInfo:
    engine: str
    engine_version: str
    model_id: str
    n_ctx: int  # tokens one request may use: prompt and answer
    model_path: str | None = None
    model_sha256: str | None = None
    fim_tokens: FimTokens | None = None
    chat_template: str | None = None
    # True when the engine takes chat messages and renders them itself (an upstream server).
    accepts_messages: bool = False
    bos_token: str = ""
    eos_token: str = ""
    # What else decides the bytes generated: the compute backend and the CPU features it
    # uses (ggml gives each dot product to one thread, so the thread count does not).
    build: str = ""
    n_seq: int = 1  # requests generated at once
    # What the tokenizer reads as control tokens (a chat template's turn markers): in a
    # message they would open turns of their own, so messages carry them as plain text.
    control_tokens: tuple[str, ...] = ()
    # Whether it keeps a call the model chooses to write to its schema once begun
    # (``SamplingParams.chosen_call_format``); a request to one that does not carries none.
    keeps_chosen_calls: bool = False


@dataclass(frozen=True)
class SamplingParams:
    max_tokens: int
    # False when max_tokens is a bound (a default, llama.cpp's n_predict): the engine may
    # lower it to fit the context.
    max_tokens_explicit: bool = True
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0
    stop: tuple[str, ...] = ()
    # llama.cpp's t_max_predict_ms: once the answer has been generating this long, it ends
    # with the next line it finishes. The pipeline enforces it, whatever the engine.
    line_deadline_s: float | None = None
    # llama.cpp's n_indent: the answer ends before the first line after its first that is
    # indented less than this many spaces or tabs. The pipeline enforces it too.
    min_indent: int = 0
    # Stop strings the pipeline matches, not the engine: with values of the prompt
    # pseudonymized, a client's stops are meant for the text it gets, values restored,
    # where an engine would match them against placeholders (a "<" inside "<EMAIL_1>").
    # Kept as governed, placeholders and all, like everything a trace holds.
    stop_after_restoring: tuple[str, ...] = ()
    # The form the answer keeps to: chat's response_format (json_object or json_schema) as
    # JSON text, None for free text. An engine that cannot keep to it refuses the request.
    response_format: str | None = None
    # The form a call the model may choose to write keeps to (a call's response_format, as
    # response_format): free text, until the answer starts as a call, then the call's
    # schema. An engine without grammars ignores it: the model is shown the functions.
    chosen_call_format: str | None = None

    @property
    def pipeline_may_end(self) -> bool:
        """Whether the pipeline may end the answer before the engine would (the limits
        and stops above): it then asks the engine for the answer in pieces, so it can
        stop it."""
        return (
            self.line_deadline_s is not None
            or self.min_indent > 0
            or bool(self.stop_after_restoring)
        )

    def as_record(self) -> dict[str, Any]:
        """The parameters as traces, audit records and manifests keep them."""
        return {
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "seed": self.seed,
            "stop": list(self.stop),
            # Why an answer ended early: a replay regenerates as far as the record goes.
            **({"line_deadline_s": self.line_deadline_s} if self.line_deadline_s else {}),
            **({"min_indent": self.min_indent} if self.min_indent else {}),
            **(
                {"stop_after_restoring": list(self.stop_after_restoring)}
                if self.stop_after_restoring
                else {}
            ),
            **(
                {"response_format": json.loads(self.response_format)}
                if self.response_format
                else {}
            ),
            **(
                {"chosen_call_format": json.loads(self.chosen_call_format)}
                if self.chosen_call_format
                else {}
            ),
        }


@dataclass(frozen=True)
class GenerationRequest:
    """Either a rendered ``prompt`` or chat ``messages`` for an engine that renders itself."""

    params: SamplingParams
    prompt: str | None = None
    messages: list[dict[str, str]] | None = None
    # False when the caller wants the whole answer at once; engines may then skip streaming.
    stream: bool = True
    # The answer mostly copies the prompt (a suggestion rewrites the file it was given):
    # an engine may draft tokens from the prompt and check them together.
    copies_prompt: bool = False

    def shown_text(self) -> str:
        """What the engine is given, as one text: the prompt, or the messages as JSON.

        Traces keep it and audit records commit to it, so both are over the same bytes.
        """
        if self.prompt is not None:
            return self.prompt
        return json.dumps(self.messages, ensure_ascii=False, indent=1)


@dataclass
class GenerationChunk:
    """A piece of generated text; the last one has a finish reason and the token counts.

    An engine may send the prompt's counts sooner (the embedded one does, with its first
    text), and the tokens generated so far with each piece, for an answer the pipeline
    ends before the engine does. Before its first text it may send chunks without text
    that say how much of the prompt it has taken in (``read_tokens``): a request stopped
    while its prompt is read is charged for that much."""

    text: str
    finish_reason: FinishReason | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int | None = None  # prompt tokens read from the KV cache, not evaluated
    stop_word: str | None = None  # the stop string that ended the answer, where known
    # Tokens the sequence's KV cache holds once the answer is done (llama.cpp's
    # tokens_cached), where the engine knows.
    held_tokens: int | None = None
    # The prompt's tokens the engine has read so far or is reading now, cached ones
    # included; sent only before the first text.
    read_tokens: int | None = None


# What became of a request sent to an upstream (a gateway engine's). "cancelled": tether
# stopped reading before the end (the client left, or the editor's hole was filled).
UpstreamOutcome = Literal[
    "answered", "broken", "busy", "refused", "failed", "timed_out", "rejected", "cancelled"
]


@dataclass(frozen=True)
class UpstreamStats:
    name: str  # its base URL, without credentials
    up: bool
    in_flight: int
    outcomes: Mapping[UpstreamOutcome, int]


@dataclass
class EngineStats:
    queue_depth: int = 0
    in_flight: int = 0
    prompt_tokens: int = 0
    cached_prompt_tokens: int = 0  # prompt tokens served from a context's KV cache
    # Time in the engine's steps: in llama.cpp's decode, and in its own (Python) work.
    decode_seconds: float = 0.0
    scheduler_seconds: float = 0.0
    drafted_tokens: int = 0  # drafted from prompts (prompt lookup), and those kept
    accepted_tokens: int = 0
    upstreams: tuple[UpstreamStats, ...] = ()  # a gateway's, in configured order
    failovers: int = 0  # requests sent on to another upstream after one failed


@dataclass(frozen=True)
class SequenceState:
    """One sequence of an engine that generates several at once, as llama.cpp's ``/slots``
    shows its slots: the request it holds, if any, and how far that request has come."""

    id: int
    n_ctx: int
    busy: bool
    task: int | None = None  # the engine's count of requests, for the one it holds
    params: SamplingParams | None = None
    drafting: bool = False  # it drafts tokens from its prompt (prompt lookup)
    prompt_tokens: int = 0
    cached_tokens: int = 0  # of the prompt, found in the sequence's KV cache
    read_tokens: int = 0  # of the prompt, evaluated so far (beyond the cached)
    generated: int = 0


class Engine(Protocol):
    """What every engine offers. Closing the iterator from ``generate`` cancels generation."""

    def info(self) -> EngineInfo:
        """The model and engine it serves, as ``/v1/models``, audit records and
        reproducible runs name them."""
        ...

    def generate(self, request: GenerationRequest) -> AsyncGenerator[GenerationChunk, None]:
        """The answer to ``request``, piece by piece; the last chunk has a finish reason
        and the token counts. A TetherError (``tether.errors``) is a client's or the
        engine's refusal, sent as it says; any other exception is an internal error."""
        ...

    def count_tokens(self, text: str) -> int | None:
        """Tokens in ``text``, or None when the engine has no tokenizer at hand."""
        ...

    async def health(self) -> bool:
        """Whether it can answer now (``/health``, and a gateway's choice of upstream)."""
        ...

    def stats(self) -> EngineStats:
        """What ``/metrics`` reports of it; ``EngineStats()`` when it counts nothing."""
        ...

    async def close(self) -> None:
        """The server stops: end what runs and free what it holds."""
        ...


@runtime_checkable
class Estimating(Protocol):
    """An engine that counts tokens by an estimate made to fit windows, which errs high (a
    gateway: the upstream's tokenizer is not at hand), and can also say what its model
    most likely counts: an answer cut before the engine reported its count is charged
    that, not the bound."""

    def likely_tokens(self, text: str) -> int:
        """The tokens ``text`` most likely takes as part of an answer."""
        ...


@runtime_checkable
class EstimatingPrompts(Protocol):
    """An ``Estimating`` engine that can also say what its model most likely counted for a
    whole prompt: the text and what the server adds around it (a chat template, a default
    system prompt), which the text's own tokens leave out."""

    def likely_prompt_tokens(self, request: GenerationRequest) -> int:
        """The tokens ``request``'s prompt most likely took, as its upstream counts them."""
        ...


@runtime_checkable
class Tokenizer(Protocol):
    """An engine whose own tokenizer is at hand (the embedded one), for llama.cpp's
    ``/tokenize`` and ``/detokenize``. An upstream's tokenizer is not: a gateway has none."""

    def token_ids(self, text: str, *, add_special: bool, parse_special: bool) -> list[int]:
        """The tokens of ``text``: with the model's automatic BOS/EOS if ``add_special``,
        and special tokens written in the text read as such if ``parse_special``;
        ContextLengthError, without reading it, for text that no context window could hold."""
        ...

    def token_bytes(self, token: int) -> bytes:
        """What ``token`` spells, special tokens as their text; RequestError for an id
        outside the vocabulary."""
        ...


@dataclass(frozen=True)
class SequenceFile:
    """A sequence's cache saved to, or restored from, a file."""

    tokens: int
    bytes: int
    seconds: float


@runtime_checkable
class PromptTokensBound(Protocol):
    """An engine that can only estimate a prompt's tokens (a gateway: its upstream applies
    the chat template and counts them), and bounds that estimate from above for what a
    request holds against its token's budget while it runs."""

    def prompt_tokens_bound(self, request: GenerationRequest) -> int:
        """At most how many tokens ``request``'s prompt will be counted as."""
        ...


@runtime_checkable
class SequenceKeeper(Protocol):
    """An engine whose sequences' KV caches can go to files and back (the embedded one),
    for llama.cpp's ``POST /slots/{id}``. Each waits until no request holds the sequence."""

    async def save_sequence(self, seq: int, path: Path) -> SequenceFile: ...

    async def restore_sequence(self, seq: int, path: Path) -> SequenceFile:
        """RequestError when ``path`` does not load; the sequence is then empty."""
        ...

    async def erase_sequence(self, seq: int) -> int:
        """Drop what ``seq`` holds: the number of tokens it held."""
        ...


@runtime_checkable
class Queueing(Protocol):
    """An engine whose requests wait for its sequences in a queue (the embedded one)."""

    def stop_queueing(self) -> None:
        """The server is stopping: requests waiting for a sequence, and any that would
        wait from now on, are refused (503) rather than left to wait out the grace."""
        ...


@runtime_checkable
class SequenceReporter(Protocol):
    """An engine that schedules its own sequences (the embedded one), for llama.cpp's
    ``/slots``. A gateway's sequences are its upstreams'."""

    def sequences(self) -> list[SequenceState]:
        """Each sequence, in order of id: what it holds now."""
        ...


def max_context(n_ctx: int) -> str:
    """The context window in OpenAI's words: LiteLLM, and the clients built on it
    (aider), tell a prompt too long for the window from other 400s by this phrase, not by
    the error's code, and only then give their advice for it."""
    return f"this model's maximum context length is {n_ctx} tokens"


def too_many_characters(chars: int, n_ctx: int) -> str:
    """The refusal of a prompt of more characters than a window of ``n_ctx`` tokens could
    hold, told before it is tokenized."""
    return (
        f"the prompt is {chars} characters, more than the context window can hold: "
        f"{max_context(n_ctx)}; shorten it"
    )
