"""Plugins: loaded only when enabled, and every hook reaches the request path."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import AsyncGenerator, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, WebSocket
from fastapi.testclient import TestClient

from tests.conftest import TOKEN, make_settings
from tether.engines.base import EngineInfo, EngineStats, GenerationChunk, GenerationRequest
from tether.engines.llamacpp import LlamaCppEngine
from tether.engines.registry import build_engine
from tether.errors import ConfigError
from tether.findings import Finding
from tether.hookspecs import hookimpl
from tether.models import default_model_path
from tether.pipeline.fim import ContextSnippet
from tether.pipeline.reviews import CompletionReview, PromptReview
from tether.plugins import build_manager, hooks_reference, register_plugins
from tether.server.app import build_app
from tether.settings import Settings, load_settings

DOCS = Path(__file__).parents[2] / "docs" / "plugins.md"


class RecordingEngine:
    """The real engine, with every prompt it is given kept for the test to read."""

    def __init__(self, inner: LlamaCppEngine) -> None:
        self.inner = inner
        self.prompts: list[str] = []
        self.stops: list[tuple[str, ...]] = []

    def info(self) -> EngineInfo:
        return self.inner.info()

    def tokenize(self, text: str) -> list[int]:
        return self.inner.tokenize(text)

    def generate(self, request: GenerationRequest) -> AsyncGenerator[GenerationChunk, None]:
        self.prompts.append(request.prompt or "")
        self.stops.append(request.params.stop)
        return self.inner.generate(request)

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    async def health(self) -> bool:
        return await self.inner.health()

    def stats(self) -> EngineStats:
        return self.inner.stats()

    async def close(self) -> None:
        await self.inner.close()


@pytest.fixture(scope="module")
def recorded(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[TestClient, RecordingEngine]]:
    settings = make_settings(tmp_path_factory.mktemp("plugins"), TETHER_PLUGINS_ENABLED="example")
    engine = RecordingEngine(
        LlamaCppEngine(settings.engine, default_model_path(), settings.data.home / "cache")
    )
    with TestClient(build_app(settings, TOKEN, lambda: engine)) as client:
        client.headers["Authorization"] = f"Bearer {TOKEN}"
        yield client, engine


def test_hook_docs_are_generated_from_code() -> None:
    reference = hooks_reference()
    for hook in (
        "register_engines",
        "govern_prompt",
        "compress_context",
        "check_completion",
        "register_commands",
        "register_routes",
    ):
        assert f"`{hook}(" in reference
    assert DOCS.read_text() == reference, "run: python -m tether.plugins > docs/plugins.md"


def test_installed_plugins_load_only_when_enabled() -> None:
    def settings(enabled: str) -> Settings:
        return load_settings(environ={"TETHER_PLUGINS_ENABLED": enabled})

    assert build_manager(settings("")).get_plugin("example") is None
    assert build_manager(settings("example")).get_plugin("example") is not None
    with pytest.raises(ConfigError, match="not installed"):
        build_manager(settings("no-such-plugin"))


def test_prompt_rewritten_before_the_engine_sees_it(
    recorded: tuple[TestClient, RecordingEngine],
) -> None:
    client, engine = recorded
    prompt = "# deploy to build-01.corp.example\ndef deploy():\n"
    response = client.post("/v1/completions", json={"prompt": prompt, "max_tokens": 4})
    assert response.status_code == 200
    assert "corp.example" not in engine.prompts[-1]
    assert "[REDACTED:example/internal-host]" in engine.prompts[-1]
    findings = response.json()["tether"]["findings"]
    assert findings[0]["rule_id"] == "example/internal-host" and "corp.example" not in str(findings)


def test_block_names_the_rule_and_place(recorded: tuple[TestClient, RecordingEngine]) -> None:
    client, engine = recorded
    before = len(engine.prompts)
    response = client.post(
        "/v1/chat/completions",
        json={
            "messages": [
                {"role": "user", "content": "hi"},
                {"role": "user", "content": "x\n NIGHTJAR"},
            ]
        },
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "policy_blocked"
    assert "example/code-name in messages[1] at line 2, column 2" in error["message"]
    assert len(engine.prompts) == before  # nothing reached the engine


def test_completion_check_and_route(tmp_path: Path) -> None:
    from tests.helpers import ScriptedEngine

    answer = "    greeting = f'hi {name}'\n    print(greeting)\n"
    settings = make_settings(tmp_path, TETHER_PLUGINS_ENABLED="example")
    with TestClient(build_app(settings, TOKEN, lambda: ScriptedEngine(answer))) as client:
        client.headers["Authorization"] = f"Bearer {TOKEN}"
        body = client.post("/v1/completions", json={"prompt": "def greet(name):\n"}).json()
        flagged = [f for f in body["tether"]["findings"] if f["rule_id"] == "example/print"]
        assert [(f["line"], f["column"]) for f in flagged] == [(2, 5)]
        assert body["choices"][0]["text"] == answer  # an annotate rule leaves the answer be
        # A file sent to be checked meets the same rules as an answer.
        checked = client.post("/v1/check", json={"code": answer, "path": "greet.py"}).json()
        flagged = [f for f in checked["findings"] if f["rule_id"] == "example/print"]
        assert [(f["line"], f["column"]) for f in flagged] == [(2, 5)]
        assert client.get("/example/rules").json()["example/print"]
        anonymous = client.get("/example/rules", headers={"Authorization": ""})
        assert anonymous.status_code == 401  # the route asks for a token, as documented


def test_plugin_command(tmp_path: Path) -> None:
    env = {"TETHER_PLUGINS_ENABLED": "example", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    run = subprocess.run(
        [sys.executable, "-m", "tether", "example-rules"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert "example/code-name" in run.stdout
    plain = subprocess.run(
        [sys.executable, "-m", "tether", "example-rules"],
        env={**env, "TETHER_PLUGINS_ENABLED": ""},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert plain.returncode != 0


def test_house_rules_reach_the_model(
    tmp_path: Path, recorded: tuple[TestClient, RecordingEngine]
) -> None:
    from tether.engines.base import SamplingParams
    from tether.pipeline import ChatTask, Pipeline
    from tether.plugins import build_manager

    _, engine = recorded
    (tmp_path / "chat.j2").write_text("House rule: name tests test_<behaviour>.")
    settings = make_settings(tmp_path, TETHER_TEMPLATES_DIR=str(tmp_path))
    pipeline = Pipeline(engine, settings, build_manager(settings))
    task = ChatTask(SamplingParams(max_tokens=4), [{"role": "user", "content": "hi"}])
    prepared = pipeline.prepare(task)
    assert "House rule: name tests test_<behaviour>." in (prepared.generation.prompt or "")


class _Misspelt:
    @hookimpl
    def govern_promt(self, review: Any) -> None:  # not a hook: it would never run
        raise AssertionError


class _ExtraArgument:
    @hookimpl
    def govern_prompt(self, review: Any, strictness: int) -> None:
        raise AssertionError


class _Crashing:
    @hookimpl
    def register_routes(self, app: Any) -> None:
        raise RuntimeError("no database")

    @hookimpl
    def register_engines(self, register: Any) -> None:
        register("fragile", self._start)

    def _start(self, settings: Settings) -> Any:
        raise RuntimeError("no GPU here")


@pytest.mark.parametrize(
    ("plugins", "says"),
    [
        ([("typo", _Misspelt())], "plugin 'typo' implements a hook tether does not have"),
        ([("strict", _ExtraArgument())], "plugin 'strict' does not fit tether's hooks"),
        ([("a", _Crashing()), ("a", _Crashing())], "plugin 'a' cannot be registered"),
        ([("tether.policy", _Crashing())], "is named as a built-in"),
        ([("tether.mine", _Crashing())], "is named as a built-in"),
    ],
)
def test_a_plugin_that_cannot_be_registered_is_named(
    plugins: list[tuple[str, Any]], says: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(says)):
        register_plugins(build_manager(load_settings(environ={})), plugins)


def test_a_plugin_that_fails_as_tether_starts_is_named(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    manager = build_manager(settings)
    register_plugins(manager, [("crashing", _Crashing())])
    with pytest.raises(ConfigError, match="plugin 'crashing' failed to add its routes: Runt"):
        build_app(settings, TOKEN, lambda: None, manager)  # type: ignore[arg-type, return-value]
    fragile = make_settings(tmp_path, TETHER_ENGINE_KIND="fragile")
    with pytest.raises(ConfigError, match=r"the 'fragile' engine failed to start: .*no GPU here"):
        build_engine(fragile, manager)


def test_a_built_in_engine_that_fails_to_start_blames_no_plugin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tether.default_plugins import engines

    def failing(path: Any) -> Any:
        raise OSError(24, "Too many open files")

    monkeypatch.setattr(engines, "resolve_model_path", failing)
    settings = make_settings(tmp_path)
    with pytest.raises(ConfigError, match="the 'llamacpp' engine failed to start") as refused:
        build_engine(settings, build_manager(settings))
    assert "tether doctor" in refused.value.message and "plugin" not in refused.value.message


class _Blocking:
    @hookimpl
    def check_completion(self, review: CompletionReview) -> None:
        review.findings.append(Finding("house/no-todo", "a TODO", "compliance", "block"))


def test_a_plugin_s_block_finding_on_an_answer_blocks_it(tmp_path: Path) -> None:
    from tests.helpers import ScriptedEngine

    settings = make_settings(tmp_path)
    manager = build_manager(settings)
    register_plugins(manager, [("blocking", _Blocking())])
    engine = ScriptedEngine("x = 1  # TODO\n")
    with TestClient(build_app(settings, TOKEN, lambda: engine, manager)) as client:
        client.headers["Authorization"] = f"Bearer {TOKEN}"
        body = client.post("/v1/completions", json={"prompt": "y = 2\n"}).json()
    assert body["choices"][0]["text"] == ""
    assert body["choices"][0]["finish_reason"] == "content_filter"


def test_a_finding_with_an_action_tether_does_not_know_is_refused() -> None:
    with pytest.raises(ValueError, match=r"action is one of block, .*not 'BLOCK'"):
        Finding("house/x", "x", "compliance", "BLOCK")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="line is a whole number"):
        Finding("house/x", "x", "compliance", "block", line="3")  # type: ignore[arg-type]


AWS = "AKIA" + "Z7QX4M2P9LKD3VHT"


class _Summarising:
    """A compressor that writes context of its own: here, a file's secret."""

    def __init__(self, returns: Any = None) -> None:
        self.returns = returns

    @hookimpl
    def compress_context(self, snippets: list[Any], budget_tokens: int) -> Any:
        if self.returns is not None:
            return self.returns
        renamed = [ContextSnippet(s.text, filename=f"{AWS}.py") for s in snippets]
        written = ContextSnippet(text=f"KEY = '{AWS}'\nOWNER = 'bob@example.org'\n")
        return [*renamed, written]


