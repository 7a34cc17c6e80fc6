"""Wire schemas: what clients send, validated leniently (unknown fields are logged).

Each request converts itself into a pipeline ``Task``; the strict internal types live in
``tether.engines.base`` and ``tether.pipeline``.
"""

from __future__ import annotations

import json
import logging
import secrets
from dataclasses import replace
from functools import cached_property
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    field_validator,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue, WithJsonSchema
from pydantic_core import CoreSchema

from tether.engines.base import SamplingParams
from tether.pipeline import (
    ChatTask,
    CompletionTask,
    ContextSnippet,
    FimInput,
    FimTask,
    Task,
)
from tether.server.tool_calls import (
    ToolOffer,
    call_names,
    function_offer,
    numbered_id,
    result_of,
    tool_offer,
    written,
    written_calls,
    written_together,
)
from tether.settings import MAX_SEED
from tether.suggestions.paths import windows_device

log = logging.getLogger("tether.server")

OPENAI_COMPLETIONS_DEFAULT_MAX_TOKENS = 16


class WireModel(BaseModel):
    # Unknown fields are accepted (and logged); a known field of the wrong type is not.
    model_config = ConfigDict(extra="allow", strict=True)

    @model_validator(mode="after")
    def _log_unknown(self) -> WireModel:
        if self.model_extra:
            log.debug("ignoring unknown fields %s", sorted(self.model_extra))
        return self


class NullIsDefault(WireModel):
    """A body read as llama.cpp's server reads it (``json_value``): a field sent as null
    takes its default, as if it were not sent; a required one is then missing."""

    @model_validator(mode="before")
    @classmethod
    def _null_is_the_default(cls, data: Any) -> Any:
        if isinstance(data, dict):
            # A required field sent as null stays, to be refused for its type: "Field
            # required" would say it was not sent.
            fields = cls.model_fields
            return {
                key: value
                for key, value in data.items()
                if value is not None or (key in fields and fields[key].is_required())
            }
        return data

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        """The OpenAPI document says so: each field with a default also takes null."""
        schema = handler.resolve_ref_schema(handler(core_schema))
        required = set(schema.get("required", ()))
        for name, field in schema.get("properties", {}).items():
            if name not in required and not _takes_null(field):
                kept = {k: field.pop(k) for k in ("title", "description", "default") if k in field}
                schema["properties"][name] = {"anyOf": [field, {"type": "null"}], **kept}
        return schema


def _takes_null(field: dict[str, Any]) -> bool:
    return field.get("type") == "null" or any(
        option.get("type") == "null" for option in field.get("anyOf", ())
    )


class OwnModel(WireModel):
    """A body of tether's own API, which no other client's extras reach: an unknown field
    is a mistake (``ttl`` for ``ttl_s``) to refuse, not to ignore."""

    model_config = ConfigDict(extra="forbid", strict=True)


