"""The embedded engine's tokenizer call, against llama-cpp-python's own."""

from __future__ import annotations

from typing import Any

import pytest

import tether.engines.llamacpp as llamacpp
from tether.engines.llamacpp import _tokenize, load_model
from tether.models import default_model_path

TEXTS = [
    "",
    "a",
    "\n",
    "def add(a, b):\n    return a + b\n",
    "<|im_start|>user\nhi<|im_end|>",  # special tokens are parsed
    "héllo wörld, 数字 12345 🙂 " * 40,
]


@pytest.fixture(scope="module")
def model() -> Any:
    loaded = load_model(default_model_path(), vocab_only=True)
    yield loaded
    loaded.close()


@pytest.mark.parametrize("text", TEXTS)
def test_the_tokens_are_llama_cpp_pythons(model: Any, text: str) -> None:
    data = text.encode("utf-8")
    assert _tokenize(model.vocab, data, True, True) == model.tokenize(data, True, True)


def test_a_buffer_too_small_is_asked_for_again(model: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    real = llamacpp._llama_cpp()
    calls: list[int] = []

    class FirstCallShort:  # llama.cpp answering that the first buffer cannot hold them
        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

        def llama_tokenize(
            self, vocab: Any, data: bytes, size: int, out: Any, room: int, *flags: bool
        ) -> int:
            calls.append(room)
            return int(
                real.llama_tokenize(vocab, data, size, out, 1 if len(calls) == 1 else room, *flags)
            )

    monkeypatch.setattr(llamacpp, "_llama_cpp", FirstCallShort)
    data = TEXTS[3].encode("utf-8")
    assert _tokenize(model.vocab, data, True, True) == model.tokenize(data, True, True)
    assert len(calls) == 2 and calls[1] < calls[0]  # the second buffer is exactly the count
