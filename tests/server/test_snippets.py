"""The function store over HTTP, and what it puts into answers (step 3 of the pipeline)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import TOKEN, make_settings
from tests.helpers import ScriptedEngine, audit_records
from tests.server.test_compliance_answers import EMPLOYEE_ID
from tether.audit import segments
from tether.server.app import build_app
from tether.store.call_pool import CallPool

HELPER = (
    "def slugify(title: str) -> str:\n"
    '    """Turn a page title into a URL slug."""\n'
    '    return "-".join(title.lower().split())\n'
)
ADD = "def add(a: int, b: int = 1) -> int:\n    return a + b\n"


@pytest.fixture(scope="module")
def engine() -> ScriptedEngine:
    return ScriptedEngine("return slugify(title)\n")


@pytest.fixture(scope="module")
def client(
    tmp_path_factory: pytest.TempPathFactory, engine: ScriptedEngine
) -> Iterator[TestClient]:
    settings = make_settings(tmp_path_factory.mktemp("store"))
    with TestClient(build_app(settings, TOKEN, lambda: engine)) as client:
        client.headers["Authorization"] = f"Bearer {TOKEN}"
        yield client


def _add(client: TestClient, code: str, **extra: Any) -> dict[str, Any]:
    body = {"code": code, "language": "python", "licence": "MIT", **extra}
    response = client.post("/v1/snippets", json=body)
    assert response.status_code == 201, response.text
    added: dict[str, Any] = response.json()
    return added


def _vet(client: TestClient, snippet_id: int, **extra: Any) -> Any:
    body = {"approve": True, "reason": "reviewed", **extra}
    return client.post(f"/v1/snippets/{snippet_id}/vet", json=body)


def _audit_events(client: TestClient, event: str) -> list[dict[str, Any]]:
    return [r for r in audit_records(client.app) if r["endpoint"] == f"event {event}"]


@pytest.fixture(scope="module")
def helper(client: TestClient) -> dict[str, Any]:
    added = _add(client, HELPER, tags=["web"])
    assert _vet(client, added["id"]).status_code == 200
    return added


def test_add_list_show_and_idempotence(client: TestClient, helper: dict[str, Any]) -> None:
    again = _add(client, HELPER, tags=["web"])
    assert again["outcome"] == "unchanged" and again["id"] == helper["id"]
    listed = client.get("/v1/snippets", params={"state": "vetted"}).json()
    assert helper["id"] in [s["id"] for s in listed["data"]] and listed["counts"]["vetted"] >= 1
    shown = client.get(f"/v1/snippets/{helper['id']}").json()
    assert [d["state"] for d in shown["decisions"]] == ["candidate", "vetted"]
    assert shown["versions"][0]["hash"] == helper["body_hash"]


def test_search_returns_each_rankers_score(client: TestClient, helper: dict[str, Any]) -> None:
    found = client.get("/v1/snippets/search", params={"q": "url slug for a title"}).json()
    top = found["data"][0]
    assert top["id"] == helper["id"] and top["scores"]["bm25_rank"] == 1
    assert found["hybrid"] is True and top["scores"]["similarity"] is not None


def test_approval_is_refused_until_every_gate_passes(client: TestClient) -> None:
    unlicensed = _add(client, "def triple(x):\n    return 3 * x\n", licence="")
    response = _vet(client, unlicensed["id"])
    assert response.status_code == 400
    assert "licence: no licence known" in response.json()["error"]["message"]
    assert client.get(f"/v1/snippets/{unlicensed['id']}").json()["state"] == "candidate"


def test_a_vetting_decision_is_an_audit_record(client: TestClient) -> None:
    added = _add(client, "def quadruple(x):\n    return 4 * x\n")
    rejected = client.post(
        f"/v1/snippets/{added['id']}/vet", json={"approve": False, "reason": "too clever"}
    )
    assert rejected.json()["state"] == "rejected"
    (record,) = [
        r for r in _audit_events(client, "store.vet") if r["params"]["snippet"] == added["id"]
    ]
    assert record["principal"] == "admin" and record["params"]["reason"] == "too clever"
    assert (
        record["params"]["hash"] == added["body_hash"] and record["params"]["state"] == "rejected"
    )


def test_a_second_callable_of_one_name_is_told_the_way_that_works(client: TestClient) -> None:
    """It was told to approve "without --callable", which it already was: the request to
    be callable made when it was added stands until a reviewer says otherwise."""
    first = _add(client, "def sextuple(x: int) -> int:\n    return 6 * x\n", callable=True)
    assert _vet(client, first["id"]).status_code == 200
    other = _add(client, "def sextuple(x: int) -> int:\n    return x * 6\n", callable=True,
                 origin={"path": "other.py"})  # fmt: skip
    refused = _vet(client, other["id"])
    assert refused.status_code == 400
    says = refused.json()["error"]["message"]
    assert "untick Callable on the dashboard; --not-callable; over HTTP" in says, says
    assert _vet(client, other["id"], callable=False).status_code == 200


def test_an_edit_withdrawn_by_adding_the_served_code_again_is_audited(
    client: TestClient,
) -> None:
    """A rejection that only store:write made, with no record in the signed log."""
    code = "def quintuple(x):\n    return 5 * x\n"
    added = _add(client, code)
    assert _vet(client, added["id"]).status_code == 200
    _add(client, code.replace("5 * x", "x * 5 + 0"))  # version 2, waiting for review
    back = _add(client, code)
    assert back["outcome"] == "withdrawn"
    (record,) = [
        r for r in _audit_events(client, "store.vet")
        if r["params"]["snippet"] == added["id"] and r["params"]["state"] == "rejected"
    ]  # fmt: skip
    assert record["principal"] == "admin" and record["params"]["version"] == 2
    assert record["params"]["reason"].startswith("withdrawn: offered again as version 1")


def test_a_new_version_keeps_the_test_unless_it_sends_an_empty_one(client: TestClient) -> None:
    body = {"code": "def tri(x):\n    return 3 * x\n", "language": "python", "licence": "MIT"}
    first = client.post("/v1/snippets", json={**body, "test": "assert tri(1) == 3\n"}).json()
    edit = {**body, "code": "def tri(x):\n    return x * 3\n"}
    kept = client.post("/v1/snippets", json=edit).json()
    assert (kept["id"], kept["version"], kept["test"]) == (first["id"], 2, "assert tri(1) == 3\n")
    removed = client.post("/v1/snippets", json={**edit, "test": ""}).json()
    assert (removed["outcome"], removed["version"], removed["test"]) == ("new version", 3, "")


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ({"code": "def f(:\n", "language": "python"}, 400, "does not parse"),
        ({"code": "fn main() {}", "language": "rust"}, 400, "language"),
        (
            {"code": "def a():\n  pass\ndef b():\n  pass\n", "language": "python"},
            400,
            "2 functions",
        ),
        ({"code": "x = 1\n", "language": "python"}, 400, "no top-level function"),
        (
            {"code": "def f():\n    return '" + "x" * 70_000 + "'\n", "language": "python"},
            400,
            "KiB",
        ),
        (
            {"code": "def f():\n    return 1\n", "language": "python", "licence": "MIT AND"},
            400,
            "not an SPDX licence expression",
        ),
    ],
)
def test_bad_snippets_are_refused_clearly(
    client: TestClient, body: dict[str, Any], status: int, says: str
) -> None:
    response = client.post("/v1/snippets", json=body)
    assert response.status_code == status and says in response.json()["error"]["message"]


def test_bad_searches_are_refused_clearly(client: TestClient) -> None:
    response = client.get("/v1/snippets/search", params={"q": "?!?"})
    message = response.json()["error"]["message"]
    assert response.status_code == 400 and "at least one letter or digit" in message
    assert client.get("/v1/snippets/search").status_code == 400
    assert client.get("/v1/snippets/search", params={"q": "___"}).status_code == 400
    assert client.get("/v1/snippets/999999").status_code == 404
    # Words of any script are words, as on the command line and over MCP.
    for words in ("和暦", "данные", "für"):
        assert client.get("/v1/snippets/search", params={"q": words}).status_code == 200


def test_a_decision_names_the_state_it_was_made_on(client: TestClient) -> None:
    added = _add(client, "def halve(x: float) -> float:\n    return x / 2\n")
    rejected = client.post(
        f"/v1/snippets/{added['id']}/vet",
        json={"approve": False, "reason": "no", "state": "candidate", "version": 1},
    )
    assert rejected.status_code == 200, rejected.text
    # Another reviewer's page still showed it as a candidate: refused, not overridden.
    stale = _vet(client, added["id"], state="candidate", version=1)
    assert stale.status_code == 400 and stale.json()["error"]["param"] == "state"
    assert "is rejected now, not candidate" in stale.json()["error"]["message"]
    assert _vet(client, added["id"], state="sleeping").status_code == 400
    assert _vet(client, added["id"], state="rejected").status_code == 200


def test_calling_a_vetted_function(client: TestClient) -> None:
    added = _add(client, ADD, callable=True)
    assert _vet(client, added["id"]).status_code == 200
    called = client.post("/v1/functions/add/call", json={"arguments": {"a": 41}})
    assert called.status_code == 200 and called.json()["result"] == 42
    wrong = client.post("/v1/functions/add/call", json={"arguments": {"a": "x"}})
    assert wrong.status_code == 400 and wrong.json()["error"]["param"] == "arguments.a"
    assert client.post("/v1/functions/nope/call", json={}).status_code == 404
    events = [r["params"] for r in _audit_events(client, "store.call")]
    ok, refused, unknown = events[-3:]
    assert {"id": added["id"], "name": "add", "ok": True}.items() <= ok.items()
    # Refused calls are store.call events too, with what the command line and MCP record.
    assert {"id": added["id"], "version": 1, "name": "add"}.items() <= refused.items()
    assert "must be int" in refused["error"] and refused["hash"] == added["body_hash"]
    assert unknown == {"name": "nope", "error": unknown["error"]}
    assert unknown["error"].startswith("no vetted callable function 'nope'")
    plain = [r["endpoint"] for r in audit_records(client.app)]
    assert "POST /v1/functions/add/call" not in plain
    assert "POST /v1/functions/nope/call" not in plain


def test_a_call_without_the_scope_is_refused_and_audited_as_a_call(client: TestClient) -> None:
    issued = client.post("/v1/tokens", json={"principal": "reader", "scopes": ["store:read"]})
    reader = {"Authorization": f"Bearer {issued.json()['token']}"}
    body = {"arguments": {"a": 1}}
    refused = client.post("/v1/functions/add/call", json=body, headers=reader)
    assert refused.status_code == 403 and "functions:call" in refused.json()["error"]["message"]
    # Before the body is read, as every scope is: a bad body is no reason of its own.
    assert client.post("/v1/functions/add/call", json=[], headers=reader).status_code == 403
    event = _audit_events(client, "store.call")[-1]
    assert event["principal"] == "reader"
    assert event["params"]["name"] == "add" and "'functions:call'" in event["params"]["error"]


def test_a_new_version_does_not_take_the_vetted_one_out_of_service(client: TestClient) -> None:
    code = "def cube(x: int) -> int:\n    return x ** 3\n"
    added = _add(client, code, callable=True)
    assert _vet(client, added["id"]).status_code == 200
    # Someone offers a broken successor under the same name (an HTTP edit is by name).
    offer = _add(client, "def cube(x: int) -> int:\n    return 0\n")
    assert (offer["id"], offer["state"], offer["served_version"]) == (added["id"], "candidate", 1)
    called = client.post("/v1/functions/cube/call", json={"arguments": {"x": 3}})
    assert called.status_code == 200 and called.json()["result"] == 27
    assert called.json()["snippet"]["version"] == 1
    found = client.get("/v1/snippets/search", params={"q": "cube"}).json()
    assert [(r["id"], r["version"]) for r in found["data"]] == [(added["id"], 1)]
    rejected = client.post(
        f"/v1/snippets/{added['id']}/vet", json={"approve": False, "reason": "wrong"}
    )
    assert rejected.status_code == 200, rejected.text
    record = _audit_events(client, "store.vet")[-1]["params"]
    assert (record["version"], record["hash"]) == (2, offer["body_hash"])
    shown = client.get(f"/v1/snippets/{added['id']}").json()
    assert (shown["state"], shown["version"], shown["served_version"]) == ("vetted", 1, 1)


def test_a_function_that_raises_or_hangs_gets_422_or_504(client: TestClient) -> None:
    raising = _add(client, "def boom() -> int:\n    raise ValueError('no luck')\n", callable=True)
    hanging = _add(
        client, "def hang() -> None:\n    import time\n    time.sleep(60)\n", callable=True
    )
    for added in (raising, hanging):
        assert _vet(client, added["id"]).status_code == 200
    response = client.post("/v1/functions/boom/call", json={})
    assert (
        response.status_code == 422 and "ValueError: no luck" in response.json()["error"]["message"]
    )
    client.app.state.store.settings.store.call_timeout_s = 1.0  # type: ignore[attr-defined]
    response = client.post("/v1/functions/hang/call", json={})
    assert response.status_code == 504 and response.json()["error"]["code"] == "function_timeout"


def test_answers_cite_the_snippets_in_their_prompt(
    client: TestClient, engine: ScriptedEngine, helper: dict[str, Any]
) -> None:
    ask = {"messages": [{"role": "user", "content": "make a URL slug from a page title"}]}
    answer = client.post("/v1/chat/completions", json=ask).json()
    used = answer["tether"]["snippets"]
    assert used == [{"id": helper["id"], "version": 1, "hash": helper["body_hash"]}]
    assert "def slugify" in engine.requests[-1].shown_text()
    # The trace explains what was retrieved, with scores; the audit record names it.
    client.app.state.trace_recorder.flush()  # type: ignore[attr-defined]
    trace = client.get(f"/v1/traces/{answer['tether']['trace_id']}").json()
    assert trace["snippets"][0]["fitted"] and trace["snippets"][0]["scores"]["bm25_rank"] == 1
    assert trace["timings"]["retrieve"] >= 0
    log = client.app.state.audit  # type: ignore[attr-defined]
    log.flush()
    lines = [i for i in segments.iter_records(log.folder) if isinstance(i, segments.Line)]
    (record,) = [
        r for r in map(json.loads, (i.data for i in lines)) if r["request_id"] == answer["id"]
    ]
    assert record["params"]["snippets"] == used
    # Per request, retrieval can be switched off.
    off = client.post("/v1/chat/completions", json={**ask, "snippets": False}).json()
    assert off["tether"]["snippets"] == [] and "def slugify" not in engine.requests[-1].shown_text()


def test_fim_prompts_get_snippets_as_context(
    client: TestClient, engine: ScriptedEngine, helper: dict[str, Any]
) -> None:
    body = {"prompt": "def page_url(title):\n    slug = slugify(", "suffix": ")\n"}
    answer = client.post("/v1/fim/completions", json=body).json()
    assert answer["tether"]["snippets"][0]["id"] == helper["id"]
    assert f"vetted snippet {helper['id']} v1" in engine.requests[-1].shown_text()


def test_a_fim_prompt_gets_only_snippets_its_file_s_language_can_hold(
    client: TestClient, engine: ScriptedEngine, helper: dict[str, Any]
) -> None:
    """A Python helper is no context for a JavaScript file, named or guessed."""
    asked = {"prompt": "function pageUrl(title) {\n  const slug = slugify(", "suffix": ");\n}\n"}
    for body in ({**asked, "language": "javascript"}, asked):
        answer = client.post("/v1/fim/completions", json=body).json()
        assert answer["tether"]["snippets"] == []
        assert "def slugify" not in engine.requests[-1].shown_text()
    tabby = {"language": "typescript", "segments": {"prefix": asked["prompt"]}}
    assert client.post("/tabby/v1/completions", json=tabby).status_code == 200
    assert "def slugify" not in engine.requests[-1].shown_text()


NAP = "def nap(s: float) -> float:\n    import time\n    time.sleep(s)\n    return s\n"


def test_calls_wait_in_their_own_pool_and_past_its_line_get_429(client: TestClient) -> None:
    assert _vet(client, _add(client, NAP, callable=True)["id"]).status_code == 200
    store = client.app.state.store  # type: ignore[attr-defined]
    kept, store.calls = store.calls, CallPool(workers=1, max_waiting=0)
    timeout, store.settings.store.call_timeout_s = store.settings.store.call_timeout_s, 5.0
    try:
        with ThreadPoolExecutor(1) as other:
            body = {"arguments": {"s": 3}}
            napping = other.submit(client.post, "/v1/functions/nap/call", json=body)
            deadline = time.monotonic() + 30
            while store.calls.in_flight == 0 and time.monotonic() < deadline:
                time.sleep(0.01)
            # The call holds a thread of its own: search does not wait for it.
            started = time.monotonic()
            assert client.get("/v1/snippets/search", params={"q": "slug"}).status_code == 200
            assert time.monotonic() - started < 1.5
            refused = client.post("/v1/functions/nap/call", json={"arguments": {"s": 0}})
            assert napping.result().status_code == 200
    finally:
        store.calls.close()
        store.calls, store.settings.store.call_timeout_s = kept, timeout
    assert refused.status_code == 429 and refused.headers["retry-after"] == "5"
    assert "1 function calls are running" in refused.json()["error"]["message"]
    refusal = [r["params"] for r in _audit_events(client, "store.call")][-2]
    assert refusal["name"] == "nap" and "are running" in refusal["error"]


CODENAME = (
    "def falcon_speed(distance: float, seconds: float) -> float:\n"
    '    """Speed of a bluefalcon drone, from corp-db-7."""\n'
    "    return distance / seconds\n"
)
RULES = json.dumps(
    [
        {
            "id": "codename",
            "regex": r"(?i)\bbluefalcon\b",
            "keywords": ["bluefalcon"],
            "action": "block",
        },
        {"id": "internal-host", "regex": r"\bcorp-db-[0-9]+\b", "keywords": ["corp-db-"]},
    ]
)


@pytest.mark.parametrize("rule", ["codename", "internal-host"])
def test_a_snippet_vetted_before_a_rule_is_governed_by_it(
    tmp_path_factory: pytest.TempPathFactory, rule: str
) -> None:
    """The policy reads every text the model is shown: a snippet vetted before a rule was
    added gets its redaction, or is left out where it blocks (the client sent nothing
    blocked, so the request is answered)."""
    home = tmp_path_factory.mktemp("rules")
    engine = ScriptedEngine("return distance / seconds\n")
    with TestClient(build_app(make_settings(home), TOKEN, lambda: engine)) as client:
        client.headers["Authorization"] = f"Bearer {TOKEN}"
        assert _vet(client, _add(client, CODENAME)["id"]).status_code == 200
    only = RULES if rule == "codename" else json.dumps([json.loads(RULES)[1]])
    settings = make_settings(home, TETHER_POLICY_RULES=only)
    with TestClient(build_app(settings, TOKEN, lambda: engine)) as client:
        client.headers["Authorization"] = f"Bearer {TOKEN}"
        ask = {"messages": [{"role": "user", "content": "write falcon_speed from distance"}]}
        answer = client.post("/v1/chat/completions", json=ask)
    assert answer.status_code == 200, answer.text
    shown = engine.requests[-1].shown_text()
    findings = answer.json()["tether"]["findings"]
    assert "corp-db-7" not in shown and (rule != "codename" or "bluefalcon" not in shown)
    if rule == "codename":
        assert "def falcon_speed" not in shown and answer.json()["tether"]["snippets"] == []
        assert any("left out of the prompt" in f["message"] for f in findings)
    else:
        assert "def falcon_speed" in shown and "[REDACTED:internal-host]" in shown
        assert any(f["rule_id"] == "internal-host" for f in findings)


OWNERS = [
    "def notify_alpha(x: int) -> int:\n"
    '    """Alpha owner: alice@alpha.example.com."""\n'
    "    return x + 1\n",
    "def notify_beta(x: int) -> int:\n"
    '    """Beta owner: bob@beta.example.com."""\n'
    "    return x + 2\n",
]


def test_values_pseudonymized_in_snippets_get_their_own_placeholders(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Each snippet was governed on its own: two addresses both became <EMAIL_1>, and the
    answer got the second one back where the model meant the first. A stop string is then
    matched on the answer as the client gets it, as for a value in the prompt."""
    engine = ScriptedEngine("Mail <EMAIL_1> now.\nMore.\n")
    settings = make_settings(tmp_path_factory.mktemp("owners"))
    with TestClient(build_app(settings, TOKEN, lambda: engine)) as client:
        client.headers["Authorization"] = f"Bearer {TOKEN}"
        for code in OWNERS:
            assert _vet(client, _add(client, code)["id"]).status_code == 200
        ask = {
            "messages": [{"role": "user", "content": "notify alpha and beta owners"}],
            "stop": ["@"],
        }
        answer = client.post("/v1/chat/completions", json=ask).json()
    shown = engine.requests[-1].shown_text()
    placeholders = re.findall(r"<EMAIL_\d+>", shown)
    assert len(placeholders) == len(set(placeholders)) == 2, shown
    assert "alice@" not in shown and "bob@" not in shown
    assert engine.requests[-1].params.stop == ()  # not matched on placeholders
    text = answer["choices"][0]["message"]["content"]
    assert text in ("Mail alice", "Mail bob") and answer["choices"][0]["finish_reason"] == "stop"