def _integral(value: Any) -> Any:
    """JSON has one number type: 42.0 is the integer 42 (as JSON Schema says), 42.5 is not."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _a_boolean(value: Any) -> Any:
    if not isinstance(value, bool):  # Literal[False] alone would take 0, as 0 == False
        raise ValueError("Input should be a valid boolean")
    return value


# Integer fields, their bounds first so the document shows them as JSON Schema keywords.
Seed = Annotated[int, Field(ge=0, le=MAX_SEED), BeforeValidator(_integral)]
Count = Annotated[int, Field(ge=1), BeforeValidator(_integral)]
# A limit on tokens to generate: a count, or -1, which llama.cpp's server and the editors
# written for it (llama.vscode) send for "until the end": the server's generation.max_tokens.
UNTIL_END = -1


def _not_zero(value: int) -> int:
    if value == 0:
        raise ValueError("Input should be at least 1, or -1 for until the end")
    return value


Limit = Annotated[
    int,
    Field(ge=UNTIL_END, json_schema_extra={"not": {"const": 0}}),
    BeforeValidator(_integral),
    AfterValidator(_not_zero),
]
Index = Annotated[int, Field(ge=0), BeforeValidator(_integral)]
Only1 = Annotated[int, Field(ge=1, le=1), BeforeValidator(_integral)]
Unsupported = Annotated[Literal[False], BeforeValidator(_a_boolean)]
# Penalties and biases are not applied: only what changes nothing is taken, rather than
# an answer other than the one asked for.
NoPenalty = Annotated[float, Field(ge=0.0, le=0.0)]
NoBias = Annotated[dict[str, float], Field(max_length=0)]
# Grammars are not applied either: an empty one (what clients send by default) is taken,
# any other refused.
NoGrammar = Annotated[str, Field(max_length=0)]


class StreamOptions(WireModel):
    include_usage: bool = False


def _stops(stop: str | list[str] | None) -> tuple[str, ...]:
    if stop is None:
        return ()
    stops = [stop] if isinstance(stop, str) else stop
    return tuple(s for s in stops if s)


LLAMA_TEMPERATURE, LLAMA_TOP_P = 0.8, 0.95  # llama.cpp server's defaults
_LIMIT_HINT = "send a count of tokens, at least 1, or -1 for the server's limit"
# What to do when validation rejects one of these fields: appended to the 400's message.
FIELD_HINTS = {
    "n": "tether returns one choice per request; send n=1 (or omit it) and repeat the "
    "request with other seeds",
    "echo": "echo is not supported; omit it",
    "logprobs": "logprobs are not supported; omit them",
    "top_logprobs": "logprobs are not supported; omit them",
    "response_format": 'send {"type": "text"}, {"type": "json_object"} or {"type": '
    '"json_schema", "json_schema": {"name": ..., "schema": {...}}}, with a name of '
    "letters, digits, '_' and '-', at most 64",
    "tool_choice": "send none or auto for an answer in text; required, "
    '{"type": "function", "function": {"name": ...}}, or {"type": "allowed_tools", '
    '"allowed_tools": {"mode": "auto" | "required", "tools": [...]}} for a call of a '
    "function in tools (tether calls functions only); or omit it",
    "best_of": "best_of is not supported; omit it",
    "frequency_penalty": "penalties are not applied: send 0 or omit it",
    "presence_penalty": "penalties are not applied: send 0 or omit it",
    "logit_bias": "logit_bias is not applied: send {} or omit it",
    "n_probs": "token probabilities are not supported; send n_probs 0 or omit it",
    "return_tokens": "the answer's token ids are not returned; omit return_tokens and send "
    "the answer's text to POST /tokenize",
    "grammar": "grammars are not applied, so the answer would not keep to one: omit grammar, "
    "ask for the form in the prompt and check the answer",
    "json_schema": "send a JSON schema as an object ({} or null for none)",
    "max_tokens": _LIMIT_HINT,
    "max_completion_tokens": _LIMIT_HINT,
    "temperature": "send a number, or null for the default: 0 samples greedily, higher is "
    "more random (up to 2 on the OpenAI routes; 0 or less is greedy on llama.cpp's)",
    "top_p": "send a number at most 1 (above 0 on the OpenAI routes), or null for the default",
    "seed": f"send a whole number from 0 to {MAX_SEED}, or null for the default "
    "(llama.cpp's routes take -1 for a seed drawn and kept)",
    "prompt": "send the prompt as one string (a list must hold exactly one)",
    "messages": "send at least one message, each with a role (system, developer, user, "
    "assistant, tool or function); content is text, or a list of "
    '{"type": "text", "text": ...} parts (the model reads no images or audio); only '
    "assistant messages may have null content",
    "scopes": "known scopes are listed in the schema (GET /openapi.json)",
    "event": "name the event in lower case, starting with a letter, up to 64 of a-z 0-9 _ . : "
    "- (e.g. eval.run)",
    "function_call": 'send function_call none, auto, or {"name": ...} naming one of functions',
    "reasoning_effort": "the model does not reason before it answers: send reasoning_effort "
    "none or null, or omit it",
    "path": "give the file's path inside its project: relative, without '..', '.' or "
    "empty parts, ':', control or invisible characters or line breaks, not inside .git, "
    "and no part named as a Windows device (CON, PRN, AUX, NUL, COM1, LPT1, with any "
    "extension)",
    "principal": "name who the token is for",
    "q": "search with words or names: at least one letter or digit",
    "filename": "name a file in engine.slot_save_path: letters, digits, '.', '_' and '-', "
    "not starting with '.', at most 128 characters, not a Windows device's name (CON, "
    "NUL.txt)",
    "stop": "send one string, or a list of strings (at most 16 on the OpenAI routes)",
    "n_predict": "send a count of tokens (0 reads the prompt into the cache and predicts "
    "nothing), or -1 for the server's limit",
    "input_extra": 'send a list of {"filename": ..., "text": ...} objects, each with its text',
    "input": "send a non-empty text, or a list of 1 to 2,048 non-empty texts, each at most "
    "32,768 characters",
    "segments": 'send {"prefix": ..., "suffix": ...}: the text before and after the cursor',
    "action": "use ?action=save, restore or erase",
}


class SamplingFields(WireModel):
    # OpenAI's parameters are nullable, and its SDKs send null for a None: null is the default.
    temperature: float | None = Field(1.0, ge=0.0, le=2.0)
    top_p: float | None = Field(1.0, gt=0.0, le=1.0)
    seed: Seed | None = Field(None, description="Default generation.seed.")
    stop: str | Annotated[list[str], Field(max_length=16)] | None = None
    stream: bool | None = Field(False, description="Answer as server-sent events.")
    stream_options: StreamOptions | None = None
    n: Only1 | None = Field(1, description="Choices per request: tether returns one.")
    frequency_penalty: NoPenalty | None = Field(None, description="Not applied: 0 only.")
    presence_penalty: NoPenalty | None = Field(None, description="Not applied: 0 only.")
    logit_bias: NoBias | None = Field(None, description="Not applied: {} only.")
    model: str | None = Field(None, description="The served model (GET /v1/models), or none.")
    snippets: bool | None = Field(
        None,
        description="tether: put vetted snippets of the function store into the prompt; "
        "default store.retrieve.",
    )

    def sampling(
        self, max_tokens: int | None, default_max: int, default_seed: int
    ) -> SamplingParams:
        if max_tokens == UNTIL_END:
            max_tokens = None
        return SamplingParams(
            max_tokens=max_tokens if max_tokens is not None else default_max,
            max_tokens_explicit=max_tokens is not None,
            temperature=1.0 if self.temperature is None else self.temperature,
            top_p=1.0 if self.top_p is None else self.top_p,
            seed=self.seed if self.seed is not None else default_seed,
            stop=_stops(self.stop),
        )

    @property
    def streams(self) -> bool:
        return bool(self.stream)

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


_MAX_TOKENS = (
    "Most tokens to generate; the prompt's tokens plus this must fit the model's context "
    "window (GET /v1/models: meta.n_ctx), else 400 context_length_exceeded. -1, as "
    "llama.cpp's server takes it: until the end, within the server's generation.max_tokens."
)


def _no_token_ids(value: Any) -> Any:
    if isinstance(value, list) and any(isinstance(item, int) for item in value):
        raise ValueError(
            "a prompt of token ids is not accepted; send its text (POST /detokenize gives it)"
        )
    return value


class CompletionRequest(SamplingFields):
    @model_validator(mode="before")
    @classmethod
    def _not_tabbys(cls, data: Any) -> Any:
        # Tabby's editor agent posts `segments` to /v1/completions of its server's address.
        if isinstance(data, dict) and "segments" in data and "prompt" not in data:
            raise ValueError(
                "this is a Tabby request (segments, no prompt): tether serves Tabby's API "
                "under /tabby; set the Tabby agent's endpoint to this server's address with "
                "/tabby at its end"
            )
        return data

    prompt: Annotated[
        str | Annotated[list[str], Field(min_length=1, max_length=1)],
        BeforeValidator(_no_token_ids),
    ]
    suffix: str | None = Field(None, description="Code after the cursor: fill in the middle.")
    max_tokens: Limit | None = Field(None, description=_MAX_TOKENS)
    echo: Unsupported | None = False
    logprobs: None = None
    best_of: Only1 | None = None

    def to_task(self, server_max: int, default_seed: int) -> Task:
        prompt = self.prompt[0] if isinstance(self.prompt, list) else self.prompt
        # Left out, OpenAI's default; -1, the server's limit.
        default = (
            server_max if self.max_tokens == UNTIL_END else OPENAI_COMPLETIONS_DEFAULT_MAX_TOKENS
        )
        params = self.sampling(self.max_tokens, default, default_seed)
        if self.suffix is not None:
            fim = FimInput(prefix=prompt, suffix=self.suffix)
            return FimTask(params, fim, self.model, snippets=self.snippets)
        return CompletionTask(params, prompt, self.model)


class TextPart(WireModel):
    type: Literal["text"]
    text: str


class RefusalPart(WireModel):
    """An earlier answer's refusal, as OpenAI's answers carry it (a conversation begun
    with another model): read as the text it is."""

    type: Literal["refusal"]
    refusal: str

    @property
    def text(self) -> str:
        return self.refusal


Content = str | list[TextPart]
# An assistant's earlier turn may hold its refusal.
AnswerContent = str | list[Annotated[TextPart | RefusalPart, Field(discriminator="type")]]


class _Message(WireModel):
    content: Content | None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class SystemMessage(_Message):
    role: Literal["system"]
    content: Content


class DeveloperMessage(_Message):
    """OpenAI's newer name for a system message; one class per role keeps the schema's
    discriminator one-to-one, as OpenAPI tools expect."""

    role: Literal["developer"]
    content: Content


class UserMessage(_Message):
    role: Literal["user"]
    content: Content


class AssistantMessage(_Message):
    role: Literal["assistant"]
    content: AnswerContent | None = None  # type: ignore[assignment]
    # The calls an earlier answer made, shown in its turn as the model writes a call: a
    # model asked to call again reads what it called before the tools' outputs.
    tool_calls: list[Any] | None = None
    function_call: Any = None  # the older API's one call

    def text(self) -> str:
        calls = written_calls(self.tool_calls or [])
        if isinstance(self.function_call, dict):
            calls.append(
                written(self.function_call.get("name"), self.function_call.get("arguments"))
            )
        return "\n".join(filter(None, [super().text(), written_together(calls)]))


class ToolMessage(_Message):
    role: Literal["tool"]
    content: Content
    # The call it answers, of an earlier tool_calls: its id, a whole number read as digits.
    tool_call_id: Annotated[
        str | None,
        WithJsonSchema({"anyOf": [{"type": "string"}, {"type": "integer"}, {"type": "null"}]}),
    ] = None

    @field_validator("tool_call_id", mode="before")
    @classmethod
    def _numbered(cls, value: Any) -> Any:
        """A whole number, as the call's own id may be; no other type names a call."""
        value = numbered_id(value)
        if value is not None and not isinstance(value, str):
            raise ValueError("must be a string, the id of the call it answers in tool_calls")
        return value


