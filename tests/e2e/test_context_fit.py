"""Many small context files from an editor: what fits is kept, with room for the answer,
on every fill-in-the-middle route, as llama.cpp's /infill trims its input_extra."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from tests.helpers import tether_server

pytestmark = pytest.mark.e2e


def _files(count: int) -> list[tuple[str, str]]:
    """Distinct small modules, four short functions each (about 175 characters)."""
    chance = random.Random(1)

    def word() -> str:
        return "".join(chance.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(8))

    return [
        (
            f"pkg/mod_{i}.py",
            "".join(
                f"def {word()}(x, y):\n    return x * {chance.randint(0, 999)} + y\n\n"
                for _ in range(4)
            ),
        )
        for i in range(count)
    ]


def test_many_small_context_files_fit_with_room_for_the_answer(tmp_path: Path) -> None:
    """Each file's text fitted the budget, but the comment naming it did not count: 25
    files were 2,232 tokens in a 2,048 window, and every route answered 400."""
    files = _files(40)
    infill = {
        "input_prefix": "def g():\n",
        "input_suffix": "\n",
        "prompt": "    ",
        "input_extra": [{"filename": name, "text": text} for name, text in files],
        "n_predict": 16,
    }
    fim = {
        "prompt": "def g():\n    ",
        "suffix": "\n",
        "context": [{"filename": name, "text": text} for name, text in files],
        "max_tokens": 16,
    }
    tabby = {
        "language": "python",
        "segments": {
            "prefix": "def g():\n    ",
            "suffix": "\n",
            "relevant_snippets_from_changed_files": [
                {"filepath": name, "body": text} for name, text in files
            ],
        },
    }
    with tether_server(tmp_path) as srv, srv.client() as http:
        answered = http.post("/infill", json=infill, timeout=300)
        assert answered.status_code == 200, answered.text
        assert answered.json()["tokens_evaluated"] + 16 <= 2048
        for path, body in (("/v1/fim/completions", fim), ("/tabby/v1/completions", tabby)):
            answered = http.post(path, json=body, timeout=300)
            assert answered.status_code == 200, (path, answered.text)
