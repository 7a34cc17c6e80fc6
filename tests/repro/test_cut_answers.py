"""An answer tether ended (llama.cpp's n_indent) is charged the tokens it kept and
regenerates byte for byte from its trace."""

from __future__ import annotations

import asyncio
from pathlib import Path

from fastapi.testclient import TestClient

from tests.conftest import TOKEN, make_settings
from tests.helpers import answer_trace
from tether.engines.llamacpp import LlamaCppEngine
from tether.models import default_model_path
from tether.repro.manifest import Manifest, from_trace
from tether.repro.verify import Verification, regenerate
from tether.server.app import build_app

PROMPTS = ["def total(xs):\n    ", "def area(radius):\n    "]


def test_an_answer_cut_at_its_block_s_end_is_charged_its_tokens_and_regenerates(
    tmp_path: Path,
) -> None:
    settings = make_settings(tmp_path)
    engine = LlamaCppEngine(settings.engine, default_model_path(), settings.data.home / "cache")
    manifests: list[Manifest] = []
    with TestClient(build_app(settings, TOKEN, lambda: engine)) as client:
        client.headers["Authorization"] = f"Bearer {TOKEN}"
        for prompt in PROMPTS:
            body = {"prompt": prompt, "n_predict": 120, "n_indent": 4, "temperature": 0}
            answer = client.post("/completion", json=body).json()
            assert answer["stop_type"] == "limit", answer  # the block ended, not the model
            kept = engine.token_ids(answer["content"], add_special=False, parse_special=True)
            assert answer["tokens_predicted"] == len(kept)
            manifests.append(from_trace(answer_trace(client.app, answer)))

    async def verify() -> list[Verification]:
        again = LlamaCppEngine(settings.engine, default_model_path(), tmp_path / "again")
        try:
            return [await regenerate(manifest, again) for manifest in manifests]
        finally:
            await again.close()

    for verification in asyncio.run(verify()):
        assert verification.match, verification.diff()