class FunctionMessage(_Message):
    """A function's result, as OpenAI's older API (``functions``) sends it: read as a tool's
    (LangChain's FunctionMessage, older agents' histories)."""

    role: Literal["function"]
    content: Content
    name: str | None = None


ChatMessage = Annotated[
    SystemMessage
    | DeveloperMessage
    | UserMessage
    | AssistantMessage
    | ToolMessage
    | FunctionMessage,
    Field(discriminator="role"),
]
# The roles the template is given: the older and newer names each take the one it knows.
_TEMPLATE_ROLE = {"developer": "system", "function": "tool"}


def _template_messages(messages: list[ChatMessage]) -> list[dict[str, str]]:
    """``messages`` as the template is given them, each a role and its text: a tool's
    result names the call it answers, by the function of the earlier call of its
    ``tool_call_id`` (the older API's, by its ``name``)."""
    names: dict[str, str] = {}  # the earlier calls' functions, by their ids
    given = []
    for index, message in enumerate(messages):
        text = message.text()
        if isinstance(message, AssistantMessage):
            names.update(call_names(message.tool_calls or [], f"messages[{index}].tool_calls"))
        elif isinstance(message, ToolMessage):
            call_id = message.tool_call_id
            text = result_of(text, names.get(call_id or ""), call_id)
        elif isinstance(message, FunctionMessage):
            text = result_of(text, message.name, None)
        given.append({"role": _TEMPLATE_ROLE.get(message.role, message.role), "content": text})
    return given


