"""Exactly one audit record per request, on every route, whatever the outcome."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import TOKEN, make_settings
from tests.helpers import DiskThatFills, ScriptedEngine, audit_records
from tests.server.test_scopes import EXPECTED
from tether.audit import records
from tether.audit.checkpoint import parse_verifier_key
from tether.audit.verify import verify
from tether.server.app import build_app
from tether.traces import TraceStore

# A request each route can serve, by (method, path template).
BODIES: dict[tuple[str, str], Any] = {
    ("POST", "/v1/completions"): {"prompt": "def f():", "max_tokens": 4},
    ("POST", "/v1/chat/completions"): {"messages": [{"role": "user", "content": "hi"}]},
    ("POST", "/v1/responses"): {"input": "hi"},
    ("POST", "/v1/responses/input_tokens"): {"input": "hi"},
    ("POST", "/v1/fim/completions"): {"prompt": "def f(", "suffix": ")"},
    ("POST", "/infill"): {"input_prefix": "x = ", "input_suffix": "\n"},
    ("POST", "/completion"): {"prompt": "def f():", "n_predict": 4},
    ("POST", "/completions"): {"prompt": "def f():", "n_predict": 4},
    ("POST", "/tabby/v1/completions"): {"language": "python", "segments": {"prefix": "x"}},
    ("POST", "/tabby/v1/health"): None,
    ("POST", "/tabby/v1/events"): {"type": "view", "completion_id": "c", "choice_index": 0},
    ("POST", "/v1/suggestions"): {"path": "a.py", "source": "x = 1\n", "instruction": "y"},
    ("POST", "/v1/check"): {"code": "eval(x)\n", "language": "python"},
    ("POST", "/v1/tokens"): {"principal": "p", "scopes": ["chat"]},
    ("POST", "/v1/audit/events"): {"event": "eval.run", "details": {"suite": "humaneval"}},
    ("POST", "/v1/audit/records"): {
        "request_id": "cmpl-made-by-a-command",
        "model_sha256": "ab" * 32,
        "params": {"seed": 0, "finish_reason": "stop"},
        "prompt": "def add(a, b):",
        "completion": "    return a + b\n",
    },
    ("POST", "/v1/snippets"): {"code": "def f():\n    return 1\n", "language": "python"},
    ("POST", "/v1/snippets/{snippet_id}/vet"): {"approve": False, "reason": "no"},
    ("POST", "/v1/snippets/{snippet_id}/retire"): {"reason": "old"},
    ("POST", "/v1/functions/{name}/call"): {"arguments": {}},
}
PATH_VALUES = {
    "{seq}": "0",
    "{first_size}": "0",
    "{trace_id}": "cmpl-x",
    "{token_id}": "tid_x",
    "{snippet_id}": "1",
    "{name}": "none",
    "{id_slot}": "0",
    "{model_id}": "none",
    "{response_id}": "resp_x",
}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = make_settings(tmp_path_factory.mktemp("audited"))
    engine = ScriptedEngine("return 1\n")
    with TestClient(build_app(settings, TOKEN, lambda: engine)) as client:
        yield client


def _records(client: TestClient) -> list[dict[str, Any]]:
    return audit_records(client.app)


def _url(path: str) -> str:
    for placeholder, value in PATH_VALUES.items():
        path = path.replace(placeholder, value)
    return path


@pytest.mark.parametrize("authorised", [True, False], ids=["with-token", "without"])
@pytest.mark.parametrize(("method", "path"), sorted(EXPECTED))
def test_one_record_per_request(
    client: TestClient, method: str, path: str, authorised: bool
) -> None:
    before = len(_records(client))
    headers = {"Authorization": f"Bearer {TOKEN}"} if authorised else {}
    body = BODIES.get((method, path))
    response = client.request(method, _url(path), headers=headers, json=body)
    assert response.status_code < 500, response.text
    added = _records(client)[before:]
    assert len(added) == 1, [r["endpoint"] for r in added]
    (record,) = added
    wanted = response.headers["x-request-id"]
    if authorised and path == "/v1/audit/records":  # a command's record, under its own id
        wanted = BODIES[(method, path)]["request_id"]
    assert record["request_id"].endswith(wanted)
    # The route's template: what a client put in the path is not kept (a token, say).
    if record["endpoint"].startswith(f"{method} "):  # not a generation's, nor an event's
        assert re.sub(r":\w+}", "}", record["endpoint"]) == f"{method} {path}"
    if not authorised:
        assert record["params"] == {"status": 401}


LEAKED = "tth_" + "Zx9" * 14 + "q"


@pytest.mark.parametrize(
    ("method", "path", "endpoint"),
    [
        ("DELETE", f"/v1/tokens/{LEAKED}", "DELETE /v1/tokens/{token_id}"),
        ("GET", f"/v1/traces/{LEAKED}", "GET /v1/traces/{trace_id}"),
        ("GET", f"/v1/no/such/{LEAKED}/route", "GET /v1/no/such/[REDACTED:tether-token]/route"),
    ],
)
def test_a_token_put_in_a_path_is_kept_by_neither_log(
    client: TestClient,
    caplog: pytest.LogCaptureFixture,
    method: str,
    path: str,
    endpoint: str,
) -> None:
    """Given for a token's id (`tether token revoke tth_…`), a live token went into the
    signed log, which nothing can take it out of, and into the access log."""
    before = len(_records(client))
    with caplog.at_level("INFO", logger="tether.access"):
        response = client.request(method, path, headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code in (400, 404), response.text
    (record,) = _records(client)[before:]
    assert record["endpoint"] == endpoint
    assert LEAKED not in caplog.text and endpoint.split(" ")[1] in caplog.text
    if method == "DELETE":
        assert "not a token id" in response.json()["error"]["message"]
        assert LEAKED not in response.text


def test_a_long_path_no_route_takes_is_kept_cut(client: TestClient) -> None:
    """Anyone who can connect, with no token, chose what each signed record kept: 20
    requests to 7,000-character paths added 148 KB to a log kept for good."""
    before = len(_records(client))
    response = client.get("/" + "A" * 7000)
    assert response.status_code == 404
    (record,) = _records(client)[before:]
    assert record["endpoint"] == f"GET /{'A' * 255}…(+6745 characters)"


def test_probes_and_documents_are_not_audited(client: TestClient) -> None:
    before = len(_records(client))
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
        assert client.get(path).status_code == 200
    assert len(_records(client)) == before


def test_trace_prompt_matches_its_audit_commitment(client: TestClient, tmp_path: Path) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    for path, body in (
        ("/v1/chat/completions", BODIES[("POST", "/v1/chat/completions")]),
        ("/v1/completions", BODIES[("POST", "/v1/completions")]),
    ):
        answer = client.post(path, headers=headers, json=body).json()
        trace_id = answer["tether"]["trace_id"]
        client.app.state.trace_recorder.flush()  # type: ignore[attr-defined]
        store: TraceStore = client.app.state.traces  # type: ignore[attr-defined]
        trace = store.get(trace_id)
        assert trace is not None
        (record,) = [r for r in _records(client) if r["request_id"] == trace_id]
        for text, committed in (
            (trace.prompt, record["prompt"]),
            (trace.output, record["completion"]),
        ):
            salt = bytes.fromhex(committed["salt"])
            assert records.commit(text, salt) == committed["sha256"]


def test_a_command_s_record_is_committed_and_signed_by_the_server(client: TestClient) -> None:
    """What a command answered while this server keeps the log: recorded as the command's
    ("cli"), by whoever sent it, and covered by a checkpoint before the 201."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    body = BODIES[("POST", "/v1/audit/records")]
    answer = client.post("/v1/audit/records", headers=headers, json=body)
    assert answer.status_code == 201, answer.text
    seq = answer.json()["seq"]
    record = _records(client)[seq]
    assert record["request_id"] == body["request_id"] and record["endpoint"] == "cli"
    assert record["principal"] == "admin" and record["params"] == body["params"]
    for text, committed in (
        (body["prompt"], record["prompt"]),
        (body["completion"], record["completion"]),
    ):
        assert records.commit(text, bytes.fromhex(committed["salt"])) == committed["sha256"]
    assert "text" not in record["prompt"]  # the server's content mode: commitments only
    proof = client.get(f"/v1/audit/proof/{seq}", headers=headers)
    assert proof.status_code == 200, proof.text
    for negative in ("/v1/audit/proof/-1", "/v1/audit/consistency/-3"):
        refused = client.get(negative, headers=headers)
        assert refused.status_code == 400, refused.text  # not "beyond the checkpoint"
        assert "greater than or equal to 0" in refused.json()["error"]["message"]
    unnamed = client.post("/v1/audit/events", headers=headers, json={"event": ""})
    assert unnamed.status_code == 400 and "e.g. eval.run" in unnamed.json()["error"]["message"]


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"request_id": "../etc"}, "request_id"),
        ({"request_id": ""}, "request_id"),
        ({"prompt": 42}, "prompt"),
        ({"params": "seed=0"}, "params"),
        ({"model_sha256": None}, "model_sha256"),
    ],
)
def test_a_malformed_command_record_is_refused_and_not_written(
    client: TestClient, change: dict[str, Any], param: str
) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    before = [r for r in _records(client) if r["endpoint"] == "cli"]
    body = {**BODIES[("POST", "/v1/audit/records")], **change}
    refused = client.post("/v1/audit/records", headers=headers, json=body)
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["param"] == param
    assert [r for r in _records(client) if r["endpoint"] == "cli"] == before


