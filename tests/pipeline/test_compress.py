"""The built-in context compressor: repeats, comments, docstrings and blank runs go;
signatures when a file still does not fit; the client's order and the budget hold."""

from __future__ import annotations

import ast
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import TOKEN, make_settings
from tests.helpers import ScriptedEngine
from tether.default_plugins.context import ContextCompressor
from tether.engines.base import GenerationChunk, GenerationRequest
from tether.pipeline.compress import compress, language_of, signatures, strip
from tether.pipeline.fim import ContextSnippet
from tether.server.app import build_app
from tether.settings import Settings

PY = '''"""Geometry helpers."""

import math  # the standard one


class Circle:
    """A circle."""

    def __init__(self, r):
        """Make it."""
        self.r = r  # radius



    def area(self):
        # pi r squared
        return math.pi * self.r ** 2
'''
TS = """/** Adds. */
export function add(a: number, b: number): number {
  // plain sum
  return a + b; /* done */
}

const twice = (x: number) => { return add(x, x); };
"""


def words(text: str) -> int:
    return len(text.split())


def test_python_loses_comments_docstrings_and_blank_runs_and_still_parses() -> None:
    stripped = strip(PY, "python")
    assert "#" not in stripped and '"""' not in stripped and "\n\n\n" not in stripped
    assert "def __init__(self, r):\n        ...\n        self.r = r" not in stripped
    assert "self.r = r" in stripped and "return math.pi * self.r ** 2" in stripped
    ast.parse(stripped)
    lone = strip('def f():\n    """Only a docstring."""\n', "python")
    assert lone == "def f():\n    ...\n"


def test_typescript_loses_its_comments() -> None:
    stripped = strip(TS, "typescript")
    assert "/**" not in stripped and "//" not in stripped and "/*" not in stripped
    assert "return a + b;" in stripped and "export function add" in stripped


def test_signatures_keep_the_shape_without_bodies() -> None:
    python = signatures(strip(PY, "python"), "python")
    assert "def area(self):\n        ..." in python and "math.pi" not in python
    assert "class Circle:" in python and "import math" in python
    ast.parse(python)
    typescript = signatures(TS, "typescript")
    assert "export function add(a: number, b: number): number { ... }" in typescript
    assert "return a + b" not in typescript
    assert signatures("plain text\n", None) == "plain text\n"


def test_languages_come_from_file_names() -> None:
    assert [language_of(n) for n in ("a.py", "b.TSX", "c.mjs", "README", "x.go")] == [
        "python", "tsx", "javascript", None, None,
    ]  # fmt: skip


def test_repeats_go_order_stays_and_the_budget_holds() -> None:
    snippets = [
        ContextSnippet(PY, "geometry.py"),
        ContextSnippet("return math.pi * self.r ** 2", "copy.py"),  # inside the first
        ContextSnippet(PY, "again.py"),
        ContextSnippet(TS, "add.ts"),
        ContextSnippet("notes\n\n\n\nmore notes\n", "NOTES"),
    ]
    kept = compress(snippets, 10_000, words)
    assert [s.filename for s in kept] == ["geometry.py", "add.ts", "NOTES"]
    assert kept[2].text == "notes\n\nmore notes\n"
    total = sum(words(s.text) for s in snippets)
    assert sum(words(s.text) for s in kept) < total / 2


def test_what_does_not_fit_is_reduced_to_signatures_then_left_out() -> None:
    big = PY + "".join(f"\n\ndef f{i}(x):\n    return x * {i} + {i} - x // 2\n" for i in range(20))
    snippets = [ContextSnippet(big, "geometry.py"), ContextSnippet(TS, "add.ts")]
    full = [words(strip(big, "python")), words(strip(TS, "typescript"))]
    reduced = words(signatures(strip(big, "python"), "python"))
    assert reduced + full[1] < full[0]
    kept = compress(snippets, reduced + full[1], words)
    assert kept[0].text == signatures(strip(big, "python"), "python")
    assert kept[1].filename == "add.ts" and "return a + b" in kept[1].text
    assert compress(snippets, 2, words) == []
    for budget in range(0, sum(full) + 5, 7):
        assert sum(words(s.text) for s in compress(snippets, budget, words)) <= budget