class TextFormat(WireModel):
    type: Literal["text"]

    def answer_format(self) -> str | None:
        return None


class JsonObjectFormat(WireModel):
    """Any JSON object: the answer keeps to JSON's grammar on the embedded engine."""

    type: Literal["json_object"]

    def answer_format(self) -> str | None:
        return json.dumps({"type": "json_object"})


FormatName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]


class JsonSchemaFields(WireModel):
    """A JSON schema the answer keeps to, as OpenAI's structured outputs name it."""

    name: FormatName
    description: str | None = None
    # ``schema`` is a method of pydantic's models: the field keeps its wire name by alias.
    json_schema: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None

    def chat_format(self) -> str:
        """As chat's ``response_format``, the shape the pipeline and a gateway carry."""
        fields = {"name", "description", "json_schema", "strict"}
        given = self.model_dump(by_alias=True, exclude_none=True, include=fields)
        return json.dumps({"type": "json_schema", "json_schema": given}, ensure_ascii=False)


class JsonSchemaFormat(WireModel):
    type: Literal["json_schema"]
    json_schema: JsonSchemaFields

    def answer_format(self) -> str | None:
        return self.json_schema.chat_format()


ResponseFormat = Annotated[
    TextFormat | JsonObjectFormat | JsonSchemaFormat, Field(discriminator="type")
]


