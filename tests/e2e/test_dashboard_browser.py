"""The dashboard in a real browser (Chromium from the system, driven by Playwright) against
a real server with seeded data: log in, every page against the API, approve a snippet,
verify a checkpoint and a record with WebCrypto, scopes, bad input, a server that goes
away, keyboard and labels, no console errors. Screenshots go to build/test-artifacts."""

from __future__ import annotations

import csv
import io
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest
from nacl.signing import SigningKey
from playwright.sync_api import Browser, ConsoleMessage, Page, Route, expect, sync_playwright

from tests.helpers import RunningServer, tether_server, wait_until
from tether.audit.checkpoint import Signer
from tether.evals.store import EvalStore, SampleResult

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "build" / "test-artifacts" / "dashboard"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
AXE = ROOT / ".venv" / "node" / "node_modules" / "axe-core" / "axe.min.js"
# What axe-core checks: WCAG 2.2 levels A and AA (as a buyer's procurement asks, and
# Section 508 through them), and its best practices.
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"]


def _token(client: httpx.Client, principal: str, scopes: list[str], ttl_s: float = 3600) -> str:
    body = {"principal": principal, "scopes": scopes, "ttl_s": ttl_s}
    made = client.post("/v1/tokens", json=body)
    assert made.status_code == 201, made.text
    token: str = made.json()["token"]
    return token


def _seed(server: RunningServer, home: Path) -> dict[str, Any]:
    with server.client() as client:
        coder = _token(client, "coder", ["completions", "chat"])
        as_coder = {"Authorization": f"Bearer {coder}"}
        ids = []
        for prefix in ("def add(a, b):\n    ", "function add(a, b) {\n  "):
            body = {"prompt": prefix, "suffix": "\n", "max_tokens": 8}
            done = client.post("/v1/completions", headers=as_coder, json=body)
            assert done.status_code == 200, done.text
            ids.append(done.json()["id"])
        segments = {"prefix": "def mul(a, b):\n    ", "suffix": "\n"}
        tabby = client.post(
            "/tabby/v1/completions",
            headers=as_coder,
            json={"language": "python", "segments": segments},
        )
        assert tabby.status_code == 200, tabby.text
        tabby_id = tabby.json()["id"]
        for kind in ("view", "select"):
            event = {"type": kind, "completion_id": tabby_id, "choice_index": 0}
            assert client.post("/tabby/v1/events", headers=as_coder, json=event).status_code == 200
        chat = client.post("/v1/chat/completions", headers=as_coder, json={
            "messages": [{"role": "user", "content": "my key is AKIAIOSFODNN7EXAMPLE"}],
            "max_tokens": 8})  # fmt: skip
        assert chat.status_code in (200, 400), chat.text
        snippet = client.post("/v1/snippets", json={
            "code": "def clamp(x, low, high):\n    return max(low, min(x, high))\n",
            "language": "python", "licence": "MIT"})  # fmt: skip
        assert snippet.status_code == 201, snippet.text
        tokens = {
            "auditor": _token(
                client, "auditor", ["dashboard", "audit:read", "store:read", "store:vet"]
            ),
            "viewer": _token(client, "viewer", ["dashboard"]),
            "coder": coder,
            "expired": _token(client, "brief", ["dashboard"], ttl_s=1),
        }
        usage = client.get("/v1/dashboard/usage", params={"by": "principal"}).json()
    with EvalStore(home / "data" / "evals.sqlite") as store:
        runs = []
        for passed in ((True, False, False), (True, True, False)):
            run = store.start("humaneval", {"engine": {"model": "SmolLM2"}})
            for i, ok in enumerate(passed):
                store.add(run, SampleResult(task_id=f"HumanEval/{i}", sample=0, completion="",
                                            status="passed" if ok else "failed", passed=ok,
                                            duration_s=0.1))  # fmt: skip
            store.finish(run, "done", {"tasks": 3})
            runs.append(run)
            time.sleep(1.1)  # run ids carry the second they started
    return {"tokens": tokens, "completion": ids[0], "snippet": snippet.json()["id"],
            "usage": usage, "runs": runs}  # fmt: skip


@pytest.fixture(scope="module")
def seeded(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[RunningServer, dict[str, Any]]]:
    home = tmp_path_factory.mktemp("dashboard")
    with tether_server(home, TETHER_AUDIT_CHECKPOINT_INTERVAL_S="0.2") as server:
        yield server, _seed(server, home)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert CHROMIUM, "Chromium is missing: `make test` installs it from the system packages"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    problems: list[str] = []
    opened.on("console", lambda m: _console(m, problems))
    opened.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    opened.problems = problems  # type: ignore[attr-defined]
    yield opened
    context.close()


def _console(message: ConsoleMessage, problems: list[str]) -> None:
    # The browser logs every 4xx/5xx a page receives; those the tests provoke are expected.
    if message.type == "error" and "Failed to load resource" not in message.text:
        problems.append(message.text)


def _login(page: Page, server: RunningServer, token: str) -> None:
    page.goto(f"{server.url}/ui")
    page.get_by_label("Token").fill(token)
    page.get_by_role("button", name="Log in").click()


