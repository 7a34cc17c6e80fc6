"""The OpenAI Responses API's request (``POST /v1/responses``), read into a chat task.

tether keeps nothing that a later request could name: a response is not stored, so
``previous_response_id``, ``conversation`` and ``GET /v1/responses/{id}`` have nothing to
find, and a client sends the whole conversation in ``input``, as it does to chat
completions. Tools are taken as chat completions take them (``tether.server.
tool_calls``): the model is shown the functions and calls one where a call is required,
or where it chooses to (``tool_choice`` auto, or ``allowed_tools`` in mode auto); a
history's tool calls and their outputs are read as chat reads an assistant's
``tool_calls`` and a ``tool`` message. What tether cannot do (call a built-in
tool, reason, read images) is refused with a 400 that names the field, rather than
answered without it; fields it does not know are accepted and ignored, as on chat
completions.
"""

from __future__ import annotations

import re
from dataclasses import replace
from functools import cached_property
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Discriminator, Field, Tag, field_validator
from pydantic.json_schema import SkipJsonSchema

from tether.engines.base import SamplingParams
from tether.errors import PolicyBlockedError, TetherError
from tether.pipeline import ChatTask, Task
from tether.server.schemas import (
    Count,
    JsonObjectFormat,
    JsonSchemaFields,
    RefusalPart,
    Seed,
    TextFormat,
    Unsupported,
    WireModel,
    tool_choice_read,
)
from tether.server.tool_calls import (
    ToolOffer,
    result_of,
    tool_offer,
    written,
    written_together,
)

PATH = "/v1/responses"
COUNT_PATH = "/v1/responses/input_tokens"
_NOT_KEPT = (
    "tether keeps no responses, so a later request cannot refer to one: send the whole "
    "conversation (earlier user and assistant messages too) in input"
)
_TEXT_ONLY = (
    "the model reads text only: send text parts "
    '({"type": "input_text", "text": ...}), or the content as one string'
)
# The roles the chat template is given.
_TEMPLATE_ROLE = {"developer": "system"}

# What to do when a field of this route is refused: appended to the 400's message, before
# the hints every route shares (``FIELD_HINTS``), which name other routes' fields alike.
RESPONSES_HINTS = {
    "input": "send a string, or a list of messages, each "
    '{"role": "user" | "system" | "developer" | "assistant", "content": ...} (with or '
    'without "type": "message"), content a string or a list of '
    '{"type": "input_text" | "output_text", "text": ...} parts; an earlier tool call as '
    '{"type": "function_call", "call_id": ..., "name": ...} and its result as '
    '{"type": "function_call_output", "call_id": ..., "output": ...}',
    "text": 'send text.format {"type": "text"}, {"type": "json_object"} or {"type": '
    '"json_schema", "name": ..., "schema": {...}}, with a name of letters, digits, \'_\' '
    "and '-', at most 64; or omit it",
    "tool_choice": "send none or auto for an answer in text; required, "
    '{"type": "function", "name": ...}, or {"type": "allowed_tools", "mode": "auto" | '
    '"required", "tools": [...]} for a call of a function in tools (tether calls functions '
    "only); or omit it",
    "max_output_tokens": "send a count of tokens, at least 1, or null for the server's "
    "generation.max_tokens",
    "top_logprobs": "log probabilities are not returned: send 0 or omit it",
    "metadata": "send at most 16 string values, keys of at most 64 characters, values of "
    "at most 512",
    "instructions": "send the instructions as one string",
    "tools": "send a list of tools, each an object with its type",
    "include": "log probabilities are not returned: leave message.output_text.logprobs "
    "out of include",
    "background": "tether keeps no responses to fetch later: send background false (or "
    "omit it) and wait for the answer, or stream it",
    "truncation": "tether does not drop earlier messages to fit the context window: send "
    "truncation disabled (or omit it), and shorten input yourself when the answer is a 400 "
    "context_length_exceeded",
    "reasoning": "the model does not reason before it answers: send reasoning.effort none "
    "or null, or omit it (a summary, of no reasoning, is empty); in Codex, set "
    'model_reasoning_effort = "none" in config.toml, or leave it out',
    "previous_response_id": _NOT_KEPT,
    "conversation": _NOT_KEPT,
    "prompt": "tether keeps no prompt templates: send the prompt's text in instructions and input",
}