def test_context_a_plugin_writes_is_governed_before_the_model_reads_it(tmp_path: Path) -> None:
    from tests.helpers import ScriptedEngine

    settings = make_settings(tmp_path)
    body = {"input_prefix": "# ann@example.com\ndef f():\n    ", "input_suffix": "\n",
            "input_extra": [{"filename": "a.py", "text": "def g():\n    return 1\n"}]}  # fmt: skip
    huge = [ContextSnippet(text="x = 1\n" * 20_000, filename="big.py")]
    for returns, status in ((None, 200), ("not a list", 500), (huge, 500)):
        manager = build_manager(settings)
        register_plugins(manager, [("summarising", _Summarising(returns))])
        engine = ScriptedEngine("return 2")
        app = build_app(settings, TOKEN, lambda engine=engine: engine, manager)  # type: ignore[misc]
        with TestClient(app) as client:
            client.headers["Authorization"] = f"Bearer {TOKEN}"
            answer = client.post("/infill", json=body)
        assert answer.status_code == status, answer.text
        if status == 200:
            (request,) = engine.requests
            prompt = request.prompt or ""
            assert AWS not in prompt and "[REDACTED:" in prompt  # in texts and file names
            assert "def g()" in prompt  # what the client sent is kept
            # Each address has a pseudonym of its own, so each comes back as it was.
            assert "example.com" not in prompt and "example.org" not in prompt
            assert "<EMAIL_1>" in prompt and "<EMAIL_2>" in prompt
        else:
            said = answer.json()["error"]["message"]
            assert "compress_context plugin returned" in said  # not "shorten the prompt"
            assert "str" in said or "tokens of context for a budget of" in said


