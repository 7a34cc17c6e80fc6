"""Tool calls: the model writes a call as JSON, ``{"name": ..., "arguments": {...}}``, of
one of the functions it is shown in the system message (their names, descriptions and
parameter schemas), and the answer gives it back as a tool call rather than text.

Where a client requires a call (``tool_choice`` required, a function named, or
``allowed_tools`` in mode required), the answer keeps to a JSON schema made of the
functions, one choice a function. The schema goes to the engine as a ``response_format``
does, so a gateway's upstream keeps the answer to it too. Where the model may choose
(``tool_choice`` auto, or not sent, with functions offered), it is told how to call one:
an answer that is a whole call of a function offered (alone, or alone in a code block), or
where ``parallel_tool_calls`` allows, a list of them, is the call, any other is text. On an
engine with grammars an answer that starts as a call keeps to the call's schema from there
(``chosen_format``); a gateway's upstream is sent nothing of it. With ``tool_choice`` none
the model is not shown the functions.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import re
from dataclasses import dataclass
from typing import Any

from tether.errors import ContextLengthError, RequestError, TetherError

# What chooses among the functions of each field of a request.
_CHOICE = {"tools": "tool_choice", "functions": "function_call"}
# OpenAI's own bound on a function's name.
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# A function without parameters takes none: OpenAI reads a missing schema as an empty list.
_NO_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}}


@dataclass(frozen=True)
class Function:
    """A function tool, as the model is shown it. ``strict``: its arguments must keep to
    its parameters' schema, as OpenAI's SDKs trust them to (``parse()`` validates them)."""

    name: str
    description: str
    parameters: dict[str, Any]
    strict: bool = False


@dataclass(frozen=True)
class Call:
    """A call the model wrote: a function's name and its arguments as JSON text."""

    name: str
    arguments: str


