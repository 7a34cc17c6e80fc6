"""Calling a vetted Python function in the sandbox, with arguments checked first.

The arguments (a JSON object) are matched to the function's signature before anything
runs: missing, unknown and wrongly typed arguments are refused with the parameter's name,
for the annotations JSON can express (``int``, ``float``, ``str``, ``bool``, ``None``,
lists, dicts, unions of those); others are passed as they are. The call runs in the
evaluation sandbox (no network, limits, a timeout) and hands back its result through a
file: a result JSON cannot carry, an exception, a hang, or megabytes printed are each a
clear error.

``call_recorded`` is the one way in for every entry point (HTTP, MCP, the command line):
it records one ``store.call`` audit event for each call, refused or done, with the same
details wherever the call came from.
"""

from __future__ import annotations

import ast
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tether.errors import FunctionCallError, RequestError, TetherError
from tether.sandbox import Limits, Sandbox, Status
from tether.store.model import Snippet

if TYPE_CHECKING:
    from tether.store import FunctionStore

Audit = Callable[[dict[str, Any]], object]  # records a store.call event's details

OUTPUT_MB = 1  # what the function may print, and the largest result
# What the sandbox's child says of a write past the file limit (its output is a file too).
_WROTE_TOO_MUCH = "past the file size limit"
_SIMPLE: dict[str, tuple[type, ...]] = {
    "int": (int,),
    "float": (int, float),
    "str": (str,),
    "bool": (bool,),
    "list": (list,),
    "dict": (dict,),
    "None": (type(None),),
    "Any": (object,),
    "object": (object,),
}
# The program the sandbox runs: the snippet (its imports, then the function), then the
# call; only the result file counts. Its own names start with _tether_ (which a callable's
# name may not) and it opens files through builtins, whatever the function is called. A
# positional-only parameter left out before one that is given gets the function's own
# default, the object Python made of it (JSON may not carry it).
_PROGRAM = """\
{code}

import builtins as _tether_builtins
import inspect as _tether_inspect
import json as _tether_json

with _tether_builtins.open("arguments.json") as _tether_file:
    _tether_call = _tether_json.load(_tether_file)
_tether_positional = _tether_call["positional"]
for _tether_index, _tether_name in _tether_call["defaults"]:
    _tether_positional[_tether_index] = (
        _tether_inspect.signature({name}).parameters[_tether_name].default
    )
_tether_result = {name}(*_tether_positional, **_tether_call["keywords"])
try:
    _tether_text = _tether_json.dumps({{"result": _tether_result}}, allow_nan=False)
except (TypeError, ValueError) as _tether_exc:
    raise SystemExit(f"its result is not JSON ({{_tether_exc}})")
with _tether_builtins.open("result.json", "w") as _tether_file:
    _tether_file.write(_tether_text)
"""


@dataclass(frozen=True)
class Parameter:
    name: str
    kind: str  # positional-only, positional-or-keyword, keyword-only, *args, **kwargs
    required: bool
    annotation: ast.expr | None


@dataclass(frozen=True)
class CallResult:
    result: Any
    duration_s: float


def parameters(snippet: Snippet) -> tuple[ast.FunctionDef, list[Parameter]]:
    tree = ast.parse(snippet.current.code)
    function = next(n for n in tree.body if isinstance(n, ast.FunctionDef))
    args = function.args
    positional = [*args.posonlyargs, *args.args]
    defaults_from = len(positional) - len(args.defaults)
    found = [
        Parameter(
            a.arg,
            "positional-only" if i < len(args.posonlyargs) else "positional-or-keyword",
            i < defaults_from,
            a.annotation,
        )
        for i, a in enumerate(positional)
    ]
    found += [
        Parameter(a.arg, "keyword-only", d is None, a.annotation)
        for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True)
    ]
    if args.vararg is not None:
        found.append(Parameter(args.vararg.arg, "*args", False, None))
    if args.kwarg is not None:
        found.append(Parameter(args.kwarg.arg, "**kwargs", False, None))
    return function, found


