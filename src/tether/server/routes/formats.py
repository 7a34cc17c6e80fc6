"""Answer shapes of each API family: OpenAI completions and chat, llama.cpp, Tabby."""

from __future__ import annotations

from typing import Any

from tether.engines.base import GenerationChunk
from tether.findings import Finding
from tether.pipeline import Completion, Prepared
from tether.server.schemas import usage


def _header(prepared: Prepared, obj: str) -> dict[str, Any]:
    return {
        "id": prepared.id,
        "object": obj,
        "created": prepared.created,
        "model": prepared.model,
        "system_fingerprint": prepared.system_fingerprint,
    }


def tether_fields(prepared: Prepared, findings: list[Finding]) -> dict[str, Any]:
    """tether's own answer fields: what the policies and checks found, and the seed."""
    return {
        "trace_id": prepared.id,
        "seed": prepared.seed,
        "findings": [f.as_record() for f in findings],
    }


def _final_findings(prepared: Prepared, chunk: GenerationChunk) -> list[Finding]:
    return [*prepared.review.findings, *(chunk.findings or [])]


def _finish(chunk: GenerationChunk) -> str | None:
    # A blocked answer can no longer be unsent in a stream; the reason says it was flagged.
    return "content_filter" if chunk.blocked else chunk.finish_reason


def _usage_of(chunk: GenerationChunk) -> dict[str, Any]:
    return usage(chunk.prompt_tokens or 0, chunk.completion_tokens or 0)


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
                }
            ],
            "usage": usage(completion.prompt_tokens, completion.completion_tokens),
            "tether": tether_fields(prepared, completion.findings),
        }

    def events(
        self, prepared: Prepared, chunk: GenerationChunk, first: bool, include_usage: bool
    ) -> list[dict[str, Any]]:
        choice = {
            "index": 0,
            "text": chunk.text,
            "logprobs": None,
            "finish_reason": _finish(chunk),
        }
        events: list[dict[str, Any]] = [
            {**_header(prepared, "text_completion"), "choices": [choice]}
        ]
        if chunk.finish_reason is not None:
            events[0]["tether"] = tether_fields(prepared, _final_findings(prepared, chunk))
        if include_usage:
            events[0]["usage"] = None
            if chunk.finish_reason is not None:
                events.append(
                    {
                        **_header(prepared, "text_completion"),
                        "choices": [],
                        "usage": _usage_of(chunk),
                    }
                )
        return events


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
                }
            ],
            "usage": usage(completion.prompt_tokens, completion.completion_tokens),
            "tether": tether_fields(prepared, completion.findings),
        }

    def events(
        self, prepared: Prepared, chunk: GenerationChunk, first: bool, include_usage: bool
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
        if chunk.finish_reason is not None:
            last = event({}, _finish(chunk))
            last["tether"] = tether_fields(prepared, _final_findings(prepared, chunk))
            events.append(last)
            if include_usage:
                events.append(
                    {
                        **_header(prepared, "chat.completion.chunk"),
                        "choices": [],
                        "usage": _usage_of(chunk),
                    }
                )
        return events


class InfillFormat:
    """llama.cpp server's native completion shape."""

    sends_done = False

    def final(self, prepared: Prepared, completion: Completion) -> dict[str, Any]:
        return {
            "id": prepared.id,
            "content": completion.text,
            "stop": True,
            "stop_type": "limit" if completion.finish_reason == "length" else "eos",
            "model": prepared.model,
            "system_fingerprint": prepared.system_fingerprint,
            "tokens_evaluated": completion.prompt_tokens,
            "tokens_predicted": completion.completion_tokens,
            "seed": completion.seed,
            "timings": {
                "prompt_n": completion.prompt_tokens,
                "predicted_n": completion.completion_tokens,
                "predicted_ms": completion.timings["generate_s"] * 1000,
            },
            "tether": tether_fields(prepared, completion.findings),
        }

    def events(
        self, prepared: Prepared, chunk: GenerationChunk, first: bool, include_usage: bool
    ) -> list[dict[str, Any]]:
        done = chunk.finish_reason is not None
        event: dict[str, Any] = {"content": chunk.text, "stop": done}
        if done:
            event.update(
                tokens_evaluated=chunk.prompt_tokens,
                tokens_predicted=chunk.completion_tokens,
                model=prepared.model,
            )
        return [event]


class TabbyFormat:
    sends_done = False

    def final(self, prepared: Prepared, completion: Completion) -> dict[str, Any]:
        return {
            "id": prepared.id,
            "choices": [{"index": 0, "text": completion.text}],
            "tether": tether_fields(prepared, completion.findings),
        }

    def events(
        self, prepared: Prepared, chunk: GenerationChunk, first: bool, include_usage: bool
    ) -> list[dict[str, Any]]:
        return [{"id": prepared.id, "choices": [{"index": 0, "text": chunk.text}]}]
