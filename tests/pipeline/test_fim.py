from __future__ import annotations

import pytest

from tether.engines.base import FimTokens
from tether.errors import ConfigError
from tether.pipeline.fim import (
    BUILTIN_TEMPLATES,
    DEFAULT_WITHOUT_FIM_TOKENS,
    ContextSnippet,
    FimInput,
    edits_answers,
    infill_request,
    render_fim,
    resolve_template,
)


def test_model_tokens_win_over_prefix_only() -> None:
    tokens = FimTokens("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>")
    name, template = resolve_template(None, tokens)
    prompt = render_fim(FimInput("def f(", ")\n"), name, template)
    assert name == "model" and not edits_answers(name)  # the model's answer, as it comes
    assert prompt.prompt == "<|fim_prefix|>def f(<|fim_suffix|>)\n<|fim_middle|>"
    assert prompt.stop == ()
    assert not any(edits_answers(family) for family in BUILTIN_TEMPLATES)


@pytest.mark.parametrize(
    ("family", "expected"),
    [
        ("qwen2.5-coder", "<|fim_prefix|>A<|fim_suffix|>B<|fim_middle|>"),
        ("starcoder2", "<fim_prefix>A<fim_suffix>B<fim_middle>"),
        ("codellama", "<PRE> A <SUF>B <MID>"),
        ("codestral", "[SUFFIX]B[PREFIX]A"),
    ],
)
def test_builtin_families(family: str, expected: str) -> None:
    name, template = resolve_template(family, None)
    assert render_fim(FimInput("A", "B"), name, template).prompt == expected


def test_all_builtins_have_both_holes() -> None:
    for template in BUILTIN_TEMPLATES.values():
        assert "{prefix}" in template and "{suffix}" in template


def test_braces_in_code_are_kept() -> None:
    name, template = resolve_template("starcoder2", None)
    prompt = render_fim(FimInput("x = {'a': 1}\n{prefix}", "{suffix}"), name, template).prompt
    assert "x = {'a': 1}\n{prefix}" in prompt and prompt.count("{suffix}") == 1


def test_prefix_only_stops_where_the_suffix_begins() -> None:
    name, template = resolve_template("prefix-only", None)
    prompt = render_fim(FimInput("def f():\n    ", "\n    return total\n"), name, template)
    assert prompt.prompt == "def f():\n    "
    assert "return total" in prompt.stop and "\n\n" in prompt.stop


def test_models_without_fim_tokens_get_the_editor_by_default() -> None:
    name, template = resolve_template(None, None)
    prompt = render_fim(FimInput("def f():\n    ", "\n    return total\n"), name, template)
    assert name == DEFAULT_WITHOUT_FIM_TOKENS and edits_answers(name)
    assert prompt.prompt == "def f():\n    " and prompt.stop == ()


def test_chat_infill_names_the_hole() -> None:
    asked = infill_request(FimInput("a = ", "\nb = 2\n", "python"), "")
    assert "```\na = <FILL>\nb = 2\n```" in asked and "python file" in asked


def test_context_block_comes_before_the_prefix() -> None:
    fim = FimInput("x = ", "y\n", "python", (ContextSnippet("def helper(): ...", "util.py"),))
    block = "# util.py\ndef helper(): ...\n\n"
    name, template = resolve_template("starcoder2", None)
    prompt = render_fim(fim, name, template, block).prompt
    assert prompt == f"<fim_prefix>{block}x = <fim_suffix>y\n<fim_middle>"


def test_custom_template_needs_prefix() -> None:
    with pytest.raises(ConfigError, match="built-in"):
        resolve_template("<fim>", None)
    assert resolve_template("<p>{prefix}<s>{suffix}<m>", None)[0] == "custom"


@pytest.mark.parametrize("odd", ["\u2028", "\f", "\x85", "\x1c"])
def test_prefix_only_stops_at_the_whole_line_after_the_cursor(odd: str) -> None:
    # str.splitlines() ends a line at each of these; files, editors and git do not.
    name, template = resolve_template("prefix-only", None)
    suffix = f"\n    return {odd}total\n"
    prompt = render_fim(FimInput("def f():\n    ", suffix), name, template)
    assert f"return {odd}total" in prompt.stop and "return" not in prompt.stop


@pytest.mark.parametrize("end", ["\r\n", "\r"])
def test_prefix_only_stops_at_a_line_ended_by_a_carriage_return(end: str) -> None:
    name, template = resolve_template("prefix-only", None)
    prompt = render_fim(FimInput("def f():", f"{end}    return total{end}"), name, template)
    assert "return total" in prompt.stop
