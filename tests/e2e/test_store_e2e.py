"""The function store as a user meets it: the CLI, MCP over stdio, MCP over HTTP."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import pytest
from mcp import ClientSession, MCPError, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

from tests.helpers import RunningServer, tether_env, tether_server
from tests.store.conftest import DATES

TEST = "assert add(1, 2) == 3\n"
# A client's first message, as a raw line over stdio.
HELLO = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "raw", "version": "1"},
    },
}


def tether(env: dict[str, str], *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "tether", *args], env=env, capture_output=True, text=True
    )
    if ok:
        assert done.returncode == 0, done.stderr
    return done


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory whose store holds vetted parse_iso_date, slugify and add()."""
    home = tmp_path_factory.mktemp("store-e2e")
    lib = home / "lib"
    lib.mkdir()
    (lib / "dates.py").write_text(DATES)
    (home / "add_test.py").write_text(TEST)
    env = tether_env(home)
    imported = json.loads(tether(env, "store", "import", str(lib), "--json").stdout)
    assert imported["added"] == 3
    listed = json.loads(tether(env, "store", "list", "--json").stdout)["snippets"]
    ids = {s["name"]: s["id"] for s in listed}
    tether(env, "store", "add", f"{lib / 'dates.py'}::add", "--test", str(home / "add_test.py"))
    for name in ("parse_iso_date", "slugify"):
        tether(env, "store", "vet", str(ids[name]), "--approve", "--reason", "reviewed")
    tether(env, "store", "vet", str(ids["add"]), "--approve", "--callable", "--reason", "tested")
    return home


def test_cli_search_show_call_and_audit(home: Path) -> None:
    env = tether_env(home)
    found = json.loads(tether(env, "store", "search", "parseIsoDate", "--json").stdout)
    assert found["data"][0]["name"] == "parse_iso_date"
    assert found["data"][0]["scores"]["bm25_rank"] == 1
    called = json.loads(
        tether(env, "store", "call", "add", "--args", '{"a": 2, "b": 3}', "--json").stdout
    )
    assert called["result"] == 5
    shown = json.loads(tether(env, "store", "show", "3", "--gates", "--json").stdout)
    assert shown["version"] == 2 and shown["test"] == TEST  # adding the test made version 2
    assert {g["name"]: g["passed"] for g in shown["gates"]}["test"] is True
    # Three decisions and a call: four signed records that verify.
    assert tether(env, "audit", "verify").stdout.startswith("4 records,")
    lines = "".join(p.read_text() for p in (home / "data" / "audit").rglob("*.jsonl"))
    assert '"endpoint":"event store.vet"' in lines and '"endpoint":"event store.call"' in lines


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["store", "vet", "999", "--approve", "--reason", "x"], "no snippet 999"),
        (["store", "search", "!!!"], "no words"),
        (["store", "call", "add", "--args", "{oops"], "--args is not JSON"),
        (["store", "call", "add", "--args", '{"a": NaN, "b": 1}'], "NaN is not a JSON number"),
        (["store", "call", "add", "--args", '{"a": 1e400, "b": 1}'], "past the largest number"),
        (["store", "call", "add", "--args", '{"a": "x"}'], "must be int"),
        (["store", "call", "nope"], "no vetted callable function 'nope'"),
        (["store", "add", "missing.py"], "no file missing.py"),
    ],
)
def test_cli_bad_input_is_one_clear_line(home: Path, args: list[str], says: str) -> None:
    done = tether(tether_env(home), *args, ok=False)
    assert done.returncode == 2 and says in done.stderr and "Traceback" not in done.stderr


def _calls_audited(home: Path) -> list[dict[str, Any]]:
    lines = "".join(p.read_text() for p in (home / "data" / "audit").rglob("*.jsonl"))
    records = [json.loads(line) for line in lines.splitlines() if line.strip()]
    return [r["params"] for r in records if r.get("endpoint") == "event store.call"]


