"""What a prompt that does not leave room for its answer is told: true of its numbers."""

from __future__ import annotations

import pytest

from tether.engines.base import GenerationRequest, SamplingParams
from tether.engines.llamacpp import _fit_to_context
from tether.errors import ContextLengthError


def _refusal(prompt_tokens: int, max_tokens: int, explicit: bool, n_ctx: int) -> str:
    params = SamplingParams(max_tokens=max_tokens, max_tokens_explicit=explicit)
    with pytest.raises(ContextLengthError) as refused:
        _fit_to_context(GenerationRequest(params=params, prompt="x"), prompt_tokens, n_ctx)
    return refused.value.message


def test_a_prompt_as_long_as_the_window_is_not_said_to_be_longer() -> None:
    """A prompt of 512 tokens in a window of 512 was "more than the context window"."""
    message = _refusal(512, 16, False, 512)
    assert "more than" not in message, message
    assert message.startswith("the prompt is 512 tokens, which fills the context window")
    assert "this model's maximum context length is 512 tokens" in message


@pytest.mark.parametrize(
    ("prompt_tokens", "max_tokens", "explicit", "said"),
    [
        (513, 16, False, "the prompt is 513 tokens, more than the context window: "),
        (300, 400, True, "the prompt is 300 tokens and max_tokens is 400, together more "),
        (3, 600, True, "max_tokens is 600, no less than the context window"),
    ],
)
def test_each_refusal_names_the_window_in_the_words_clients_look_for(
    prompt_tokens: int, max_tokens: int, explicit: bool, said: str
) -> None:
    message = _refusal(prompt_tokens, max_tokens, explicit, 512)
    assert message.startswith(said), message
    assert "this model's maximum context length is 512 tokens" in message
