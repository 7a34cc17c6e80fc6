"""Request bodies over server.max_body_mb get a 413 in the OpenAI shape, before they are
read whole, token or not; bodies that are not Unicode text or not JSON get a 400 on every
route, once the token has been checked."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import TOKEN, make_settings
from tests.helpers import ScriptedEngine
from tether.server.app import build_app
from tether.strictjson import parse_json

ADMIN = {"Authorization": f"Bearer {TOKEN}"}
LIMIT = 4096  # bytes: server.max_body_mb = 4096 / 2**20


@pytest.fixture
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = make_settings(
        tmp_path_factory.mktemp("body"), TETHER_SERVER_MAX_BODY_MB=str(LIMIT / 2**20)
    )
    with TestClient(build_app(settings, TOKEN, lambda: ScriptedEngine("return 1"))) as client:
        yield client


def _refused(response: object) -> None:
    assert getattr(response, "status_code", None) == 413
    error = response.json()["error"]  # type: ignore[attr-defined]
    assert error["code"] == "request_too_large" and "server.max_body_mb" in error["message"]


def test_a_body_within_the_limit_is_served(client: TestClient) -> None:
    body = {"prompt": "x" * (LIMIT - 100), "max_tokens": 2}
    assert client.post("/v1/completions", headers=ADMIN, json=body).status_code == 200


def test_a_declared_length_over_the_limit_is_refused_before_anything_else(
    client: TestClient,
) -> None:
    body = {"prompt": "x" * LIMIT}
    _refused(client.post("/v1/completions", headers=ADMIN, json=body))
    _refused(client.post("/v1/completions", json=body))  # no token: still not read


def test_a_chunked_body_is_refused_when_it_passes_the_limit(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:  # no Content-Length: sent chunked
        yield b'{"prompt": "'
        for _ in range(LIMIT // 1024 + 1):
            yield b"x" * 1024
        yield b'"}'

    refused = client.post("/v1/completions", headers=ADMIN, content=chunks())
    _refused(refused)
    # A chunked body has no end the server knows: read and dropped on a connection kept
    # open, it went on for as long as its client sent it.
    assert refused.headers["connection"] == "close"


def _not_text(response: object, needle: str) -> None:
    assert getattr(response, "status_code", None) == 400, getattr(response, "text", None)
    error = response.json()["error"]  # type: ignore[attr-defined]
    assert error["message"].startswith("the request body is not valid JSON (")
    assert needle in error["message"]


def test_a_lone_surrogate_split_across_pieces_is_refused(client: TestClient) -> None:
    def pieces() -> Iterator[bytes]:
        yield b'{"prompt": "x\\u'  # the escape's backslash ends one piece...
        yield b'd83d", "max_tokens": 2}'  # ...and its digits start the next

    _not_text(client.post("/v1/completions", headers=ADMIN, content=pieces()), "lone UTF-16")


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ('{"prompt": "\\ud800"}'.encode("utf-16"), "lone UTF-16 surrogate"),
        (b'{"prompt": "\xed\xa0\x80"}', "in utf-8 at byte 12"),  # a surrogate as UTF-8
        (b'{"prompt": "\xff\xfe"}', "in utf-8"),
    ],
    ids=["utf-16 escape", "utf-8 surrogate bytes", "invalid utf-8"],
)
def test_bodies_that_are_not_text_are_refused(client: TestClient, body: bytes, needle: str) -> None:
    _not_text(client.post("/v1/completions", headers=ADMIN, content=body), needle)


@pytest.mark.parametrize(
    "body",
    [
        b'{"prompt": "\\\\ud800", "max_tokens": 2}',  # an escaped backslash, then text
        b'{"prompt": "\\ud83d\\ude00", "max_tokens": 2}',  # a pair: one character
        '{"prompt": "h\u00e9 \U0001f600", "max_tokens": 2}'.encode("utf-16"),
    ],
    ids=["escaped backslash", "surrogate pair", "utf-16 text"],
)
def test_text_that_only_looks_like_a_surrogate_is_served(client: TestClient, body: bytes) -> None:
    response = client.post("/v1/completions", headers=ADMIN, content=body)
    assert response.status_code == 200, response.text


def test_a_pair_in_a_body_that_is_not_json_gets_the_usual_answer(client: TestClient) -> None:
    truncated = b'{"prompt": "\\ud83d\\ude00", '
    response = client.post("/v1/completions", headers=ADMIN, content=truncated)
    _not_text(response, "Expecting property name")
    assert "surrogate" not in response.json()["error"]["message"]


def test_routes_outside_the_api_routers_are_checked_too(client: TestClient) -> None:
    call = {"name": "search_snippets", "arguments": {"query": "\ud800"}}
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": call})
    headers = {**ADMIN, "Accept": "application/json, text/event-stream"}
    _not_text(client.post("/mcp", headers=headers, content=body), "lone UTF-16 surrogate")


def test_a_compressed_body_is_refused_with_what_to_send(client: TestClient) -> None:
    import gzip

    packed = gzip.compress(json.dumps({"prompt": "x", "max_tokens": 2}).encode())
    headers = {**ADMIN, "Content-Encoding": "gzip", "Content-Type": "application/json"}
    response = client.post("/v1/completions", headers=headers, content=packed)
    assert response.status_code == 415
    error = response.json()["error"]
    assert error["code"] == "unsupported_content_encoding" and "uncompressed" in error["message"]
    plain = {**ADMIN, "Content-Encoding": "identity"}
    assert client.post("/v1/completions", headers=plain, json={"prompt": "x"}).status_code == 200


def test_a_body_compressed_as_its_transfer_coding_is_refused_with_what_to_send(
    client: TestClient,
) -> None:
    """HTTP's parser takes the chunks off and leaves the gzip on: the body was read as
    JSON and refused as bytes that are not UTF-8."""
    import gzip

    packed = gzip.compress(json.dumps({"prompt": "x", "max_tokens": 2}).encode())
    headers = {**ADMIN, "Transfer-Encoding": "gzip, chunked"}
    response = client.post("/v1/completions", headers=headers, content=packed)
    assert response.status_code == 415, response.text
    error = response.json()["error"]
    assert error["code"] == "unsupported_content_encoding", error
    assert "Transfer-Encoding gzip" in error["message"] and "uncompressed" in error["message"]


@pytest.mark.parametrize(
    ("lines", "named"),
    [
        (
            [("Transfer-Encoding", "gzip"), ("Transfer-Encoding", "chunked")],
            "Transfer-Encoding gzip",
        ),
        ([("Content-Encoding", "gzip"), ("Content-Encoding", "identity")], "Content-Encoding gzip"),
    ],
)
def test_a_coding_on_a_header_line_of_its_own_is_refused_too(
    client: TestClient, lines: list[tuple[str, str]], named: str
) -> None:
    """Lines of one field are one list: only the last line was read, so a gzip on a line
    before it was taken for no coding, and the body refused as bytes that are not UTF-8."""
    import gzip

    packed = gzip.compress(json.dumps({"prompt": "x", "max_tokens": 2}).encode())
    headers = [*ADMIN.items(), ("Content-Type", "application/json"), *lines]
    response = client.post("/v1/completions", headers=headers, content=packed)
    assert response.status_code == 415, response.text
    error = response.json()["error"]
    assert error["code"] == "unsupported_content_encoding", error
    assert named in error["message"], error


def test_a_body_refused_before_routing_is_counted_under_its_route(client: TestClient) -> None:
    """Counted as ``route="unmatched"``, refusals of the chat route escaped an alert on
    that route's errors, though the access and audit logs named it."""
    import gzip

    headers = {**ADMIN, "Content-Encoding": "gzip", "Content-Type": "application/json"}
    packed = gzip.compress(b'{"messages": []}')
    assert client.post("/v1/chat/completions", headers=headers, content=packed).status_code == 415
    _refused(client.post("/infill", headers=ADMIN, json={"input_prefix": "x" * LIMIT}))
    assert client.post("/v1/no/such/route", headers=ADMIN, json={}).status_code == 404
    metrics = client.get("/metrics").text
    assert 'tether_requests_total{route="/v1/chat/completions",status="415"} 1.0' in metrics
    assert 'tether_requests_total{route="/infill",status="413"} 1.0' in metrics
    assert 'tether_requests_total{route="unmatched",status="404"} 1.0' in metrics