def test_mcp_over_stdio(home: Path) -> None:
    env = {**os.environ, **tether_env(home)}
    audited_before = len(_calls_audited(home))

    async def session() -> None:
        params = StdioServerParameters(
            command=sys.executable, args=["-m", "tether", "mcp"], env=env
        )
        async with stdio_client(params) as (read, write), ClientSession(read, write) as mcp:
            await mcp.initialize()
            tools = {t.name for t in (await mcp.list_tools()).tools}
            assert tools == {"search_snippets", "get_snippet", "call_function"}
            found = await mcp.call_tool("search_snippets", {"query": "slug from a title"})
            top = found.structured_content["results"][0]
            assert top["name"] == "slugify" and top["scores"]["bm25"] > 0
            # As long a query as HTTP takes, and no longer.
            assert not (await mcp.call_tool("search_snippets", {"query": "a" * 4000})).is_error
            too_long = await mcp.call_tool("search_snippets", {"query": "a" * 4001})
            assert too_long.is_error and "4000" in getattr(too_long.content[0], "text", "")
            detail = await mcp.call_tool("get_snippet", {"snippet_id": top["id"]})
            assert "def slugify" in detail.structured_content["code"]
            called = await mcp.call_tool("call_function", {"name": "add", "arguments": {"a": 1}})
            assert called.structured_content["result"] == 2
            wrong = await mcp.call_tool("call_function", {"name": "add", "arguments": {"a": "x"}})
            assert wrong.is_error and "must be int" in getattr(wrong.content[0], "text", "")
            resources = (await mcp.list_resources()).resources
            assert {r.name for r in resources} == {"parse_iso_date", "slugify", "add"}
            resource = await mcp.read_resource(f"snippet://{top['id']}")
            assert "def slugify" in getattr(resource.contents[0], "text", "")
            for uri in ("snippet://999", f"snippet://{10**30}"):
                with pytest.raises(MCPError, match="not vetted"):
                    await mcp.read_resource(uri)
            huge = await mcp.call_tool("get_snippet", {"snippet_id": 2**70})
            assert huge.is_error and "not vetted" in getattr(huge.content[0], "text", "")
            # Arguments are what their schema says, not what they can be turned into
            # (true is not snippet 1), and a refusal says only what to send.
            wrong_arguments: list[tuple[str, dict[str, Any], str]] = [
                ("get_snippet", {"snippet_id": True}, "snippet_id: Input should be a valid"),
                ("search_snippets", {"query": "a", "limit": "3"}, "limit: Input should be a"),
                ("search_snippets", {}, "search_snippets: query: Field required"),
                ("call_function", {"name": "add", "arguments": [1]}, "arguments: Input should"),
            ]
            for tool, arguments, says in wrong_arguments:
                refused = await mcp.call_tool(tool, arguments)
                text = getattr(refused.content[0], "text", "")
                assert refused.is_error and says in text and "pydantic.dev" not in text, text

    anyio.run(session)
    # Each call over stdio is a signed audit record, as from the command line.
    # A call its schema refused too: it was left out.
    ok, refused, unbound = _calls_audited(home)[audited_before:]
    assert ok["name"] == "add" and ok["ok"] is True and ok["version"] >= 1
    assert unbound["name"] == "add" and "arguments: Input should" in unbound["error"]
    assert "must be int" in refused["error"]
    assert refused.keys() >= {"id", "version", "hash"} and refused["id"] == ok["id"]
    assert tether(tether_env(home), "audit", "verify").returncode == 0