@dataclass(frozen=True)
class ToolOffer:
    """The functions the model is shown: it must call one where ``required``, else it may.
    ``field``: the request's field that offered them, ``tools``, or ``functions``, the older
    API's, whose answer is a ``function_call``."""

    functions: tuple[Function, ...]
    required: bool = True
    field: str = "tools"
    parallel: bool = False  # several calls at once, where the model may choose

    def kept_to(self, response_format: str | None) -> str | None:
        """The format the answer keeps to, given the request's own (chat's shape): a
        required call's schema; where the model may choose, a ``json_schema``'s or a call
        (``answer_format`` of both), and another format (``json_object``, which has room
        for a call, or none) as it is."""
        output = None if self.required else _own_schema(response_format)
        if self.required or output is not None:
            return self.answer_format(output)
        return response_format

    def chosen_format(self, response_format: str | None) -> str | None:
        """The format a call the model may choose to write keeps to once it starts one
        (``SamplingParams.chosen_call_format``): where it may choose and the answer keeps
        to no format of its own (one that does has room for a call, ``kept_to``)."""
        if self.required or response_format is not None:
            return None
        return self.answer_format()

    def answer_format(self, output: tuple[str, dict[str, Any]] | None = None) -> str:
        """The call's JSON schema, as chat's ``response_format``; with ``output`` (the name
        and schema of the request's own ``json_schema``), where the model may choose, the
        answer may keep to that schema instead, or be a list of calls where they may be
        made at once: an agent with an output type and tools sends both, and an answer
        kept to its output's schema alone could never call a tool. Each function's
        parameters go into ``$defs`` under a name of their own, and their own ``$defs``
        (pydantic's models) beside them under names of that function's, their local
        ``$ref``s rewritten to follow them there: one schema of several functions cannot
        share their ``$defs``, and llama.cpp's converter names a ``$ref``'s rule by its
        last step alone, so that two functions' models of one name would share the
        first one's rule, and reads no ``$defs`` beside a ``$ref`` (a recursive model's
        own schema)."""
        defs: dict[str, Any] = {}
        for index, function in enumerate(self.functions):
            defs.update(_placed(function.parameters, _def_name(index)))
        choices = [
            {
                "type": "object",
                "properties": {
                    "name": {"const": function.name},
                    "arguments": {"$ref": f"#/$defs/{_def_name(index)}"},
                },
                "required": ["name", "arguments"],
                "additionalProperties": False,
            }
            for index, function in enumerate(self.functions)
        ]
        name = "tool_call"
        if self.parallel and not self.required:
            listed = {"type": "array", "items": {"anyOf": choices}, "minItems": 1}
            choices = [*choices, listed]
        if output is not None and not self.required:
            name, own = output
            defs.update(_placed(own, "answer"))
            choices = [*choices, {"$ref": "#/$defs/answer"}]
        schema: dict[str, Any] = choices[0] if len(choices) == 1 else {"anyOf": choices}
        schema = {**schema, "$defs": defs}
        named = {"name": name, "schema": schema, "strict": True}
        return json.dumps({"type": "json_schema", "json_schema": named}, ensure_ascii=False)

    def instructions(self) -> str:
        """What the model is told of the functions, in the system message."""
        listed = "\n\n".join(_shown(function) for function in self.functions)
        which = "the function" if len(self.functions) == 1 else "one of these functions"
        if not self.required:
            return (
                f"You can call {which} when the user asks for what it does; otherwise "
                f"answer in text.\n\n{listed}\n\n"
                'To call one, write the call alone, as JSON: {"name": "<the function\'s '
                'name>", "arguments": {<its arguments>}}'
                + (
                    "\nTo make several calls at once, write them alone, as a JSON list of calls."
                    if self.parallel
                    else ""
                )
            )
        return (
            f"Answer by calling {which}, with arguments taken from the conversation.\n\n"
            f"{listed}\n\n"
            'Write the call alone, as JSON: {"name": "<the function\'s name>", '
            '"arguments": {<its arguments>}}'
        )

    def read(self, text: str) -> tuple[Call, ...]:
        """The calls ``text`` writes: one, or where ``parallel`` a list of them; none where
        it is not whole calls of the functions (an answer cut short, blocked by the checks,
        or in text). A call the model was free to write may come as models trained on other
        formats write one: in a code block, its arguments as JSON text (OpenAI's) or named
        ``parameters`` (Llama 3's)."""
        try:
            written = json.loads(_unfenced(text))
        except (ValueError, RecursionError):  # nested deeper than Python's parser goes
            return ()
        listed = written if isinstance(written, list) and self.parallel else [written]
        calls = tuple(call for call in map(self._call, listed) if call is not None)
        return calls if calls and len(calls) == len(listed) else ()

    def _call(self, written: Any) -> Call | None:
        if not isinstance(written, dict):
            return None
        name = written.get("name")
        called = next((function for function in self.functions if function.name == name), None)
        if called is None:
            return None
        given = written.get("arguments", written.get("parameters"))
        if isinstance(given, str):
            try:
                given = json.loads(given)
            except (ValueError, RecursionError):
                return None
        if not isinstance(given, dict) or (called.strict and not _keeps_to(called, given)):
            return None
        try:
            # Python reads NaN and Infinity, which JSON has not, and a number too large
            # for a float (1e999) as Infinity: no client's JSON parser reads them back.
            arguments = json.dumps(given, ensure_ascii=False, allow_nan=False)
        except (ValueError, RecursionError):
            return None
        return Call(name=str(name), arguments=arguments)


def _keeps_to(function: Function, arguments: dict[str, Any]) -> bool:
    """Whether ``arguments`` keep to ``function``'s parameters' schema. Nothing keeps a call
    the model chose to write to it, and a grammar keeps a required one to what llama.cpp's
    converter enforces (not ``minimum``, ``maximum``, …) and a gateway's upstream to its
    own reading: a strict function's call that does not keep to it is text, not a call its
    client's SDK would fail to read. A schema the validator cannot read is no reason."""
    validator_for, unreadable = _checking()
    try:
        return bool(validator_for(function.parameters)(function.parameters).is_valid(arguments))
    except unreadable:
        return True