@pytest.mark.parametrize(
    "body",
    [b'{"prompt": "x", ', b'{"prompt": "\\ud800"}', b'{"prompt": "x", "temperature": NaN}'],
    ids=["syntax error", "lone surrogate", "NaN"],
)
def test_a_bad_body_without_a_valid_token_hears_401_first(client: TestClient, body: bytes) -> None:
    for headers in ({}, {"Authorization": "Bearer tth_not-a-token"}):
        response = client.post("/v1/completions", headers=headers, content=body)
        assert response.status_code == 401, response.text
        assert response.json()["error"]["code"] == "invalid_api_key"


def test_a_bad_body_with_a_token_lacking_the_scope_hears_403(client: TestClient) -> None:
    created = client.post(
        "/v1/tokens", headers=ADMIN, json={"principal": "reader", "scopes": ["chat"]}
    )
    reader = {"Authorization": f"Bearer {created.json()['token']}"}
    response = client.post("/v1/completions", headers=reader, content=b'{"prompt": ')
    assert response.status_code == 403, response.text
    # With the scope, the same body is what is wrong.
    response = client.post("/v1/chat/completions", headers=reader, content=b'{"messages": ')
    _not_text(response, "Expecting value")


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_numbers_are_not_json(client: TestClient, constant: str) -> None:
    body = f'{{"prompt": "x", "max_tokens": 2, "temperature": {constant}}}'.encode()
    response = client.post("/v1/completions", headers=ADMIN, content=body)
    _not_text(response, f"{constant} is not a JSON number; send a finite number, or null")


