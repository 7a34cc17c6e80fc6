"""The dashboard's files and API in process: headers, scopes, what each endpoint returns
against what was done, and bad input."""

from __future__ import annotations

import base64
import csv
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import pytest
from fastapi.testclient import TestClient

from tests.conftest import TOKEN, make_settings
from tests.helpers import ScriptedEngine, audit_records, segmented_log, wait_until
from tether.audit.merkle import leaf_hash
from tether.errors import NotFoundError
from tether.findings import fingerprint
from tether.server.app import build_app

ADMIN = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = make_settings(
        tmp_path_factory.mktemp("dashboard"), TETHER_AUDIT_CHECKPOINT_INTERVAL_S="0.1"
    )
    engine = ScriptedEngine("    return a + b\n", model_id="tiny")
    with TestClient(build_app(settings, TOKEN, lambda: engine)) as client:
        yield client


def _viewer(client: TestClient, *scopes: str) -> dict[str, str]:
    body = {"principal": "viewer", "scopes": ["dashboard", *scopes]}
    made = client.post("/v1/tokens", headers=ADMIN, json=body)
    return {"Authorization": f"Bearer {made.json()['token']}"}


def test_the_page_is_served_with_a_strict_content_security_policy(client: TestClient) -> None:
    page = client.get("/ui")
    assert page.status_code == 200 and '<script type="module" src="ui/static/app.js">' in page.text
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src 'self';" in policy
    assert "unsafe-inline" not in policy.split("script-src")[1].split(";")[0]
    assert (
        "frame-ancestors 'none'" in policy and page.headers["x-content-type-options"] == "nosniff"
    )
    script = client.get("/ui/static/app.js")
    assert script.headers["content-type"].startswith("text/javascript")
    assert "innerHTML" not in script.text  # server text only ever becomes textContent
    for bad in ("../settings.py", "app.py", "nothing.js"):
        assert client.get(f"/ui/static/{bad}").status_code == 404
    assert "/ui" not in client.get("/openapi.json").json()["paths"]
    probed = client.head("/ui")  # as uptime monitors ask
    assert probed.status_code == 200 and probed.headers["content-security-policy"] == policy
    probed = client.head("/ui/static/app.js")  # and its files, as a cache or a CDN asks
    assert (
        probed.status_code == 200
        and probed.headers["content-type"] == script.headers["content-type"]
    )
    assert client.head("/ui/static/nothing.js").status_code == 404
    # The page and its files hold nothing of anyone's: no signed record for each probe.
    endpoints = [str(r["endpoint"]) for r in audit_records(client.app)]
    assert not [e for e in endpoints if e in ("GET /ui", "HEAD /ui") or "/ui/static/" in e]


@pytest.mark.parametrize("entry", ["/ui", "/ui/"])
def test_the_pages_files_are_found_under_a_proxys_path(client: TestClient, entry: str) -> None:
    """Named from "/", they were the proxy's files behind `location /tether/`: a blank page."""
    page = client.get(entry)
    files = re.findall(r'(?:src|href)="([^"#][^":]*)"', page.text)
    assert len(files) == 2, files  # the style sheet and the script
    for name in files:
        seen = urljoin(f"http://proxy.test/tether{entry}", name)
        assert seen.startswith("http://proxy.test/tether/ui/static/"), seen
        assert client.get(seen.removeprefix("http://proxy.test/tether")).status_code == 200
    # The script finds the API beside it, wherever the proxy put it: never at "/v1/...".
    script = client.get("/ui/static/app.js").text
    assert 'new URL("../../", import.meta.url)' in script and "fetch(path" not in script