def bind(snippet: Snippet, arguments: Any) -> dict[str, Any]:
    """``{"positional": [...], "defaults": [[index, name], ...], "keywords": {...}}`` for
    the call, or a RequestError; ``defaults`` are the positional slots the function's own
    defaults fill."""
    if not isinstance(arguments, dict):
        raise RequestError("arguments must be a JSON object of name: value", param="arguments")
    _, params = parameters(snippet)
    named = {p.name: p for p in params if p.kind not in ("*args", "**kwargs")}
    takes_more = any(p.kind == "**kwargs" for p in params)
    unknown = [name for name in arguments if name not in named and not takes_more]
    if unknown:
        takes = ", ".join(named) or "no arguments"
        raise RequestError(
            f"{snippet.name}() has no parameter {unknown[0]!r}; it takes {takes}",
            param=f"arguments.{unknown[0]}",
        )
    missing = [p.name for p in named.values() if p.required and p.name not in arguments]
    if missing:
        raise RequestError(
            f"{snippet.name}() needs argument {missing[0]!r}", param=f"arguments.{missing[0]}"
        )
    for name, value in arguments.items():
        parameter = named.get(name)
        if parameter is not None and parameter.annotation is not None:
            problem = _mismatch(parameter.annotation, value)
            if problem:
                raise RequestError(
                    f"argument {name!r} of {snippet.name}() must be {problem}, "
                    f"not {type(value).__name__} ({json.dumps(value)[:60]})",
                    param=f"arguments.{name}",
                )
    positional_only = [p.name for p in params if p.kind == "positional-only"]
    given = [i for i, name in enumerate(positional_only) if name in arguments]
    passed = positional_only[: given[-1] + 1] if given else []
    return {
        "positional": [arguments.get(name) for name in passed],
        "defaults": [[i, name] for i, name in enumerate(passed) if name not in arguments],
        "keywords": {k: v for k, v in arguments.items() if k not in positional_only},
    }


def call_recorded(
    store: FunctionStore,
    name: str,
    arguments: Any,
    audit: Audit,
    refusal: TetherError | None = None,
    stop: threading.Event | None = None,
) -> tuple[Snippet, CallResult]:
    """Look up, check and run the callable function ``name``, and ``audit`` the outcome:
    ``refusal`` (a scope the caller lacks), no such function, bad arguments, a failure in
    the sandbox, a call ``stop`` ended (its caller went away), or the result."""
    details: dict[str, Any] = {"name": name}
    try:
        if refusal is not None:
            raise refusal
        snippet = store.db.callable_named(name)
        details = {**snippet.reference, "name": name}
        timeout_s = store.settings.store.call_timeout_s
        result = call(snippet, arguments, store.sandbox, timeout_s, stop)
    except Exception as exc:
        audit({**details, "error": _why(exc)[:500]})
        raise
    except KeyboardInterrupt:  # the command calling it, interrupted (Ctrl-C, SIGTERM)
        audit({**details, "error": f"{name}() was stopped: its command was interrupted"})
        raise
    audit({**details, "ok": True})
    return snippet, result


def _why(exc: Exception) -> str:
    return exc.message if isinstance(exc, TetherError) else f"internal error {exc!r}"