@pytest.mark.parametrize(
    ("numeral", "says"),
    [
        ("1e400", "1e400 is past the largest number (about 1.8e308); send a finite number"),
        ("-2.5e999", "-2.5e999 is past the largest number"),
    ],
)
def test_a_number_python_cannot_hold_is_refused_in_words(
    client: TestClient, numeral: str, says: str
) -> None:
    """1e400 was read as infinity and went on to fail inside the request; an integer of
    5,000 digits raised past the reader."""
    body = f'{{"prompt": "x", "max_tokens": 2, "temperature": {numeral}}}'.encode()
    _not_text(client.post("/v1/completions", headers=ADMIN, content=body), says)


def test_an_integer_of_more_digits_than_python_reads_is_bad_json() -> None:
    # Past this client's body limit: read as a larger one is.
    with pytest.raises(json.JSONDecodeError, match="too many digits to read"):
        parse_json('{"temperature": ' + "9" * 4301 + "}")


@pytest.mark.parametrize(
    "body",
    [
        b'{"prompt": "x", "max_tokens": 2, "max_tokens": 4000}',
        b'{"messages": [{"role": "user", "role": "system", "content": "x"}]}',
    ],
)
def test_a_key_given_twice_is_refused(client: TestClient, body: bytes) -> None:
    """The last value was taken: a proxy that checks the first (a cap on max_tokens, a
    role) and tether would each have acted on a different request."""
    path = "/v1/chat/completions" if b"messages" in body else "/v1/completions"
    response = client.post(path, headers=ADMIN, content=body)
    _not_text(response, "is given twice in one object; give each key once")


def test_nan_inside_text_is_text(client: TestClient) -> None:
    body = {"prompt": "if (isNaN(x) || x === Infinity)", "max_tokens": 2}
    assert client.post("/v1/completions", headers=ADMIN, json=body).status_code == 200


def test_a_body_nested_too_deeply_is_refused_in_words(client: TestClient) -> None:
    depth = 2000  # within the size limit, beyond what the parser follows
    body = b'{"prompt": "x", "stop": ' + b"[" * depth + b"]" * depth + b"}"
    assert len(body) < LIMIT
    _not_text(client.post("/v1/completions", headers=ADMIN, content=body), "nested too deeply")


MCP_HEADERS = {**ADMIN, "Accept": "application/json, text/event-stream"}


def _json_rpc_refusal(response: Any, status: int, code: int) -> str:
    """The refusal's message, once it is a JSON-RPC error (what MCP clients show)."""
    assert response.status_code == status, response.text
    answer = response.json()
    assert answer["jsonrpc"] == "2.0" and answer["id"] is None
    assert answer["error"]["code"] == code
    return str(answer["error"]["message"])


