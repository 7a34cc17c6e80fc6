"""The same request gives the same bytes: streamed or not, and with one model context or
several answering at once."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx

from tests.conftest import TOKEN, make_settings
from tether.engines.llamacpp import LlamaCppEngine
from tether.models import default_model_path
from tether.server.app import build_app

PROMPTS = [f"def helper_{i}(values):\n    " for i in range(4)]
HEADERS = {"Authorization": f"Bearer {TOKEN}"}


async def _answers(tmp_path: Path, n_parallel: int, stream: bool) -> list[tuple[str, str]]:
    settings = make_settings(tmp_path / f"np{n_parallel}", TETHER_ENGINE_N_PARALLEL=str(n_parallel))
    engine = LlamaCppEngine(settings.engine, default_model_path(), settings.data.home / "cache")
    app = build_app(settings, TOKEN, lambda: engine)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://t", headers=HEADERS
        ) as c:

            async def one(prompt: str) -> tuple[str, str]:
                body = {"prompt": prompt, "max_tokens": 48, "stream": stream}
                response = await c.post("/v1/completions", json=body, timeout=120)
                assert response.status_code == 200, response.text
                if not stream:
                    answer = response.json()
                    return answer["choices"][0]["text"], answer["system_fingerprint"]
                events = [
                    json.loads(line[6:])
                    for line in response.text.splitlines()
                    if line.startswith("data: {")
                ]
                text = "".join(e["choices"][0]["text"] for e in events if e["choices"])
                return text, events[0]["system_fingerprint"]

            return list(await asyncio.gather(*(one(p) for p in PROMPTS)))


def test_same_bytes_streamed_or_not_and_with_several_contexts(tmp_path: Path) -> None:
    alone = asyncio.run(_answers(tmp_path, 1, stream=False))
    streamed = asyncio.run(_answers(tmp_path, 1, stream=True))
    together = asyncio.run(_answers(tmp_path, 2, stream=False))
    assert any(text for text, _ in alone)  # the model said something to compare
    assert streamed == alone
    assert together == alone  # two contexts, four requests at once: the same bytes