class AllowedToolsOfChat(WireModel):
    """The tools an ``allowed_tools`` choice lets the model choose from, and how."""

    mode: Literal["auto", "required"]
    tools: list[dict[str, Any]]


class AllowedToolsChoice(WireModel):
    """``tool_choice`` of the tools the model may choose from, in chat's shape. In mode
    auto it may answer in text instead, as for auto; in mode required it calls one of the
    functions it lists."""

    type: Literal["allowed_tools"]
    allowed_tools: AllowedToolsOfChat


class NamedFunction(WireModel):
    name: str


class NamedToolChoice(WireModel):
    """``tool_choice`` of one function the model must call, in chat's shape."""

    type: Literal["function"]
    function: NamedFunction


def tool_choice_read(given: Any, *, nested: bool) -> Any:
    """A ``tool_choice`` object, refused with why unless tether can answer it: a function
    named, or ``allowed_tools``. ``nested``: chat's shape, whose function's name is in its
    ``function`` and whose mode and tools are in its ``allowed_tools``; the Responses
    API's has them beside its type."""
    if not isinstance(given, dict):
        return given
    kind = given.get("type")
    if not isinstance(kind, str):  # not a choice of a tool at all: say what it lacks
        raise ValueError("a tool_choice object needs a type, a string")
    if kind in ("none", "auto", "required"):  # the string's choice, not a tool of that type
        raise ValueError(f"tool_choice {kind} is the string {kind!r}, not an object")
    if kind == "function":
        named = given.get("function") if nested else given
        if not isinstance(named, dict) or not isinstance(named.get("name"), str):
            shape = '{"function": {"name": ...}}' if nested else '"name"'
            raise ValueError(f"a tool_choice of type function needs the function's {shape}")
        return given
    if kind != "allowed_tools":
        raise ValueError(
            f"a tool_choice of type {kind!r} has the model call that tool, and tether calls "
            "functions only"
        )
    allowed = given.get("allowed_tools") if nested else given
    if not isinstance(allowed, dict):
        raise ValueError("allowed_tools needs its allowed_tools: an object with a mode and tools")
    mode = allowed.get("mode")
    if mode not in ("auto", "required"):
        sent = "" if mode is None else f", not {mode!r}"
        raise ValueError(f"allowed_tools needs a mode, auto or required{sent}")
    tools = allowed.get("tools")
    if not isinstance(tools, list) or not all(isinstance(tool, dict) for tool in tools):
        raise ValueError("allowed_tools needs tools: a list of objects, each a tool it allows")
    return given