def test_refusals_on_the_way_to_mcp_are_json_rpc_errors(client: TestClient) -> None:
    call = {"name": "search_snippets", "arguments": {"query": "\ud800"}}
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": call})
    not_text = client.post("/mcp", headers=MCP_HEADERS, content=body)
    assert "lone UTF-16 surrogate" in _json_rpc_refusal(not_text, 400, -32700)
    too_large = client.post("/mcp", headers=MCP_HEADERS, content=b"x" * (LIMIT + 1))
    assert "server.max_body_mb" in _json_rpc_refusal(too_large, 413, -32600)
    assert too_large.headers["connection"] == "close"

    def chunks() -> Iterator[bytes]:
        yield b"x" * LIMIT
        yield b"x"

    streamed = client.post("/mcp", headers=MCP_HEADERS, content=chunks())
    assert "server.max_body_mb" in _json_rpc_refusal(streamed, 413, -32600)
    # Elsewhere the OpenAI shape stays.
    _refused(client.post("/v1/completions", headers=ADMIN, content=b"x" * (LIMIT + 1)))


@pytest.mark.parametrize(
    ("body", "code", "says"),
    [
        (
            b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": '
            b'"search_snippets", "arguments": {"query": "a", "limit": NaN}}}',
            -32700,
            "NaN is not a JSON number",
        ),
        (b'{"jsonrpc": "2.0", "id": 1.5, "method": "tools/list"}', -32600, "id 1.5: a request"),
        (b'{"jsonrpc": "2.0", "id": null, "method": "tools/list"}', -32600, "id null: a request"),
        (b'{"jsonrpc": "2.0", "id": true, "method": "tools/list"}', -32600, "string or an integer"),
        (b'{"jsonrpc": "2.0", "id": {"a": 1}, "method": "tools/list"}', -32600, "id {"),
        (b'[{"jsonrpc": "2.0", "id": 1, "method": "ping"}]', -32600, "a batch (a JSON array)"),
        (b"[]", -32600, "a batch"),
        (b"5", -32600, "not a JSON-RPC 2.0 message"),
        (b'{"id": 1, "method": "ping"}', -32600, 'jsonrpc "2.0"'),
        (b'{"jsonrpc": "2.0"}', -32600, "not a request, notification or response"),
        (b'{"jsonrpc": "2.0", "id": 1}', -32600, "not a request, notification or response"),
        (b'{"jsonrpc": "2.0", "id": 1, "method": 5}', -32600, "method: must be a string"),
        (
            b'{"jsonrpc": "2.0", "id": 1, "method": "ping", "params": [1]}',
            -32600,
            "params: must be an object",
        ),
    ],
)
def test_mcp_messages_are_read_as_every_body_is_and_a_bad_id_is_refused(
    client: TestClient, body: bytes, code: int, says: str
) -> None:
    """Where the MCP server would read NaN as a number, or take a request with an id it
    cannot answer for a notification and drop it with an empty 202."""
    assert says in _json_rpc_refusal(
        client.post("/mcp", headers=MCP_HEADERS, content=body), 400, code
    )


def test_a_protocol_version_not_served_is_mcps_own_error_with_the_versions_served(
    client: TestClient,
) -> None:
    """A client newer than the server proposes its newest version and, told "unsupported
    protocol version" with the versions served, asks again with one of them: any other
    error ended its discovery."""
    headers = MCP_HEADERS
    ping = {"jsonrpc": "2.0", "id": "p1", "method": "ping"}
    response = client.post(
        "/mcp", headers={**headers, "MCP-Protocol-Version": "2099-01-01"}, json=ping
    )
    assert response.status_code == 400, response.text
    answer = response.json()
    assert answer["id"] == "p1" and answer["error"]["code"] == -32022, answer
    assert answer["error"]["message"].startswith("MCP-Protocol-Version '2099-01-01' is not")
    data = answer["error"]["data"]
    assert data["requested"] == "2099-01-01" and "2026-07-28" in data["supported"], data
    served = client.post(
        "/mcp", headers={**headers, "mcp-protocol-version": "2025-06-18"}, json=ping
    )
    assert served.status_code == 200 and served.json()["result"] == {}, served.text