def test_pages_follow_the_tokens_scopes(client: TestClient) -> None:
    body = {"prompt": "def add(a, b):\n", "suffix": "\n", "max_tokens": 4}
    done = client.post("/v1/completions", headers=ADMIN, json=body)
    trace_id = done.json()["id"]
    viewer, auditor = _viewer(client), _viewer(client, "audit:read", "store:vet")
    session = client.get("/v1/dashboard/session", headers=viewer).json()
    assert session["can"] == {"content": False, "code": False, "vet": False}
    assert session["model"] == "tiny"
    hidden = client.get(f"/v1/dashboard/traces/{trace_id}", headers=viewer).json()
    assert hidden["content_hidden"] and hidden["prompt"] is None and hidden["output"] is None
    assert hidden["timings"]["total"] > 0  # the rest of the account stays
    shown = client.get(f"/v1/dashboard/traces/{trace_id}", headers=auditor).json()
    assert "def add(a, b):" in shown["prompt"] and shown["output"]
    completions_only = client.post(
        "/v1/tokens", headers=ADMIN, json={"principal": "x", "scopes": ["completions"]}
    ).json()["token"]
    as_coder = {"Authorization": f"Bearer {completions_only}"}
    refused = client.get("/v1/dashboard/overview", headers=as_coder)
    assert refused.status_code == 403 and "'dashboard'" in refused.json()["error"]["message"]


def test_a_snippets_code_needs_store_read(client: TestClient) -> None:
    code = 'def connect():\n    return "AKIAZ7QW3RTY5UIOPLKJ"\n'
    body = {"code": code, "language": "python", "licence": "MIT"}
    made = client.post("/v1/snippets", headers=ADMIN, json=body).json()
    newer = {**body, "code": code.replace("return", "return None or"), "name": "connect"}
    assert client.post("/v1/snippets", headers=ADMIN, json=newer).status_code == 201
    viewer, reader = _viewer(client), _viewer(client, "store:read")
    assert client.get(f"/v1/snippets/{made['id']}", headers=viewer).status_code == 403
    hidden = client.get(f"/v1/dashboard/store/{made['id']}", headers=viewer).json()
    assert hidden["code_hidden"] and hidden["code"] is None and hidden["diff"] is None
    assert hidden["gates"]["secrets"]["passed"] is False  # the review's account stays
    assert "AKIA" not in json.dumps(hidden)
    shown = client.get(f"/v1/dashboard/store/{made['id']}", headers=reader).json()
    assert not shown["code_hidden"] and "AKIAZ7QW3RTY5UIOPLKJ" in shown["code"]
    assert "+    return None or" in shown["diff"]
    assert client.get("/v1/dashboard/session", headers=reader).json()["can"]["code"]


def test_no_issued_token_is_credited_to_the_admin(client: TestClient) -> None:
    body = {"principal": "lead", "scopes": ["tokens:admin", "dashboard"], "ttl_s": 600}
    made = client.post("/v1/tokens", headers=ADMIN, json=body).json()
    lead = {"Authorization": f"Bearer {made['token']}"}
    for headers in (lead, ADMIN):
        refused = client.post(
            "/v1/tokens", headers=headers, json={"principal": "admin", "scopes": ["dashboard"]}
        )
        assert refused.status_code == 400, refused.text
        error = refused.json()["error"]
        assert error["param"] == "principal" and "'admin' is reserved" in error["message"]


def test_no_answer_stays_in_the_browsers_cache(client: TestClient) -> None:
    done = client.post("/v1/completions", headers=ADMIN, json={"prompt": "x = ", "max_tokens": 2})
    for path in (
        f"/v1/dashboard/traces/{done.json()['id']}",
        "/v1/dashboard/audit/proof/0",
        "/v1/dashboard/usage?format=csv",
        "/v1/dashboard/session",
    ):
        answer = client.get(path, headers=ADMIN)
        assert answer.status_code == 200 and answer.headers["cache-control"] == "no-store", path