def _shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_every_page_shows_what_the_api_says(
    seeded: tuple[RunningServer, dict[str, Any]], page: Page
) -> None:
    server, data = seeded
    _login(page, server, data["tokens"]["auditor"])
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    with server.client() as client:
        overview = client.get("/v1/dashboard/overview", params={"period": "24h"}).json()
    # Tokens, unlike requests, do not move with the dashboard's own calls.
    tokens_card = page.locator(".card", has_text="Prompt tokens")
    expect(tokens_card).to_contain_text(f"{overview['totals']['prompt_tokens']:,}")
    assert overview["totals"]["prompt_tokens"] > 0
    expect(page.get_by_role("img", name="Requests and errors", exact=False)).to_be_visible()
    _shot(page, "overview")

    page.get_by_role("link", name="Usage and cost").click()
    expect(page.get_by_role("heading", name="Usage and cost")).to_be_visible()
    coder = next(r for r in data["usage"]["rows"] if r["key"] == "coder")
    coder_row = page.get_by_role("row").filter(has_text="coder")
    expect(coder_row).to_contain_text(f"{coder['prompt_tokens']:,}")
    expect(page.get_by_text("embeddings at text-embedding-3-small's")).to_be_visible()
    with page.expect_download() as download:
        page.get_by_role("button", name="Export CSV").click()
    assert download.value.suggested_filename == "tether-usage-principal.csv"
    page.get_by_label("Group by").select_option("model")  # and Show not pressed
    with page.expect_download() as download:
        page.get_by_role("button", name="Export CSV").click()
    assert download.value.suggested_filename == "tether-usage-model.csv"
    assert "\ncoder," not in Path(download.value.path()).read_text()  # by model, not principal
    _shot(page, "usage")

    page.get_by_role("link", name="Completion funnel").click()
    python = page.get_by_role("row").filter(has_text="python")
    expect(python).to_contain_text("100.0%")  # viewed once, selected once
    _shot(page, "funnel")

    page.get_by_role("link", name="Traces").click()
    expect(page.get_by_role("heading", name="Traces")).to_be_visible()
    page.get_by_label("Principal").select_option("coder")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_role("link", name=data["completion"])).to_be_visible()
    page.get_by_role("link", name=data["completion"]).click()
    expect(page.get_by_role("heading", name=f"Trace {data['completion']}")).to_be_visible()
    expect(page.locator("pre").first).to_contain_text("def add(a, b):")  # audit:read: content
    expect(page.get_by_text("prompt and answer are what the record committed to")).to_be_visible()
    _shot(page, "trace")

    page.get_by_role("link", name="Audit").click()
    page.get_by_role("button", name="Verify checkpoint and record").click()
    expect(page.locator("#signature-verdict")).to_contain_text("Signature valid")
    expect(page.locator("#inclusion-verdict")).to_contain_text("is included")
    _shot(page, "audit")
    # A key the log was not signed with, under the same name: the browser says so.
    offered = page.get_by_label("Verifier key").input_value()
    other = Signer(offered.split("+")[0], SigningKey.generate()).verifier_key
    page.get_by_label("Verifier key").fill(other)
    page.get_by_role("button", name="Verify checkpoint and record").click()
    expect(page.locator("#signature-verdict")).to_contain_text("Signature INVALID")
    # No record number is no record: not read as record 0 and verified.
    page.get_by_label("Record number").fill("")
    assert page.get_by_label("Record number").evaluate("input => !input.checkValidity()")

    page.get_by_role("link", name="Store").click()
    expect(page.locator(".pager")).to_contain_text("Showing 1\u20131 of 1.")  # a page at a time
    page.get_by_role("link", name="clamp v1").click()
    expect(page.get_by_role("cell", name="licence")).to_be_visible()
    # A version posted while the reviewer reads v1 is not approved unseen.
    edit = {"code": "def clamp(x, low, high):\n    return low\n", "language": "python"}
    with server.client() as client:
        assert client.post("/v1/snippets", json=edit).json()["version"] == 2
    page.get_by_label("Reason").fill("reviewed: pure, tested by hand")
    page.get_by_role("button", name="Approve").click()
    expect(page.get_by_role("status")).to_contain_text("is at version 2, not 1")
    page.reload()
    expect(page.get_by_role("heading", name="clamp v2")).to_be_visible()
    expect(page.get_by_text("Changes since v1")).to_be_visible()
    page.get_by_label("Reason").fill("reviewed v2: pure")
    page.get_by_label("Callable").check()
    page.get_by_role("button", name="Approve").click()
    expect(page.get_by_role("status")).to_contain_text("Recorded: vetted")
    expect(page.get_by_role("button", name="Approve")).to_have_count(0)  # decided once
    with server.client() as client:
        decided = client.get(f"/v1/snippets/{data['snippet']}").json()
    assert (decided["state"], decided["version"], decided["callable"]) == ("vetted", 2, True)
    _shot(page, "store")
    # Code that reads otherwise than it runs ("Trojan Source") shows its controls, and
    # its compliance gate fails.
    trojan = (
        "def is_admin(level, \u3164=None):\n"  # a Hangul filler: a name that shows as blank
        "    return level != 'none\u202e\u2066' or \u3164  # admins\u2069\u2066\n"
    )
    with server.client() as client:
        offered_trojan = client.post("/v1/snippets", json={"code": trojan, "language": "python",
                                                    "licence": "MIT"})  # fmt: skip
    page.goto(f"{server.url}/ui#/store/{offered_trojan.json()['id']}")
    expect(page.get_by_text("\u27e8U+202E\u27e9")).to_be_visible()
    expect(page.get_by_text("\u27e8U+3164\u27e9").first).to_be_visible()
    page.get_by_label("Reason").fill("looks fine")
    page.get_by_role("button", name="Approve").click()
    expect(page.get_by_role("status")).to_contain_text("unicode/bidi")

    page.get_by_role("link", name="Evaluations").click()
    expect(page.get_by_role("link", name=data["runs"][0])).to_be_visible()
    # B against A, as `tether eval compare A B`: the newest run against the one before.
    expect(page.get_by_label("Run A")).to_have_value(data["runs"][0])
    expect(page.get_by_label("Run B")).to_have_value(data["runs"][1])
    page.get_by_role("button", name="Compare").click()
    expect(page.get_by_role("row").filter(has_text="HumanEval/1")).to_be_visible()
    with server.client() as client:
        runs = {"a": data["runs"][0], "b": data["runs"][1]}
        compared = client.get("/v1/dashboard/evals/compare", params=runs).json()
    low, high = (f"{compared[k] * 100:+.1f}%" for k in ("low", "high"))
    expect(page.locator("#compare-verdict")).to_have_text(
        f"pass@1 of B minus A: +33.3% (95% CI {low} to {high}); B better on 1, worse on 0 "
        f"tasks; exact sign test p = {compared['p_value']:.3g}."
    )
    _shot(page, "evals")
    assert page.problems == []  # type: ignore[attr-defined]


