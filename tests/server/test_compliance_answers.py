"""What the compliance checks do to answers: annotate, redact, block, in every API shape."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.conftest import TOKEN, make_settings
from tests.helpers import ScriptedEngine
from tether.server.app import build_app

ANSWER = "value = eval(user_input)\nreturn value\n"


def client_for(tmp_path: Path, answer: str, **env: str) -> TestClient:
    settings = make_settings(tmp_path, **env)
    client = TestClient(build_app(settings, TOKEN, lambda: ScriptedEngine(answer)))
    client.headers["Authorization"] = f"Bearer {TOKEN}"
    return client


def test_annotate_by_default(tmp_path: Path) -> None:
    with client_for(tmp_path, ANSWER) as client:
        body = client.post("/v1/completions", json={"prompt": "def run(user_input):\n    "}).json()
    assert body["choices"][0]["text"] == ANSWER
    rules = [f["rule_id"] for f in body["tether"]["findings"]]
    assert "security/eval" in rules


def test_redact_turns_the_line_into_a_comment(tmp_path: Path) -> None:
    actions = json.dumps({"security/eval": "redact"})
    with client_for(tmp_path, ANSWER, TETHER_COMPLIANCE_ACTIONS=actions) as client:
        body = client.post("/v1/completions", json={"prompt": "def run(user_input):\n    "}).json()
    text = body["choices"][0]["text"]
    assert "eval(" not in text and "[REDACTED:security/eval]" in text
    assert text.endswith("return value\n")


def test_block_withholds_the_answer(tmp_path: Path) -> None:
    actions = json.dumps({"security/eval": "block"})
    with client_for(tmp_path, ANSWER, TETHER_COMPLIANCE_ACTIONS=actions) as client:
        plain = client.post("/v1/completions", json={"prompt": "def run(user_input):\n    "}).json()
        assert plain["choices"][0]["text"] == ""
        assert plain["choices"][0]["finish_reason"] == "content_filter"
        streamed = client.post(
            "/v1/completions", json={"prompt": "def run(user_input):\n    ", "stream": True}
        )
        events = [json.loads(x[6:]) for x in streamed.text.splitlines() if x.startswith("data: {")]
        assert events[-1]["choices"][0]["finish_reason"] == "content_filter"
        assert any(f["rule_id"] == "security/eval" for f in events[-1]["tether"]["findings"])
        # Held until checked: not one piece of the blocked answer went out.
        assert "".join(e["choices"][0]["text"] for e in events) == ""
        # llama.cpp's and Tabby's shapes have no such reason: tether's own fields say it.
        fim = {"input_prefix": "def run(user_input):\n    ", "input_suffix": "\n"}
        tabby = {"language": "python", "segments": {"prefix": "def run(user_input):\n    "}}
        for path, body in (("/completion", {"prompt": "def run(user_input):\n    "}),
                           ("/infill", fim), ("/tabby/v1/completions", tabby)):  # fmt: skip
            answer = client.post(path, json=body).json()
            assert answer["tether"]["finish_reason"] == "content_filter", path


@pytest.mark.parametrize("path", ["/v1/completions", "/completion"])
def test_a_stream_is_held_until_checked_when_a_rule_redacts(tmp_path: Path, path: str) -> None:
    actions = json.dumps({"security/eval": "redact"})
    body = {"prompt": "def run(user_input):\n    ", "stream": True}
    with client_for(tmp_path, ANSWER, TETHER_COMPLIANCE_ACTIONS=actions) as client:
        streamed = client.post(path, json=body)
        plain = client.post(path, json={**body, "stream": False}).json()
    events = [json.loads(x[6:]) for x in streamed.text.splitlines() if x.startswith("data: {")]
    pieces = [e["choices"][0]["text"] if "choices" in e else e["content"] for e in events]
    text = "".join(pieces)
    assert "eval(" not in text and "[REDACTED:security/eval]" in text
    assert text == (plain["choices"][0]["text"] if "choices" in plain else plain["content"])


KEY = "AKIAQ3EGRT5JX7ZLK2MB"


@pytest.mark.parametrize("path", ["/v1/completions", "/v1/chat/completions"])
def test_a_live_stream_never_sends_a_secret_it_redacts(tmp_path: Path, path: str) -> None:
    code = f"import boto3\nclient = boto3.client(\n    id='{KEY}',\n)\nprint(client)\n"
    answer = f"```python\n{code}```\n" if "chat" in path else code
    body: dict[str, object] = {"stream": True}
    if "chat" in path:
        body["messages"] = [{"role": "user", "content": "connect to S3"}]
    else:
        body["prompt"] = "# connect to S3\n"
    with client_for(tmp_path, answer) as client:
        streamed = client.post(path, json=body)
        plain = client.post(path, json={**body, "stream": False}).json()
    events = [json.loads(x[6:]) for x in streamed.text.splitlines() if x.startswith("data: {")]
    pieces = [
        (c.get("delta") or {}).get("content") or c.get("text") or ""
        for e in events
        for c in e.get("choices", [])
    ]
    assert not any(KEY[:8] in piece for piece in pieces)
    assert len([p for p in pieces if p]) > 2  # still live up to the secret
    choice = plain["choices"][0]
    kept = choice["message"]["content"] if "message" in choice else choice["text"]
    # The line's start went out before the key began; the redaction follows on its own line.
    redacted = "    # [REDACTED:secrets/aws-access-key-id]"
    assert "".join(pieces) == kept.replace(redacted, "    id='\n" + redacted)


def test_a_blocked_suggestion_is_no_patch(tmp_path: Path) -> None:
    """A blocked answer is empty: as the file, it would delete every line."""
    actions = json.dumps({"security/eval": "block"})
    source = "def run(user_input):\n    return user_input\n"
    with client_for(
        tmp_path, f"```python\n{ANSWER}```\n", TETHER_COMPLIANCE_ACTIONS=actions
    ) as client:
        body = {"path": "run.py", "source": source, "instruction": "evaluate it"}
        answer = client.post("/v1/suggestions", json=body).json()
    assert answer["patch"] is None and answer["finish_reason"] == "content_filter"
    assert any(f["action"] == "block" for f in answer["tether"]["findings"])


@pytest.mark.parametrize(
    ("opening", "line"),
    [("Here you go:\n\n```python\n", 5), ("Here you go: ```python\n", 3)],
    ids=["own-line", "after-prose"],  # a fence CommonMark would not open is code to a reader
)
def test_chat_code_blocks_are_checked(tmp_path: Path, opening: str, line: int) -> None:
    answer = opening + "import yaml\ndata = yaml.load(text)\n```\n"
    with client_for(tmp_path, answer) as client:
        body = client.post(
            "/v1/chat/completions", json={"messages": [{"role": "user", "content": "parse yaml"}]}
        ).json()
    (finding,) = [f for f in body["tether"]["findings"] if f["rule_id"] == "security/yaml-load"]
    assert finding["line"] == line  # placed in the whole answer, not in the block


def test_compliance_can_be_switched_off(tmp_path: Path) -> None:
    with client_for(tmp_path, ANSWER, TETHER_COMPLIANCE_ENABLED="false") as client:
        body = client.post("/v1/completions", json={"prompt": "def run(user_input):\n    "}).json()
    assert body["tether"]["findings"] == []


@pytest.mark.parametrize("path", ["/infill", "/tabby/v1/completions"])
def test_fim_shapes_carry_findings(tmp_path: Path, path: str) -> None:
    body = (
        {"input_prefix": "def run(user_input):\n    ", "input_suffix": "\n"}
        if path == "/infill"
        else {"language": "python", "segments": {"prefix": "def run(user_input):\n    "}}
    )
    with client_for(tmp_path, ANSWER) as client:
        answer = client.post(path, json=body).json()
    assert any(f["rule_id"] == "security/eval" for f in answer["tether"]["findings"])


def test_check_endpoint(tmp_path: Path) -> None:
    with client_for(tmp_path, "") as client:
        body = client.post(
            "/v1/check", json={"code": "import os\nos.system(cmd)\n", "path": "run.py"}
        ).json()
        assert [f["rule_id"] for f in body["findings"]] == ["security/shell-true"]
        assert body["findings"][0]["line"] == 2
        assert client.post("/v1/check", json={"language": "python"}).status_code == 400
        assert body["language"] == "python" and "note" not in body
        # Without a language whose rules run, the answer says what was not checked.
        for unknown in ({"code": "eval(input())"}, {"code": "eval(input())", "language": "cobol"}):
            body = client.post("/v1/check", json=unknown).json()
            assert body["language"] is None and body["findings"] == []
            assert "only secrets and licences were checked" in body["note"]


@pytest.mark.parametrize("finish_reason", ["stop", "length"])
def test_an_answer_cut_at_max_tokens_is_not_called_a_syntax_error(
    tmp_path: Path, finish_reason: str
) -> None:
    cut = "value = eval(user_input)\nreturn compute(value,"
    settings = make_settings(tmp_path)
    engine = ScriptedEngine(cut, finish_reason=finish_reason)  # type: ignore[arg-type]
    with TestClient(build_app(settings, TOKEN, lambda: engine)) as client:
        client.headers["Authorization"] = f"Bearer {TOKEN}"
        body = client.post("/v1/completions", json={"prompt": "def run(user_input):\n    "})
    answer = body.json()
    assert answer["choices"][0]["finish_reason"] == finish_reason
    rules = {f["rule_id"] for f in answer["tether"]["findings"]}
    assert "security/eval" in rules and ("syntax" in rules) == (finish_reason == "stop")


GITHUB_TOKEN = "ghp_" + "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5"


@pytest.mark.parametrize(
    "answer",
    [
        f"Use the token {GITHUB_TOKEN} in the header.\n",
        f"headers = {{'Authorization': 'token {GITHUB_TOKEN}'}}\n",  # code, unfenced
        f"```python\nTOKEN = '{GITHUB_TOKEN}'\n```\n",
    ],
    ids=["prose", "unfenced", "fenced"],
)
def test_a_secret_anywhere_in_a_chat_answer_is_found(tmp_path: Path, answer: str) -> None:
    """Only fenced blocks were checked: a key in a sentence, or in code the model left
    unfenced, reached the client with no finding, streamed or not."""
    actions = json.dumps({"secrets": "block"})
    body = {"messages": [{"role": "user", "content": "call the API"}]}
    with client_for(tmp_path, answer, TETHER_COMPLIANCE_ACTIONS=actions) as client:
        plain = client.post("/v1/chat/completions", json=body).json()
        streamed = client.post("/v1/chat/completions", json={**body, "stream": True})
    choice = plain["choices"][0]
    assert choice["finish_reason"] == "content_filter", choice
    assert GITHUB_TOKEN not in json.dumps(plain)
    assert [f["rule_id"] for f in plain["tether"]["findings"]] == ["secrets/github-pat"]
    assert GITHUB_TOKEN[:12] not in streamed.text


def test_a_secret_in_an_answer_is_found_with_prompt_scanning_off(tmp_path: Path) -> None:
    actions = json.dumps({"secrets": "block"})
    answer = f"TOKEN = '{GITHUB_TOKEN}'\n"
    env = {"TETHER_COMPLIANCE_ACTIONS": actions, "TETHER_POLICY_ENABLED": "false"}
    with client_for(tmp_path, answer, **env) as client:
        streamed = client.post("/v1/completions", json={"prompt": "# token\n", "stream": True})
    assert GITHUB_TOKEN[:12] not in streamed.text and "content_filter" in streamed.text


EMPLOYEE_ID = [
    {
        "id": "employee-id",
        "description": "employee number",
        "regex": r"\bEMP-([0-9]{6})\b",
        "keywords": ["emp-"],
        "action": "pseudonymize",
        "secret_group": 1,
    }
]


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("path", ["/v1/completions", "/v1/chat/completions"])
def test_a_pseudonymized_value_comes_back_to_its_sender_unredacted(
    tmp_path: Path, path: str, stream: bool
) -> None:
    """Put back in the answer, the value was then found by the answer's secret check and
    its line redacted: docs/policy.md promises the answer gets the value back."""
    answer = "badge = 'EMP-<EMPLOYEE_ID_1>'\n"
    env = {"TETHER_POLICY_RULES": json.dumps(EMPLOYEE_ID)}
    body: dict[str, object] = {"stream": stream}
    if "chat" in path:
        body["messages"] = [{"role": "user", "content": "the badge of EMP-654321"}]
    else:
        body["prompt"] = "# the badge of EMP-654321\n"
    with client_for(tmp_path, answer, **env) as client:
        response = client.post(path, json=body)
    assert "badge = 'EMP-654321'" in response.text.replace("\\'", "'"), response.text
    assert "REDACTED" not in response.text
