"""Answer shapes of each API family: OpenAI completions, chat and responses, llama.cpp,
Tabby, tether."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from tether.pipeline import AnswerChunk, Completion, Prepared
from tether.server.errors import stream_error
from tether.server.responses import ResponsesRequest
from tether.server.schemas import usage
from tether.server.serving import DataEvents
from tether.server.tool_calls import Call, ToolOffer, pieces_may_be_call
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


def _openai_usage(completion: Completion) -> dict[str, Any]:
    """An OpenAI answer's usage, with the prompt tokens read from the KV cache (the SDKs'
    cached input tokens), as the Responses answer counts them. Where the engine did not
    say (a gateway's upstream that reports none, as vLLM by default), the details are left
    out, as such an upstream leaves them: 0 would claim that nothing was cached."""
    counted = usage(completion.prompt_tokens, completion.completion_tokens)
    if completion.cached_tokens is None:
        return counted
    return {**counted, "prompt_tokens_details": {"cached_tokens": completion.cached_tokens}}


def _usage_event(prepared: Prepared, obj: str, completion: Completion) -> dict[str, Any]:
    """The extra last event of ``stream_options.include_usage``: no choices, the usage."""
    return {
        **_header(prepared, obj),
        "choices": [],
        "usage": _openai_usage(completion),
    }


class TextCompletionFormat(DataEvents):
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
            "usage": _openai_usage(completion),
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


def _call_id(prepared: Prepared, index: int = 0) -> str:
    """The id of the call at ``index`` of those an answer made: the answer's id after
    ``call_``, and after the first, its place."""
    return f"call_{prepared.request_id}" + (f"_{index}" if index else "")


def _tool_call(prepared: Prepared, call: Call, index: int) -> dict[str, Any]:
    """Chat's tool call of the call at ``index`` of those an answer made."""
    function = {"name": call.name, "arguments": call.arguments}
    return {"id": _call_id(prepared, index), "type": "function", "function": function}


def _held(offer: ToolOffer, pieces: list[str]) -> bool:
    """Whether a stream's text so far, ``pieces``, is held: while it may be a call."""
    return offer.required or pieces_may_be_call(pieces, listed=offer.parallel)


class ChatCompletionFormat(DataEvents):
    """Chat's answer. Where functions are offered, an answer that writes a call of one is
    given as ``tool_calls`` (``finish_reason`` tool_calls), or as the older API's
    ``function_call`` where they came in ``functions``, streamed whole once it is written;
    an answer that does not (in text, cut short, or blocked) is given as its text. A
    stream's text is held while it may be a call: always where one is required, else until
    it cannot be (``pieces_may_be_call``)."""

    sends_done = True

    def __init__(self, offer: ToolOffer | None = None) -> None:
        self.offer = offer
        self.held: list[str] | None = None if offer is None else []  # None: not holding

    def holding(self) -> bool:
        return self.held is not None

    def final(self, prepared: Prepared, completion: Completion) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": completion.text}
        finish = completion.finish_reason
        calls = self._calls(completion, completion.text)
        if calls:
            message = {"role": "assistant", "content": None, **self._made(prepared, calls)}
            finish = self._finish
        return {
            **_header(prepared, "chat.completion"),
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": finish,
                    "stop_reason": completion.stop_word,
                }
            ],
            "usage": _openai_usage(completion),
            "tether": tether_fields(completion),
        }

    def _calls(self, completion: Completion, text: str) -> tuple[Call, ...]:
        if self.offer is None or completion.finish_reason != "stop":
            return ()
        return self.offer.read(text)

    @property
    def _older(self) -> bool:
        """Whether the functions came as the older API's, answered with a function_call."""
        return self.offer is not None and self.offer.field == "functions"

    @property
    def _finish(self) -> str:
        return "function_call" if self._older else "tool_calls"

    def _made(self, prepared: Prepared, calls: tuple[Call, ...]) -> dict[str, Any]:
        """The message's fields of the calls it made (the older API's: one)."""
        if self._older:
            (call,) = calls
            return {"function_call": {"name": call.name, "arguments": call.arguments}}
        return {"tool_calls": [_tool_call(prepared, call, i) for i, call in enumerate(calls)]}

    def events(
        self, prepared: Prepared, chunk: AnswerChunk, first: bool, include_usage: bool
    ) -> list[dict[str, Any]]:
        if self.offer is not None and self.held is not None:
            # Held from the first piece, the opening chunk too: it says whether the answer
            # is a call (content null, as OpenAI's) or text (content ""), which is known
            # once the hold ends. So whatever ends it is the stream's first event.
            self.held.append(chunk.text)
            if chunk.completion is None and _held(self.offer, self.held):
                return []
            text = "".join(self.held)
            if chunk.completion is None:
                self.held = None  # text: what was held, and the rest as it comes
                return self._text_events(prepared, replace(chunk, text=text), True, include_usage)
            calls = self._calls(chunk.completion, text)
            if not calls:  # no whole call: the text it wrote, as it would have gone
                return self._text_events(prepared, replace(chunk, text=text), True, include_usage)
            nothing = replace(chunk, text="")
            return self._text_events(prepared, nothing, True, include_usage, calls)
        return self._text_events(prepared, chunk, first, include_usage)

    def _text_events(
        self,
        prepared: Prepared,
        chunk: AnswerChunk,
        first: bool,
        include_usage: bool,
        calls: tuple[Call, ...] = (),
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

        if first and not calls:
            events.append(event({"role": "assistant", "content": ""}, None))
        if chunk.text:
            events.append(event({"content": chunk.text}, None))
        if calls:
            made = self._made(prepared, calls)
            if "tool_calls" in made:
                made = {"tool_calls": [{"index": i, **c} for i, c in enumerate(made["tool_calls"])]}
            # A call's first delta opens the message with no content, as OpenAI's does: the
            # SDK's stream helper gives content None, as the answer not streamed has it.
            opening = {"role": "assistant", "content": None} if first else {}
            events.append(event({**opening, **made}, None))
        if chunk.completion is not None:
            finish = self._finish if calls else chunk.completion.finish_reason
            last = event({}, finish)
            last["choices"][0]["stop_reason"] = chunk.completion.stop_word
            last["tether"] = tether_fields(chunk.completion)
            events.append(last)
            if include_usage:
                events.append(_usage_event(prepared, "chat.completion.chunk", chunk.completion))
        return events


class ResponsesFormat:
    """The OpenAI Responses API's answer: a ``response`` object, or named events, each
    numbered, that build it (``response.created`` … ``response.completed``). Made for one
    request: it echoes the request's settings and numbers its stream's events."""

    sends_done = False

    def __init__(self, body: ResponsesRequest, offer: ToolOffer | None = None) -> None:
        self.body = body
        self.offer = offer  # the functions the answer may be a call of, as on chat
        self.held: list[str] | None = None if offer is None else []  # held while a call may be
        self.sequence = 0
        self.prepared: Prepared | None = None  # once the stream started
        self.sent: list[str] = []  # the text streamed so far
        self.opened = False  # whether the stream's message item was added

    def holding(self) -> bool:
        return self.held is not None

    def final(self, prepared: Prepared, completion: Completion) -> dict[str, Any]:
        return self._response(prepared, completion)

    def _ids(self, prepared: Prepared) -> tuple[str, str]:
        return f"resp_{prepared.request_id}", f"msg_{prepared.request_id}"

    def _calls(self, completion: Completion, text: str) -> tuple[Call, ...]:
        if self.offer is None or completion.finish_reason != "stop":
            return ()
        return self.offer.read(text)

    def _function_call(
        self, prepared: Prepared, call: Call, status: str, index: int
    ) -> dict[str, Any]:
        return {
            "type": "function_call",
            "id": _call_id(prepared, index).replace("call_", "fc_", 1),
            "call_id": _call_id(prepared, index),
            "name": call.name,
            "arguments": call.arguments if status == "completed" else "",
            "status": status,
        }

    def _message(self, prepared: Prepared, text: str, status: str) -> dict[str, Any]:
        return {
            "type": "message",
            "id": self._ids(prepared)[1],
            "status": status,
            "role": "assistant",
            "content": [_output_text(text)] if status != "in_progress" else [],
        }

    def _response(
        self,
        prepared: Prepared,
        completion: Completion | None,
        *,
        failed: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The response object: in progress (no completion), finished, or ``failed``."""
        body = self.body
        asked = body.reasoning
        status, incomplete = "in_progress", None
        output: list[dict[str, Any]] = []
        if failed is not None:
            status = "failed"
            # What the client got: the text its deltas sent, or nothing of a call held
            # until it was whole.
            if self.opened:
                output = [self._message(prepared, "".join(self.sent), "incomplete")]
        elif completion is not None:
            reason = _INCOMPLETE.get(completion.finish_reason)
            status = "completed" if reason is None else "incomplete"
            incomplete = None if reason is None else {"reason": reason}
            # A stream's answer is what its deltas sent: a line redacted after its start
            # went out ends the stream's text otherwise than the whole answer's.
            sent = self.sent if self.held is None else self.held  # held: a call's text
            text = completion.text if self.prepared is None else "".join(sent)
            calls = self._calls(completion, text)
            output = [
                self._function_call(prepared, call, "completed", i) for i, call in enumerate(calls)
            ] or [self._message(prepared, text, status)]
        answer: dict[str, Any] = {
            "id": self._ids(prepared)[0],
            "object": "response",
            "created_at": prepared.created,
            "status": status,
            "completed_at": int(time.time()) if status == "completed" else None,
            "background": False,
            "error": failed,
            "incomplete_details": incomplete,
            "instructions": body.instructions,
            "max_output_tokens": body.max_output_tokens,
            "max_tool_calls": body.max_tool_calls,
            "model": prepared.model,
            "output": output,
            "parallel_tool_calls": body.parallel_tool_calls is not False,
            "previous_response_id": None,
            "prompt_cache_key": body.prompt_cache_key,
            "reasoning": {
                "effort": asked.effort if asked else None,
                "summary": (asked.summary or asked.generate_summary) if asked else None,
            },
            "safety_identifier": body.safety_identifier,
            "service_tier": "default",  # the one tier tether serves, whatever was asked
            "temperature": body.effective_temperature,
            "text": body.text.echoed() if body.text else {"format": {"type": "text"}},
            "tool_choice": body.echoed_tool_choice,
            "tools": body.tools or [],  # echoed as sent
            "top_logprobs": 0,
            "top_p": body.effective_top_p,
            "truncation": "disabled",
            "usage": None,
            "user": body.user,
            "metadata": body.metadata or {},
            "system_fingerprint": prepared.system_fingerprint,
        }
        if completion is not None:
            answer["usage"] = {
                "input_tokens": completion.prompt_tokens,
                # Nothing is written to a cache that outlives the request.
                "input_tokens_details": {
                    "cached_tokens": completion.cached_tokens or 0,  # a field it requires
                    "cache_write_tokens": 0,
                },
                "output_tokens": completion.completion_tokens,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": completion.prompt_tokens + completion.completion_tokens,
            }
            answer["tether"] = tether_fields(completion)
        return answer

    def _event(self, kind: str, **fields: Any) -> dict[str, Any]:
        event = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return event

    def events(
        self, prepared: Prepared, chunk: AnswerChunk, first: bool, include_usage: bool
    ) -> list[dict[str, Any]]:
        events = []
        if first:
            self.prepared = prepared
            started = self._response(prepared, None)
            events += [
                self._event("response.created", response=started),
                self._event("response.in_progress", response=started),
            ]
        if self.offer is None or self.held is None:
            return events + self._text_events(prepared, chunk)
        # A call is held until it is whole, then sent as one; an answer that writes none
        # is sent as the text it wrote, once it cannot be a call.
        self.held.append(chunk.text)
        if chunk.completion is None and _held(self.offer, self.held):
            return events
        text = "".join(self.held)
        if chunk.completion is None:
            self.held = None
            return events + self._text_events(prepared, replace(chunk, text=text))
        calls = self._calls(chunk.completion, text)
        if not calls:
            self.held = None
            return events + self._text_events(prepared, replace(chunk, text=text))
        return events + self._call_events(prepared, calls, chunk.completion)

    def _text_events(self, prepared: Prepared, chunk: AnswerChunk) -> list[dict[str, Any]]:
        item_id = self._ids(prepared)[1]
        place = {"item_id": item_id, "output_index": 0, "content_index": 0}
        events = []
        if not self.opened:
            self.opened = True
            events += [
                self._event(
                    "response.output_item.added",
                    output_index=0,
                    item=self._message(prepared, "", "in_progress"),
                ),
                self._event("response.content_part.added", **place, part=_output_text("")),
            ]
        if chunk.text:
            self.sent.append(chunk.text)
            events.append(
                self._event("response.output_text.delta", **place, delta=chunk.text, logprobs=[])
            )
        completion = chunk.completion
        if completion is not None:
            done = self._response(prepared, completion)
            item = done["output"][0]
            text = item["content"][0]["text"]
            events += [
                self._event("response.output_text.done", **place, text=text, logprobs=[]),
                self._event("response.content_part.done", **place, part=item["content"][0]),
                self._event("response.output_item.done", output_index=0, item=item),
                self._event(f"response.{done['status']}", response=done),
            ]
        return events

    def _call_events(
        self, prepared: Prepared, calls: tuple[Call, ...], completion: Completion
    ) -> list[dict[str, Any]]:
        done = self._response(prepared, completion)
        events = []
        for index, (call, item) in enumerate(zip(calls, done["output"], strict=True)):
            place = {"item_id": item["id"], "output_index": index}
            events += [
                self._event(
                    "response.output_item.added",
                    output_index=index,
                    item=self._function_call(prepared, call, "in_progress", index),
                ),
                self._event(
                    "response.function_call_arguments.delta", **place, delta=call.arguments
                ),
                self._event(
                    "response.function_call_arguments.done",
                    **place,
                    name=call.name,
                    arguments=call.arguments,
                ),
                self._event("response.output_item.done", output_index=index, item=item),
            ]
        return [*events, self._event(f"response.{done['status']}", response=done)]

    def frame(self, payload: dict[str, Any]) -> bytes:
        data = json.dumps(payload, separators=(",", ":"))
        return f"event: {payload['type']}\ndata: {data}\n\n".encode()

    def failure(self, exc: BaseException) -> bytes:
        """``response.failed``, with the error as the chat API would send it, its code one
        of this API's (tether's own under ``tether.code``); an ``error`` event, whose code
        may be any, where no response was started."""
        error = stream_error(exc)["error"]
        if self.prepared is None:
            fields = {k: error[k] for k in ("code", "message", "param")}
            return self.frame(self._event("error", **fields))
        failed = {**error, "code": failed_code(error), "tether": {"code": error["code"]}}
        response = self._response(self.prepared, None, failed=failed)
        return self.frame(self._event("response.failed", response=response))


# A failed response's error.code is one of a fixed list (the SDKs' ResponseError.code),
# which has none of tether's codes: each is sent as the nearest, the server's fault where
# none is nearer (the engine, a plugin, the shutdown, a revoked token).
_FAILED_CODES = {
    "policy_blocked": "invalid_prompt",
    "context_length_exceeded": "invalid_prompt",
    "rate_limit_exceeded": "rate_limit_exceeded",
    "queue_full": "rate_limit_exceeded",
}


def failed_code(error: dict[str, Any]) -> str:
    """The Responses API's code for ``error``, a chat error body's ``error``."""
    code = error["code"]
    if code is None and error["type"] == "invalid_request_error":
        return "invalid_prompt"  # the request's fault, of no kind more particular
    return _FAILED_CODES.get(code, "server_error")


# The Responses API's reason for an answer that did not complete, by finish_reason.
_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def _output_text(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def llama_timings(completion: Completion) -> dict[str, float]:
    """llama.cpp's timings: the prompt tokens read (the cached ones apart) until the first
    token, then the predicting after it."""
    cached = completion.cached_tokens or 0
    prompt_n = max(0, completion.prompt_tokens - cached)
    prompt_ms = completion.timings.get("ttft", 0.0) * 1000
    predicted_n = completion.completion_tokens
    predicted_ms = max(0.0, completion.timings.get("generate", 0.0) * 1000 - prompt_ms)
    return {
        "cache_n": cached,
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
class InfillFormat(DataEvents):
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