def _raw_mcp(home: Path) -> subprocess.Popen[str]:
    """``tether mcp`` spoken to line by line, as a client does, without the SDK's client."""
    return subprocess.Popen(
        [sys.executable, "-m", "tether", "mcp"],
        env={**os.environ, **tether_env(home)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def test_a_line_over_stdio_that_is_not_a_message_is_answered_with_an_error(home: Path) -> None:
    """The transport dropped it without a word, and a client waiting on its id hung."""
    lines = [
        json.dumps(HELLO),
        "not json",
        "",  # a blank line: nothing sent, nothing answered
        '{"jsonrpc": "2.0", "id": 7}',  # no method, no result: its id may be the server's
        '{"jsonrpc": "2.0", "id": 8, "method": 5}',
        "[1, 2]",
        '{"jsonrpc": "2.0", "id": 1.5, "method": "ping"}',  # read as a notification
        '{"jsonrpc": "2.0", "method": "notifications/initialized"}',  # one indeed
        '{"jsonrpc": "2.0", "id": 10, "method": "tools/call", "params": {"name": '
        '"search_snippets", "arguments": {"query": "\\ud800"}}}',  # a lone surrogate
        '{"jsonrpc": "2.0", "id": 9, "method": "ping"}',
    ]
    # Stdin stays open until every reply came: at its end the SDK cancels what still runs.
    with _raw_mcp(home) as proc:
        assert proc.stdin is not None and proc.stdout is not None
        stuck = threading.Timer(60, proc.kill)  # a reply that never comes fails, not hangs
        stuck.start()
        try:
            proc.stdin.write("\n".join(lines) + "\n")
            proc.stdin.flush()
            replies = [json.loads(proc.stdout.readline()) for _ in range(8)]
            proc.stdin.close()
            assert proc.wait(timeout=60) == 0 and proc.stdout.read() == ""  # nothing more
        finally:
            stuck.cancel()
    errors = [(r["id"], r["error"]["code"]) for r in replies if "error" in r]
    assert sorted(errors, key=str) == sorted(
        [(None, -32700), (None, -32600), (8, -32600), (None, -32600), (None, -32600),
         (10, -32700)],
        key=str,
    )  # fmt: skip
    messages = [r["error"]["message"] for r in replies if "error" in r]
    assert sum("a batch (a JSON array) is not served" in m for m in messages) == 1  # [1, 2]
    assert sum("ping is a request, whose id must be" in m for m in messages) == 1
    assert sum("params.arguments.query: a \\u escape names a lone" in m for m in messages) == 1
    answered = {r["id"] for r in replies if "result" in r}
    assert answered == {1, 9}  # the session went on


def test_ctrl_c_ends_tether_mcp_while_its_client_keeps_stdin_open(home: Path) -> None:
    """It waited for the client to close stdin: asyncio's handler cancelled the session,
    whose transport's thread was still reading."""
    with _raw_mcp(home) as proc:
        try:
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write(json.dumps(HELLO) + "\n")
            proc.stdin.flush()
            assert json.loads(proc.stdout.readline())["id"] == 1  # serving
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=20) == 130
        finally:
            proc.kill()


def test_parallel_calls_over_stdio_share_the_audit_log(home: Path) -> None:
    env = {**os.environ, **tether_env(home)}
    audited_before = len(_calls_audited(home))

    async def session() -> list[Any]:
        params = StdioServerParameters(
            command=sys.executable, args=["-m", "tether", "mcp"], env=env
        )
        async with stdio_client(params) as (read, write), ClientSession(read, write) as mcp:
            await mcp.initialize()
            answers: list[Any] = [None] * 8

            async def one(i: int) -> None:
                answers[i] = await mcp.call_tool(
                    "call_function", {"name": "add", "arguments": {"a": i}}
                )

            async with anyio.create_task_group() as group:
                for i in range(8):
                    group.start_soon(one, i)
            return answers

    answers = anyio.run(session)
    assert [a.structured_content["result"] for a in answers] == [i + 1 for i in range(8)]
    assert len(_calls_audited(home)) == audited_before + 8


def test_parallel_cli_calls_wait_their_turn_with_the_audit_log(home: Path) -> None:
    audited_before = len(_calls_audited(home))
    command = [sys.executable, "-m", "tether", "store", "call", "add", "--args"]
    running = [
        subprocess.Popen(
            [*command, json.dumps({"a": i})],
            env=tether_env(home),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(4)
    ]
    done = [(p.wait(timeout=120), *p.communicate()) for p in running]
    assert [(rc, out.strip()) for rc, out, _ in done] == [(0, str(i + 1)) for i in range(4)]
    assert len(_calls_audited(home)) == audited_before + 4


@pytest.fixture(scope="module")
def server(home: Path) -> Iterator[RunningServer]:
    with tether_server(home) as running:
        yield running


def _token(server: RunningServer, scopes: list[str]) -> str:
    response = httpx.post(
        f"{server.url}/v1/tokens",
        headers=server.headers,
        json={"principal": f"mcp-{'-'.join(scopes)}", "scopes": scopes, "ttl_s": 600},
    )
    assert response.status_code == 201, response.text
    return str(response.json()["token"])


def _children(pid: int) -> list[str]:
    """The process ids of ``pid``'s children."""
    ps = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], text=True, capture_output=True)
    return ps.stdout.split()


def _signalled_once_sandboxed(command: subprocess.Popen[Any], signum: int) -> tuple[int, bool]:
    """Once ``command`` has started its one sandboxed child, send it ``signum``: its exit
    status, and whether the child outlived it."""
    assert _eventually(lambda: len(_children(command.pid)) == 1, within_s=60)
    (child,) = _children(command.pid)
    command.send_signal(signum)
    try:
        return command.wait(timeout=30), Path(f"/proc/{child}").exists()
    finally:
        command.kill()
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(child), signal.SIGKILL)