@functools.cache
def _checking() -> tuple[Any, tuple[type[BaseException], ...]]:
    """What gives a schema's jsonschema validator (of the draft its ``$schema`` names,
    else of draft 2020-12, as an unknown one), and what it raises of a schema it cannot
    read. Imported at the first strict function: the import takes about 1.5 s and 32 MB
    (it builds its format checkers' grammars), which start-up, and a server never offered
    one, need not pay."""
    import jsonschema
    from referencing.exceptions import Unresolvable

    unreadable = (
        jsonschema.SchemaError,
        jsonschema.exceptions.UnknownType,
        Unresolvable,  # a $ref outside the schema: nothing is fetched
        re.error,
        RecursionError,
        ValueError,
        TypeError,
        AttributeError,  # a keyword of another shape: properties a list, a $ref a number
    )
    validator_for = functools.partial(
        jsonschema.validators.validator_for, default=jsonschema.Draft202012Validator
    )
    return validator_for, unreadable


async def ready_to_check(offer: ToolOffer | None) -> None:
    """Import the validator off the event loop, once, where ``offer`` has a strict
    function: its answer's calls are checked there."""
    if offer is None or _checking.cache_info().currsize:
        return
    if any(function.strict for function in offer.functions):
        await asyncio.to_thread(_checking)


def tool_offer(
    tools: list[dict[str, Any]] | None, choice: Any, *, nested: bool, parallel: bool = False
) -> ToolOffer | None:
    """The functions of ``tools`` the model is shown, as ``choice`` (a request's
    ``tool_choice``, validated) offers them; None where it is shown none (``none``, or no
    function in ``tools``). ``nested``: chat's shapes, whose functions are in ``function``
    and whose allowed tools are in ``allowed_tools``; the Responses API has them beside
    their type. ``parallel``: the model that may choose may make several calls at once (a
    call required is one, as its schema is one call's)."""
    if choice == "none":
        return None
    offered = _functions(tools or [], nested=nested)
    if choice is None or choice == "auto":
        return _may_call(offered, parallel)
    if choice == "required":
        return _one_of(offered, "tool_choice", "tool_choice is required")
    given = choice if isinstance(choice, dict) else choice.model_dump()
    if given["type"] == "function":
        named = given["function"]["name"] if nested else given["name"]
        return ToolOffer((_named(offered, named, "tools"),))
    allowed = given["allowed_tools"] if nested else given
    mode = allowed["mode"]
    listed = [_allowed_name(tool, mode, nested=nested) for tool in allowed["tools"]]
    names = [name for name in listed if name is not None]
    chosen = {name: offered[name] for name in names if name in offered}
    missing = [name for name in names if name not in offered]
    if missing:
        raise RequestError(
            f"tool_choice allows {', '.join(map(repr, missing))}, which tools does not offer "
            f"as functions: {_instead(offered, 'tools')}",
            param="tool_choice",
        )
    if mode != "required":
        return _may_call(chosen, parallel)
    return _one_of(chosen, "tool_choice", "allowed_tools in mode required")


def _may_call(
    functions: dict[str, Function], parallel: bool, field: str = "tools"
) -> ToolOffer | None:
    """The offer of ``functions`` the model may call, or none where there are none."""
    if not functions:
        return None
    return ToolOffer(tuple(functions.values()), required=False, field=field, parallel=parallel)


def function_offer(functions: list[dict[str, Any]] | None, choice: Any) -> ToolOffer | None:
    """The older API's ``functions`` as ``function_call`` (none, auto, or ``{"name": ...}``,
    validated) offers them: as ``tools`` of chat's ``tool_choice``, the answer's call a
    ``function_call``."""
    if choice == "none":
        return None
    # Strict arguments came with tools: the older API's functions are never strict.
    typed = [{**function, "type": "function", "strict": False} for function in functions or []]
    offered = _functions(typed, nested=False, field="functions")
    if choice is None or choice == "auto":
        return _may_call(offered, parallel=False, field="functions")
    named = choice["name"] if isinstance(choice, dict) else choice.name
    return ToolOffer((_named(offered, named, "functions"),), field="functions")