MASKER = (
    "def mask_emails(text: str) -> str:\n"
    '    """Mask the e-mail addresses in a text."""\n'
    '    return EMAIL.sub("<EMAIL_1>", text)\n'
)


def test_a_snippet_holding_a_placeholder_the_prompt_took_is_left_out(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """The model's copy of its line came back with the prompt's address in it."""
    engine = ScriptedEngine('return EMAIL.sub("<EMAIL_1>", text)\n')
    settings = make_settings(tmp_path_factory.mktemp("masker"))
    with TestClient(build_app(settings, TOKEN, lambda: engine)) as client:
        client.headers["Authorization"] = f"Bearer {TOKEN}"
        assert _vet(client, _add(client, MASKER)["id"]).status_code == 200
        plain = {"messages": [{"role": "user", "content": "mask emails in a text"}]}
        assert client.post("/v1/chat/completions", json=plain).json()["tether"]["snippets"]
        ask = {"messages": [{"role": "user", "content": "mask emails like bob@corp.example.com"}]}
        answer = client.post("/v1/chat/completions", json=ask).json()
    assert answer["tether"]["snippets"] == []
    assert "def mask_emails" not in engine.requests[-1].shown_text()
    assert any(f["rule_id"] == "policy/placeholder-clash" for f in answer["tether"]["findings"])


BADGE = (
    "def badge_of_the_ops_lead() -> str:\n"
    '    """The ops lead\'s badge."""\n'
    '    return "EMP-123456"\n'
)


def test_a_value_pseudonymized_in_a_snippet_is_still_checked_in_the_answer(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """A value the client sent comes back to it unflagged; one from a snippet is not the
    client's, and the answer's secret check still stands between it and the client."""
    engine = ScriptedEngine("badge = 'EMP-<EMPLOYEE_ID_1>'\n")
    home = tmp_path_factory.mktemp("badge")
    before = make_settings(home)  # vetted before the rule came
    with TestClient(build_app(before, TOKEN, lambda: ScriptedEngine(""))) as client:
        client.headers["Authorization"] = f"Bearer {TOKEN}"
        assert _vet(client, _add(client, BADGE)["id"]).status_code == 200
    settings = make_settings(home, TETHER_POLICY_RULES=json.dumps(EMPLOYEE_ID))
    with TestClient(build_app(settings, TOKEN, lambda: engine)) as client:
        client.headers["Authorization"] = f"Bearer {TOKEN}"
        ask = {"messages": [{"role": "user", "content": "badge of the ops lead"}]}
        answer = client.post("/v1/chat/completions", json=ask).json()
    assert answer["tether"]["snippets"], answer  # the snippet was in the prompt
    assert "EMP-<EMPLOYEE_ID_1>" in engine.requests[-1].shown_text()
    text = answer["choices"][0]["message"]["content"]
    assert "123456" not in text and "[REDACTED:secrets/employee-id]" in text, text