def test_overview_usage_and_funnel_count_what_was_done(client: TestClient) -> None:
    before = client.get("/v1/dashboard/funnel?period=24h", headers=ADMIN).json()["total"]
    body = {"language": "python", "segments": {"prefix": "def f():\n    ", "suffix": "\n"}}
    done = client.post("/tabby/v1/completions", headers=ADMIN, json=body).json()
    other = client.post(
        "/v1/tokens", headers=ADMIN, json={"principal": "y", "scopes": ["completions"]}
    )
    as_other = {"Authorization": f"Bearer {other.json()['token']}"}
    dismissed = {"type": "dismiss", "completion_id": done["id"], "choice_index": 0}
    # Someone else's event on this completion is answered as Tabby does, but not counted.
    assert client.post("/tabby/v1/events", headers=as_other, json=dismissed).status_code == 200
    for kind in ("view", "view", "select"):
        event = {"type": kind, "completion_id": done["id"], "choice_index": 0}
        client.post("/tabby/v1/events", headers=ADMIN, json=event)
    after = client.get("/v1/dashboard/funnel?period=24h&by=language", headers=ADMIN).json()
    assert after["total"]["served"] == before["served"] + 1
    python = next(r for r in after["rows"] if r["key"] == "python")
    assert (python["viewed"], python["selected"], python["acceptance"]) == (1, 1, 1.0)
    assert python["dismissed"] == 0
    overview = client.get("/v1/dashboard/overview?period=7d", headers=ADMIN).json()
    assert overview["bucket_seconds"] == 3600 and len(overview["buckets"]) >= 168
    assert overview["totals"]["prompt_tokens"] >= 3 and overview["live"]["engine"]["ready"]
    usage = client.get("/v1/dashboard/usage?since=1d&by=model", headers=ADMIN).json()
    tiny = next(r for r in usage["rows"] if r["key"] == "tiny")
    assert tiny["prompt_tokens"] == overview["totals"]["prompt_tokens"]
    exported = client.get("/v1/dashboard/usage?since=1d&by=model&format=csv", headers=ADMIN)
    assert exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert {r["key"] for r in rows} >= {"tiny", "total"}
    # A period that ended before these requests (last month's report) counts none of them.
    past = client.get("/v1/dashboard/usage?since=2000-01-01&until=2000-02-01", headers=ADMIN)
    assert past.json()["until"] == "2000-02-01T00:00:00+00:00"
    assert past.json()["rows"] == [] and past.json()["total"]["requests"] == 0


def test_traces_are_searched_and_paged(client: TestClient) -> None:
    for i in range(5):
        client.post("/v1/completions", headers=ADMIN, json={"prompt": f"x{i}", "max_tokens": 2})
    first = client.get("/v1/dashboard/traces?limit=3", headers=ADMIN).json()
    assert len(first["data"]) == 3 and first["next"]
    second = client.get(f"/v1/dashboard/traces?limit=3&before={first['next']}", headers=ADMIN)
    older = second.json()["data"]
    assert older and all(t["created"] <= first["data"][-1]["created"] for t in older)
    assert {t["id"] for t in older}.isdisjoint(t["id"] for t in first["data"])
    facets = client.get("/v1/dashboard/traces/facets", headers=ADMIN).json()
    assert "admin" in facets["principals"] and "/v1/completions" in facets["endpoints"]
    nobody = client.get("/v1/dashboard/traces?principal=nobody", headers=ADMIN).json()
    assert nobody == {"data": [], "next": None}


def test_a_trace_is_held_against_its_audit_record(client: TestClient) -> None:
    made = client.post("/v1/completions", headers=ADMIN, json={"prompt": "z", "max_tokens": 2})
    trace_id = made.json()["tether"]["trace_id"]
    viewer = _viewer(client)  # the verdicts hold no text: no audit:read needed

    def verdict() -> Any:
        return client.get(f"/v1/dashboard/traces/{trace_id}", headers=viewer).json()["audit"]

    wait_until(lambda: verdict() is not None)  # on disk once the writer has written it
    seen = verdict()
    assert seen["ok"] is True and seen["prompt"] is True and seen["answer"] is True
    assert isinstance(seen["seq"], int)


def test_a_records_proof_verifies_from_its_own_bytes(client: TestClient) -> None:
    client.post("/v1/completions", headers=ADMIN, json={"prompt": "y", "max_tokens": 2})
    wait_until(
        lambda: client.get("/v1/dashboard/audit", headers=ADMIN).json()["latest"]["size"] > 2
    )
    audit: dict[str, Any] = client.get("/v1/dashboard/audit", headers=ADMIN).json()
    assert audit["verifier_key"].count("+") >= 2 and audit["checkpoints"]
    proof = client.get("/v1/dashboard/audit/proof/1", headers=ADMIN).json()
    record = base64.b64decode(proof["record"])
    assert base64.b64encode(leaf_hash(record)).decode() == proof["leaf_hash"]
    assert b'"seq":1' in record


