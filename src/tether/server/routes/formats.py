"""Answer shapes of each API family: OpenAI completions and chat, llama.cpp, Tabby, tether."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tether.pipeline import AnswerChunk, Completion, Prepared
from tether.server.schemas import usage
from tether.settings import PolicySettings
from tether.suggestions.service import suggestion_from


def _header(prepared: Prepared, obj: str) -> dict[str, Any]:
    return {
        "id": prepared.id,
        "object": obj,
        "created": prepared.created,
        "model": prepared.model,
        "system_fingerprint": prepared.system_fingerprint,
    }


def tether_fields(completion: Completion) -> dict[str, Any]:
    """tether's own answer fields: what the policies and checks found, the seed, and why
    the answer ended, which llama.cpp's and Tabby's shapes have no word for where the
    checks blocked it (``content_filter``)."""
    return {
        "trace_id": completion.id if completion.traced else None,
        "finish_reason": completion.finish_reason,
        "seed": completion.seed,
        "findings": completion.findings.records(),
        "snippets": list(completion.snippets),
        # The code around the cursor was cut to fit the window: an evaluation's task is
        # then not the one it set (llama.cpp's own shape says so as "truncated").
        "truncated": completion.truncated,
    }


def _usage_event(prepared: Prepared, obj: str, completion: Completion) -> dict[str, Any]:
    """The extra last event of ``stream_options.include_usage``: no choices, the usage."""
    return {
        **_header(prepared, obj),
        "choices": [],
        "usage": usage(completion.prompt_tokens, completion.completion_tokens),
    }


class TextCompletionFormat:
    sends_done = True

    def final(self, prepared: Prepared, completion: Completion) -> dict[str, Any]:
        return {
            **_header(prepared, "text_completion"),
            "choices": [
                {
                    "index": 0,
                    "text": completion.text,
                    "logprobs": None,
                    "finish_reason": completion.finish_reason,
                    "stop_reason": completion.stop_word,
                }
            ],
            "usage": usage(completion.prompt_tokens, completion.completion_tokens),
            "tether": tether_fields(completion),
        }

    def events(
        self, prepared: Prepared, chunk: AnswerChunk, first: bool, include_usage: bool
    ) -> list[dict[str, Any]]:
        choice = {
            "index": 0,
            "text": chunk.text,
            "logprobs": None,
            "finish_reason": chunk.finish_reason,
        }
        event: dict[str, Any] = {**_header(prepared, "text_completion"), "choices": [choice]}
        if include_usage:
            event["usage"] = None
        if chunk.completion is None:
            return [event]
        choice["stop_reason"] = chunk.completion.stop_word
        event["tether"] = tether_fields(chunk.completion)
        if not include_usage:
            return [event]
        return [event, _usage_event(prepared, "text_completion", chunk.completion)]


class ChatCompletionFormat:
    sends_done = True

    def final(self, prepared: Prepared, completion: Completion) -> dict[str, Any]:
        return {
            **_header(prepared, "chat.completion"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": completion.text},
                    "logprobs": None,
                    "finish_reason": completion.finish_reason,
                    "stop_reason": completion.stop_word,
                }
            ],
            "usage": usage(completion.prompt_tokens, completion.completion_tokens),
            "tether": tether_fields(completion),
        }

    def events(
        self, prepared: Prepared, chunk: AnswerChunk, first: bool, include_usage: bool
    ) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []

        def event(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
            body = {
                **_header(prepared, "chat.completion.chunk"),
                "choices": [
                    {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
                ],
            }
            if include_usage:
                body["usage"] = None
            return body

        if first:
            events.append(event({"role": "assistant", "content": ""}, None))
        if chunk.text:
            events.append(event({"content": chunk.text}, None))
        if chunk.completion is not None:
            last = event({}, chunk.completion.finish_reason)
            last["choices"][0]["stop_reason"] = chunk.completion.stop_word
            last["tether"] = tether_fields(chunk.completion)
            events.append(last)
            if include_usage:
                events.append(_usage_event(prepared, "chat.completion.chunk", chunk.completion))
        return events


def llama_timings(completion: Completion) -> dict[str, float]:
    """llama.cpp's timings: the prompt tokens read (the cached ones apart) until the first
    token, then the predicting after it."""
    prompt_n = max(0, completion.prompt_tokens - completion.cached_tokens)
    prompt_ms = completion.timings.get("ttft", 0.0) * 1000
    predicted_n = completion.completion_tokens
    predicted_ms = max(0.0, completion.timings.get("generate", 0.0) * 1000 - prompt_ms)
    return {
        "cache_n": completion.cached_tokens,
        "prompt_n": prompt_n,
        "prompt_ms": prompt_ms,
        "prompt_per_token_ms": prompt_ms / prompt_n if prompt_n else 0.0,
        "prompt_per_second": prompt_n * 1000 / prompt_ms if prompt_ms else 0.0,
        "predicted_n": predicted_n,
        "predicted_ms": predicted_ms,
        "predicted_per_token_ms": predicted_ms / predicted_n if predicted_n else 0.0,
        "predicted_per_second": predicted_n * 1000 / predicted_ms if predicted_ms else 0.0,
    }


def tokens_cached(completion: Completion) -> int:
    """llama.cpp's ``tokens_cached``: what the sequence's cache holds after the answer,
    as the engine reports it; for an answer the pipeline ended, or an upstream's, the
    prompt and the answer, which the sequence held at least."""
    if completion.held_tokens is not None:
        return completion.held_tokens
    return completion.prompt_tokens + completion.completion_tokens


def stop_type(completion: Completion) -> str:
    """llama.cpp's reason an answer ended: a stop string, a limit (tokens, time,
    indentation) or the end."""
    if completion.stop_word is not None:
        return "word"
    return "limit" if completion.finish_reason == "length" else "eos"


def only_fields(answer: dict[str, Any], paths: Sequence[str]) -> dict[str, Any]:
    """llama.cpp's ``response_fields``: each path the answer has ("timings/prompt_n"),
    keyed by the path itself, and nothing else."""
    picked: dict[str, Any] = {}
    for path in paths:
        value: Any = answer
        for key in path.split("/"):
            if not isinstance(value, dict) or key not in value:
                break
            value = value[key]
        else:
            picked[path] = value
    return picked


@dataclass(frozen=True)
class InfillFormat:
    """llama.cpp server's native completion shape; ``response_fields`` narrows the whole
    answer (not the streamed events) as llama.cpp's does."""

    response_fields: Sequence[str] = ()
    sends_done = False

    def final(self, prepared: Prepared, completion: Completion) -> dict[str, Any]:
        answer = {
            "id": prepared.id,
            "content": completion.text,
            "stop": True,
            "stop_type": stop_type(completion),
            "stopping_word": completion.stop_word or "",
            "truncated": completion.truncated,
            "model": prepared.model,
            "system_fingerprint": prepared.system_fingerprint,
            "tokens_evaluated": completion.prompt_tokens,
            "tokens_predicted": completion.completion_tokens,
            "tokens_cached": tokens_cached(completion),
            "seed": completion.seed,
            "timings": llama_timings(completion),
            "tether": tether_fields(completion),
        }
        return only_fields(answer, self.response_fields) if self.response_fields else answer

    def events(
        self, prepared: Prepared, chunk: AnswerChunk, first: bool, include_usage: bool
    ) -> list[dict[str, Any]]:
        event: dict[str, Any] = {"content": chunk.text, "stop": chunk.completion is not None}
        if chunk.completion is not None:
            event.update(
                stop_type=stop_type(chunk.completion),
                stopping_word=chunk.completion.stop_word or "",
                truncated=chunk.completion.truncated,
                tokens_evaluated=chunk.completion.prompt_tokens,
                tokens_predicted=chunk.completion.completion_tokens,
                tokens_cached=tokens_cached(chunk.completion),
                timings=llama_timings(chunk.completion),
                model=prepared.model,
                tether=tether_fields(chunk.completion),
            )
        return [event]