def call(
    snippet: Snippet,
    arguments: Any,
    sandbox: Sandbox,
    timeout_s: float,
    stop: threading.Event | None = None,
) -> CallResult:
    if snippet.state != "vetted" or not snippet.callable or snippet.language != "python":
        raise RequestError(f"snippet {snippet.id} is not a vetted callable Python function")
    call_args = bind(snippet, arguments)
    if stop is not None and stop.is_set():
        raise FunctionCallError(f"{snippet.name}() was not run: its caller went away first")
    program = _PROGRAM.format(code=snippet.current.code, name=snippet.name)
    outcome = sandbox.run(
        program,
        Limits(timeout_s=timeout_s, memory_mb=1024, file_mb=OUTPUT_MB, processes=16),
        files={"arguments.json": json.dumps(call_args)},
        stop=stop,
    )
    if outcome.stopped:
        raise FunctionCallError(
            f"{snippet.name}() was stopped after {outcome.duration_s:.1f} s: its caller went away"
        )
    if outcome.status is Status.TIMEOUT:
        raise FunctionCallError(
            f"{snippet.name}() ran past its {timeout_s:g} s (store.call_timeout_s)",
            timed_out=True,
        )
    if outcome.status is Status.VIOLATION:
        raise FunctionCallError(f"{snippet.name}() broke a sandbox rule: {outcome.detail}")
    if outcome.status is Status.OUT_OF_MEMORY:
        raise FunctionCallError(f"{snippet.name}() ran out of memory")
    if not outcome.passed and _WROTE_TOO_MUCH in outcome.detail:
        raise FunctionCallError(
            f"{snippet.name}() wrote more than {OUTPUT_MB} MiB: its result, and any file "
            "it writes, must each fit in that"
        )
    if not outcome.passed:
        raise FunctionCallError(f"{snippet.name}() failed: {_raised(outcome.detail)}")
    if outcome.data is None or "result" not in outcome.data:
        raise FunctionCallError(
            f"{snippet.name}() returned more than {OUTPUT_MB} MiB of JSON, or nothing readable"
        )
    return CallResult(outcome.data["result"], outcome.duration_s)


def _raised(detail: str) -> str:
    """What a traceback says was raised, on one line: the type and its whole message (the
    lines after the last frame, as a message may have several); without a traceback, the
    last line the program wrote (a SystemExit's message)."""
    lines = [line for line in detail.strip().splitlines() if line.strip()]
    if not lines:
        return "it exited with an error"
    frames = [i for i, line in enumerate(lines) if line.startswith('  File "')]
    if not frames:
        return lines[-1].strip()
    start = frames[-1] + 1
    while start < len(lines) and lines[start][:1].isspace():  # the frame's code, its ^^^
        start += 1
    raised = " ".join(line.strip() for line in lines[start:]) or lines[-1].strip()
    # sys.exit("why") is how a program says why it stopped: the why is the message.
    return raised.removeprefix("SystemExit: ")


def _mismatch(annotation: ast.expr, value: Any) -> str:
    """What the annotation wants when ``value`` is not that, else ""."""
    accepted = _accepted(annotation)
    if accepted is None:
        return ""  # an annotation JSON cannot express: not checked
    types, described = accepted
    if isinstance(value, bool) and bool not in types and object not in types:
        return described  # true is not an int here, whatever Python thinks
    return "" if isinstance(value, types) else described


def _accepted(annotation: ast.expr) -> tuple[tuple[type, ...], str] | None:
    if isinstance(annotation, ast.Constant) and annotation.value is None:
        return (type(None),), "null"
    if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):
        try:
            return _accepted(ast.parse(annotation.value, mode="eval").body)
        except SyntaxError:
            return None
    if isinstance(annotation, ast.Name) and annotation.id in _SIMPLE:
        return _SIMPLE[annotation.id], annotation.id
    if isinstance(annotation, ast.Subscript):
        base = annotation.value
        name = base.attr if isinstance(base, ast.Attribute) else getattr(base, "id", "")
        if name in ("list", "List", "Sequence", "tuple", "Tuple"):
            return (list,), "a list"
        if name in ("dict", "Dict", "Mapping"):
            return (dict,), "an object"
        if name == "Optional":
            inner = _accepted(annotation.slice)
            return None if inner is None else ((*inner[0], type(None)), f"{inner[1]} or null")
        if name == "Union" and isinstance(annotation.slice, ast.Tuple):
            return _union(annotation.slice.elts)
    if isinstance(annotation, ast.BinOp) and isinstance(annotation.op, ast.BitOr):
        return _union([annotation.left, annotation.right])
    return None


def _union(members: list[ast.expr]) -> tuple[tuple[type, ...], str] | None:
    parts = [_accepted(m) for m in members]
    if any(p is None for p in parts):
        return None
    types = tuple(t for p in parts if p is not None for t in p[0])
    return types, " or ".join(p[1] for p in parts if p is not None)
