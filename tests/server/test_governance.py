"""Secrets never reach the engine: observed at the engine boundary, over HTTP."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from tests.conftest import TOKEN, make_settings
from tests.helpers import audit_records
from tests.server.test_plugins import RecordingEngine
from tether.engines.llamacpp import LlamaCppEngine
from tether.findings import fingerprint
from tether.models import default_model_path
from tether.server.app import build_app

AWS_KEY = "AKIA" + "QZ7RVN2XWLKD5HJT"
GITHUB = "ghp_" + "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5"
EMAIL = "dana.kowalski@globex-corp.com"


@pytest.fixture(scope="module")
def governed(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[TestClient, RecordingEngine]]:
    settings = make_settings(tmp_path_factory.mktemp("governed"))
    engine = RecordingEngine(
        LlamaCppEngine(settings.engine, default_model_path(), settings.data.home / "cache")
    )
    with TestClient(build_app(settings, TOKEN, lambda: engine)) as client:
        client.headers["Authorization"] = f"Bearer {TOKEN}"
        yield client, engine


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (
            "/v1/completions",
            {"prompt": f"aws_key = '{AWS_KEY}'\ngh = '{GITHUB}'\n", "max_tokens": 4},
        ),
        (
            "/v1/chat/completions",
            {
                "messages": [{"role": "user", "content": f"why does {AWS_KEY} fail? {GITHUB}"}],
                "max_tokens": 4,
            },
        ),
        (
            "/v1/fim/completions",
            {"prompt": f"KEY = '{AWS_KEY}'\n", "suffix": f"T = '{GITHUB}'", "max_tokens": 4},
        ),
        (
            "/infill",
            {
                "input_prefix": "x = 1\n",
                "input_extra": [{"filename": "cfg.py", "text": f"K='{AWS_KEY}' G='{GITHUB}'"}],
                "n_predict": 4,
            },
        ),
        ("/tabby/v1/completions", {"segments": {"prefix": f"k = '{AWS_KEY}'\n", "suffix": GITHUB}}),
    ],
)
def test_secrets_never_reach_the_engine(
    governed: tuple[TestClient, RecordingEngine], path: str, body: dict[str, object]
) -> None:
    client, engine = governed
    response = client.post(path, json=body)
    assert response.status_code == 200, response.text
    seen = engine.prompts[-1]
    assert AWS_KEY not in seen and GITHUB not in seen
    assert "[REDACTED:aws-access-key-id]" in seen
    findings = response.json()["tether"]["findings"]
    assert {"aws-access-key-id"} <= {f["rule_id"] for f in findings}
    assert AWS_KEY not in response.text  # findings carry fingerprints, never values


def test_a_secret_in_a_stop_string_is_governed_like_the_prompt(
    governed: tuple[TestClient, RecordingEngine],
) -> None:
    # Stop strings go to the engine (a gateway's upstream), and into the trace and the
    # audit record with the other parameters.
    client, engine = governed
    body = {"prompt": "x = 1\n", "max_tokens": 4, "stop": [f"gh = {GITHUB}", "\n\n"]}
    response = client.post("/v1/completions", json=body)
    assert response.status_code == 200, response.text
    assert engine.stops[-1] == ("gh = [REDACTED:github-pat]", "\n\n")
    findings = response.json()["tether"]["findings"]
    assert any(f["rule_id"] == "github-pat" and "stop[0]" in f["message"] for f in findings)
    answer_id = response.json()["id"]
    trace = client.get(f"/v1/traces/{answer_id}")
    assert trace.status_code == 200 and GITHUB not in trace.text
    assert trace.json()["sampling"]["stop"] == ["gh = [REDACTED:github-pat]", "\n\n"]
    records = [r for r in audit_records(client.app) if r["request_id"] == answer_id]
    assert records and GITHUB not in json.dumps(records)
    assert records[0]["params"]["stop"] == ["gh = [REDACTED:github-pat]", "\n\n"]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (
            "/infill",
            {
                "input_prefix": "x = 1\n",
                "input_extra": [{"filename": f"keys/{AWS_KEY}.py", "text": "y = 2\n"}],
                "n_predict": 4,
            },
        ),
        (
            "/tabby/v1/completions",
            {
                "language": f"python {AWS_KEY}",
                "segments": {
                    "prefix": "x = 1\n",
                    "declarations": [{"filepath": f"{AWS_KEY}.py", "body": "y = 2\n"}],
                },
            },
        ),
    ],
)
def test_secrets_in_file_names_and_the_language_are_scanned(
    governed: tuple[TestClient, RecordingEngine], path: str, body: dict[str, object]
) -> None:
    client, engine = governed
    response = client.post(path, json=body)
    assert response.status_code == 200, response.text
    assert AWS_KEY not in engine.prompts[-1]
    assert "[REDACTED:aws-access-key-id]" in engine.prompts[-1]


def test_pseudonym_never_collides_with_the_prompts_own_text(
    governed: tuple[TestClient, RecordingEngine],
) -> None:
    client, engine = governed
    response = client.post(
        "/v1/completions",
        json={
            "prompt": f"Contact: {EMAIL}\nRepeat the contact: <EMAIL_1>",
            "max_tokens": 24,
            "temperature": 0,
        },
    )
    assert response.status_code == 200
    seen = engine.prompts[-1]
    assert EMAIL not in seen
    assert seen.count("<EMAIL_1>") == 1  # the prompt's own text, left as it was
    # The e-mail got another placeholder, so restoring it cannot rewrite the user's text.
    assert re.search(r"<EMAIL_\d+>", seen.replace("<EMAIL_1>", ""))


def test_a_leaked_tether_token_blocks(governed: tuple[TestClient, RecordingEngine]) -> None:
    client, engine = governed
    before = len(engine.prompts)
    leaked = "tth_" + "Zx9" * 14 + "q"
    response = client.post(
        "/v1/completions", json={"prompt": f"token = '{leaked}'", "max_tokens": 4}
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "policy_blocked" and "tether-token" in error["message"]
    assert leaked not in response.text
    # Nor its fingerprint: only the audit log keeps that, for an operator to allow it,
    # and the answer says so, where it had told the caller to give one it never saw.
    assert fingerprint(leaked) not in response.text
    assert "fingerprint, which this request's audit record holds where" in error["message"]
    assert len(engine.prompts) == before


def test_a_secret_split_by_the_cursor_never_reaches_the_engine(
    governed: tuple[TestClient, RecordingEngine],
) -> None:
    client, engine = governed
    body = {"prompt": f"KEY = '{AWS_KEY[:10]}", "suffix": f"{AWS_KEY[10:]}'\n", "max_tokens": 4}
    response = client.post("/v1/fim/completions", json=body)
    assert response.status_code == 200, response.text
    assert AWS_KEY[:10] not in engine.prompts[-1] and AWS_KEY[10:] not in engine.prompts[-1]


def test_a_key_inside_base64_never_reaches_the_engine(
    governed: tuple[TestClient, RecordingEngine],
) -> None:
    client, engine = governed
    encoded = base64.b64encode(f"aws_access_key_id = {AWS_KEY}\n".encode()).decode()
    kubeconfig = f"users:\n- name: ci\n  user:\n    client-key-data: {encoded}\n"
    response = client.post(
        "/v1/chat/completions",
        json={"messages": [{"role": "user", "content": kubeconfig}], "max_tokens": 4},
    )
    assert response.status_code == 200, response.text
    seen = engine.prompts[-1]
    assert encoded not in seen and "client-key-data: [REDACTED:aws-access-key-id]" in seen
    (finding,) = response.json()["tether"]["findings"]
    assert finding["message"] == "messages[0]: AWS access key ID, base64-encoded"
    assert finding["fingerprint"] == fingerprint(AWS_KEY)
