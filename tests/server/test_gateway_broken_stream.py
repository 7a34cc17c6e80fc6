"""An upstream stream that breaks midway: the text the client already got is charged to
its token, traced and audited (before, the request left no record of it), and the
client learns of the break in the stream."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient

from tests.conftest import TOKEN
from tests.helpers import audit_records, ledger_totals
from tests.stub_upstream import StubUpstream
from tether.audit.records import commit

# Two pieces of an answer, then the stream ends without a finish_reason: the upstream died.
CUT_SHORT = b"".join(
    b"data: "
    + json.dumps({"choices": [{"index": 0, "text": t, "finish_reason": None}]}).encode()
    + b"\n\n"
    for t in ("def add(a, b):", "\n    return")
)


def test_text_streamed_before_the_upstream_broke_is_charged_traced_and_audited(
    gateway: tuple[TestClient, StubUpstream],
) -> None:
    client, stub = gateway
    client.headers["Authorization"] = f"Bearer {TOKEN}"
    made = client.post(
        "/v1/tokens",
        json={"principal": "budget", "scopes": ["completions"], "daily_tokens": 10_000},
    ).json()
    stub.raw = ("text/event-stream", CUT_SHORT)
    body = {"prompt": "# add two numbers\n", "max_tokens": 50, "stream": True}
    with client.stream(
        "POST", "/v1/completions", json=body, headers={"Authorization": f"Bearer {made['token']}"}
    ) as response:
        assert response.status_code == 200
        events = [
            json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: {")
        ]
    received = "".join(e["choices"][0]["text"] for e in events if "choices" in e)
    assert received.startswith("def add(a, b):")
    assert "ended before its answer did" in events[-1]["error"]["message"]

    usage = next(t for t in client.get("/v1/tokens").json()["data"] if t["id"] == made["id"])
    assert usage["usage"]["tokens_today"] > 0
    # An error in the usage ledger too, though the stream began with a 200.
    (budget,) = [t for t in ledger_totals(client.app, "principal") if t.key == "budget"]
    assert (budget.requests, budget.errors) == (1, 1)
    # One record: the pipeline's, with the answer, not the HTTP layer's of a request alone.
    (record,) = [r for r in audit_records(client.app) if r["endpoint"].endswith("/completions")]
    assert record["params"]["finish_reason"] == "error"
    committed = record["completion"]  # to all the engine wrote
    assert committed["sha256"] == commit(
        "def add(a, b):\n    return", bytes.fromhex(committed["salt"])
    )
    client.app.state.trace_recorder.flush()  # type: ignore[attr-defined]
    trace = client.get(f"/v1/traces/{events[0]['id']}").json()
    assert trace["finish_reason"] == "error" and trace["output"].startswith(received)


def test_an_upstream_that_fails_before_any_text_leaves_no_answer_on_record(
    gateway: tuple[TestClient, StubUpstream],
) -> None:
    client, stub = gateway
    client.headers["Authorization"] = f"Bearer {TOKEN}"
    stub.raw = ("text/html", b"<html>502 Bad Gateway</html>")
    answer = client.post("/v1/completions", json={"prompt": "x", "max_tokens": 5})
    assert answer.status_code == 503, answer.text
    (record,) = [r for r in audit_records(client.app) if r["endpoint"].endswith("/completions")]
    assert record["params"] == {"status": 503}
    (row,) = ledger_totals(client.app, "model")
    assert (row.key, row.errors) == (client.get("/v1/models").json()["data"][0]["id"], 1)


def test_a_chat_cut_before_its_count_is_charged_the_framing_its_upstream_adds(
    gateway: tuple[TestClient, StubUpstream],
) -> None:
    """An upstream counts a chat's template (and a default system prompt) too: a chat cut
    before its count came was charged its text's tokens alone, far fewer than the same
    chat read to its end."""
    client, stub = gateway
    client.headers["Authorization"] = f"Bearer {TOKEN}"
    stub.prompt_tokens = 45  # its text takes far fewer: the rest is the upstream's framing
    body = {"messages": [{"role": "user", "content": "What is a hash map?"}], "max_tokens": 20}
    answered = client.post("/v1/chat/completions", json=body)
    assert answered.json()["usage"]["prompt_tokens"] == 45
    made = client.post(
        "/v1/tokens", json={"principal": "cut", "scopes": ["chat"], "daily_tokens": 10_000}
    ).json()
    piece = {"choices": [{"index": 0, "delta": {"content": "A map"}, "finish_reason": None}]}
    stub.raw = ("text/event-stream", b"data: " + json.dumps(piece).encode() + b"\n\n")
    cut = client.post(
        "/v1/chat/completions",
        json={**body, "stream": True},
        headers={"Authorization": f"Bearer {made['token']}"},
    )
    assert cut.status_code == 200 and "ended before its answer did" in cut.text
    (charged,) = [t for t in ledger_totals(client.app, "principal") if t.key == "cut"]
    assert charged.prompt_tokens == 45