class TabbyFormat:
    """Tabby's completion answer; Tabby's agents do not stream."""

    def final(self, prepared: Prepared, completion: Completion) -> dict[str, Any]:
        return {
            "id": prepared.id,
            "choices": [{"index": 0, "text": completion.text}],
            "tether": tether_fields(completion),
        }


class SuggestionFormat:
    """tether's ``/v1/suggestions``: the model's file turned into a patch; never streamed."""

    def __init__(self, path: str, source: str, policy: PolicySettings) -> None:
        self.path = path
        self.source = source
        self.policy = policy  # what governed the prompt: its redactions go back in the file

    def final(self, prepared: Prepared, completion: Completion) -> dict[str, Any]:
        allowed = prepared.task.params.max_tokens
        suggestion = suggestion_from(self.path, self.source, completion, self.policy, allowed)
        return {
            "id": completion.id,
            "object": "suggestion",
            "model": completion.model,
            "system_fingerprint": completion.system_fingerprint,
            "patch": suggestion.patch or None,
            # Why the answer holds no file to compare, when the model answered in prose.
            "problem": suggestion.problem or None,
            "truncated": suggestion.truncated,
            # "content_filter": the compliance checks blocked the file; tether.findings say why
            "finish_reason": completion.finish_reason,
            "usage": usage(completion.prompt_tokens, completion.completion_tokens),
            "tether": tether_fields(completion),
        }