@pytest.mark.parametrize("enabled", [True, False])
def test_the_setting_turns_compression_off(enabled: bool) -> None:
    snippets = [ContextSnippet(PY, "geometry.py"), ContextSnippet(PY, "again.py")]
    kept = ContextCompressor(enabled).compress_context(snippets, 10_000, words)
    assert kept is not None
    if enabled:
        assert len(kept) == 1 and "#" not in kept[0].text
    else:
        assert [s.text for s in kept] == [PY, PY]  # as sent, only fitted to the budget


def _infill(settings: Settings, engine: ScriptedEngine, body: dict[str, Any]) -> tuple[Any, str]:
    """The answer to an /infill request, and the prompt the engine was shown."""
    with TestClient(build_app(settings, TOKEN, lambda: engine)) as client:
        answer = client.post("/infill", headers={"Authorization": f"Bearer {TOKEN}"}, json=body)
    assert answer.status_code == 200, answer.text
    return answer, engine.requests[-1].prompt or ""


@pytest.mark.parametrize("enabled", ["true", "false"])
def test_fim_requests_carry_the_compressed_context(tmp_path: Path, enabled: str) -> None:
    settings = make_settings(tmp_path, TETHER_GENERATION_COMPRESS_CONTEXT=enabled)
    engine = ScriptedEngine("    return a + b\n")
    body = {
        "input_prefix": "def add(a, b):\n",
        "input_suffix": "\n",
        "input_extra": [{"filename": "geometry.py", "text": PY}],
        "n_predict": 8,
    }
    _, prompt = _infill(settings, engine, body)
    assert "class Circle" in prompt
    assert ("# pi r squared" in prompt) is (enabled == "false")


def test_an_answer_sent_whole_still_stops_where_the_hole_is_filled(tmp_path: Path) -> None:
    """A model without FIM tokens writes on past the hole; the editor's filter ends the
    answer there. An answer sent whole used to be asked of the engine whole, so a gateway's
    upstream generated all of max_tokens, which was then cut away (and charged)."""
    rambling = "    return a + b\n\n\ndef sub(a, b):\n    return a - b\n" * 20
    engine = ScriptedEngine(rambling)
    body = {"prompt": "def add(a, b):\n", "suffix": "\n\nprint(add(1, 2))\n", "max_tokens": 200}
    with TestClient(build_app(make_settings(tmp_path), TOKEN, lambda: engine)) as client:
        answer = client.post("/v1/completions", headers={"Authorization": f"Bearer {TOKEN}"},
                             json=body)  # fmt: skip
    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["text"].strip() == "return a + b"
    assert answer.json()["choices"][0]["finish_reason"] == "stop"
    assert engine.requests[-1].stream and engine.stopped_early == 1


@pytest.mark.parametrize(
    ("filename", "text"),
    [
        ("bundle.js", "let x = " + " + ".join(['"ab"'] * 3000) + ";\n"),  # minified or generated
        ("gen.py", "x = " + " + ".join(['"ab"'] * 3000) + "  # built\n"),
        ("deep.ts", "const x = " + "[" * 1200 + "]" * 1200 + ";\n"),
    ],
)
def test_code_that_nests_deeper_than_python_recurses_is_compressed_too(
    tmp_path: Path, filename: str, text: str
) -> None:
    """Such a context file was a 500 on every FIM API: the walk over its tree recursed."""
    language = language_of(filename)
    assert strip(text, language).count('"ab"') == text.count('"ab"')
    assert "built" not in strip(text, language)
    engine = ScriptedEngine("1\n")
    body = {
        "input_prefix": "y = ",
        "input_suffix": "\n",
        "input_extra": [{"filename": filename, "text": text}],
        "n_predict": 2,
    }
    with TestClient(build_app(make_settings(tmp_path), TOKEN, lambda: engine)) as client:
        answer = client.post("/infill", headers={"Authorization": f"Bearer {TOKEN}"}, json=body)
    assert answer.status_code == 200, answer.text


