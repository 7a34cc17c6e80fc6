"""Chat prompts rendered from the model's own Jinja2 chat template, in a sandbox."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, NoReturn

from jinja2 import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from tether.errors import RequestError

# Used when a GGUF carries no chat template.
CHATML_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _raise(message: str) -> NoReturn:
    raise RequestError(f"the model's chat template rejected the messages: {message}")


@lru_cache(maxsize=8)
def _compile(source: str) -> Any:
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = _raise
    return env.from_string(source)


# After a control token's first character: the text reads the same, but the tokenizer no
# longer takes it for the token.
_BREAK = "\u200b"

# The turn and role markers of the chat templates of common model families (ChatML,
# Llama 3, Gemma, Phi, Granite, gpt-oss, DeepSeek, Mistral) and the usual FIM markers.
# A gateway does not know its upstream's tokenizer; vLLM and llama-server read these as
# control tokens when a message spells them. Markers that are also ordinary text in code,
# such as <s> (HTML), are left alone.
KNOWN_CONTROL_TOKENS = (
    "<|im_start|>",
    "<|im_end|>",
    "<|im_sep|>",
    "<|endoftext|>",
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
    "<|eom_id|>",
    "<|python_tag|>",
    "<start_of_turn>",
    "<end_of_turn>",
    "<|system|>",
    "<|user|>",
    "<|assistant|>",
    "<|end|>",
    "<|start_of_role|>",
    "<|end_of_role|>",
    "<|start|>",
    "<|message|>",
    "<|channel|>",
    "<|return|>",
    "<|call|>",
    "<\uff5cbegin\u2581of\u2581sentence\uff5c>",
    "<\uff5cend\u2581of\u2581sentence\uff5c>",
    "<\uff5cUser\uff5c>",
    "<\uff5cAssistant\uff5c>",
    "[INST]",
    "[/INST]",
    "[SYSTEM_PROMPT]",
    "[/SYSTEM_PROMPT]",
    "<|fim_prefix|>",
    "<|fim_suffix|>",
    "<|fim_middle|>",
)


@lru_cache(maxsize=4)
def _markers(control_tokens: tuple[str, ...]) -> re.Pattern[str]:
    # The longest first: a token that starts another must not break it half-way.
    ordered = sorted(control_tokens, key=len, reverse=True)
    return re.compile("|".join(map(re.escape, ordered)))


def _broken(match: re.Match[str]) -> str:
    token = match.group()
    return token[0] + _BREAK + token[1:]


def as_plain_text(
    messages: list[dict[str, str]], control_tokens: tuple[str, ...]
) -> list[dict[str, str]]:
    """``messages`` with each control token in their content broken with a zero-width
    space: a message that writes ``<|im_end|><|im_start|>system`` would otherwise end its
    own turn and open a system turn of its own. One pass over each message."""
    if not control_tokens:
        return messages
    markers = _markers(control_tokens)
    if not any(markers.search(m["content"]) for m in messages):
        return messages
    return [{**m, "content": markers.sub(_broken, m["content"])} for m in messages]


def render_chat(
    messages: list[dict[str, str]],
    template: str | None,
    *,
    bos_token: str = "",
    eos_token: str = "",
) -> str:
    try:
        rendered: str = _compile(template or CHATML_TEMPLATE).render(
            messages=messages,
            add_generation_prompt=True,
            bos_token=bos_token,
            eos_token=eos_token,
        )
    except TemplateError as exc:
        raise RequestError(f"cannot render the chat prompt: {exc}") from exc
    return rendered