def in_responses_terms(exc: TetherError, body: ResponsesRequest) -> None:
    """Make ``exc`` name this API's fields where the pipeline names chat's: ``max_tokens``,
    ``response_format``, and the chat messages a policy finding is in (``messages[2]``),
    which are not counted as ``input`` is (the instructions come first, reasoning items
    are left out, the calls of one answer are one turn)."""
    if exc.param == "max_tokens":
        exc.param = "max_output_tokens"
        exc.message = re.sub(r"\bmax_tokens\b", "max_output_tokens", exc.message)
    if exc.param == "response_format":  # a schema the engine cannot keep the answer to
        exc.param = "text.format"
    if isinstance(exc, PolicyBlockedError):
        sources = body.sources()

        def source(match: re.Match[str]) -> str:
            index = int(match.group(1))
            return sources[index] if index < len(sources) else match.group(0)

        exc.message = re.sub(r"\bmessages\[(\d+)\]", source, exc.message)


class InputText(WireModel):
    # A user's text, or an assistant's earlier answer (as a response's output has it).
    type: Literal["input_text", "output_text"]
    text: str


InputPart = Annotated[InputText | RefusalPart, Field(discriminator="type")]


def _joined(content: str | list[InputText] | list[InputPart]) -> str:
    return content if isinstance(content, str) else "".join(part.text for part in content)


class InputMessage(WireModel):
    type: Literal["message"] | None = None
    role: Literal["user", "system", "developer", "assistant"]
    content: str | list[InputPart]

    def text(self) -> str:
        return _joined(self.content)


class ToolCall(WireModel):
    """An earlier answer that called a tool (a function, or a custom tool that takes
    free text): read as chat reads an assistant message's ``tool_calls``, as the turn it
    was, not as text."""

    type: Literal["function_call", "custom_tool_call"]
    call_id: str
    name: str
    arguments: str | None = None  # a function's
    input: str | None = None  # a custom tool's

    def written(self) -> str:
        """The call as the model writes one (``tool_calls.written``)."""
        if self.type == "custom_tool_call":
            return written(self.name, self.input, key="input")
        return written(self.name, self.arguments)


class ToolOutput(WireModel):
    """What a called tool gave back: read as chat reads a ``tool`` message."""

    type: Literal["function_call_output", "custom_tool_call_output"]
    call_id: str
    output: str | list[InputText]


class ReasoningItem(WireModel):
    """An earlier answer's reasoning, which clients send back (encrypted, or summarised):
    skipped, as the model that answers reasons in none of its turns."""

    type: Literal["reasoning"]


def _item_type(item: Any) -> str | None:
    if isinstance(item, dict):
        return str(item.get("type") or "message")
    return getattr(item, "type", None) or "message"


InputItem = Annotated[
    Annotated[InputMessage, Tag("message")]
    | Annotated[ToolCall, Tag("function_call")]
    | Annotated[ToolCall, Tag("custom_tool_call")]
    | Annotated[ToolOutput, Tag("function_call_output")]
    | Annotated[ToolOutput, Tag("custom_tool_call_output")]
    | Annotated[ReasoningItem, Tag("reasoning")],
    Discriminator(_item_type),
]
_READ_ITEMS = ("message", "function_call", "custom_tool_call", "function_call_output",
               "custom_tool_call_output", "reasoning")  # fmt: skip


class AllowedTools(WireModel):
    """``tool_choice`` of the tools the model may choose from. In mode auto it may answer
    in text instead, as for auto; in mode required it calls one of the functions it
    lists."""

    type: Literal["allowed_tools"]
    mode: Literal["auto", "required"]
    tools: list[dict[str, Any]]


class NamedFunctionChoice(WireModel):
    """``tool_choice`` of one function the model must call."""

    type: Literal["function"]
    name: str