EMAIL = "dana.kowalski@globex-corp.com"
GITHUB = "ghp_" + "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5"


def test_a_redacted_record_keeps_the_answer_as_checked_without_the_values_put_back(
    tmp_path: Path,
) -> None:
    """audit.content = "redacted" kept the engine's text as it wrote it: a secret the
    model wrote, which the checks redacted for the client, was kept in the log for good."""
    settings = make_settings(tmp_path, TETHER_AUDIT_CONTENT="redacted")
    engine = ScriptedEngine(f"Mail <EMAIL_1>\nkey = {GITHUB}\n")
    with TestClient(build_app(settings, TOKEN, lambda: engine)) as client:
        client.headers["Authorization"] = f"Bearer {TOKEN}"
        response = client.post(
            "/v1/completions", json={"prompt": f"Contact {EMAIL}:", "max_tokens": 16}
        )
        assert response.status_code == 200, response.text
        assert "<EMAIL_1>" in (engine.requests[-1].prompt or "")  # the model's placeholder
        answer = response.json()["choices"][0]["text"]
        assert EMAIL in answer and GITHUB not in answer  # put back; redacted by the checks
        (record,) = [r for r in _records(client) if r["request_id"] == response.json()["id"]]
        # A command's answer, relayed to the server that keeps the log, is kept the same.
        relayed = {
            **BODIES[("POST", "/v1/audit/records")],
            "completion": f"key = {GITHUB}\n",
            "completion_redacted": "# [REDACTED:secrets/github-pat]\n",
        }
        assert client.post("/v1/audit/records", json=relayed).status_code == 201
        (command,) = [r for r in _records(client) if r["request_id"] == relayed["request_id"]]
    assert command["completion"]["text"] == relayed["completion_redacted"]
    kept = record["completion"]["text"]
    assert GITHUB not in kept and "[REDACTED:" in kept
    assert EMAIL not in kept and "<EMAIL_1>" in kept
    assert EMAIL not in record["prompt"]["text"]


