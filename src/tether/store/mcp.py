"""The function store as an MCP server (the official ``mcp`` package, major version 2).

Tools ``search_snippets``, ``get_snippet`` and ``call_function``; each vetted snippet is a
resource ``snippet://{id}``. ``tether mcp`` serves it over stdio for a local client (the
user's own store, every scope), and audits each call as ``tether store call`` does; the
HTTP server mounts it at ``/mcp`` (streamable HTTP, stateless, JSON answers), where a
bearer token with ``store:read`` is needed to come in and ``functions:call`` to call, and
each call is the request's audit record.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import io
import json
import os
import sys
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager, ExitStack, nullcontext
from typing import Annotated, Any

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceNotFoundError, ToolError
from mcp.server.stdio import stdio_server
from mcp.shared.message import SessionMessage
from mcp_types import INVALID_REQUEST, PARSE_ERROR, ErrorData, JSONRPCError, JSONRPCNotification
from mcp_types import Resource as McpResource
from pydantic import BaseModel, Field, ValidationError

from tether import __version__
from tether.errors import ForbiddenError, OverloadedError, RequestError, TetherError
from tether.rootlog import root_logger_kept
from tether.store import FunctionStore
from tether.store.caller import CALLER
from tether.store.calls import CallResult, call_recorded
from tether.store.model import Snippet
from tether.store.search import MAX_QUERY_CHARS
from tether.textfile import LONE_SURROGATE_FIX, lone_surrogate

Record = Callable[[str, dict[str, Any]], object]  # event, details
RESOURCE_LIMIT = 1000  # vetted snippets listed as resources; search finds the rest


class Scores(BaseModel):
    fused: float
    bm25: float | None = None
    similarity: float | None = None


class SnippetSummary(BaseModel):
    id: int
    version: int
    name: str
    language: str
    signature: str
    docstring: str
    callable: bool
    hash: str
    scores: Scores | None = None


class SearchResult(BaseModel):
    query: str
    hybrid: bool
    results: list[SnippetSummary]


class SnippetDetail(SnippetSummary):
    code: str
    licence: str
    origin: dict[str, Any]
    tags: list[str]


class FunctionResult(BaseModel):
    name: str
    result: Any
    duration_s: float
    snippet: dict[str, Any]


def _summary(snippet: Any, scores: dict[str, Any] | None = None) -> dict[str, Any]:
    current = snippet.current
    return {
        "id": snippet.id,
        "version": current.version,
        "name": snippet.name,
        "language": snippet.language,
        "signature": current.signature,
        "docstring": current.docstring,
        "callable": snippet.callable,
        "hash": current.body_hash,
        "scores": scores,
    }


def _unheard(event: str, details: dict[str, Any]) -> None:
    """Where events go when nothing records them (a server built without a way to)."""


def malformed_reply(problem: Exception) -> JSONRPCError | None:
    """JSON-RPC's answer to a line that is not a message: a parse error for text that is
    not JSON, else an invalid request, with its id where it reads as a request's (a
    response's id is one of the server's own requests); None for a blank line."""
    errors = problem.errors() if isinstance(problem, ValidationError) else []
    if any(e["type"] == "json_invalid" for e in errors) or not errors:
        line = errors[0]["input"] if errors else None
        if isinstance(line, str) and not line.strip(" \t\r\n"):  # JSON's whitespace only
            return None  # a blank line between messages: nothing was sent
        surrogate = (
            _lone_surrogate_reply(line)
            if isinstance(line, str) and "hex escape" in str(errors[0]["msg"])
            else None
        )
        return surrogate or JSONRPCError(
            jsonrpc="2.0",
            id=None,
            error=ErrorData(code=PARSE_ERROR, message="Parse error: a line is one JSON value"),
        )
    asked = (e["input"] for e in errors if isinstance(e["input"], dict) and "method" in e["input"])
    ids = (message.get("id") for message in asked)
    usable = next((i for i in ids if isinstance(i, str) or type(i) is int), None)
    if errors and all(isinstance(e["input"], list) for e in errors):
        # JSON-RPC's batches, which MCP left out in 2025-06-18: each is refused alike.
        message = "Invalid Request: a batch (a JSON array) is not served: send one message a line"
    else:
        message = "Invalid Request: not a JSON-RPC 2.0 request, notification or response"
    return JSONRPCError(
        jsonrpc="2.0", id=usable, error=ErrorData(code=INVALID_REQUEST, message=message)
    )


def _lone_surrogate_reply(line: str) -> JSONRPCError | None:
    """The answer to a request that spells a lone UTF-16 surrogate, which JSON as Python
    reads it holds: its id is known, and the client waits for nothing. None for a line
    that is not JSON for another reason."""
    try:
        message = json.loads(line)
    except ValueError:
        return None
    where = lone_surrogate(message)
    if where is None:
        return None
    ident = message.get("id") if isinstance(message, dict) else None
    usable = ident if isinstance(ident, str) or type(ident) is int else None
    text = f"Parse error: {where or 'the message'}: {LONE_SURROGATE_FIX}"
    return JSONRPCError(jsonrpc="2.0", id=usable, error=ErrorData(code=PARSE_ERROR, message=text))


def unanswerable_request(message: JSONRPCNotification) -> JSONRPCError | None:
    """The answer to a request the transport read as a notification, its id neither a
    string nor an integer (null, 1.5, true): every MCP notification is named
    ``notifications/...``, and a client that sent ``ping`` waits for its answer."""
    if message.method.startswith("notifications/"):
        return None
    text = (
        f"Invalid Request: {message.method} is a request, whose id must be a string or an "
        "integer; without one it is a notification, which gets no answer"
    )
    return JSONRPCError(jsonrpc="2.0", id=None, error=ErrorData(code=INVALID_REQUEST, message=text))


class _LeftWhenCancelled(anyio.AsyncFile[str]):
    """Lines read in a worker thread that a cancelled read leaves behind, blocked, where
    the SDK's waits for it: once answers cannot be written (the client stopped reading, a
    full disk), the session ends then, not when the client also closes our input."""

    async def readline(self) -> str:
        return await anyio.to_thread.run_sync(self.wrapped.readline, abandon_on_cancel=True)


@contextlib.asynccontextmanager
async def _input_lines() -> AsyncIterator[anyio.AsyncFile[str]]:
    """Standard input's lines, as UTF-8 (undecodable bytes replaced), from a descriptor of
    their own. Meanwhile descriptor 0 reads the null device, as in the SDK's transport, so
    no handler or child reads the client's messages."""
    try:
        served = sys.stdin.fileno() == 0
    except (AttributeError, OSError, ValueError):  # not the process's own (a test's)
        served = False
    if not served:
        yield _LeftWhenCancelled(sys.stdin)
        return
    wire = fcntl.fcntl(0, fcntl.F_DUPFD_CLOEXEC, 3)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    try:
        # Never closed: an abandoned read may still block on it, and a number reused
        # meanwhile would be read from.
        reader = os.fdopen(wire, "rb", closefd=False)
        yield _LeftWhenCancelled(io.TextIOWrapper(reader, encoding="utf-8", errors="replace"))
    finally:
        os.dup2(wire, 0)