def test_a_queue_longer_than_a_page_is_paged_not_cut(client: TestClient) -> None:
    for i in range(7):
        code = f"def paged_{i}(x):\n    return x + {i}\n"
        body = {"code": code, "language": "python", "licence": "MIT"}
        assert client.post("/v1/snippets", headers=ADMIN, json=body).status_code == 201
    seen: list[int] = []
    offset: int | None = 0
    while offset is not None:
        page = client.get("/v1/dashboard/store", headers=ADMIN,
                          params={"limit": 3, "offset": offset}).json()  # fmt: skip
        assert len(page["data"]) <= 3 and page["offset"] == offset
        seen += [s["id"] for s in page["data"]]
        offset = page["next_offset"]
    assert len(seen) == len(set(seen)) == page["total"] >= 7
    searched = client.get("/v1/dashboard/store", headers=ADMIN,
                          params={"q": "paged", "limit": 5, "offset": 5}).json()  # fmt: skip
    assert searched["total"] == 7 and len(searched["data"]) == 2
    assert searched["next_offset"] is None


def test_a_vetted_snippet_s_test_shows_as_passed_not_pending(client: TestClient) -> None:
    body = {"code": "def twice(x):\n    return 2 * x\n", "language": "python",
            "licence": "MIT", "test": "assert twice(2) == 4\n"}  # fmt: skip
    made = client.post("/v1/snippets", headers=ADMIN, json=body).json()
    shown = client.get(f"/v1/dashboard/store/{made['id']}", headers=ADMIN).json()
    assert shown["gates"]["test"]["passed"] is None  # runs when someone approves
    vet = {"approve": True, "reason": "ok"}
    assert client.post(f"/v1/snippets/{made['id']}/vet", headers=ADMIN, json=vet).status_code == 200
    shown = client.get(f"/v1/dashboard/store/{made['id']}", headers=ADMIN).json()
    assert shown["gates"]["test"] == {
        "passed": True,
        "detail": "passed in the sandbox when approved",
    }


def test_store_queue_detail_and_evals(client: TestClient) -> None:
    code = "def clamp(x, lo, hi):\n    return max(lo, min(x, hi))\n"
    body = {"code": code, "language": "python", "licence": "MIT"}
    made = client.post("/v1/snippets", headers=ADMIN, json=body).json()
    changed = code.replace("max(lo", "max(lo ")
    newer = {**body, "code": changed, "licence": "GPL-3.0-only", "name": "clamp"}
    client.post("/v1/snippets", headers=ADMIN, json=newer)
    queue = client.get("/v1/dashboard/store", headers=ADMIN).json()["data"]
    listed = next(s for s in queue if s["id"] == made["id"])
    assert listed["status"] == "candidate" and set(listed["gates"]) >= {"syntax", "licence"}
    detail = client.get(f"/v1/dashboard/store/{made['id']}", headers=ADMIN).json()
    assert detail["code"].startswith("def clamp") and detail["previous"] == 1
    assert detail["callable"] is False  # the reviewer sees what approving would allow
    assert "-    return max(lo, min(x, hi))" in detail["diff"].splitlines()
    assert detail["decisions"][0]["reason"] == "added"
    # Once a version serves, a reviewer sees later ones against it, not against the last
    # small step (here a comment added to an edit that changes what the function does).
    client.post("/v1/snippets", headers=ADMIN, json={**newer, "licence": "MIT"})  # v3
    vetted = {"approve": True, "reason": "ok", "version": 3}
    approved = client.post(f"/v1/snippets/{made['id']}/vet", headers=ADMIN, json=vetted)
    assert approved.status_code == 200, approved.text
    worse = {**body, "code": changed.replace("max(lo", "evil(lo"), "name": "clamp"}
    client.post("/v1/snippets", headers=ADMIN, json=worse)  # v4
    client.post("/v1/snippets", headers=ADMIN, json={**worse, "code": worse["code"] + "# .\n"})
    detail = client.get(f"/v1/dashboard/store/{made['id']}", headers=ADMIN).json()
    assert detail["previous"] == 3 and "+    return evil(lo , min(x, hi))" in detail["diff"]
    assert client.get("/v1/dashboard/store/999999", headers=ADMIN).status_code == 404
    assert client.get("/v1/dashboard/evals", headers=ADMIN).json() == {"runs": []}
    missing = client.get("/v1/dashboard/evals/run-nope", headers=ADMIN)
    assert missing.status_code == 404 and "no run 'run-nope'" in missing.json()["error"]["message"]