class ResponsesJsonSchemaFormat(JsonSchemaFields):
    """A JSON schema the answer keeps to, in the Responses API's shape: its fields beside
    its type, where chat has them in ``json_schema``."""

    type: Literal["json_schema"]

    def answer_format(self) -> str | None:
        return self.chat_format()


class TextConfig(WireModel):
    format: (
        Annotated[
            TextFormat | JsonObjectFormat | ResponsesJsonSchemaFormat, Field(discriminator="type")
        ]
        | None
    ) = None

    def echoed(self) -> dict[str, Any]:
        """``text`` as the response echoes it."""
        if self.format is None:
            return {"format": {"type": "text"}}
        unknown = set(self.format.model_extra or ())
        return {"format": self.format.model_dump(by_alias=True, exclude_none=True, exclude=unknown)}


class Reasoning(WireModel):
    # None of the model's answers is reasoned: no effort but none is spent, and a summary
    # of the reasoning (which Codex asks for by default) is one of nothing: none is given.
    effort: Literal["none"] | None = None
    summary: Literal["auto", "concise", "detailed", "none"] | None = None
    generate_summary: Literal["auto", "concise", "detailed", "none"] | None = None


def _no_logprobs(include: list[str]) -> list[str]:
    # What else may be included (a tool call's results, reasoning's encrypted content) is
    # in no answer, as no tool is called and nothing is reasoned: asking for it is harmless.
    if "message.output_text.logprobs" in include:
        raise ValueError("message.output_text.logprobs cannot be included")
    return include


MetadataValue = Annotated[str, Field(max_length=512)]


def _refuse_what_is_not_read(items: Any) -> Any:
    """The input items and parts tether cannot read, each refused with what to send."""
    if not isinstance(items, list):
        return items
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            continue
        kind = item.get("type")
        if kind not in (None, *_READ_ITEMS):
            if kind in ("item_reference",):
                raise ValueError(
                    f"input[{i}] refers to a stored item; {_NOT_KEPT}; the AI SDK sends its "
                    'earlier items whole, not as references, with "store": false '
                    "(providerOptions.openai.store)"
                )
            raise ValueError(
                f"input[{i}] is a {kind!r} item: tether reads messages, function and custom "
                "tool calls and their outputs, and reasoning (which it skips); send what the "
                "item holds as a message"
            )
        content = item.get("content", item.get("output"))
        for j, part in enumerate(content if isinstance(content, list) else ()):
            part_kind = part.get("type") if isinstance(part, dict) else None
            if part_kind in ("input_image", "input_file", "input_audio"):
                where = "content" if "content" in item else "output"
                raise ValueError(f"input[{i}].{where}[{j}] is {part_kind}: {_TEXT_ONLY}")
    return items