def _eventually(check: Any, within_s: float = 10.0) -> bool:
    """``check()``, asked again until it holds or ``within_s`` passes (the server writes
    its audit log a checkpoint at a time)."""
    deadline = time.monotonic() + within_s
    while not check() and time.monotonic() < deadline:
        time.sleep(0.2)
    return bool(check())


async def _over_http(url: str, token: str | None, work: Any) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=30) as http,
        streamable_http_client(f"{url}/mcp", http_client=http) as (read, write),
        ClientSession(read, write) as mcp,
    ):
        await mcp.initialize()
        return await work(mcp)


def test_mcp_over_http_with_scopes(server: RunningServer, home: Path) -> None:
    reader = _token(server, ["store:read"])
    caller = _token(server, ["store:read", "functions:call"])

    async def search_and_call(mcp: ClientSession) -> tuple[Any, Any]:
        found = await mcp.call_tool("search_snippets", {"query": "iso date"})
        called = await mcp.call_tool("call_function", {"name": "add", "arguments": {"a": 4}})
        return found, called

    found, called = anyio.run(_over_http, server.url, caller, search_and_call)
    assert found.structured_content["results"][0]["name"] == "parse_iso_date"
    assert called.structured_content["result"] == 5
    _, refused = anyio.run(_over_http, server.url, reader, search_and_call)
    assert refused.is_error and "functions:call" in getattr(refused.content[0], "text", "")
    # The refusal is a store.call event, not a request that went well (status 200).
    wanted = {"name": "add", "error": "this token lacks the 'functions:call' scope"}
    assert _eventually(lambda: wanted in _calls_audited(home))
    for token in (None, "tth_wrong", _token(server, ["chat"])):
        with pytest.raises(BaseException) as caught:
            anyio.run(_over_http, server.url, token, search_and_call)
        assert "MCPError" in repr(caught.value) or isinstance(caught.value, MCPError)
    raw = httpx.post(f"{server.url}/mcp", json={})
    assert raw.status_code == 401 and raw.json()["error"]["message"].startswith("missing bearer")
    # A protocol version the server does not speak is named, with those it does.
    ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    unknown = httpx.post(
        f"{server.url}/mcp",
        json=ping,
        headers={
            "Authorization": f"Bearer {reader}",
            "Accept": "application/json, text/event-stream",
            "MCP-Protocol-Version": "2099-01-01",
        },
    )
    assert unknown.status_code == 400, unknown.text
    said = unknown.json()["error"]["message"]
    assert said.startswith("MCP-Protocol-Version '2099-01-01' is not one this server speaks")
    assert "2025-06-18" in said, said
    # Stateless: no event stream to open (a GET used to hang) and no session to end.
    headers = {"Authorization": f"Bearer {reader}", "Accept": "text/event-stream"}
    for method in ("GET", "DELETE", "PUT", "OPTIONS"):
        answer = httpx.request(method, f"{server.url}/mcp", headers=headers, timeout=10)
        assert answer.status_code == 405 and answer.headers["allow"] == "POST"
        assert "POST your requests" in answer.json()["error"]["message"]
    metrics = httpx.get(f"{server.url}/metrics").text
    assert 'tether_requests_total{route="/mcp",status="200"}' in metrics


SPIN = 'def spin_forever() -> int:\n    """Never returns."""\n    while True:\n        pass\n'