@pytest.mark.parametrize(
    ("path", "status", "says"),
    [
        ("/v1/dashboard/overview?period=week", 400, "period"),
        ("/v1/dashboard/usage?since=yesterday", 400, "30d, 12h"),
        ("/v1/dashboard/usage?since=\u0661\u0662d", 400, "30d, 12h"),  # digits of another script
        ("/v1/dashboard/traces?since=\u0663h", 400, "30d, 12h"),
        ("/v1/dashboard/traces?before=\u0661\u0662:cmpl-1", 400, "'next' value"),
        ("/v1/dashboard/usage?since=100000000d", 400, "is not a time (it falls outside"),
        ("/v1/dashboard/usage?since=1d&until=2d", 400, "since must be before until"),
        ("/v1/dashboard/usage?since=2999-01-01", 400, "is not in the past, and without until"),
        ("/v1/dashboard/usage?until=2001-01-01", 400, "without since it starts 30d before now"),
        # until as since: the page's two fields get the same checks and messages.
        ("/v1/dashboard/usage?until=yesterday", 400, "until 'yesterday' is not a time: give"),
        ("/v1/dashboard/usage?until=\u0661\u0662d", 400, "30d, 12h"),
        ("/v1/dashboard/usage?until=100000000d", 400, "is not a time (it falls outside"),
        ("/v1/dashboard/usage?until=" + "1" * 41, 400, "until"),
        ("/v1/dashboard/traces?before=page-two", 400, "'next' value"),
        ("/v1/dashboard/traces?before=nan:cmpl-1", 400, "'next' value"),  # else no page
        ("/v1/dashboard/traces?before=1e999:cmpl-1", 400, "'next' value"),  # else every one
        ("/v1/dashboard/traces?limit=0", 400, "limit"),
        ("/v1/dashboard/traces/cmpl-missing", 404, "no trace 'cmpl-missing'"),
        ("/v1/dashboard/audit/proof/99999", 404, "no audit record 99999: the log holds"),
        ("/v1/dashboard/funnel?by=colour", 400, "by"),
        ("/v1/dashboard/store?state=bogus", 400, "unknown query parameter 'state'"),
        ("/v1/dashboard/store?state=bogus", 400, "takes: limit, offset, q, status"),
        ("/v1/dashboard/traces?offset=-5", 400, "unknown query parameter 'offset'"),
        ("/v1/dashboard/evals?x=1", 400, "takes: "),
        # Else the last counted, and a year passed for a day in an address pasted twice.
        ("/v1/dashboard/usage?since=365d&since=1d", 400, "'since' is given 2 times"),
        ("/v1/dashboard/traces?limit=5&since=1h&limit=5", 400, "it takes one value: give it once"),
    ],
)
def test_bad_input_gets_a_clear_error(
    client: TestClient, path: str, status: int, says: str
) -> None:
    answer = client.get(path, headers=ADMIN)
    assert answer.status_code == status, answer.text
    assert says in answer.text


@pytest.mark.parametrize("path", ["/v1/dashboard/traces?principal=", "/v1/dashboard/store?q="])
def test_a_value_too_long_gets_no_hint_meant_for_another_field(
    client: TestClient, path: str
) -> None:
    answer = client.get(path + "x" * 201, headers=ADMIN)
    message = answer.json()["error"]["message"]
    assert answer.status_code == 400 and "at most 200 characters" in message
    assert "To fix" not in message, message


def test_the_token_is_checked_before_the_query(client: TestClient) -> None:
    assert client.get("/v1/dashboard/store?state=bogus").status_code == 401


