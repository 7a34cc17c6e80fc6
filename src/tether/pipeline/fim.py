"""Fill-in-the-middle prompts, rendered on the server from the model's own FIM tokens.

Rendering here, not in each backend, is what makes FIM correct everywhere: vLLM, an
Ollama or llama.cpp upstream and the embedded engine all receive the same plain prompt.
A model without FIM tokens gets a prefix-only prompt and stops where the suffix begins.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tether.engines.base import FimTokens
from tether.errors import ConfigError

# PSM ("prefix, suffix, middle") unless the family was trained suffix-first.
BUILTIN_TEMPLATES: dict[str, str] = {
    "qwen2.5-coder": "<|fim_prefix|>{prefix}<|fim_suffix|>{suffix}<|fim_middle|>",
    "starcoder2": "<fim_prefix>{prefix}<fim_suffix>{suffix}<fim_middle>",
    "deepseek-coder": "<｜fim▁begin｜>{prefix}<｜fim▁hole｜>{suffix}<｜fim▁end｜>",  # noqa: RUF001
    "codellama": "<PRE> {prefix} <SUF>{suffix} <MID>",
    "codestral": "[SUFFIX]{suffix}[PREFIX]{prefix}",
}
PREFIX_ONLY = "prefix-only"


@dataclass(frozen=True)
class ContextSnippet:
    """Code the client sends beside the cursor: another file, a declaration."""

    text: str
    filename: str = ""


@dataclass(frozen=True)
class FimInput:
    prefix: str
    suffix: str = ""
    language: str = ""
    context: tuple[ContextSnippet, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class FimPrompt:
    prompt: str
    template: str
    stop: tuple[str, ...]


# Without FIM tokens a model keeps writing past the hole: a blank line or a Markdown fence
# (instruction-tuned models love them) ends the middle, as does the code after the cursor.
PREFIX_ONLY_STOPS = ("\n\n", "```")


def _prefix_only_stops(suffix: str) -> tuple[str, ...]:
    """Stop where the model starts writing the code that already follows the cursor."""
    for line in suffix.splitlines():
        if len(line.strip()) >= 3:
            return (*PREFIX_ONLY_STOPS, line.strip())
        if line.strip():
            break
    return PREFIX_ONLY_STOPS


def resolve_template(configured: str | None, tokens: FimTokens | None) -> tuple[str, str]:
    """(name, template) for this model: configured, else its own tokens, else prefix-only."""
    if configured:
        if configured in BUILTIN_TEMPLATES:
            return configured, BUILTIN_TEMPLATES[configured]
        if configured == PREFIX_ONLY:
            return PREFIX_ONLY, "{prefix}"
        if "{prefix}" not in configured:
            raise ConfigError(
                f"engine.fim_template {configured!r} is neither a built-in "
                f"({', '.join([*BUILTIN_TEMPLATES, PREFIX_ONLY])}) nor a template with {{prefix}}"
            )
        return "custom", configured
    if tokens is not None:
        return "model", f"{tokens.prefix}{{prefix}}{tokens.suffix}{{suffix}}{tokens.middle}"
    return PREFIX_ONLY, "{prefix}"


def render_fim(fim: FimInput, name: str, template: str, context_block: str = "") -> FimPrompt:
    """``context_block`` is the client's context as ``fim.j2`` laid it out."""
    prefix = context_block + fim.prefix
    # str.replace, not str.format: code is full of braces.
    prompt = template.replace("{prefix}", prefix).replace("{suffix}", fim.suffix)
    stop = _prefix_only_stops(fim.suffix) if "{suffix}" not in template else ()
    return FimPrompt(prompt=prompt, template=name, stop=stop)