class ChatRequest(SamplingFields):
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: Limit | None = Field(None, description=_MAX_TOKENS)
    max_completion_tokens: Limit | None = Field(None, description="As max_tokens.")
    # llama.cpp's server reads its own name here too, before max_tokens: llama.vim sends 0
    # to have an instruction's context read into the cache while the user types it.
    n_predict: Annotated[int, Field(ge=-1), BeforeValidator(_integral)] | None = Field(
        None,
        description="llama.cpp's bound, before max_tokens: cut to what the context holds "
        "after the prompt; 0 reads the prompt into the cache and generates nothing, -1 is "
        "generation.max_tokens.",
    )
    logprobs: Unsupported | None = False
    top_logprobs: Annotated[int, Field(ge=0, le=0)] | None = None
    response_format: ResponseFormat | None = Field(
        None,
        description="text, json_object or json_schema: the embedded engine keeps the "
        "answer to JSON (of the schema); a gateway passes it to its upstream.",
    )
    # The model is shown the functions and writes a call as JSON: kept to their schemas
    # where a call is required, free to answer in text where it may choose.
    tools: list[dict[str, Any]] | None = Field(
        None,
        description="Functions the model is shown, to call (several at once where "
        "parallel_tool_calls allows).",
    )
    tool_choice: (
        Literal["none", "auto", "required"] | NamedToolChoice | AllowedToolsChoice | None
    ) = Field(
        None,
        description="none: the answer is text, the functions not shown. auto (the default "
        "with functions), or allowed_tools in mode auto: a call or text, as the model "
        "chooses. required, a function named, or allowed_tools in mode required: the answer "
        "is a call of one of the functions, kept to its parameters' schema.",
    )
    parallel_tool_calls: bool | None = Field(
        None,
        description="Whether a model that may choose may call several functions at "
        "once (the default), as a list of calls.",
    )
    # The same, as OpenAI's older API spells it, where tools is not sent.
    functions: list[dict[str, Any]] | None = Field(
        None,
        description="The older API's functions, offered as tools are; the answer's "
        "call is a function_call.",
    )
    function_call: Literal["none", "auto"] | NamedFunction | None = Field(
        None,
        description="none, auto (the default with functions), or a function named: as tool_choice.",
    )
    # An effort is not spent, so another one is refused, as the Responses API refuses its
    # reasoning.effort (and OpenAI either for a model that does not reason).
    reasoning_effort: Literal["none"] | None = Field(
        None, description="The model does not reason: none or null."
    )

    @field_validator("tool_choice", mode="before")
    @classmethod
    def _answerable(cls, given: Any) -> Any:
        return tool_choice_read(given, nested=True)

    @cached_property
    def offer(self) -> ToolOffer | None:
        """The functions the model is shown, to call where ``tool_choice`` requires it or
        lets it choose; None where the answer is text. Made once: they may be megabytes,
        read on the event loop."""
        # A function named in function_call, without functions, is refused there.
        named = isinstance(self.function_call, NamedFunction)
        if self.tools is None and (self.functions is not None or named):
            return function_offer(self.functions, self.function_call)
        parallel = self.parallel_tool_calls is not False
        return tool_offer(self.tools, self.tool_choice, nested=True, parallel=parallel)

    def to_task(self, default_max: int, default_seed: int) -> Task:
        limit = self.max_completion_tokens or self.max_tokens
        messages = _template_messages(self.messages)
        params = self.sampling(limit, default_max, default_seed)
        if self.response_format is not None:
            params = replace(params, response_format=self.response_format.answer_format())
        if self.n_predict is not None:  # a bound, as on /completion: cut to fit the context
            bound = self.n_predict if self.n_predict >= 0 else default_max
            params = replace(params, max_tokens=bound, max_tokens_explicit=False)
        offer = self.offer
        if offer is None:
            return ChatTask(params, messages, self.model, snippets=self.snippets)
        # The call is the answer (its schema), or the answer's schema leaves room for one.
        params = replace(
            params,
            response_format=offer.kept_to(params.response_format),
            chosen_call_format=offer.chosen_format(params.response_format),
        )
        return ChatTask(
            params, messages, self.model, snippets=self.snippets, tools=offer.instructions()
        )


class ContextFile(NullIsDefault):
    filename: str = ""
    text: str


class FimRequest(SamplingFields):
    """Mistral / DeepSeek ``/v1/fim/completions``, with tether's optional ``language`` and
    ``context`` (what an editor knows beside the cursor)."""

    prompt: str
    # Mistral's API takes null for no suffix; its SDK sends it so.
    suffix: str | None = ""
    language: str = Field("", description="tether: the file's language, e.g. python.")
    context: list[ContextFile] = Field(
        default_factory=list, description="tether: other code the model may read, first first."
    )
    max_tokens: Limit | None = Field(None, description=_MAX_TOKENS)
    random_seed: Seed | None = Field(None, description="Mistral's name for seed.")

    def to_task(self, default_max: int, default_seed: int) -> Task:
        if self.seed is None and self.random_seed is not None:
            self.seed = self.random_seed
        fim = FimInput(
            prefix=self.prompt,
            suffix=self.suffix or "",
            language=self.language,
            context=tuple(ContextSnippet(c.text, c.filename) for c in self.context),
        )
        params = self.sampling(self.max_tokens, default_max, default_seed)
        return FimTask(params, fim, self.model, snippets=self.snippets)