def test_a_past_periods_usage_is_shown_and_exported_with_cached_tokens(
    seeded: tuple[RunningServer, dict[str, Any]], page: Page
) -> None:
    """Last month's report from the page: until as the CLI's --until, checked as since is;
    and the cached tokens the CLI's table shows."""
    server, data = seeded
    _login(page, server, data["tokens"]["auditor"])
    page.get_by_role("link", name="Usage and cost").click()
    coder = next(r for r in data["usage"]["rows"] if r["key"] == "coder")
    assert coder["requests"] > 0
    # The page's table drawn, not the one of the page before it.
    expect(page.get_by_role("columnheader", name="cached tokens")).to_be_visible()
    expect(page.get_by_role("row").filter(has_text="coder")).to_be_visible()
    heads = page.locator("table thead th").all_inner_texts()
    cells = page.get_by_role("row").filter(has_text="coder").locator("td").all_inner_texts()
    assert cells[heads.index("cached tokens")] == f"{coder['cached_tokens']:,}"
    assert cells[heads.index("prompt tokens")] == f"{coder['prompt_tokens']:,}"

    page.get_by_label("Since (30d, 12h, 2026-11-01)").fill("2000-01-01")
    page.get_by_label("Until (empty: now; 2026-12-01)").fill("2000-02-01")
    page.get_by_role("button", name="Show").click()
    period = "2000-01-01T00:00:00+00:00 to 2000-02-01T00:00:00+00:00"
    expect(page.get_by_text(period)).to_be_visible()
    assert "until=2000-02-01" in page.url
    expect(page.get_by_role("row").filter(has_text="coder")).to_have_count(0)
    expect(page.get_by_label("Until (empty: now; 2026-12-01)")).to_have_value("2000-02-01")
    with page.expect_download() as download:
        page.get_by_role("button", name="Export CSV").click()
    exported = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
    assert [(r["key"], r["requests"]) for r in exported] == [("total", "0")]
    # Until emptied is now again: the requests made are back, in the page and the file.
    page.get_by_label("Until (empty: now; 2026-12-01)").fill("")
    with page.expect_download() as download:
        page.get_by_role("button", name="Export CSV").click()
    exported = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
    assert "coder" in {r["key"] for r in exported}
    page.get_by_role("button", name="Show").click()
    expect(page.get_by_role("row").filter(has_text="coder")).to_be_visible()
    assert "until=" not in page.url

    # A mistyped or reversed period is said beside the form, as a mistyped since is.
    page.goto(f"{server.url}/ui#/usage?until=yesterday")
    expect(
        page.get_by_role("alert").filter(has_text="until 'yesterday' is not a time")
    ).to_be_visible()
    expect(page.get_by_label("Until (empty: now; 2026-12-01)")).to_have_value("yesterday")
    page.goto(f"{server.url}/ui#/usage?since=2000-02-01&until=2000-01-01")
    expect(page.get_by_role("alert").filter(has_text="since must be before until")).to_be_visible()
    _shot(page, "usage-reversed-period")
    assert page.problems == []  # type: ignore[attr-defined]


def test_a_dashboard_only_token_sees_no_text_and_cannot_vet(
    seeded: tuple[RunningServer, dict[str, Any]], page: Page
) -> None:
    server, data = seeded
    _login(page, server, data["tokens"]["viewer"])
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    page.goto(f"{server.url}/ui#/traces/{data['completion']}")
    hidden = "Hidden: reading prompts and answers needs the audit:read scope"
    expect(page.get_by_text(hidden)).to_be_visible()
    assert "def add(a, b)" not in page.content()
    page.goto(f"{server.url}/ui#/store/{data['snippet']}")
    expect(page.get_by_text("Only candidates are vetted.").or_(
        page.get_by_text("Vetting needs the store:vet scope."))).to_be_visible()  # fmt: skip
    # Code is read with store:read, as on /v1/snippets: a candidate's may hold a secret.
    expect(page.get_by_text("reading a snippet's code needs the store:read scope")).to_be_visible()
    assert "def clamp" not in page.content()
    page.goto(f"{server.url}/ui#/traces/cmpl-no-such-trace")
    missing = page.get_by_role("alert").filter(has_text="no trace 'cmpl-no-such-trace'")
    expect(missing).to_be_visible()
    _shot(page, "not-found")
    # Addresses typed or pasted by hand get a message, not a script error.
    page.goto(f"{server.url}/ui#/traces/%E0%A4%A")
    expect(page.get_by_role("alert").filter(has_text="URI malformed")).to_be_visible()
    page.goto(f"{server.url}/ui#/usage?by=principal%26format=csv")
    expect(page.get_by_role("alert").filter(has_text="query.by: Input should be")).to_be_visible()
    # A value from the address is one value: it cannot add a query parameter of its own.
    # A period mistyped is said beside the form, which stays to mend it.
    page.goto(f"{server.url}/ui#/usage?since=yesterday")
    expect(page.get_by_role("alert").filter(has_text="yesterday")).to_be_visible()
    expect(page.get_by_label("Since (30d, 12h, 2026-11-01)")).to_have_value("yesterday")
    page.goto(f"{server.url}/ui#/traces?principal=coder&since=yesterday")
    expect(page.get_by_role("heading", name="Traces")).to_be_visible()
    refused = page.get_by_role("alert").filter(has_text="since 'yesterday' is not a time")
    expect(refused).to_be_visible()
    expect(page.get_by_label("Since", exact=True)).to_have_value("yesterday")
    expect(page.get_by_label("Principal")).to_have_value("coder")
    page.goto(f"{server.url}/ui#/overview?period=24h%26period%3D365d")
    expect(page.get_by_role("alert").filter(has_text="query.period:")).to_be_visible()
    page.goto(f"{server.url}/ui#/store?status=vetted%26status%3Drejected")
    expect(page.get_by_role("alert").filter(has_text="query.status:")).to_be_visible()
    page.goto(f"{server.url}/ui#/evals/compare")
    expect(page.get_by_text("Choose two runs to compare")).to_be_visible()
    # A filter from a link that no trace matches stays chosen, not shown as "any".
    page.goto(f"{server.url}/ui#/traces?principal=nobody-yet")
    expect(page.get_by_text("0 traces, newest first")).to_be_visible()
    expect(page.get_by_label("Principal")).to_have_value("nobody-yet")
    assert page.problems == []  # type: ignore[attr-defined]


