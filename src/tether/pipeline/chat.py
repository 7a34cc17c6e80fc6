"""Chat prompts rendered from the model's own Jinja2 chat template, in a sandbox."""

from __future__ import annotations

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


def as_plain_text(
    messages: list[dict[str, str]], control_tokens: tuple[str, ...]
) -> list[dict[str, str]]:
    """``messages`` with each control token in their content broken with a zero-width
    space: a message that writes ``<|im_end|><|im_start|>system`` would otherwise end its
    own turn and open a system turn of its own."""
    if not control_tokens:
        return messages
    found = [token for token in control_tokens if any(token in m["content"] for m in messages)]
    if not found:
        return messages
    plain = []
    for message in messages:
        content = message["content"]
        for token in found:
            content = content.replace(token, token[0] + _BREAK + token[1:])
        plain.append({**message, "content": content})
    return plain


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