def test_a_call_whose_client_leaves_is_stopped_over_http_and_mcp(
    server: RunningServer, home: Path
) -> None:
    """Not run on to store.call_timeout_s for no one, holding a thread the next call
    waits for; each is still a store.call record, which says why it ended."""
    added = httpx.post(
        f"{server.url}/v1/snippets",
        headers=server.headers,
        json={"code": SPIN, "language": "python", "licence": "MIT", "callable": True},
    )
    assert added.status_code == 201, added.text
    vetted = httpx.post(
        f"{server.url}/v1/snippets/{added.json()['id']}/vet",
        headers=server.headers,
        json={"approve": True, "reason": "reviewed"},
    )
    assert vetted.status_code == 200, vetted.text
    with pytest.raises(httpx.TimeoutException):
        httpx.post(
            f"{server.url}/v1/functions/spin_forever/call",
            headers=server.headers,
            json={"arguments": {}},
            timeout=1.5,
        )

    async def leave_midway(mcp: ClientSession) -> None:
        with anyio.fail_after(1.5):
            await mcp.call_tool("call_function", {"name": "spin_forever", "arguments": {}})

    with pytest.raises(BaseException) as left:
        anyio.run(_over_http, server.url, server.token, leave_midway)
    assert "TimeoutError" in repr(left.value)

    def ended() -> list[str]:
        return [c.get("error", "") for c in _calls_audited(home) if c["name"] == "spin_forever"]

    assert _eventually(lambda: len(ended()) == 2, within_s=30), ended()
    assert all(e.startswith("spin_forever() was stopped after") for e in ended()), ended()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_an_interrupted_store_call_stops_its_program_and_is_recorded(
    tmp_path: Path, signum: int
) -> None:
    """`tether store call` ended by SIGTERM left its sandboxed program running, and neither
    SIGTERM nor Ctrl-C left an audit record of the call, which every call has."""
    env = tether_env(tmp_path, TETHER_STORE_CALL_TIMEOUT_S="120")
    (tmp_path / "spin.py").write_text(SPIN)
    tether(env, "store", "add", f"{tmp_path / 'spin.py'}::spin_forever", "--licence", "MIT")
    tether(env, "store", "vet", "1", "--approve", "--callable", "--reason", "reviewed")
    with subprocess.Popen(
        [sys.executable, "-m", "tether", "store", "call", "spin_forever"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        # As a shell starts a command, whatever this process does with Ctrl-C.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    ) as command:
        status, left_running = _signalled_once_sandboxed(command, signum)
    assert (status, left_running) == (130, False)
    (ended,) = [c for c in _calls_audited(tmp_path) if c["name"] == "spin_forever"]
    assert ended["error"] == "spin_forever() was stopped: its command was interrupted", ended


@pytest.mark.parametrize(
    "args", [["vet", "1", "--approve", "--reason", "tested"], ["show", "1", "--gates"]]
)
def test_sigterm_stops_the_sandboxed_test_of_the_gates(tmp_path: Path, args: list[str]) -> None:
    """`tether store vet` and `store show --gates` ended by SIGTERM left the snippet's test
    running in its sandbox, on its own; Ctrl-C stopped it."""
    env = tether_env(tmp_path)
    (tmp_path / "add.py").write_text("def add(a, b):\n    return a + b\n")
    (tmp_path / "add_test.py").write_text("while True:\n    pass\n")
    tether(env, "store", "add", str(tmp_path / "add.py"), "--licence", "MIT", "--test",
           str(tmp_path / "add_test.py"))  # fmt: skip
    with subprocess.Popen(
        [sys.executable, "-m", "tether", "store", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    ) as command:
        status, left_running = _signalled_once_sandboxed(command, signal.SIGTERM)
    assert (status, left_running) == (130, False)


@pytest.mark.parametrize("ending", ["sigterm", "stdin closed"])
def test_a_call_over_stdio_whose_session_ends_is_stopped_and_recorded(
    tmp_path: Path, ending: str
) -> None:
    """SIGTERM (how an MCP client ends its server when closing stdin did not), or the
    client closing stdin: the call running is stopped and recorded, its sandboxed program
    does not run on, the command exits."""
    env = tether_env(tmp_path)
    (tmp_path / "spin.py").write_text(SPIN)
    tether(env, "store", "add", f"{tmp_path / 'spin.py'}::spin_forever", "--licence", "MIT")
    tether(env, "store", "vet", "1", "--approve", "--callable", "--reason", "reviewed")
    with subprocess.Popen(
        [sys.executable, "-m", "tether", "mcp"],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    ) as server:
        assert server.stdin is not None and server.stdout is not None
        for message in (
            {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                "protocolVersion": "2025-06-18", "capabilities": {},
                "clientInfo": {"name": "test", "version": "1"}}},
            {"jsonrpc": "2.0", "method": "notifications/initialized"},
            {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
                "name": "call_function", "arguments": {"name": "spin_forever"}}},
        ):  # fmt: skip
            server.stdin.write(json.dumps(message).encode() + b"\n")
            server.stdin.flush()
            if message.get("id") == 0:
                assert b'"id":0' in server.stdout.readline()

        assert _eventually(lambda: len(_children(server.pid)) == 1)
        (child,) = _children(server.pid)
        if ending == "sigterm":
            server.terminate()
        else:
            server.stdin.close()
        try:
            assert server.wait(timeout=30) == (130 if ending == "sigterm" else 0)
        finally:
            server.kill()
    assert not Path(f"/proc/{child}").exists()
    (ended,) = [c for c in _calls_audited(tmp_path) if c["name"] == "spin_forever"]
    assert ended["error"].startswith("spin_forever() was stopped after"), ended