def test_a_traces_sampling_settings_are_shown_to_every_viewer(
    seeded: tuple[RunningServer, dict[str, Any]], page: Page
) -> None:
    server, data = seeded
    body = {"prompt": "x = ", "max_tokens": 5, "temperature": 0.3, "top_p": 0.9,
            "seed": 42, "stop": ["STOPHERE", "\n\n"]}  # fmt: skip
    with server.client() as client:
        done = client.post("/v1/completions", json=body)
    _login(page, server, data["tokens"]["viewer"])
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    page.goto(f"{server.url}/ui#/traces/{done.json()['id']}")
    shown = {"max_tokens": "5", "temperature": "0.3", "top_p": "0.9", "seed": "42",
             "stop": '["STOPHERE","\\n\\n"]'}  # fmt: skip
    for setting, value in shown.items():
        row = page.get_by_role("row").filter(has=page.get_by_role("cell", name=setting, exact=True))
        expect(row).to_contain_text(value)


def test_a_chart_of_runs_that_all_scored_nothing_says_0_percent(
    seeded: tuple[RunningServer, dict[str, Any]], page: Page
) -> None:
    server, data = seeded
    runs = [{"id": f"run-{i}", "created": 1796543840 + i, "suite": "humaneval",
             "status": "finished", "pass_at_1": 0.0, "tasks": 3, "model": "m"}
            for i in range(2)]  # fmt: skip
    page.route("**/v1/dashboard/evals", lambda route: route.fulfill(json={"runs": runs}))
    _login(page, server, data["tokens"]["viewer"])
    page.get_by_role("link", name="Evaluations").click()
    chart = page.get_by_role("img", name="pass@1 on humaneval", exact=False)
    expect(chart).to_have_attribute("aria-label", re.compile(r"peak 0%$"))
    expect(chart.locator("text")).to_have_text("0%")


def test_a_label_a_client_sent_shows_its_hidden_characters(
    seeded: tuple[RunningServer, dict[str, Any]], page: Page
) -> None:
    server, data = seeded
    body = {"language": "lua\u202e aul", "segments": {"prefix": "x = ", "suffix": ""}}
    with server.client() as client:
        assert client.post("/tabby/v1/completions", json=body).status_code == 200
    _login(page, server, data["tokens"]["viewer"])
    page.get_by_role("link", name="Completion funnel").click()
    expect(page.get_by_role("cell", name="lua\u27e8U+202E\u27e9 aul")).to_be_visible()
    assert "\u202e" not in page.locator("main").inner_text()  # nothing drawn reordered


@pytest.mark.parametrize(
    ("which", "message"),
    [
        ("wrong", "Your token was refused"),
        ("expired", "has expired"),
        ("coder", "lacks the 'dashboard' scope"),
        # Pasted with typographic quotes: no header can carry it, and no server was asked.
        ("quoted", "holds characters no token has"),
    ],
)
def test_bad_tokens_get_a_clear_message(
    seeded: tuple[RunningServer, dict[str, Any]], page: Page, which: str, message: str
) -> None:
    server, data = seeded
    tokens = {**data["tokens"], "wrong": "tth_wrong"}
    tokens["quoted"] = f"\u201c{tokens['viewer']}\u201d"
    token = tokens[which]
    if which == "expired":
        time.sleep(1.1)
    _login(page, server, token)
    expect(page.get_by_role("alert").filter(has_text=message)).to_be_visible()
    expect(page.get_by_label("Token")).to_be_visible()
    expect(page.locator("#banner")).to_be_hidden()
    # Back on the field, a screen reader reads what was wrong with it again.
    expect(page.get_by_label("Token")).to_be_focused()
    expect(page.get_by_label("Token")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("Token")).to_have_accessible_description(re.compile(message))


def test_the_pages_links_show_only_while_logged_in(
    seeded: tuple[RunningServer, dict[str, Any]], page: Page
) -> None:
    server, data = seeded
    page.goto(f"{server.url}/ui")
    expect(page.get_by_label("Token")).to_be_visible()
    expect(page.locator("#nav")).to_be_hidden()
    _login(page, server, data["tokens"]["viewer"])
    expect(page.get_by_role("navigation")).to_be_visible()
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_text("Logged out.")).to_be_visible()
    expect(page.get_by_label("Token")).not_to_have_attribute("aria-invalid", "true")
    expect(page.locator("#nav")).to_be_hidden()
    expect(page.get_by_role("button", name="Log out")).to_be_hidden()


def test_an_export_that_is_refused_says_why(
    seeded: tuple[RunningServer, dict[str, Any]], page: Page
) -> None:
    server, _ = seeded
    with server.client() as client:
        made = client.post(
            "/v1/tokens", json={"principal": "few", "scopes": ["dashboard"], "rpm": 3}
        )
    _login(page, server, made.json()["token"])  # the session, then the overview
    page.get_by_role("link", name="Usage and cost").click()  # the third request this minute
    page.get_by_role("button", name="Export CSV").click()
    expect(page.get_by_role("status")).to_contain_text("Could not export: this token is over")
    assert page.problems == []  # type: ignore[attr-defined]