class LlamaSamplingFields(NullIsDefault):
    """What llama.cpp's server reads to sample, shared by ``/completion`` and ``/infill``,
    read as leniently as it reads them: null is the default, ``max_tokens`` stands for
    ``n_predict``, one stop string is a list of one, a temperature of 0 or less (or
    ``top_k`` 1) is greedy, ``seed`` -1 is a random seed (recorded, so the answer can be
    regenerated), and ``model`` is not checked, as one model answers. Its other knobs
    (min_p, cache_prompt, ...) are accepted and ignored; a JSON schema is kept to; n_probs
    above 0, return_tokens and a grammar are refused."""

    # An upper bound, as llama.cpp has it: cut to what the context holds after the prompt.
    n_predict: Annotated[int, Field(ge=-1), BeforeValidator(_integral)] | None = None
    max_tokens: Annotated[int, Field(ge=-1), BeforeValidator(_integral)] | None = Field(
        None, description="n_predict, when that is not given."
    )
    temperature: Annotated[float, Field(allow_inf_nan=False)] | None = Field(
        LLAMA_TEMPERATURE, description="0 or less: greedy."
    )
    top_p: float | None = Field(LLAMA_TOP_P, ge=0.0, le=1.0)
    top_k: Annotated[int, BeforeValidator(_integral)] | None = Field(
        None, description="1: greedy; other values are ignored (the engine keeps 40)."
    )
    # 0xFFFFFFFF is -1 read as llama.cpp's unsigned seed (LLAMA_DEFAULT_SEED, its /props'
    # default, which clients copy): random too.
    seed: Annotated[int, Field(ge=-1, le=MAX_SEED + 1), BeforeValidator(_integral)] | None = Field(
        None, description="-1 or 4294967295: a random seed; default generation.seed."
    )
    stop: str | list[str] | None = None
    stream: bool | None = False
    model: str | None = Field(None, description="Not checked: this server has one model.")
    # After this many milliseconds of generating, the answer ends with the next line it
    # finishes (llama.vim sends it to bound its wait); 0 or less: no limit.
    t_max_predict_ms: Annotated[int, BeforeValidator(_integral)] | None = None
    # The cursor's indentation (llama.vim sends it): the answer ends before the first later
    # line indented less, a blank one included.
    n_indent: Annotated[int, Field(ge=0), BeforeValidator(_integral)] = 0
    # Only these fields of the answer, each keyed by its path: "timings/prompt_n".
    response_fields: list[str] = Field(default_factory=list)
    # Token probabilities (llama.cpp's completion_probabilities) are not computed: asking
    # for them is refused, not answered without them.
    n_probs: Annotated[int, Field(ge=0, le=0), BeforeValidator(_integral)] | None = None
    return_tokens: Unsupported | None = None  # nor are the answer's token ids
    # Nor grammars: the answer would not keep to one. A JSON schema is kept to, as chat's
    # response_format is; an empty one, which clients send by default, asks for nothing.
    grammar: NoGrammar | None = None
    json_schema: dict[str, Any] | None = None

    def params(self, default_max: int, default_seed: int) -> SamplingParams:
        # -1 (llama.cpp's "until the end") means the server's default; 0 reads the prompt
        # into the cache and predicts nothing, which llama.vim sends to warm the cache.
        asked = self.n_predict if self.n_predict is not None else self.max_tokens
        limit = asked if asked is not None and asked >= 0 else None
        temperature = LLAMA_TEMPERATURE if self.temperature is None else self.temperature
        if self.seed is None:
            seed = default_seed
        else:
            drawn = self.seed in (-1, MAX_SEED + 1)
            seed = secrets.randbelow(MAX_SEED + 1) if drawn else self.seed
        return SamplingParams(
            max_tokens=default_max if limit is None else limit,
            max_tokens_explicit=False,
            temperature=0.0 if temperature <= 0 or self.top_k == 1 else temperature,
            top_p=LLAMA_TOP_P if self.top_p is None else self.top_p,
            seed=seed,
            stop=_stops(self.stop),
            line_deadline_s=self._line_deadline_s(),
            min_indent=self.n_indent,
            response_format=self._answer_format(),
        )

    def _answer_format(self) -> str | None:
        """``json_schema`` as chat's response_format, which the engines keep to."""
        if not self.json_schema:
            return None
        named = {"name": "json_schema", "schema": self.json_schema}
        return JsonSchemaFields.model_validate(named).chat_format()

    @property
    def streams(self) -> bool:
        return bool(self.stream)

    def _line_deadline_s(self) -> float | None:
        limit = self.t_max_predict_ms
        return limit / 1000 if limit is not None and limit > 0 else None