@pytest.mark.parametrize("unwritable", ["serve", "refuse"])
def test_while_the_log_cannot_be_written_requests_are_served_or_refused_as_set(
    tmp_path: Path, unwritable: str
) -> None:
    settings = make_settings(tmp_path, TETHER_AUDIT_UNWRITABLE=unwritable)
    with TestClient(build_app(settings, TOKEN, lambda: ScriptedEngine("ok"))) as client:
        client.headers["Authorization"] = f"Bearer {TOKEN}"
        log = client.app.state.audit  # type: ignore[attr-defined]
        disk = DiskThatFills(log._segment, full=False)
        log._segment = disk
        ask = {"prompt": "def f():", "max_tokens": 4}
        assert client.post("/v1/completions", json=ask).status_code == 200
        disk.full = True
        client.post("/v1/completions", json=ask)  # its record finds the disk full
        log.flush()
        assert log.problem is not None
        during = client.post("/v1/completions", json=ask)
        command = BODIES[("POST", "/v1/audit/records")]
        relayed = client.post("/v1/audit/records", json=command)
        assert client.get("/readyz").status_code == 503
        disk.full = False
        log.flush()  # the records held meanwhile are written, and a checkpoint signs them
        assert log.problem is None
        after = client.post("/v1/completions", json=ask)
        written = client.post("/v1/audit/records", json={**command, "request_id": "cli-2"})
        kept = audit_records(client.app)
    relayed_ids = [r["request_id"] for r in kept].count(command["request_id"])
    if unwritable == "serve":
        assert during.status_code == 200, during.text
        assert relayed.status_code == 202, relayed.text  # taken, not yet on disk
        assert relayed.json()["written"] is False and "No space" in relayed.json()["problem"]
        assert relayed_ids == 1  # written once the disk took it
    else:
        assert relayed.status_code == 503 and relayed_ids == 0
        assert during.status_code == 503, during.text
        error = during.json()["error"]
        assert error["code"] == "audit_unavailable" and "No space left" in error["message"]
        assert during.headers["retry-after"] == "5"
    assert after.status_code == 200
    assert written.status_code == 201 and written.json()["written"] is True
    # Nothing the server did meanwhile is missing from the log, the refusal included.
    assert [r["seq"] for r in kept] == list(range(len(kept)))
    recorded = {r["request_id"] for r in kept}
    assert during.headers["x-request-id"] in str(recorded), recorded
    key = parse_verifier_key((log.folder / "verifier.key").read_text())
    assert verify(log.folder, key).ok