def build_mcp_server(
    store_of: Callable[[], FunctionStore],
    hold_record: Callable[[], AbstractContextManager[Record]] | None = None,
) -> MCPServer:
    """The server; ``store_of`` gives the open store when a request comes (the HTTP app
    opens it in its lifespan, after the routes are built). ``hold_record`` gives the way to
    audit an event where no HTTP request does (stdio), held from before a call runs until
    it is recorded: a call that cannot be recorded does not run."""

    def audited_call(
        name: str,
        arguments: dict[str, Any],
        refusal: TetherError | None = None,
        stop: threading.Event | None = None,
    ) -> tuple[Snippet, CallResult]:
        """The call, recorded: through the HTTP request, else held open from before it runs."""
        caller = CALLER.get(None)
        if caller is not None:
            return recorded_call(name, arguments, caller.audit, refusal, stop)
        with ExitStack() as held:
            try:
                record = held.enter_context(hold_record() if hold_record else nullcontext(_unheard))
            except TetherError as exc:
                message = f"the call could not be audited, so it did not run: {exc.message}"
                raise ToolError(message) from exc
            return recorded_call(name, arguments, record, refusal, stop)

    def recorded_call(
        name: str,
        arguments: Any,
        record: Record,
        refusal: TetherError | None,
        stop: threading.Event | None,
    ) -> tuple[Snippet, CallResult]:
        caller = CALLER.get(None)
        if caller is not None and not caller.principal.allows("functions:call"):
            refusal = ForbiddenError("this token lacks the 'functions:call' scope")
        audit = functools.partial(record, "store.call")
        try:
            return call_recorded(store_of(), name, arguments, audit, refusal, stop)
        except TetherError as exc:
            raise ToolError(exc.message) from exc

    def _recorded_refusal(name: str, refusal: ToolError) -> None:
        with contextlib.suppress(ToolError):
            audited_call(name, {}, RequestError(str(refusal)))

    class StoreServer(MCPServer):
        async def list_resources(self) -> list[McpResource]:
            vetted = store_of().db.served_snippets(RESOURCE_LIMIT)
            listed = [
                McpResource(
                    uri=f"snippet://{s.id}",
                    name=s.name,
                    description=(s.current.docstring.splitlines() or [s.current.signature])[0],
                    mime_type="text/plain",
                )
                for s in vetted
            ]
            return [*await super().list_resources(), *listed]

        async def run_stdio_async(self) -> None:
            # The SDK's transport drops a line that is not a JSON-RPC message without a
            # word, and the client waits for an answer for ever: JSON-RPC answers it with
            # an error (parse error, invalid request), as a server over HTTP does.
            async with _input_lines() as lines, stdio_server(stdin=lines) as (received, replies):
                passed, taken = anyio.create_memory_object_stream[SessionMessage | Exception](0)

                async def answer_malformed() -> None:
                    async with passed:
                        async for item in received:
                            if isinstance(item, Exception):
                                reply = malformed_reply(item)
                            elif isinstance(item.message, JSONRPCNotification):
                                reply = unanswerable_request(item.message)
                                if reply is None:
                                    await passed.send(item)
                            else:
                                reply = None
                                await passed.send(item)
                            if reply is not None:
                                await replies.send(SessionMessage(reply))

                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(answer_malformed)
                    lowlevel = self._lowlevel_server
                    await lowlevel.run(taken, replies, lowlevel.create_initialization_options())

        async def call_tool(self, name: str, arguments: dict[str, Any], context: Any = None) -> Any:
            try:
                return await super().call_tool(name, arguments, context)
            except ToolError as exc:
                cause = exc.__cause__
                if not isinstance(cause, ValidationError):
                    raise
                # What to send, field by field: pydantic's text adds the input's type and a
                # link to its documentation on every line.
                refusal = ToolError(f"{name}: {_wrong_arguments(cause)}")
                if name == "call_function":  # refused, yet a call: each is recorded
                    called = arguments.get("name") if isinstance(arguments, dict) else None
                    await asyncio.to_thread(
                        _recorded_refusal, str(called) if called is not None else "", refusal
                    )
                raise refusal from cause

    with root_logger_kept():  # the SDK sets up the root logger when it builds a server
        server = StoreServer(
            "tether-store",
            version=__version__,
            instructions="The team's vetted functions: search them, read them, call the "
            "callable ones instead of writing the same code again.",
        )

    @server.tool()
    async def search_snippets(
        query: Annotated[
            str,
            Field(
                min_length=1,
                max_length=MAX_QUERY_CHARS,
                description="What the code should do.",
            ),
        ],
        limit: Annotated[int, Field(ge=1, le=50, strict=True)] = 5,
    ) -> SearchResult:
        """Vetted snippets for a description or a name, best first, with their scores."""
        store = store_of()
        try:
            hits = await asyncio.to_thread(store.searcher.search, query, limit)
        except TetherError as exc:
            raise ToolError(exc.message) from exc
        results = [SnippetSummary(**_summary(h.snippet, h.scores())) for h in hits]
        return SearchResult(query=query, hybrid=store.searcher.hybrid, results=results)

    @server.tool()
    async def get_snippet(snippet_id: Annotated[int, Field(ge=1, strict=True)]) -> SnippetDetail:
        """A vetted snippet's code, licence and where it came from."""
        snippet = store_of().db.served(snippet_id)
        if snippet is None:
            raise ToolError(f"snippet {snippet_id} is not vetted (or does not exist)")
        current = snippet.current
        return SnippetDetail(
            **_summary(snippet),
            code=current.code,
            licence=current.licence,
            origin=current.origin.__dict__,
            tags=list(current.tags),
        )

    @server.tool()
    async def call_function(
        name: Annotated[str, Field(min_length=1, description="A vetted callable function.")],
        arguments: Annotated[
            dict[str, Any], Field(description="Its arguments by name, as JSON.")
        ] = {},  # noqa: B006 (a schema default, never mutated)
    ) -> FunctionResult:
        """Run a vetted callable Python function in the sandbox and return its result."""
        store = store_of()

        def work(stop: threading.Event) -> tuple[Snippet, CallResult]:
            return audited_call(name, arguments, stop=stop)

        try:
            snippet, done = await store.calls.run(work, store.settings.store.call_timeout_s)
        except OverloadedError as exc:
            # Recorded as any refused call is, then raised (as a ToolError).
            await asyncio.to_thread(audited_call, name, arguments, exc)
            raise  # not reached
        return FunctionResult(
            name=name,
            result=done.result,
            duration_s=round(done.duration_s, 4),
            snippet=snippet.reference,
        )

    @server.resource("snippet://{snippet_id}", mime_type="text/plain")
    def snippet_resource(snippet_id: str) -> str:
        try:
            if not (snippet_id.isascii() and snippet_id.isdigit()):  # int() takes "٣" too
                raise ValueError(snippet_id)
            snippet = store_of().db.served(int(snippet_id))
        except ValueError as exc:
            raise ResourceNotFoundError(f"no snippet {snippet_id}") from exc
        if snippet is None:
            raise ResourceNotFoundError(f"snippet {snippet_id} is not vetted (or does not exist)")
        return snippet.current.code

    return server


def _wrong_arguments(error: ValidationError) -> str:
    """Each argument that is wrong and why, on one line: "limit: Input should be a valid
    integer"; "arguments" for one missing or of the wrong kind as a whole."""
    said = []
    for problem in error.errors(include_url=False):
        where = ".".join(str(part) for part in problem["loc"]) or "arguments"
        said.append(f"{where}: {problem['msg']}")
    return "; ".join(said)