def _axe(page: Page) -> list[str]:
    """What axe-core finds wrong in the page as it is drawn now, one line a place."""
    assert AXE.is_file(), "axe-core is missing: `make test` installs it with npm"
    # A box resized (a table unfolded) is rechecked at the next frame: two frames on.
    page.evaluate("new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))")
    # Evaluated, not added as a <script>: the page's policy runs no inline script.
    page.evaluate(AXE.read_text())
    found = page.evaluate(
        "tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})", AXE_TAGS
    )
    return [
        f"{v['id']}: {v['help']} at {n['target']}" for v in found["violations"] for n in v["nodes"]
    ]


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_every_page_passes_axe_in_a_phones_width(
    seeded: tuple[RunningServer, dict[str, Any]], page: Page, scheme: Literal["light", "dark"]
) -> None:
    """At 320 CSS pixels (a phone, or 1280 at 400% zoom), where tables scroll in their box;
    in the system's light scheme and in its dark one, whose colours are the page's own."""
    server, data = seeded
    page.emulate_media(color_scheme=scheme)
    page.set_viewport_size({"width": 320, "height": 800})
    page.goto(f"{server.url}/ui")
    expect(page.get_by_label("Token")).to_be_visible()
    assert _axe(page) == [], "login"
    _login(page, server, data["tokens"]["auditor"])
    expect(page.get_by_role("heading", name="Overview")).to_be_focused()
    runs = data["runs"]
    routes = {"overview": "Overview", "usage": "Usage and cost",
              "usage?since=yesterday": "Usage and cost", "funnel": "Completion funnel",
              "traces": "Traces", f"traces/{data['completion']}": f"Trace {data['completion']}",
              "audit": "Audit", "store?status=all": "Function store",
              f"store/{data['snippet']}": "clamp v", "evals": "Evaluations",
              f"evals/{runs[0]}": f"Run {runs[0]}",
              f"evals/compare?a={runs[0]}&b={runs[1]}": "Compare runs",
              "traces/cmpl-no-such-trace": "Could not load"}  # fmt: skip
    for route, heading in routes.items():
        page.goto(f"{server.url}/ui#/{route}")
        expect(page.locator("main h1")).to_contain_text(heading)
        expect(page.locator("main h1")).to_be_focused()  # drawn
        if route == "overview":
            page.get_by_text("The same as a table").click()
        assert _axe(page) == [], route
    page.goto(f"{server.url}/ui#/audit")
    page.get_by_role("button", name="Verify checkpoint and record").click()
    expect(page.locator("#inclusion-verdict")).to_contain_text("is included")
    assert _axe(page) == [], "audit, verified"


def test_a_table_wider_than_the_window_is_scrolled_from_the_keyboard(
    seeded: tuple[RunningServer, dict[str, Any]], page: Page
) -> None:
    server, data = seeded
    page.set_viewport_size({"width": 320, "height": 800})
    _login(page, server, data["tokens"]["auditor"])
    page.get_by_role("link", name="Completion funnel").click()
    page.get_by_label("Group by").focus()
    page.keyboard.press("Tab")  # the next stop is the table's box, named as the table
    table = page.get_by_role("region", name="Acceptance by language")
    expect(table).to_be_focused()
    assert table.evaluate("box => getComputedStyle(box).outlineStyle") == "solid"  # seen
    page.keyboard.press("ArrowRight")
    wait_until(lambda: table.evaluate("box => box.scrollLeft") > 0, timeout=5)
    # Wide enough for the table, the box scrolls no more and is no stop.
    page.set_viewport_size({"width": 1280, "height": 800})
    expect(table).to_have_count(0)
    expect(page.locator(".table-scroll")).not_to_have_attribute("tabindex", "0")


def test_each_page_has_a_title_of_its_own(
    seeded: tuple[RunningServer, dict[str, Any]], page: Page
) -> None:
    server, data = seeded
    page.goto(f"{server.url}/ui")
    expect(page).to_have_title("Log in · tether dashboard")
    _login(page, server, data["tokens"]["viewer"])
    expect(page).to_have_title("Overview · tether dashboard")
    page.get_by_role("link", name="Usage and cost").click()
    expect(page).to_have_title("Usage and cost · tether dashboard")
    page.goto(f"{server.url}/ui#/traces/{data['completion']}")
    expect(page).to_have_title(f"Trace {data['completion']} · tether dashboard")
    page.goto(f"{server.url}/ui#/traces/cmpl-no-such-trace")
    expect(page).to_have_title("Could not load · tether dashboard")
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_title("Log in · tether dashboard")