class _Wrapping:
    def __init__(self) -> None:
        self.calls: list[str] = []

    @hookimpl(wrapper=True)
    def register_engines(self, register: Any) -> Any:
        self.calls.append("before")
        result = yield
        self.calls.append("after")
        return result


def test_a_wrapper_of_a_start_hook_runs_around_the_others() -> None:
    from tether.engines.registry import engine_kinds

    manager = build_manager(load_settings(environ={}))
    wrapping = _Wrapping()
    register_plugins(manager, [("wrapping", wrapping)])
    assert {"llamacpp", "openai"} <= set(engine_kinds(manager))
    assert wrapping.calls == ["before", "after"]


class _FailingCheck:
    @hookimpl
    def check_completion(self, review: CompletionReview) -> None:
        raise RuntimeError("the licence database is gone")


def test_an_answer_whose_check_fails_is_recorded_as_failed(tmp_path: Path) -> None:
    import json

    from tests.helpers import ScriptedEngine, audit_records
    from tether.usage.reader import LedgerReader

    settings = make_settings(tmp_path)
    manager = build_manager(settings)
    register_plugins(manager, [("failing", _FailingCheck())])
    engine = ScriptedEngine("x = 1\ny = 2\n")
    with TestClient(build_app(settings, TOKEN, lambda: engine, manager)) as client:
        client.headers["Authorization"] = f"Bearer {TOKEN}"
        streamed = client.post("/v1/completions", json={"prompt": "z = 0\n", "stream": True})
        assert streamed.status_code == 200  # the text went out before the check
        events = [json.loads(x[6:]) for x in streamed.text.splitlines() if x.startswith("data: {")]
        assert "error" in events[-1]
        (record,) = [r for r in audit_records(client.app) if r["endpoint"] == "/v1/completions"]
        assert record["params"]["finish_reason"] == "error" and record["completion"] is not None
        ledger = client.app.state.usage_ledger  # type: ignore[attr-defined]
        ledger.flush()
        with LedgerReader(ledger.ledger.path) as reader:
            (total,) = reader.totals(0, 4e9, None)
    assert total.errors == 1 and total.completion_tokens > 0