def test_records_that_hold_text_need_audit_read(tmp_path_factory: pytest.TempPathFactory) -> None:
    settings = make_settings(
        tmp_path_factory.mktemp("full"),
        TETHER_AUDIT_CONTENT="full",
        TETHER_AUDIT_CHECKPOINT_INTERVAL_S="0.1",
    )
    with TestClient(build_app(settings, TOKEN, lambda: ScriptedEngine("x"))) as client:
        client.post("/v1/completions", headers=ADMIN, json={"prompt": "secret", "max_tokens": 2})
        wait_until(
            lambda: client.get("/v1/dashboard/audit", headers=ADMIN).json()["latest"]["size"] > 1
        )
        refused = client.get("/v1/dashboard/audit/proof/1", headers=_viewer(client))
        assert refused.status_code == 403 and "audit:read" in refused.json()["error"]["message"]
        allowed = client.get("/v1/dashboard/audit/proof/1", headers=_viewer(client, "audit:read"))
        assert allowed.status_code == 200


def test_fingerprints_of_matched_values_need_audit_read(client: TestClient) -> None:
    body = {"prompt": "# mail alice.smith@example.com\n", "max_tokens": 2}
    done = client.post("/v1/completions", headers=ADMIN, json=body).json()
    viewer, auditor = _viewer(client), _viewer(client, "audit:read")
    hidden = client.get(f"/v1/dashboard/traces/{done['id']}", headers=viewer).json()
    assert [f["rule_id"] for f in hidden["policy"]] == ["email"]  # what was found stays
    assert hidden["policy"][0]["fingerprint"] is None
    shown = client.get(f"/v1/dashboard/traces/{done['id']}", headers=auditor).json()
    matched = fingerprint("alice.smith@example.com")
    assert shown["policy"][0]["fingerprint"] == matched

    def records() -> dict[int, bytes]:
        """Every record the latest checkpoint covers, read as the admin. The overview reads
        the checkpoint from disk, where it is written just before the log proves against
        it: a record it counts may be "not covered yet" for a moment, and is left out."""
        size = client.get("/v1/dashboard/audit", headers=ADMIN).json()["latest"]["size"]
        proofs = (client.get(f"/v1/dashboard/audit/proof/{n}", headers=ADMIN) for n in range(size))
        return {
            n: base64.b64decode(p.json()["record"])
            for n, p in enumerate(proofs)
            if p.status_code != 404 or "not covered" not in p.json()["error"]["message"]
        }

    wait_until(lambda: any(matched.encode() in r for r in records().values()))
    for seq, record in records().items():
        as_viewer = client.get(f"/v1/dashboard/audit/proof/{seq}", headers=viewer)
        if matched.encode() in record:
            assert as_viewer.status_code == 403
            assert "'audit:read'" in as_viewer.json()["error"]["message"]
            proof = client.get(f"/v1/dashboard/audit/proof/{seq}", headers=auditor)
            assert proof.status_code == 200
        elif b'"fingerprint":"' not in record:  # the others still verify for any viewer
            assert as_viewer.status_code == 200