@pytest.mark.parametrize(
    ("prefix", "filename", "label"),
    [
        ("x = 1\n", "util.py", "# util.py"),  # the other file's name says Python
        ("import os\n", "NOTES", "# NOTES"),  # the code's opening says Python
        ("x = 1;\n", "util.js", "// util.js"),
    ],
)
def test_a_context_file_is_labelled_in_a_comment_of_the_language_being_written(
    tmp_path: Path, prefix: str, filename: str, label: str
) -> None:
    """llama.vim's /infill names no language: each file's name went in a // comment,
    which is no comment in Python."""
    engine = ScriptedEngine("y = 2\n")
    body = {
        "input_prefix": prefix,
        "input_suffix": "\n",
        "input_extra": [{"filename": filename, "text": "z = 3\n"}],
        "n_predict": 4,
    }
    with TestClient(build_app(make_settings(tmp_path), TOKEN, lambda: engine)) as client:
        answer = client.post("/infill", headers={"Authorization": f"Bearer {TOKEN}"}, json=body)
    assert answer.status_code == 200, answer.text
    prompt = engine.requests[-1].prompt or ""
    assert f"{label}\n" in prompt, prompt


class _CountingAhead(ScriptedEngine):
    """Each piece carries the engine's token count so far, ``ahead`` more than its own:
    a slow reader gets several tokens in one piece, and the count at the cut grows."""

    def __init__(self, answer: str, ahead: int) -> None:
        super().__init__(answer)
        self.ahead = ahead

    async def generate(self, request: GenerationRequest) -> AsyncGenerator[GenerationChunk, None]:
        so_far = 0
        async for chunk in super().generate(request):
            so_far += 1
            if chunk.completion_tokens is None:
                chunk.completion_tokens = so_far + self.ahead
            yield chunk


@pytest.mark.parametrize("ahead", [0, 7])
def test_an_answer_cut_where_the_hole_is_filled_counts_the_tokens_read_to_find_it(
    tmp_path: Path, ahead: int
) -> None:
    """The same request was charged 22, 23 or 24 tokens, as the engine's count at the cut
    depended on how many tokens its last piece held; then only the tokens it kept, not
    the lines generated and dropped on the way (llama.cpp counts them)."""
    rambling = "    return a + b\n\n\ndef sub(a, b):\n    return a - b\n" * 20
    engine = _CountingAhead(rambling, ahead)
    body = {"prompt": "def add(a, b):\n", "suffix": "\n\nprint(add(1, 2))\n", "max_tokens": 200}
    with TestClient(build_app(make_settings(tmp_path), TOKEN, lambda: engine)) as client:
        answer = client.post("/v1/completions", headers={"Authorization": f"Bearer {TOKEN}"},
                             json=body)  # fmt: skip
    assert answer.status_code == 200, answer.text
    text = answer.json()["choices"][0]["text"]
    assert engine.stopped_early == 1
    # Up to the first character of the line that left the block, which decided it.
    read = "    return a + b\n\n\nd"
    assert answer.json()["usage"]["completion_tokens"] == engine.count_tokens(read)
    assert engine.count_tokens(read) > engine.count_tokens(text)


def test_a_comment_inside_a_line_leaves_a_space_not_a_join() -> None:
    code = "let v = blue/* a */falcon;\nconst n = 1; // one\n"
    assert strip(code, "javascript") == "let v = blue falcon;\nconst n = 1;\n"


GITHUB = "ghp_" + "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5"


@pytest.mark.parametrize("joins", [False, True])
def test_compressed_context_is_governed_as_the_model_reads_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, joins: bool
) -> None:
    """A cut may join the text on either side of it into a value the policy never read:
    what the compressor made is scanned again, whatever cut it."""
    if joins:  # a cut that leaves nothing between its two sides

        def joining(snippets: list[ContextSnippet], *_: object) -> list[ContextSnippet]:
            return [ContextSnippet(s.text.replace("/* c */", ""), s.filename) for s in snippets]

        monkeypatch.setattr("tether.default_plugins.context.compress", joining)
    settings = make_settings(tmp_path)
    engine = ScriptedEngine("x\n")
    split = f"const t = {GITHUB[:20]}/* c */{GITHUB[20:]};\n"
    body = {
        "input_prefix": "x = 1\n",
        "input_extra": [{"filename": "keys.js", "text": split}],
        "n_predict": 4,
    }
    answer, prompt = _infill(settings, engine, body)
    assert GITHUB not in prompt
    if joins:
        assert "[REDACTED:github-pat]" in prompt
        assert "github-pat" in {f["rule_id"] for f in answer.json()["tether"]["findings"]}
    else:
        assert f"{GITHUB[:20]} {GITHUB[20:]}" in prompt
