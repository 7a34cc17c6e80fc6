"""Fill-in-the-middle prompts, rendered on the server from the model's own FIM tokens.

Rendering here, not in each backend, is what makes FIM correct everywhere: vLLM, an
Ollama or llama.cpp upstream and the embedded engine all receive the same plain prompt.
A model without FIM tokens gets a prefix-only prompt and stops where the suffix begins.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tether.engines.base import FimTokens
from tether.errors import ConfigError
from tether.textfile import file_lines

# PSM ("prefix, suffix, middle") unless the family was trained suffix-first.
BUILTIN_TEMPLATES: dict[str, str] = {
    "qwen2.5-coder": "<|fim_prefix|>{prefix}<|fim_suffix|>{suffix}<|fim_middle|>",
    "starcoder2": "<fim_prefix>{prefix}<fim_suffix>{suffix}<fim_middle>",
    "deepseek-coder": "<｜fim▁begin｜>{prefix}<｜fim▁hole｜>{suffix}<｜fim▁end｜>",  # noqa: RUF001
    "codellama": "<PRE> {prefix} <SUF>{suffix} <MID>",
    "codestral": "[SUFFIX]{suffix}[PREFIX]{prefix}",
}
PREFIX_ONLY = "prefix-only"  # the code before the cursor, continued as it comes
# For models without FIM tokens: the same prompt with an editor's care around the answer
# (``tether.pipeline.infill``), or an instruction through the model's chat template with
# the same care.
PREFIX_EDITOR = "prefix-editor"
CHAT_INFILL = "chat-infill"
WITHOUT_FIM_TOKENS = (PREFIX_ONLY, PREFIX_EDITOR, CHAT_INFILL)
DEFAULT_WITHOUT_FIM_TOKENS = PREFIX_EDITOR
HOLE = "<FILL>"
INFILL_INSTRUCTION = (
    "Fill in the code at {hole} in this {language}file. Answer with only the code that "
    "replaces {hole}, nothing else.\n```\n{code}```"
)


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
    """Stop where the model starts writing the code that already follows the cursor: its
    first line, whole (str.splitlines() cut it at a U+2028 or a form feed)."""
    for line in file_lines(suffix):
        if len(line.strip()) >= 3:
            return (*PREFIX_ONLY_STOPS, line.strip())
        if line.strip():
            break
    return PREFIX_ONLY_STOPS


def resolve_template(configured: str | None, tokens: FimTokens | None) -> tuple[str, str]:
    """(name, template) for this model: configured, else its own tokens, else the best
    way measured for models without them."""
    if configured:
        if configured in BUILTIN_TEMPLATES:
            return configured, BUILTIN_TEMPLATES[configured]
        if configured in WITHOUT_FIM_TOKENS:
            return configured, "{prefix}"
        if "{prefix}" not in configured:
            known = ", ".join([*BUILTIN_TEMPLATES, *WITHOUT_FIM_TOKENS])
            raise ConfigError(
                f"engine.fim_template {configured!r} is neither a built-in ({known}) nor a "
                "template with {prefix}"
            )
        return "custom", configured
    if tokens is not None:
        return "model", f"{tokens.prefix}{{prefix}}{tokens.suffix}{{suffix}}{tokens.middle}"
    return DEFAULT_WITHOUT_FIM_TOKENS, "{prefix}"


def edits_answers(name: str) -> bool:
    """Whether answers under template ``name`` go through the editor's filter."""
    return name in (PREFIX_EDITOR, CHAT_INFILL)


def asks_in_chat(name: str) -> bool:
    return name == CHAT_INFILL


def infill_request(fim: FimInput, context_block: str) -> str:
    """The instruction that asks a chat model for the code at the hole."""
    language = f"{fim.language} " if fim.language else ""
    code = f"{context_block}{fim.prefix}{HOLE}{fim.suffix}"
    code += "" if code.endswith("\n") else "\n"
    return INFILL_INSTRUCTION.format(hole=HOLE, language=language, code=code)


def render_fim(fim: FimInput, name: str, template: str, context_block: str = "") -> FimPrompt:
    """``context_block`` is the client's context as ``fim.j2`` laid it out."""
    prefix = context_block + fim.prefix
    # str.replace, not str.format: code is full of braces.
    prompt = template.replace("{prefix}", prefix).replace("{suffix}", fim.suffix)
    # The editor's filter decides where a prefix-only answer ends; raw, stop sequences do.
    raw = "{suffix}" not in template and not edits_answers(name)
    stop = _prefix_only_stops(fim.suffix) if raw else ()
    return FimPrompt(prompt=prompt, template=name, stop=stop)