def test_a_plugin_that_replaces_a_built_in_command_is_announced(tmp_path: Path) -> None:
    plugins = tmp_path / "plugins"
    (plugins / "clash_plugin-0.1.dist-info").mkdir(parents=True)
    (plugins / "clash_plugin-0.1.dist-info" / "entry_points.txt").write_text(
        "[tether]\nclash = clash_plugin\n"
    )
    (plugins / "clash_plugin-0.1.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: clash-plugin\nVersion: 0.1\n"
    )
    (plugins / "clash_plugin.py").write_text(
        "import click\nfrom tether import hookimpl\n\n"
        "@hookimpl\ndef register_commands(cli):\n"
        "    @cli.command('config')\n    def config():\n        click.echo('mine')\n"
    )
    env = {"TETHER_PLUGINS_ENABLED": "clash", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
           "PYTHONPATH": str(plugins)}  # fmt: skip
    run = subprocess.run([sys.executable, "-m", "tether", "config"], env=env,
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert run.returncode == 0 and run.stdout == "mine\n", run.stderr
    assert "warning: a plugin replaces the built-in command `tether config`" in run.stderr


class _ScopedRoute:
    @hookimpl
    def register_routes(self, app: FastAPI) -> None:
        from fastapi import Depends

        from tether import require

        @app.get("/house/rules", dependencies=[Depends(require("house:read"))])
        def rules() -> dict[str, str]:
            return {}


def test_a_route_asking_for_a_scope_no_token_holds_is_refused_at_start(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    manager = build_manager(settings)
    register_plugins(manager, [("scoped", _ScopedRoute())])
    with pytest.raises(ConfigError, match="'house:read' is not a scope tether issues"):
        build_app(settings, TOKEN, lambda: None, manager)  # type: ignore[arg-type, return-value]


class _Route:
    """A route of a plugin's own at ``path``, put before tether's when ``first``."""

    def __init__(self, path: str, method: str = "GET", first: bool = False) -> None:
        self.path, self.method, self.first = path, method, first

    @hookimpl
    def register_routes(self, app: FastAPI) -> None:
        app.add_api_route(self.path, lambda: {"mine": True}, methods=[self.method])
        if self.first:
            app.router.routes.insert(0, app.router.routes.pop())


@pytest.mark.parametrize(
    ("route", "said"),
    [
        (_Route("/health"), "GET /health"),  # appended: it would never be called
        (_Route("/v1/models", first=True), "GET /v1/models"),  # first: it takes tether's place
        (_Route("/v1/tokens/{name}", "DELETE"), "DELETE /v1/tokens/{name}"),
        (_Route("/mcp", "POST"), "POST /mcp"),
        (_Route("/openapi.json"), "GET /openapi.json"),
    ],
)
def test_a_plugin_route_on_a_path_of_tether_s_own_is_refused_at_start(
    tmp_path: Path, route: _Route, said: str
) -> None:
    settings = make_settings(tmp_path)
    manager = build_manager(settings)
    register_plugins(manager, [("clashing", route)])
    with pytest.raises(ConfigError, match="a plugin adds routes on tether's own paths") as refused:
        build_app(settings, TOKEN, lambda: None, manager)  # type: ignore[arg-type, return-value]
    assert said in refused.value.message and "paths of their own" in refused.value.message


def test_a_plugin_route_on_a_method_tether_does_not_serve_there_is_served(tmp_path: Path) -> None:
    from tests.helpers import ScriptedEngine

    settings = make_settings(tmp_path)
    manager = build_manager(settings)
    register_plugins(manager, [("house", _Route("/health", "POST")), ("more", _Route("/house"))])
    with TestClient(build_app(settings, TOKEN, lambda: ScriptedEngine("x"), manager)) as client:
        assert client.post("/health").json() == {"mine": True}
        assert client.get("/house").json() == {"mine": True}
        assert "mine" not in client.get("/health").json()  # tether's, as before


class _Socket:
    """A websocket of a plugin's own on a path where tether serves HTTP only."""

    @hookimpl
    def register_routes(self, app: FastAPI) -> None:
        @app.websocket("/v1/chat/completions")
        async def live(websocket: WebSocket) -> None:
            await websocket.accept()
            await websocket.send_text("mine")
            await websocket.close()


def test_a_plugin_websocket_on_a_path_tether_serves_over_http_is_served(
    tmp_path: Path,
) -> None:
    from tests.helpers import ScriptedEngine

    settings = make_settings(tmp_path)
    manager = build_manager(settings)
    register_plugins(manager, [("live", _Socket())])
    with TestClient(build_app(settings, TOKEN, lambda: ScriptedEngine("x"), manager)) as client:
        with client.websocket_connect("/v1/chat/completions") as socket:
            assert socket.receive_text() == "mine"
        answer = client.post(
            "/v1/chat/completions",
            json={"messages": [{"role": "user", "content": "hi"}]},
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        assert answer.json()["object"] == "chat.completion"  # tether's, as before


_HOUSE_ENGINE: Any = LlamaCppEngine


class _Engines:
    """Registers an engine kind of its own and one of tether's."""

    @hookimpl
    def register_engines(self, register: Any) -> None:
        register("house", _HOUSE_ENGINE)
        register("openai", _HOUSE_ENGINE)


def test_a_plugin_that_replaces_a_built_in_engine_kind_is_announced(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from tether.engines.registry import engine_kinds

    manager = build_manager(load_settings(environ={}))
    register_plugins(manager, [("engines", _Engines())])
    with caplog.at_level("WARNING", logger="tether.engines.registry"):
        kinds = engine_kinds(manager)
    assert kinds["openai"] is _HOUSE_ENGINE and kinds["house"] is _HOUSE_ENGINE
    (warned,) = [r.getMessage() for r in caplog.records]
    assert "engine kind 'openai' is registered twice" in warned
    assert "tether.engines.llamacpp's is used, tether.default_plugins.engines's is not" in warned


class _Raising:
    def __init__(self, error: BaseException) -> None:
        self.error = error

    @hookimpl
    def govern_prompt(self, review: PromptReview) -> None:
        raise self.error


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError("the rules service is down: token s3cr3t"),
        SystemExit("s3cr3t"),
        KeyboardInterrupt("s3cr3t"),  # in a server's thread, no Ctrl-C: the plugin's own
    ],
)
def test_a_plugin_that_fails_on_a_request_is_named_not_its_message(
    tmp_path: Path, error: BaseException
) -> None:
    from tests.helpers import ScriptedEngine

    settings = make_settings(tmp_path)
    manager = build_manager(settings)
    register_plugins(manager, [("house-rules", _Raising(error))])
    with TestClient(build_app(settings, TOKEN, lambda: ScriptedEngine("x"), manager)) as client:
        client.headers["Authorization"] = f"Bearer {TOKEN}"
        failed = client.post("/v1/completions", json={"prompt": "y = 1\n"})
        assert client.get("/health").status_code == 200  # it serves on
    error_body = failed.json()["error"]
    assert failed.status_code == 500 and error_body["code"] == "plugin_failed"
    said = f"plugin 'house-rules' failed in govern_prompt ({type(error).__name__})"
    assert said in error_body["message"]
    logged = "its traceback is logged (a server's log, a command's standard error)"
    assert logged in error_body["message"]
    assert "s3cr3t" not in failed.text  # the plugin's message stays in the server log


def test_a_name_two_installed_packages_give_a_plugin_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import importlib.metadata

    offered = importlib.metadata.EntryPoints(
        [
            importlib.metadata.EntryPoint("rules", "acme_rules", "tether"),
            importlib.metadata.EntryPoint("rules", "other_rules:Plugin", "tether"),
        ]
    )
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: offered)
    settings = load_settings(environ={"TETHER_PLUGINS_ENABLED": "rules"})
    with pytest.raises(ConfigError, match="plugin 'rules' is offered by 2 installed") as refused:
        build_manager(settings)
    assert "acme_rules" in refused.value.message and "other_rules:Plugin" in refused.value.message


class _Breaking:
    """A plugin that leaves its review in a shape tether cannot read."""

    def __init__(self, how: str) -> None:
        self.how = how

    @hookimpl
    def govern_prompt(self, review: PromptReview) -> None:
        if self.how == "text":
            review.parts["prompt"] = 42  # type: ignore[assignment]
        elif self.how == "dropped":
            review.parts.clear()
        elif self.how == "finding":
            review.findings.append({"rule_id": "house/x", "action": "block"})  # type: ignore[arg-type]

    @hookimpl
    def check_completion(self, review: CompletionReview) -> None:
        if self.how == "answer":
            review.findings.append("a bare message")  # type: ignore[arg-type]
        elif self.how == "blocked":
            review.blocked = True


@pytest.mark.parametrize(
    ("how", "says"),
    [
        ("text", "in govern_prompt: review.parts['prompt'] is int, not text"),
        ("dropped", "in govern_prompt: review.parts keeps the names it was given"),
        ("finding", "in govern_prompt: review.findings holds a dict, not a tether.Finding"),
        ("answer", "in check_completion: review.findings holds a str, not a tether.Finding"),
        ("blocked", "in check_completion: review.blocked is set with no finding whose action"),
    ],
)
def test_a_plugin_that_breaks_its_review_is_named(tmp_path: Path, how: str, says: str) -> None:
    from tests.helpers import ScriptedEngine

    settings = make_settings(tmp_path)
    manager = build_manager(settings)
    register_plugins(manager, [("house-rules", _Breaking(how))])
    with TestClient(build_app(settings, TOKEN, lambda: ScriptedEngine("x"), manager)) as client:
        client.headers["Authorization"] = f"Bearer {TOKEN}"
        failed = client.post("/v1/completions", json={"prompt": "y = 1\n"})
    error = failed.json()["error"]
    assert failed.status_code == 500 and error["code"] == "plugin_failed", failed.text
    assert f"plugin 'house-rules' broke its review {says}" in error["message"]


def test_a_compressor_that_answers_other_than_snippets_is_named(tmp_path: Path) -> None:
    from tests.helpers import ScriptedEngine

    settings = make_settings(tmp_path)
    manager = build_manager(settings)
    register_plugins(manager, [("summarising", _Summarising({"a.py": "def g(): ..."}))])
    body = {"input_prefix": "def f():\n    ", "input_extra": [{"filename": "a.py", "text": "x\n"}]}
    with TestClient(build_app(settings, TOKEN, lambda: ScriptedEngine("x"), manager)) as client:
        client.headers["Authorization"] = f"Bearer {TOKEN}"
        failed = client.post("/infill", json=body)
    error = failed.json()["error"]
    assert failed.status_code == 500 and error["code"] == "plugin_failed", failed.text
    assert "compress_context plugin returned dict, not a list" in error["message"]
    assert "plugin 'summarising'" in error["message"]


class _Files:
    """A plugin's route with a parameter that takes slashes, beside one without."""

    @hookimpl
    def register_routes(self, app: FastAPI) -> None:
        app.add_api_route("/plugins/acme/admin", lambda: {"mine": True}, methods=["GET"])
        app.add_api_route("/plugins/acme/files/{name:path}", lambda name: {"name": name})


@pytest.mark.parametrize(
    ("path", "served"),
    [
        ("/plugins/acme/admin", {"mine": True}),
        ("/plugins%2Facme%2Fadmin", None),
        ("/plugins/acme%2fadmin", None),
        ("/plugins/acme%2Ffiles/a", None),
        ("/plugins/acme/files/a%2Fb", {"name": "a/b"}),
    ],
)
def test_an_encoded_slash_is_no_step_of_a_plugin_route_s_path(
    tmp_path: Path, path: str, served: dict[str, Any] | None
) -> None:
    """As of tether's own routes: a proxy's rule on /plugins/acme/admin does not take
    /plugins%2Facme%2Fadmin for it, which the plugin's route served."""
    from tests.helpers import ScriptedEngine

    settings = make_settings(tmp_path)
    manager = build_manager(settings)
    register_plugins(manager, [("acme", _Files())])
    with TestClient(build_app(settings, TOKEN, lambda: ScriptedEngine("x"), manager)) as client:
        answer = client.get(path)
    if served is None:
        assert answer.status_code == 404 and "%2F" in answer.json()["error"]["message"], answer.text
    else:
        assert answer.status_code == 200 and answer.json() == served, answer.text