class LlamaCompletionRequest(LlamaSamplingFields):
    """llama.cpp server ``POST /completion``: continue ``prompt``."""

    prompt: Annotated[
        str | Annotated[list[str], Field(min_length=1, max_length=1)],
        BeforeValidator(_no_token_ids),
    ]

    def to_task(self, default_max: int, default_seed: int) -> Task:
        prompt = self.prompt[0] if isinstance(self.prompt, list) else self.prompt
        return CompletionTask(self.params(default_max, default_seed), prompt)


class InfillRequest(LlamaSamplingFields):
    """llama.cpp server ``POST /infill``."""

    input_prefix: str = ""
    input_suffix: str = ""
    input_extra: list[ContextFile] = Field(default_factory=list)
    prompt: str = ""

    def to_task(self, default_max: int, default_seed: int) -> Task:
        fim = FimInput(
            prefix=self.input_prefix + self.prompt,
            suffix=self.input_suffix,
            context=tuple(ContextSnippet(e.text, e.filename) for e in self.input_extra),
        )
        return FimTask(self.params(default_max, default_seed), fim)


class TokenizeRequest(WireModel):
    """llama.cpp server ``POST /tokenize``."""

    content: str
    add_special: bool = Field(False, description="Add the model's automatic BOS/EOS.")
    parse_special: bool = Field(True, description="Read special tokens written in the text.")
    with_pieces: bool = Field(False, description="Give each token's text beside its id.")


class DetokenizeRequest(WireModel):
    """llama.cpp server ``POST /detokenize``."""

    tokens: list[Annotated[int, BeforeValidator(_integral)]]


class SlotFileRequest(WireModel):
    """llama.cpp server ``POST /slots/{id}?action=save|restore|erase`` (erase names none)."""

    filename: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$",
        description="A file in engine.slot_save_path, named without a directory.",
    )

    @field_validator("filename")
    @classmethod
    def _not_a_device(cls, filename: str | None) -> str | None:
        # A server on Windows would write a save to the device, and read a restore from it.
        device = windows_device(filename) if filename else None
        if device is not None:
            raise ValueError(
                f"{filename!r} names the device {device} on Windows, whatever its "
                "extension; choose another name"
            )
        return filename


# OpenAI's own bounds for one embeddings request; characters, not tokens, bound each input
# so that nothing is read before it is refused.
MAX_EMBEDDING_INPUTS, MAX_EMBEDDING_CHARS = 2048, 32_768
EmbeddingText = Annotated[str, Field(min_length=1, max_length=MAX_EMBEDDING_CHARS)]


class EmbeddingsRequest(WireModel):
    """OpenAI ``POST /v1/embeddings``."""

    input: (
        EmbeddingText
        | Annotated[list[EmbeddingText], Field(min_length=1, max_length=MAX_EMBEDDING_INPUTS)]
    )
    model: str | None = Field(None, description="Accepted; the answer names the model used.")
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Annotated[int, Field(ge=1), BeforeValidator(_integral)] | None = None
    user: str | None = None

    @field_validator("input", mode="before")
    @classmethod
    def _text_only(cls, given: Any) -> Any:
        if isinstance(given, list) and given and not any(isinstance(v, str) for v in given):
            raise ValueError(
                "it holds token ids; this server embeds text with its own tokenizer: send the text"
            )
        return given

    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)


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
    seed: Seed | None = None

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
