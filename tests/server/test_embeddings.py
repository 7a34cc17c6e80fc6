"""OpenAI's /v1/embeddings, answered by the store's embedding model (WordLlama)."""

from __future__ import annotations

import base64
import random
import string
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import openai
import pytest
from fastapi.testclient import TestClient

from tests.conftest import TOKEN, make_settings
from tests.helpers import ScriptedEngine, record_of_request
from tether.server.app import build_app
from tether.store.embeddings import _batches
from tether.usage.reader import LedgerReader

CODE = ["def add(a, b):\n    return a + b\n", "def sum_two(x, y):\n    return x + y\n"]
PROSE = "The weather in the mountains was cold and windy all week."


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = make_settings(tmp_path_factory.mktemp("embeddings"))
    engine = ScriptedEngine("x")  # embeddings do not need the language model
    with TestClient(build_app(settings, TOKEN, lambda: engine)) as client:
        client.headers["Authorization"] = f"Bearer {TOKEN}"
        yield client


def _vectors(client: TestClient, **body: object) -> list[list[float]]:
    response = client.post("/v1/embeddings", json=body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["object"] == "list" and answer["model"] == "wordllama-l2-supercat-256"
    assert [row["index"] for row in answer["data"]] == list(range(len(answer["data"])))
    assert answer["usage"]["prompt_tokens"] == answer["usage"]["total_tokens"] > 0
    return [row["embedding"] for row in answer["data"]]


def test_like_code_is_nearer_than_unlike_text(client: TestClient) -> None:
    add, sum_two, prose = (np.array(v) for v in _vectors(client, input=[*CODE, PROSE]))
    assert len(add) == 256
    assert np.allclose([np.linalg.norm(v) for v in (add, sum_two, prose)], 1.0, atol=1e-4)
    assert add @ sum_two > add @ prose + 0.1
    # One text alone gets the vector it gets among others; this is llama.vscode's request.
    [alone] = _vectors(client, input=CODE[0], model="GPT-4", encoding_format="float")
    assert np.allclose(alone, add, atol=1e-5)


def test_fewer_dimensions_are_a_normalised_prefix(client: TestClient) -> None:
    [full] = _vectors(client, input=CODE[0])
    [short] = _vectors(client, input=CODE[0], dimensions=64)
    assert len(short) == 64 and np.isclose(np.linalg.norm(short), 1.0, atol=1e-4)
    prefix = np.array(full[:64])
    assert np.allclose(short, prefix / np.linalg.norm(prefix), atol=1e-5)


def test_the_openai_sdk_gets_base64_and_decodes_it(client: TestClient) -> None:
    """The SDK asks for base64 by default and decodes little-endian float32 itself."""
    [plain] = _vectors(client, input=CODE[1])
    [encoded] = _vectors(client, input=CODE[1], encoding_format="base64")
    decoded = np.frombuffer(base64.b64decode(encoded), dtype="<f4")  # type: ignore[arg-type]
    assert np.allclose(decoded, plain, atol=1e-6)
    sdk = openai.OpenAI(base_url="http://testserver/v1", api_key=TOKEN, http_client=client)
    result = sdk.embeddings.create(model="any", input=CODE)
    assert len(result.data) == 2 and np.allclose(result.data[1].embedding, plain, atol=1e-5)


def test_a_secret_is_embedded_as_the_model_would_see_it(client: TestClient) -> None:
    # A vector index of a redacted value would keep what the policy keeps from a model.
    key = "AKIA" + "QZ7RVN2XWLKD5HJT"
    [with_key, redacted, other] = _vectors(
        client,
        input=[
            f"aws_key = '{key}'",
            "aws_key = '[REDACTED:aws-access-key-id]'",
            "aws_key = 'AKIA0000000000000000'",
        ],
    )
    assert np.allclose(with_key, redacted, atol=1e-6)
    assert not np.allclose(with_key, other, atol=1e-3)


def test_an_audit_record_keeps_a_bounded_number_of_findings(client: TestClient) -> None:
    """Each finding went into the request's audit record: thousands of secrets embedded at
    once made one record of tens of megabytes, more than a webhook receiver takes."""
    from tether.pipeline.recording import MAX_RECORDED_FINDINGS

    alphabet = string.ascii_uppercase + "234567"
    draw = random.Random(7)
    keys = [f"key = 'AKIA{''.join(draw.choices(alphabet, k=16))}'" for _ in range(300)]
    response = client.post("/v1/embeddings", json={"input": keys})
    assert response.status_code == 200, response.text
    record = record_of_request(client.app, response)
    assert len(record["policy"]) == MAX_RECORDED_FINDINGS
    assert record["params"]["policy_omitted"] == len(keys) - MAX_RECORDED_FINDINGS


def test_a_blocked_value_is_refused_and_recorded(client: TestClient) -> None:
    leaked = "tth_" + "Zx9" * 14 + "q"
    response = client.post("/v1/embeddings", json={"input": ["x = 1", f"t = '{leaked}'"]})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "policy_blocked" and "input[1]" in error["message"]
    assert leaked not in response.text
    record = record_of_request(client.app, response)
    assert [p["rule_id"] for p in record["policy"]] == ["tether-token"]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"input": [1, 2, 3]}, "send the text"),
        ({"input": [[1, 2], [3]]}, "send the text"),
        ({"input": ""}, "input"),
        ({"input": []}, "input"),
        ({"input": ["ok", ""]}, "input"),
        ({"input": "x" * 40_000}, "input"),
        ({"input": ["x"] * 2049}, "input"),
        ({"input": "x", "dimensions": 0}, "dimensions"),
        ({"input": "x", "dimensions": 300}, "at most 256 dimensions"),
        ({"input": "x", "encoding_format": "hex"}, "encoding_format"),
        ({}, "input"),
    ],
)
def test_bad_requests_are_refused_with_what_to_send(
    client: TestClient, body: dict[str, object], says: str
) -> None:
    response = client.post("/v1/embeddings", json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert says in error["message"] and error["type"] == "invalid_request_error"


def test_a_token_is_needed(client: TestClient) -> None:
    response = client.post(
        "/v1/embeddings", json={"input": "x"}, headers={"Authorization": "Bearer nope"}
    )
    assert response.status_code == 401 and "error" in response.json()


def test_without_an_embedding_model_the_answer_says_how_to_get_one(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, TETHER_STORE_EMBEDDINGS="false")
    engine = ScriptedEngine("x")
    with TestClient(build_app(settings, TOKEN, lambda: engine)) as client:
        client.headers["Authorization"] = f"Bearer {TOKEN}"
        response = client.post("/v1/embeddings", json={"input": "x"})
    assert response.status_code == 400
    assert "tether[embeddings]" in response.json()["error"]["message"]


def test_batches_stay_small_whatever_the_texts() -> None:
    """WordLlama pads a batch to its longest text: one long text goes alone."""
    texts = ["a" * 1000] * 200 + ["b" * 30_000] + ["c"] * 3
    batches = _batches(texts)
    assert [t for batch in batches for t in batch] == texts  # all, in order
    assert all(len(b) * max(map(len, b)) <= 65_536 or len(b) == 1 for b in batches)
    assert _batches([]) == []


def test_a_gateway_without_numpy_starts_and_says_what_is_missing(tmp_path: Path) -> None:
    """A gateway's install (no embedded engine, no embeddings extra) has no numpy."""
    code = f"""
import sys
for name in ("numpy", "llama_cpp", "wordllama"):
    sys.modules[name] = None  # not installed
from fastapi.testclient import TestClient
from tether.engines.registry import build_engine
from tether.plugins import build_manager
from tether.server.app import build_app
from tether.settings import load_settings
from pathlib import Path
settings = load_settings(cwd=Path({str(tmp_path)!r}), environ={{
    "TETHER_HOME": {str(tmp_path / "data")!r}, "TETHER_ENGINE_KIND": "openai",
    "TETHER_UPSTREAM_BASE_URLS": "http://127.0.0.1:9/v1", "TETHER_UPSTREAM_MODEL": "m",
    "TETHER_STORE_EMBEDDINGS": "false",
}})
plugins = build_manager(settings)
engine = build_engine(settings, plugins)
with TestClient(build_app(settings, "tth_x", lambda: engine, plugins)) as client:
    client.headers["Authorization"] = "Bearer tth_x"
    answer = client.post("/v1/embeddings", json={{"input": "x"}})
    print(answer.status_code, answer.json()["error"]["message"])
"""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("400 ") and "tether[embeddings]" in done.stdout


def test_the_tokens_read_count_against_the_tokens_budget(client: TestClient) -> None:
    issued = client.post(
        "/v1/tokens",
        json={"principal": "indexer", "scopes": ["completions"], "tpm": 20},
    ).json()
    headers = {"Authorization": f"Bearer {issued['token']}"}
    text = "def parse(path):\n    return open(path).read().split()\n"
    first = client.post("/v1/embeddings", json={"input": [text, text]}, headers=headers)
    assert first.status_code == 200 and first.json()["usage"]["prompt_tokens"] >= 20
    again = client.post("/v1/embeddings", json={"input": text}, headers=headers)
    assert again.status_code == 429 and "tpm" in again.json()["error"]["message"]
    assert int(again.headers["Retry-After"]) >= 1


def test_usage_counts_each_texts_own_tokens_not_the_padding(client: TestClient) -> None:
    def tokens(texts: list[str]) -> int:
        response = client.post("/v1/embeddings", json={"input": texts})
        assert response.status_code == 200, response.text
        count: int = response.json()["usage"]["prompt_tokens"]
        return count

    short, long = "hi", "def parse_config(path):\n    return json.load(open(path))\n" * 4
    assert tokens([short, long]) == tokens([short]) + tokens([long])
    assert tokens([short]) < 5 < tokens([long])


def test_the_tokens_read_reach_the_usage_ledger(client: TestClient) -> None:
    issued = client.post(
        "/v1/tokens", json={"principal": "rag-indexer", "scopes": ["completions"]}
    ).json()
    headers = {"Authorization": f"Bearer {issued['token']}"}
    answer = client.post("/v1/embeddings", json={"input": CODE}, headers=headers)
    assert answer.status_code == 200, answer.text
    read = answer.json()["usage"]["prompt_tokens"]
    ledger = client.app.state.usage_ledger  # type: ignore[attr-defined]
    ledger.flush()
    with LedgerReader(ledger.ledger.path) as reader:
        by_who = {t.key: t for t in reader.totals(0, 4e9, "principal")}
        by_model = {t.key: t for t in reader.totals(0, 4e9, "model")}
    assert by_who["rag-indexer"].requests == 1
    assert by_who["rag-indexer"].prompt_tokens == read > 0
    assert by_who["rag-indexer"].embedding_tokens == read  # priced as embeddings
    assert by_model["wordllama-l2-supercat-256"].prompt_tokens >= read


def test_requests_sent_at_once_pass_the_budget_by_one_at_most(client: TestClient) -> None:
    issued = client.post(
        "/v1/tokens", json={"principal": "burst", "scopes": ["completions"], "daily_tokens": 20}
    ).json()
    headers = {"Authorization": f"Bearer {issued['token']}"}
    texts = ["def parse(path):\n    return open(path).read().split()\n" * 20] * 8

    def embed(_: int) -> int:
        return client.post("/v1/embeddings", json={"input": texts}, headers=headers).status_code

    with ThreadPoolExecutor(6) as pool:
        statuses = sorted(pool.map(embed, range(6)))
    assert statuses == [200] + [429] * 5  # the first holds more than the budget as it runs