def _named(offered: dict[str, Function], named: str, field: str) -> Function:
    """The function ``named`` by ``field``'s choice (``tool_choice``, ``function_call``)."""
    function = offered.get(named)
    if function is None:  # a call asked for that cannot be made, not an answer in text
        raise RequestError(
            f"{_CHOICE[field]} names the function {named!r}, which {field} does not offer: "
            f"{_instead(offered, field)}",
            param=_CHOICE[field],
        )
    return function


def _one_of(functions: dict[str, Function], param: str, asked: str) -> ToolOffer:
    if not functions:
        raise RequestError(
            f"{asked}, but no function is offered to call: offer a function in tools "
            '({"type": "function", ...}; tether calls functions only), or send tool_choice '
            "auto for an answer in text",
            param=param,
        )
    return ToolOffer(tuple(functions.values()))


# A code block around the call alone, as models write JSON: ```json ... ```, or with a
# longer fence, or of tildes, closed by a fence of its character at least as long
# (CommonMark's): the closing fence's own characters past the opening's length are
# ``\2*`` or ``\3*``, whichever character opened it (the other group matched nothing).
_FENCED = re.compile(
    r"\A\s*((`)`{2,}|(~)~{2,})[ \t]*[A-Za-z]*[ \t]*\n(.*?)\n?\1\2*\3*\s*\Z", re.DOTALL
)
_FENCE_START = re.compile(r"`+|~+")
_INFO = re.compile(r"[ \t]*[A-Za-z]*[ \t]*")  # a code block's language, if any


def _unfenced(text: str) -> str:
    fenced = _FENCED.match(text)
    return fenced.group(4) if fenced else text


def may_be_call(text: str, *, listed: bool = False) -> bool:
    """Whether the start of an answer, ``text``, may still be a call: nothing yet but
    space, the start of a JSON object (or where ``listed``, of a list of them), or a code
    block's that holds nothing else yet. A stream's text is held while it may, so that a
    call is not sent as text."""
    start = text.lstrip()
    if _opens_call(start, listed):
        return True
    fence = _FENCE_START.match(start)
    if fence is None:
        return False
    if fence.end() == len(start):  # a fence still being written
        return True
    if fence.end() < 3:
        return False
    info, newline, rest = start[fence.end() :].partition("\n")
    if not _INFO.fullmatch(info):
        return False
    return not newline or _opens_call(rest.lstrip(), listed)


def _opens_call(start: str, listed: bool) -> bool:
    if not start or start.startswith("{"):
        return True
    return listed and start.startswith("[") and _opens_call(start[1:].lstrip(), False)


def pieces_may_be_call(pieces: list[str], *, listed: bool = False) -> bool:
    """``may_be_call`` of the text of ``pieces``, a stream's so far, read only to the piece
    with its first ``{``, which decides it for the rest: a long call's text is not joined
    anew at each of its pieces."""
    start = ""
    for piece in pieces:
        start += piece
        if "{" in piece:
            break
    return may_be_call(start, listed=listed)