def _luminance(colour: str) -> float:
    """WCAG's relative luminance of a computed colour, "rgb(r, g, b)": 0 black, 1 white."""
    channels = [int(c) / 255 for c in re.findall(r"\d+", colour)[:3]]
    r, g, b = (c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def _contrast(first: str, second: str) -> float:
    """WCAG's contrast ratio of two computed colours, "rgb(r, g, b)"."""
    light, dark = sorted((_luminance(first), _luminance(second)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_an_empty_field_is_seen_by_its_edge(
    seeded: tuple[RunningServer, dict[str, Any]], page: Page, scheme: Literal["light", "dark"]
) -> None:
    """A text field, a list and a box to paste into show where they are by their border:
    3:1 against the page at least (WCAG 1.4.11), light or dark."""
    server, data = seeded
    page.emulate_media(color_scheme=scheme)

    def check(label: str) -> None:
        field = page.get_by_label(label)
        edge = field.evaluate("f => getComputedStyle(f).borderTopColor")
        around = page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert _contrast(edge, around) >= 3, (label, edge, around)

    page.goto(f"{server.url}/ui")
    check("Token")
    _login(page, server, data["tokens"]["auditor"])
    for route, heading, label in (
        ("usage", "Usage and cost", "Until (empty: now; 2026-12-01)"),
        ("traces", "Traces", "Principal"),
        ("audit", "Audit", "Verifier key"),
        ("store", "Function store", "Search"),
    ):
        page.goto(f"{server.url}/ui#/{route}")
        expect(page.get_by_role("heading", name=heading)).to_be_focused()
        check(label)


def test_charts_tell_their_lines_apart_by_more_than_colour(
    seeded: tuple[RunningServer, dict[str, Any]], page: Page
) -> None:
    """Each chart's second line is dashed, and its key shows it so; "the same as a table"
    holds every line the charts draw."""
    server, data = seeded
    _login(page, server, data["tokens"]["viewer"])
    figures = page.locator("figure")
    expect(figures).to_have_count(4)
    for figure in figures.all():
        drawn = figure.locator("svg.chart path").evaluate_all(
            "lines => lines.map((l) => getComputedStyle(l).strokeDasharray)"
        )
        keys = figure.locator("figcaption line").evaluate_all(
            "lines => lines.map((l) => getComputedStyle(l).strokeDasharray)"
        )
        assert len(set(drawn)) == len(drawn) == 2 and keys == drawn, (drawn, keys)
    page.get_by_text("The same as a table").click()
    heads = page.locator("details table thead th").all_inner_texts()
    for drawn in ("requests", "errors", "prompt tokens", "completion tokens", "TTFT p50",
                  "TTFT p95", "latency p50", "latency p95"):  # fmt: skip
        assert drawn in heads, (drawn, heads)
    column = heads.index("prompt tokens") + 1
    cells = page.locator(f"details table tbody td:nth-child({column})").all_inner_texts()
    card = page.locator(".card", has_text="Prompt tokens").locator(".value").inner_text()
    assert sum(int(c.replace(",", "")) for c in cells) == int(card.replace(",", "")) > 0


def test_forced_colours_keep_charts_and_the_timeline_visible(
    seeded: tuple[RunningServer, dict[str, Any]], browser: Browser
) -> None:
    """In a contrast theme (Windows' forced colours, here a dark one) the page takes the
    reader's colours: a chart's label and lines follow them, and the trace's timeline keeps
    its stages' colours rather than go blank."""
    server, data = seeded
    context = browser.new_context(forced_colors="active", color_scheme="dark")
    page = context.new_page()
    _login(page, server, data["tokens"]["viewer"])
    expect(page.get_by_role("heading", name="Overview")).to_be_focused()
    canvas = page.evaluate("getComputedStyle(document.body).backgroundColor")
    chart = page.locator("svg.chart").first
    label = chart.locator("text").evaluate("t => getComputedStyle(t).fill")
    assert _contrast(label, canvas) >= 4.5, (label, canvas)
    for stroke in chart.locator("path").evaluate_all(
        "lines => lines.map((l) => getComputedStyle(l).stroke)"
    ):
        assert _contrast(stroke, canvas) >= 3, (stroke, canvas)
    page.goto(f"{server.url}/ui#/traces/{data['completion']}")
    expect(page.get_by_role("heading", name=f"Trace {data['completion']}")).to_be_focused()
    stages = page.locator(".timeline span").evaluate_all(
        "spans => spans.map((s) => getComputedStyle(s).backgroundColor)"
    )
    assert stages and canvas not in stages, (stages, canvas)
    context.close()


def test_a_dark_system_gets_a_dark_page_that_reads_as_well(
    seeded: tuple[RunningServer, dict[str, Any]], page: Page
) -> None:
    """With the system's dark scheme the page is dark, not white; its text, links, fields'
    edges, focus ring, charts and the trace's timeline stand out from the dark ground as
    they do from the white (4.5:1 for text, 3:1 for the rest)."""
    server, data = seeded
    page.emulate_media(color_scheme="dark")
    _login(page, server, data["tokens"]["auditor"])
    expect(page.get_by_role("heading", name="Overview")).to_be_focused()
    ground = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert _luminance(ground) < 0.05, ground  # white is 1

    def drawn(selector: str, prop: str) -> list[str]:
        found: list[str] = page.locator(selector).evaluate_all(
            f"nodes => nodes.map((n) => getComputedStyle(n).{prop})"
        )
        assert found, selector
        return found

    page.locator("#period").focus()
    seen = {
        "text": (drawn("body", "color"), 4.5),
        "muted text": (drawn(".card .muted", "color"), 4.5),
        "a chart's label": (drawn("svg.chart text", "fill"), 4.5),
        "a chart's key": (drawn("figcaption > span", "color"), 4.5),
        "a chart's line": (drawn("svg.chart path", "stroke"), 3),
        "a field's edge": (drawn("#period", "borderTopColor"), 3),
        "the focus ring": (drawn("#period", "outlineColor"), 3),
    }
    page.goto(f"{server.url}/ui#/traces/{data['completion']}")
    expect(page.get_by_role("heading", name=f"Trace {data['completion']}")).to_be_focused()
    seen["a stage of the timeline"] = (drawn(".timeline span", "backgroundColor"), 3)
    seen["a link"] = (drawn("main a[href]", "color"), 4.5)
    faint = {
        what: colour
        for what, (colours, least) in seen.items()
        for colour in colours
        if _contrast(colour, ground) < least
    }
    assert faint == {}, ground
    _shot(page, "trace-dark")


def test_a_decision_without_a_reason_marks_the_reason(
    seeded: tuple[RunningServer, dict[str, Any]], page: Page
) -> None:
    server, data = seeded
    with server.client() as client:
        code = "def unreasoned(x):\n    return x\n"
        made = client.post("/v1/snippets", json={"code": code, "language": "python"})
    _login(page, server, data["tokens"]["auditor"])
    expect(page.get_by_role("heading", name="Overview")).to_be_focused()
    page.goto(f"{server.url}/ui#/store/{made.json()['id']}")
    page.get_by_role("button", name="Reject").click()
    reason = page.get_by_label("Reason")
    expect(reason).to_be_focused()
    expect(reason).to_have_attribute("aria-invalid", "true")
    expect(reason).to_have_accessible_description("Give a reason for the decision.")
    reason.fill("a duplicate")
    expect(reason).not_to_have_attribute("aria-invalid", "true")


def test_text_follows_the_browsers_text_size(
    seeded: tuple[RunningServer, dict[str, Any]], browser: Browser, tmp_path: Path
) -> None:
    """A reader who set a larger text size in the browser gets it here too (WCAG 1.4.4)."""
    server, _ = seeded
    settings = tmp_path / "Default" / "Preferences"
    settings.parent.mkdir()
    settings.write_text('{"webkit": {"webprefs": {"default_font_size": 24}}}')
    context = browser.browser_type.launch_persistent_context(tmp_path, executable_path=CHROMIUM)
    page = context.new_page()
    page.goto(f"{server.url}/ui")
    expect(page.get_by_label("Token")).to_be_visible()
    root = page.evaluate("getComputedStyle(document.documentElement).fontSize")
    assert root == "22.5px"  # 15/16 of what the reader chose, as 15px is of 16
    context.close()


def test_a_decision_leaves_the_focus_where_it_is_read(
    seeded: tuple[RunningServer, dict[str, Any]], page: Page
) -> None:
    """The button pressed is disabled while the server decides: the focus went to the
    page's start, and a keyboard user had to find the form again."""
    server, data = seeded
    code = "def decided(x):\n    return x\n"
    with server.client() as client:
        made = client.post("/v1/snippets", json={"code": code, "language": "python"}).json()
    _login(page, server, data["tokens"]["auditor"])
    expect(page.get_by_role("heading", name="Overview")).to_be_focused()
    page.goto(f"{server.url}/ui#/store/{made['id']}")
    page.get_by_label("Reason").fill("a duplicate")
    with server.client() as client:  # a version posted meanwhile: the decision is refused
        edit = {"code": code.replace("x\n", "x + 1\n"), "language": "python"}
        assert client.post("/v1/snippets", json=edit).json()["version"] == 2
    page.get_by_role("button", name="Reject").press("Enter")
    expect(page.get_by_role("status")).to_contain_text("Refused")
    expect(page.get_by_role("button", name="Reject")).to_be_focused()
    page.reload()
    page.get_by_label("Reason").fill("a duplicate")
    page.get_by_role("button", name="Reject").press("Enter")
    expect(page.get_by_role("status")).to_contain_text("Recorded: rejected")
    expect(page.get_by_role("status")).to_be_focused()


def test_a_period_refused_marks_its_field(
    seeded: tuple[RunningServer, dict[str, Any]], page: Page
) -> None:
    server, data = seeded
    _login(page, server, data["tokens"]["viewer"])
    expect(page.get_by_role("heading", name="Overview")).to_be_focused()
    page.goto(f"{server.url}/ui#/usage?since=1d&until=yesterday")
    expect(page.get_by_role("alert").filter(has_text="until 'yesterday'")).to_be_visible()
    until = page.get_by_label("Until (empty: now; 2026-12-01)")
    expect(until).to_have_attribute("aria-invalid", "true")
    expect(until).to_have_accessible_description(re.compile("until 'yesterday' is not a time"))
    expect(page.get_by_label("Since (30d, 12h, 2026-11-01)")).not_to_have_attribute(
        "aria-invalid", "true"
    )
    page.goto(f"{server.url}/ui#/traces?since=yesterday")
    since = page.get_by_label("Since", exact=True)
    expect(since).to_have_attribute("aria-invalid", "true")
    expect(since).to_have_accessible_description(re.compile("since 'yesterday' is not a time"))


def test_keyboard_and_labels(seeded: tuple[RunningServer, dict[str, Any]], page: Page) -> None:
    server, data = seeded
    _login(page, server, data["tokens"]["auditor"])
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    page.locator(".skip").focus()  # the first stop on the page
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Usage and cost"
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Usage and cost")).to_be_focused()
    for route in ("overview", "usage", "funnel", "traces", "audit", "store", "evals"):
        page.goto(f"{server.url}/ui#/{route}")
        expect(page.locator("main h1")).to_be_focused()
        unlabelled = page.evaluate(
            """() => [...document.querySelectorAll('input, select, textarea, button, a[href]')]
                 .filter((e) => e.offsetParent !== null)
                 .filter((e) => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')
                                && !e.textContent.trim())
                 .map((e) => e.outerHTML)"""
        )
        assert unlabelled == [], route
    # The link, shown when focused, is read on a ground of its own, not over the header's.
    # Focused and read in one step: the page may still move the focus to its heading once
    # its data has come, between two steps.
    page.bring_to_front()
    ground, ink = page.locator(".skip").evaluate(
        "a => { a.focus(); const s = getComputedStyle(a); return [s.backgroundColor, s.color]; }"
    )
    assert ground != "rgba(0, 0, 0, 0)" and _contrast(ground, ink) >= 4.5, (ground, ink)
    # Skipping to the content moves the focus there and leaves the page and its filters.
    page.goto(f"{server.url}/ui#/traces?principal=coder")
    expect(page.get_by_label("Principal")).to_have_value("coder")
    history = page.evaluate("history.length")
    page.locator(".skip").focus()
    page.keyboard.press("Enter")
    expect(page.locator("main")).to_be_focused()
    assert page.evaluate("[location.hash, history.length]") == ["#/traces?principal=coder", history]
    expect(page.get_by_label("Principal")).to_have_value("coder")
    # A period chosen with the arrow keys redraws the page and leaves the focus on the
    # picker, so the next arrow goes on to the next period.
    page.goto(f"{server.url}/ui#/overview")
    # Drawn first: on a busy machine the last page's picker was still there to focus.
    expect(page.get_by_role("heading", name="Overview")).to_be_focused()
    page.locator("#period").focus()
    page.keyboard.press("ArrowDown")
    expect(page).to_have_url(re.compile(r"period=7d"))
    expect(page.locator("#period")).to_be_focused()
    page.keyboard.press("ArrowDown")
    expect(page).to_have_url(re.compile(r"period=30d"))


def test_the_dashboard_and_the_api_docs_work_under_a_proxys_path(
    seeded: tuple[RunningServer, dict[str, Any]], page: Page
) -> None:
    """Behind `location /tether/ { proxy_pass http://tether/; }` the page asked for
    /ui/static/app.js and /v1/dashboard/..., and /docs for /openapi.json, all of them the
    proxy's and not tether's: a blank page each."""
    server, data = seeded
    proxy = "http://proxy.test/tether"
    elsewhere: list[str] = []

    def pass_on(route: Route) -> None:  # what the proxy does: /tether/x is tether's /x
        url = route.request.url
        if url.startswith(f"{proxy}/"):
            route.fulfill(response=route.fetch(url=server.url + url.removeprefix(proxy)))
        else:
            elsewhere.append(url)
            route.fulfill(status=404, content_type="text/html", body="<h1>not here</h1>")

    page.route("http://proxy.test/**", pass_on)
    for entry in ("/ui", "/ui/"):
        page.goto(f"{proxy}{entry}")
        page.get_by_label("Token").fill(data["tokens"]["viewer"])
        page.get_by_role("button", name="Log in").click()
        expect(page.get_by_role("heading", name="Overview")).to_be_visible()
        expect(page.locator(".card", has_text="Engine")).to_contain_text("ready")
        page.get_by_role("link", name="Audit").click()
        expect(page.get_by_role("heading", name="Audit")).to_be_visible()
        page.get_by_role("button", name="Log out").click()
        expect(page.get_by_text("Logged out.")).to_be_visible()
    page.goto(f"{proxy}/docs")
    health = page.locator(".opblock-summary", has_text="/healthz").first
    health.click()
    page.get_by_role("button", name="Try it out").click()
    page.get_by_role("button", name="Execute").click()
    expect(page.locator(".request-url").first).to_contain_text(f"{proxy}/healthz")
    expect(page.locator(".live-responses-table tr.response .response-col_status")).to_have_text(
        "200"
    )
    assert elsewhere == []
    assert page.problems == []  # type: ignore[attr-defined]


def test_a_server_that_goes_away_gets_a_message_not_a_blank_page(
    tmp_path: Path, browser: Browser
) -> None:
    with tether_server(tmp_path) as server:
        with server.client() as client:
            token = _token(client, "viewer", ["dashboard"])
        context = browser.new_context()
        page = context.new_page()
        _login(page, server, token)
        expect(page.get_by_role("heading", name="Overview")).to_be_visible()
        server.process.terminate()
        wait_until(lambda: server.process.poll() is not None)
    page.get_by_role("link", name="Traces").click()
    expect(page.locator("#banner")).to_contain_text("The server did not answer")
    expect(page.locator("main")).to_contain_text("Could not load")
    _shot(page, "server-gone")
    context.close()


def test_long_names_and_narrow_windows_do_not_widen_the_page(
    tmp_path: Path, browser: Browser
) -> None:
    """A 200-character principal or function name wraps, and a table too wide for a phone
    scrolls in its own box: the page itself never scrolls sideways."""
    with tether_server(tmp_path) as server:
        with server.client() as client:
            token = _token(client, "p" * 200, ["dashboard", "completions", "store:read"])
            done = client.post("/v1/completions", headers={"Authorization": f"Bearer {token}"},
                               json={"prompt": "x = ", "max_tokens": 2})  # fmt: skip
            code = f"def {'f' * 200}(x):\n    return x\n"
            snippet = client.post("/v1/snippets", json={"code": code, "language": "python"})
        routes = {"overview": "Overview", "usage": "Usage and cost",
                  "funnel?by=principal": "Completion funnel", "traces": "Traces",
                  "audit": "Audit", f"traces/{done.json()['id']}": f"Trace {done.json()['id']}",
                  "store?status=all": "Function store",
                  f"store/{snippet.json()['id']}": f"{'f' * 200} v1"}  # fmt: skip
        for width in (1280, 375):
            context = browser.new_context(viewport={"width": width, "height": 800})
            page = context.new_page()
            _login(page, server, token)
            expect(page.get_by_role("heading", name="Overview")).to_be_visible()
            for route, heading in routes.items():
                page.goto(f"{server.url}/ui#/{route}")
                expect(page.locator("main h1")).to_have_text(heading)
                expect(page.locator("main")).not_to_have_attribute("aria-busy", "true")
                wide = page.evaluate("document.documentElement.scrollWidth")
                assert wide <= width, (route, width, wide)
            context.close()


def test_markup_in_a_prompt_is_shown_as_text_never_run(
    seeded: tuple[RunningServer, dict[str, Any]], page: Page
) -> None:
    server, data = seeded
    markup = '<img src=x onerror="window.pwned = 1"><script>window.pwned = 2</script>'
    with server.client() as client:
        done = client.post("/v1/completions", json={"prompt": markup, "max_tokens": 2})
    _login(page, server, data["tokens"]["auditor"])
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    page.goto(f"{server.url}/ui#/traces/{done.json()['id']}")
    expect(page.locator("pre").first).to_contain_text("window.pwned = 1")
    assert page.evaluate("window.pwned") is None
    assert page.locator("main img").count() == 0