def test_the_api_document_says_a_record_the_disk_refused_is_answered_202(
    tmp_path: Path,
) -> None:
    """The server answers 202 with written false while its disk refuses the record; a
    client built from /openapi.json was told of 201 alone."""
    app = build_app(make_settings(tmp_path), TOKEN, lambda: ScriptedEngine("ok"))
    answers = app.openapi()["paths"]["/v1/audit/records"]["post"]["responses"]
    assert {"201", "202"} <= answers.keys()
    assert "written" in answers["202"]["description"]


def test_a_trace_asked_for_by_a_request_that_generated_nothing_is_told_so(
    client: TestClient,
) -> None:
    """Given the X-Request-Id of a request that generated nothing, the server's trace
    routes said traces are kept 14 days, of a request made a moment before; the command
    line's own reading of the log already found its record."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    request_id = client.get("/v1/models", headers=headers).headers["x-request-id"]
    client.app.state.audit.flush()  # type: ignore[attr-defined]
    for path in (f"/v1/traces/{request_id}", f"/v1/dashboard/traces/{request_id}"):
        answer = client.get(path, headers=headers)
        assert answer.status_code == 404, answer.text
        message = answer.json()["error"]["message"]
        assert f"{request_id!r} generated nothing, so it has no trace (GET /v1/models" in message
        assert "tether audit prove" in message and "kept 14 days" not in message
    unknown = client.get("/v1/traces/cmpl-never-made", headers=headers).json()["error"]["message"]
    assert "traces are kept 14 days" in unknown


def test_a_trace_asked_for_reads_no_more_of_the_log_than_traces_are_kept(
    tmp_path: Path,
) -> None:
    """Any id a client names had the server read the whole audit log for its record,
    which grows for ever; segments last written before the traces' keeping time hold no
    request whose trace could still be here, and are no longer read."""
    import os
    import time

    settings = make_settings(tmp_path)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with TestClient(build_app(settings, TOKEN, lambda: ScriptedEngine("x"))) as client:
        request_id = client.get("/v1/models", headers=headers).headers["x-request-id"]
        client.app.state.audit.flush()  # type: ignore[attr-defined]
        segments = sorted((settings.data.home / "audit").glob("segment-*.jsonl"))
        old = time.time() - 20 * 86400  # older than the 14 days traces are kept
        for segment in segments:
            os.utime(segment, (old, old))
        aged = client.get(f"/v1/traces/{request_id}", headers=headers).json()["error"]
        for segment in segments:
            os.utime(segment, None)
        fresh = client.get(f"/v1/traces/{request_id}", headers=headers).json()["error"]
    assert "traces are kept 14 days" in aged["message"], aged
    assert "generated nothing" in fresh["message"], fresh