class ResponsesRequest(WireModel):
    """OpenAI ``POST /v1/responses``: a text answer to ``input``, after ``instructions``."""

    model: str | None = Field(None, description="The served model (GET /v1/models), or none.")
    input: str | Annotated[list[InputItem], Field(min_length=1)] = Field(
        description="A user's text, or the whole conversation: messages, and earlier tool "
        "calls and their outputs."
    )
    instructions: str | None = Field(None, description="A system message before input.")
    max_output_tokens: Count | None = Field(
        None, description="Most tokens to generate; default generation.max_tokens."
    )
    temperature: float | None = Field(1.0, ge=0.0, le=2.0)
    top_p: float | None = Field(1.0, gt=0.0, le=1.0)
    seed: Seed | None = Field(None, description="tether: default generation.seed.")
    stream: bool | None = Field(False, description="Answer as server-sent events.")
    metadata: Annotated[dict[str, MetadataValue], Field(max_length=16)] | None = Field(
        None, description="Echoed in the answer."
    )
    user: str | None = Field(None, description="Echoed in the answer.")
    # What newer clients send for what user did: the key OpenAI's prompt cache routes by,
    # and the end user it holds to account. tether uses neither, and echoes both.
    prompt_cache_key: str | None = Field(None, description="Echoed in the answer.")
    safety_identifier: Annotated[str, Field(max_length=128)] | None = Field(
        None, description="Echoed in the answer."
    )
    # The answer's service_tier is the tier that served it, as OpenAI's is, whatever was
    # asked: tether has one, default.
    service_tier: str | None = Field(None, description="Accepted; every answer is default.")
    store: bool | None = Field(
        None, description="Accepted; tether keeps no response that a later request could name."
    )
    text: TextConfig | None = Field(
        None,
        description="format: text, json_object or json_schema, kept to as on chat "
        "completions' response_format.",
    )
    parallel_tool_calls: bool | None = None
    max_tool_calls: Count | None = None
    # As on chat completions: the model is shown the functions, and calls one where a call
    # is required or where it chooses to. Built-in tools (web_search, mcp, ...) are taken
    # too and not shown: a client offering one (Codex offers web_search with every
    # request) asks for nothing the answer lacks while the model may choose.
    tools: list[dict[str, Any]] | None = Field(
        None,
        description="Functions the model is shown, to call (several at once where "
        "parallel_tool_calls allows).",
    )
    tool_choice: Literal["none", "auto", "required"] | NamedFunctionChoice | AllowedTools | None = (
        Field(
            None,
            description="none: the answer is text, the functions not shown. auto (the "
            "default), or allowed_tools in mode auto: a call or text, as the model chooses. "
            "required, a function named, or allowed_tools in mode required: the answer is a "
            "call of one of the functions, kept to its parameters' schema.",
        )
    )
    # What tether cannot do, each taken only where it asks for nothing (an empty list,
    # false, null), so that the document says what is served; RESPONSES_HINTS say why.
    top_logprobs: Annotated[int, Field(ge=0, le=0)] | None = None
    truncation: Literal["disabled"] | None = Field(None, description="disabled only.")
    reasoning: Reasoning | None = Field(None, description="No reasoning: effort none or null.")
    include: Annotated[list[str], AfterValidator(_no_logprobs)] | None = Field(
        None, description="Nothing to include: no tool is called, nothing is reasoned."
    )
    background: Unsupported | None = Field(None, description="Not supported: false only.")
    previous_response_id: None = Field(None, description="Not supported: null only.")
    conversation: None = Field(None, description="Not supported: null only.")
    prompt: None = Field(None, description="Not supported: null only.")
    snippets: bool | None = Field(
        None,
        description="tether: put vetted snippets of the function store into the prompt; "
        "default store.retrieve.",
    )

    @field_validator("input", mode="before")
    @classmethod
    def _text_messages_only(cls, given: Any) -> Any:
        return _refuse_what_is_not_read(given)

    @field_validator("tool_choice", mode="before")
    @classmethod
    def _answerable(cls, given: Any) -> Any:
        return tool_choice_read(given, nested=False)

    @cached_property
    def offer(self) -> ToolOffer | None:
        """The functions the model is shown, to call where ``tool_choice`` requires it or
        lets it choose; None where the answer is text. Made once: they may be megabytes,
        read on the event loop."""
        parallel = self.parallel_tool_calls is not False
        return tool_offer(self.tools, self.tool_choice, nested=False, parallel=parallel)

    @property
    def streams(self) -> bool:
        return bool(self.stream)

    @property
    def effective_temperature(self) -> float:
        return 1.0 if self.temperature is None else self.temperature

    @property
    def effective_top_p(self) -> float:
        return 1.0 if self.top_p is None else self.top_p

    @property
    def echoed_tool_choice(self) -> str | dict[str, Any]:
        """``tool_choice`` as the answer gives it back: as sent, auto where it was not."""
        if isinstance(self.tool_choice, AllowedTools | NamedFunctionChoice):
            return self.tool_choice.model_dump()
        return self.tool_choice or "auto"

    def messages(self) -> list[dict[str, str]]:
        """The conversation as the chat template reads it: the instructions first."""
        return [message for message, _ in self._conversation()]

    def sources(self) -> list[str]:
        """Where each of ``messages()`` came from, as the request names it: ``instructions``,
        ``input``, or ``input[3]`` (the first item of an assistant's turn)."""
        return [source for _, source in self._conversation()]

    def _conversation(self) -> list[tuple[dict[str, str], str]]:
        given = (
            [({"role": "user", "content": self.input}, "input")]
            if isinstance(self.input, str)
            else _as_chat(self.input)
        )
        if self.instructions is not None:
            return [({"role": "system", "content": self.instructions}, "instructions"), *given]
        return given

    def to_task(self, default_max: int, default_seed: int) -> Task:
        params = SamplingParams(
            max_tokens=self.max_output_tokens or default_max,
            max_tokens_explicit=self.max_output_tokens is not None,
            temperature=self.effective_temperature,
            top_p=self.effective_top_p,
            seed=self.seed if self.seed is not None else default_seed,
            response_format=self.text.format.answer_format()
            if self.text and self.text.format
            else None,
        )
        offer = self.offer
        if offer is None:
            return ChatTask(params, self.messages(), self.model, snippets=self.snippets)
        # The call is the answer (its schema, not text.format's), or text.format's schema
        # leaves room for one.
        params = replace(
            params,
            response_format=offer.kept_to(params.response_format),
            chosen_call_format=offer.chosen_format(params.response_format),
        )
        return ChatTask(
            params, self.messages(), self.model, snippets=self.snippets, tools=offer.instructions()
        )