def test_the_session_says_when_usage_is_not_recorded(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    settings = make_settings(tmp_path_factory.mktemp("off"), TETHER_USAGE_ENABLED="false")
    with TestClient(build_app(settings, TOKEN, lambda: ScriptedEngine("x"))) as client:
        session = client.get("/v1/dashboard/session", headers=ADMIN).json()
    assert session["usage_recorded"] is False
    script = client.get("/ui/static/app.js").text
    assert "usage_recorded === false" in script


def test_the_session_and_a_missing_trace_say_when_traces_are_off(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    settings = make_settings(tmp_path_factory.mktemp("no-traces"), TETHER_TRACES_ENABLED="false")
    with TestClient(build_app(settings, TOKEN, lambda: ScriptedEngine("x"))) as client:
        done = client.post("/v1/completions", headers=ADMIN, json={"prompt": "x", "max_tokens": 2})
        session = client.get("/v1/dashboard/session", headers=ADMIN).json()
        missing = client.get(f"/v1/dashboard/traces/{done.json()['id']}", headers=ADMIN)
        explained = client.get(f"/v1/traces/{done.json()['id']}", headers=ADMIN)
    assert session["traces_recorded"] is False
    for answer in (missing, explained):
        assert answer.status_code == 404
        message = answer.json()["error"]["message"]
        assert "traces are off on this server (traces.enabled = false)" in message
        assert "max_age_days" not in message
    script = client.get("/ui/static/app.js").text
    assert "traces_recorded === false" in script and "tracesOff(), form" in script


def test_the_audit_chart_spans_idle_days_not_the_last_heartbeats(tmp_path: Path) -> None:
    from tether.dashboard.queries import audit_overview

    lines = []
    for hour in range(72):  # three days: a record an hour, heartbeats every 10 s between
        for beat in range(360):
            size = hour + 1
            note = f"tether/test\n{size}\nroot{size}=\n\n\u2014 sig\n"
            lines.append(json.dumps({"time": hour * 3600 + beat * 10, "size": size, "note": note}))
    (tmp_path / "checkpoints.jsonl").write_text("\n".join(lines) + "\n")
    shown = audit_overview(tmp_path, limit=500, read=len(lines))["checkpoints"]
    assert shown[0]["time"] == 0 and shown[-1]["time"] == 71 * 3600 + 359 * 10
    assert len(shown) == 2 * 72  # each hour's first and last heartbeat


def test_a_record_is_read_from_its_own_segment(tmp_path: Path) -> None:
    from tether.audit import segments
    from tether.dashboard.queries import record_bytes

    folder = segmented_log(tmp_path, records=40, prompt_chars=300)
    every = [line.data for line in segments.iter_records(folder)]
    assert len(segments.segment_paths(folder)) > 2
    assert [record_bytes(folder, seq) for seq in range(40)] == every
    with pytest.raises(NotFoundError, match="no audit record 40; the log holds 40"):
        record_bytes(folder, 40)


def test_compared_runs_say_what_they_were_made_with_that_differs(tmp_path: Path) -> None:
    """Two suites' runs, paired on their task ids, compared as made alike."""
    from tether.evals.store import EvalStore, SampleResult

    settings = make_settings(tmp_path)
    made = {"source": "generated", "config": {"n": 1, "max_tokens": 64}, "engine": {"n_ctx": 2048}}
    with EvalStore(settings.data.home / "evals.sqlite") as store:
        a = store.start("humaneval", made)
        b = store.start("humaneval+", made)
        for run in (a, b):
            store.add(run, SampleResult("HumanEval/0", 0, "", "passed", True, 0.1))
            store.finish(run, "finished", {})
    engine = ScriptedEngine("    return a + b\n")
    with TestClient(build_app(settings, TOKEN, lambda: engine)) as client:
        compared = client.get(f"/v1/dashboard/evals/compare?a={a}&b={b}", headers=ADMIN)
    assert compared.status_code == 200, compared.text
    assert compared.json()["differences"] == {"suite": {"a": "humaneval", "b": "humaneval+"}}
    # As `tether eval compare A B` says it: B against A, its interval and at what level.
    said = {k: compared.json()[k] for k in ("difference", "low", "high", "better", "worse")}
    assert said == {"difference": 0.0, "low": 0.0, "high": 0.0, "better": 0, "worse": 0}
    assert compared.json()["confidence"] == 0.95 and compared.json()["p_value"] == 1.0


def test_traces_are_found_by_a_principal_pasted_decomposed(client: TestClient) -> None:
    """Principals are kept composed: a name pasted from macOS (an e and a combining
    acute) found none of its traces."""
    body = {"principal": "Jos\u00e9", "scopes": ["completions"]}
    made = client.post("/v1/tokens", headers=ADMIN, json=body).json()["token"]
    headers = {"Authorization": f"Bearer {made}"}
    client.post("/v1/completions", headers=headers, json={"prompt": "y", "max_tokens": 2})

    def found(name: str) -> list[dict[str, Any]]:
        page = client.get("/v1/dashboard/traces", params={"principal": name}, headers=ADMIN)
        data: list[dict[str, Any]] = page.json()["data"]
        return data

    wait_until(lambda: found("Jos\u00e9"))
    assert found("Jose\u0301") == found("Jos\u00e9")