def _functions(
    tools: list[dict[str, Any]], *, nested: bool, field: str = "tools"
) -> dict[str, Function]:
    """The function tools of ``tools``, by name, each checked as the model is shown it;
    other tools (built-in, custom) are left out. ``field``: the request's, for errors."""
    found: dict[str, Function] = {}
    for index, tool in enumerate(tools):
        if tool.get("type") != "function":
            continue
        where = f"{field}[{index}].function" if nested else f"{field}[{index}]"
        spec = tool.get("function") if nested else tool
        if not isinstance(spec, dict):
            # The other API's shape, whose name is beside the type: say where it goes here.
            other = " (not beside its type, as the Responses API has it)" if "name" in tool else ""
            raise RequestError(
                f"{where} must be an object with the function's name, description and "
                f"parameters{other}",
                param=where,
            )
        name = spec.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            other = ""
            if not nested and name is None and isinstance(tool.get("function"), dict):
                other = " (beside its type, not in function, as chat completions have it)"
            raise RequestError(
                f"{where}.name must be 1 to 64 letters, digits, _ or -, not {name!r}{other}",
                param=f"{where}.name",
            )
        if name in found:
            raise RequestError(
                f"{field} offers two functions named {name!r}: give each its own name",
                param=f"{where}.name",
            )
        description = spec.get("description") or ""
        if not isinstance(description, str):
            raise RequestError(
                f"{where}.description must be a string", param=f"{where}.description"
            )
        parameters = spec.get("parameters")
        if parameters is not None and not isinstance(parameters, dict):
            raise RequestError(
                f"{where}.parameters must be a JSON schema, an object", param=f"{where}.parameters"
            )
        kind = (parameters or _NO_PARAMETERS).get("type", "object")
        if kind != "object" and not (isinstance(kind, list) and "object" in kind):
            # The arguments are an object, by name: the model kept to a string's schema
            # wrote no call, and the answer came as text.
            raise RequestError(
                f"{where}.parameters must be the JSON schema of an object (the arguments by "
                f"name), not of type {json.dumps(kind)[:100]}",
                param=f"{where}.parameters",
            )
        try:  # as the call's schema will put them
            _placed(parameters or _NO_PARAMETERS, _def_name(0))
        except RecursionError:
            raise RequestError(
                f"{where}.parameters nest too deeply to be followed: keep them to a few "
                "hundred levels, or name a schema that repeats by $ref",
                param=f"{where}.parameters",
            ) from None
        # The Responses API's functions are strict unless they say otherwise; chat's not.
        # A null is the default, as OpenAI's API reads it.
        given_strict = spec.get("strict")
        strict = not nested if given_strict is None else given_strict is True
        found[name] = Function(name, description, parameters or _NO_PARAMETERS, strict)
    return found


def _allowed_name(tool: Any, mode: str, *, nested: bool) -> str | None:
    """The function ``tool``, one of ``allowed_tools``' tools, names; None for a built-in or
    custom tool the model may choose (mode auto), not shown, as one offered in tools."""
    if isinstance(tool, dict) and tool.get("type") == "function":
        spec = tool.get("function") if nested else tool
        name = spec.get("name") if isinstance(spec, dict) else None
        if isinstance(name, str):
            return name
    elif mode == "auto":
        return None
    raise RequestError(
        f"allowed_tools in mode {mode} lists {json.dumps(tool)[:200]}: list functions "
        "by name, each as tools offers it; tether calls functions only",
        param="tool_choice",
    )


def _instead(offered: dict[str, Function], field: str) -> str:
    """What to do of a function named that ``offered``, of ``field``, lacks."""
    if not offered:
        shape = ' ({"type": "function", ...})' if field == "tools" else ""
        return f"offer it in {field}{shape}; {field} offers no function"
    return f"name one of {', '.join(map(repr, offered))}, or offer it in {field}"


def _own_schema(response_format: str | None) -> tuple[str, dict[str, Any]] | None:
    """The name and schema of a ``response_format`` (chat's shape) of ``json_schema``
    with a schema; None for another (``json_object``, any JSON, has room for a call)."""
    if response_format is None:
        return None
    given = json.loads(response_format)
    fields = given.get("json_schema") if given.get("type") == "json_schema" else None
    if not isinstance(fields, dict) or not isinstance(fields.get("schema"), dict):
        return None
    return str(fields.get("name") or "tool_call"), fields["schema"]


def _def_name(index: int) -> str:
    """Where the parameters of the function at ``index`` go in ``$defs``: a name of the
    letters, digits and ``-`` that llama.cpp's converter names a rule by (it writes a
    ``$ref`` back to a schema still being read by the name as it is, so that another
    character, the ``_`` of ``tool_0``, named no rule and failed a recursive schema)."""
    return f"fn{index}"