_NOT_ECHOED = "Accepted; the count answers with its tokens alone."


class InputTokensRequest(ResponsesRequest):
    """OpenAI ``POST /v1/responses/input_tokens``: the body a ``POST /v1/responses`` would
    send, of which the prompt's tokens are counted; what would be refused there is here."""

    # A count is one JSON answer: ``stream``, none of the count's fields in OpenAI's API,
    # is ignored as an unknown field is, and left out of the document, which would
    # otherwise say the answer may be an event stream.
    stream: SkipJsonSchema[Any] = Field(None, exclude=True)
    # Checked as on /v1/responses; the count's answer holds nothing else to echo them in.
    metadata: Annotated[dict[str, MetadataValue], Field(max_length=16)] | None = Field(
        None, description=_NOT_ECHOED
    )
    user: str | None = Field(None, description=_NOT_ECHOED)
    prompt_cache_key: str | None = Field(None, description=_NOT_ECHOED)
    safety_identifier: Annotated[str, Field(max_length=128)] | None = Field(
        None, description=_NOT_ECHOED
    )


class InputTokenCount(BaseModel):
    """The answer of ``POST /v1/responses/input_tokens``, as the SDKs read it."""

    object: Literal["response.input_tokens"]
    input_tokens: int


def _as_chat(
    items: list[InputMessage | ToolCall | ToolOutput | ReasoningItem],
) -> list[tuple[dict[str, str], str]]:
    """The items as chat's messages, each with the item it came from: a tool call is the
    assistant's turn that made it (one turn for the calls an answer made together, and for
    the text it said before them), the calls written as the model writes them (several
    as a list), as chat reads an assistant message's ``tool_calls``; a tool's output is a
    ``tool`` message, naming the call it answers, as chat's names it."""
    messages: list[tuple[dict[str, str], str]] = []
    said = ""  # the last turn's text before its calls
    calls: list[str] = []  # and its calls
    names: dict[str, str] = {}  # the earlier calls' tools, by their call_id
    for index, item in enumerate(items):
        if isinstance(item, InputMessage):
            role = _TEMPLATE_ROLE.get(item.role, item.role)
            messages.append(({"role": role, "content": item.text()}, f"input[{index}]"))
            calls = []
        elif isinstance(item, ToolCall):
            if not messages or messages[-1][0]["role"] != "assistant":
                messages.append(({"role": "assistant", "content": ""}, f"input[{index}]"))
            turn = messages[-1][0]
            if not calls:
                said = turn["content"]
            calls.append(item.written())
            names[item.call_id] = item.name
            turn["content"] = "\n".join(filter(None, [said, written_together(calls)]))
        elif isinstance(item, ToolOutput):
            output = result_of(_joined(item.output), names.get(item.call_id), item.call_id)
            messages.append(({"role": "tool", "content": output}, f"input[{index}]"))
            calls = []
    return messages
