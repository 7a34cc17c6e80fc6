"""Tabby's completion requests name no length: each keystroke gets what Tabby's own
server gives one, not the whole default budget."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.conftest import TOKEN, make_settings
from tests.helpers import ScriptedEngine
from tether.server.app import build_app


@pytest.mark.parametrize(("configured", "asked"), [(None, 64), ("16", 16)])
def test_a_tabby_completion_asks_for_at_most_64_tokens(
    tmp_path: Path, configured: str | None, asked: int
) -> None:
    settings = make_settings(
        tmp_path, **({"TETHER_GENERATION_MAX_TOKENS": configured} if configured else {})
    )
    assert settings.generation.max_tokens >= asked
    engine = ScriptedEngine("    return a + b\n")
    body = {"language": "python", "segments": {"prefix": "def add(a, b):\n", "suffix": ""}}
    with TestClient(build_app(settings, TOKEN, lambda: engine)) as client:
        answer = client.post(
            "/tabby/v1/completions", json=body, headers={"Authorization": f"Bearer {TOKEN}"}
        )
    assert answer.status_code == 200, answer.text
    assert engine.requests[-1].params.max_tokens == asked