# What a schema says of its values rather than what they may be: the grammar reads none
# of it, and the model is shown it in the (governed) system message, so the call's
# schema, which goes to the engine, the trace and the audit record as it is, is kept
# without it.
_WORDS = frozenset({"description", "title", "examples", "default", "$comment"})
# Keywords whose object maps names to schemas: a property may be called "description".
_NAMED = frozenset({"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"})
_VALUES = frozenset({"enum", "const"})  # values, kept as they are
_TABLES = ("$defs", "definitions")  # where a schema keeps the schemas its $refs name
_NOT_RULE = re.compile(r"[^A-Za-z0-9-]")  # what llama.cpp's converter leaves out of a rule's name


def _placed(schema: dict[str, Any], name: str) -> dict[str, Any]:
    """``schema`` as entries of the call's ``$defs``: itself under ``name`` and each of its
    own ``$defs``/``definitions`` beside it (``{name}--{its name}``), without their words,
    each local ``$ref`` (``#``, ``#/$defs/X``, ``#/properties/...``) pointing where what it
    names is put. A ``$ref`` to an anchor (``#foo``) is left as it is, for the converter to
    refuse as it would in a ``response_format``."""
    hoisted: dict[tuple[str, str], str] = {}
    for table in _TABLES:
        entries = schema.get(table)
        if isinstance(entries, dict):
            for key in entries:
                base = candidate = f"{name}--{_NOT_RULE.sub('-', key)}"
                count = 0
                while candidate in hoisted.values():
                    count += 1
                    candidate = f"{base}-{count}"
                hoisted[table, key] = candidate

    def pointing(ref: str) -> str:
        if ref == "#":
            return f"#/$defs/{name}"
        if not ref.startswith("#/"):
            return ref
        steps = ref[2:].split("/")
        if len(steps) >= 2:
            key = steps[1].replace("~1", "/").replace("~0", "~")
            if (put := hoisted.get((steps[0], key))) is not None:
                return "/".join([f"#/$defs/{put}", *steps[2:]])
        return f"#/$defs/{name}{ref[1:]}"

    def moved(node: Any, named: bool = False) -> Any:
        if isinstance(node, dict):
            out = {
                key: value
                if key in _VALUES and not named
                else moved(value, key in _NAMED and not named)
                for key, value in node.items()
                if named or key not in _WORDS
            }
            ref = node.get("$ref")
            if not named and isinstance(ref, str):
                out["$ref"] = pointing(ref)
            return out
        if isinstance(node, list):
            return [moved(item) for item in node]
        return node

    lifted = {table for table in _TABLES if isinstance(schema.get(table), dict)}
    kept = {key: value for key, value in schema.items() if key not in lifted}
    placed: dict[str, Any] = {name: moved(kept)}
    for (table, key), put in hoisted.items():
        placed[put] = moved(schema[table][key])
    return placed


def _shown(function: Function) -> str:
    parameters = json.dumps(function.parameters, ensure_ascii=False, separators=(",", ":"))
    about = f"\n{function.description.strip()}" if function.description.strip() else ""
    return f"Function {function.name}:{about}\nIts arguments' JSON schema: {parameters}"


# A gateway's upstream that takes no JSON schema (llama-cpp-python's server), as the
# OpenAI engine words it: its advice, another response_format, is none a call can take.
_UPSTREAM_REFUSAL = re.compile(
    r"^the upstream cannot keep the answer to this response_format (\(HTTP \d+: .*\)); "
    r"ask for another.*$",
    re.DOTALL,
)


def in_tool_terms(exc: TetherError, offer: ToolOffer) -> None:
    """Make ``exc`` name the tools where it names the ``response_format`` a required
    call's schema was sent as: the functions' parameters are what cannot be followed, or
    the upstream keeps to no JSON schema, which a required call is. A prompt too long for
    the context window says that the functions are in it: a client that sent a line and a
    hundred functions was told its prompt was thousands of tokens."""
    if exc.param == "response_format" and offer.required:
        exc.param = offer.field
        exc.message = exc.message.replace(
            "the JSON schema cannot", "the functions' parameter schemas (as one JSON schema) cannot"
        )
        exc.message = _UPSTREAM_REFUSAL.sub(
            r"the upstream cannot keep an answer to a JSON schema, which a required tool call "
            rf"is sent to it as \1; send {_CHOICE[offer.field]} auto for an answer in text, or "
            r"serve the model from an upstream that keeps to a json_schema response_format "
            r"(vLLM does)",
            exc.message,
        )
        # The call's schema is sent without its descriptions: its size is the schemas'.
        exc.message = exc.message.replace(" characters with its descriptions,", " characters,")
    elif isinstance(exc, ContextLengthError) and exc.param is None:
        exc.message += (
            f" (the prompt holds the functions in {offer.field}, each with its description "
            "and parameter schema, in the system message: offer fewer, or shorter)"
        )


def written(name: Any, arguments: Any, *, key: str = "arguments") -> str:
    """An earlier call as the model writes one, for a history's assistant turn: the
    arguments as JSON where they are (they come as JSON text), else as the text sent."""
    if isinstance(arguments, str):
        with contextlib.suppress(ValueError, RecursionError):
            arguments = json.loads(arguments)
    return json.dumps({"name": name, key: arguments}, ensure_ascii=False)


def written_together(calls: list[str]) -> str:
    """An earlier answer's calls, each ``written``, as the model writes them: one alone,
    several as a JSON list (as it is told to write them); nothing where it made none."""
    return calls[0] if len(calls) == 1 else f"[{', '.join(calls)}]" if calls else ""


def written_calls(tool_calls: list[Any]) -> list[str]:
    """Chat's ``tool_calls`` of an earlier answer, each as the model writes a call."""
    calls = []
    for call in tool_calls:
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            calls.append(written(function.get("name"), function.get("arguments")))
    return calls


def call_names(tool_calls: list[Any], where: str = "tool_calls") -> dict[str, str]:
    """Chat's ``tool_calls`` of an earlier answer: each call's function, by the call's id
    (``call_id``), for the results that answer them to name; a call with no name, or not a
    string, has none to name. ``where``: the field, for an id refused."""
    names = {}
    for index, call in enumerate(tool_calls):
        if not isinstance(call, dict):
            continue
        call_id = _call_id(call.get("id"), f"{where}[{index}].id")
        function = call.get("function")
        name = function.get("name") if isinstance(function, dict) else None
        if isinstance(name, str) and name and call_id is not None:
            names[call_id] = name
    return names


def numbered_id(value: Any) -> Any:
    """``value``, a call's id, with a whole number read as its digits: some clients number
    their calls (``"id": 1``), and their results name the call as ``"1"`` or as 1 (or 1.0,
    which JSON Schema's ``integer`` is too)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _call_id(value: Any, where: str) -> str | None:
    """A call's id, as its result's ``tool_call_id`` names it; None where none is given.
    Another type than a string or a whole number names no result: refused, as OpenAI
    refuses it, rather than the result left not knowing its call."""
    value = numbered_id(value)
    if value is None or isinstance(value, str):
        return value
    raise RequestError(
        f"{where} must be a string, the id its result's tool_call_id names, not "
        f"{json.dumps(value)[:100]}",
        param=where,
    )


def result_of(content: str, name: str | None, call_id: str | None) -> str:
    """A tool's result as the model reads it: headed by the call it answers (its function
    and its id, where they are known), which a turn of the tool's alone does not say,
    several calls' results coming one after another."""
    if name and call_id:
        called = f"{name} (call {call_id})"
    else:
        called = name or (f"call {call_id}" if call_id else "")
    return f"Result of {called}:\n{content}" if called else content
