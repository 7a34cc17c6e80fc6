"""A suggestion from start to finish: the request to the model, and the patch from its answer."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from tether.engines.base import SamplingParams
from tether.pipeline import ChatTask, Completion
from tether.suggestions.patch import make_patch
from tether.suggestions.prompt import extract_code, suggestion_messages
from tether.templates import PromptTemplates


@dataclass(frozen=True)
class Suggestion:
    patch: str  # empty when the model proposed no change
    truncated: bool  # the answer hit max_tokens: the patch may drop the end of the file
    completion: Completion


def suggestion_task(
    path: str,
    source: str,
    instruction: str,
    params: SamplingParams,
    templates: PromptTemplates,
    n_ctx: int,
) -> ChatTask:
    if not params.max_tokens_explicit:  # room for a whole file; the engine lowers it to fit
        params = replace(params, max_tokens=max(params.max_tokens, n_ctx))
    messages = suggestion_messages(Path(path), source, instruction, templates)
    return ChatTask(params, messages)


def suggestion_from(path: str, source: str, completion: Completion) -> Suggestion:
    proposed = extract_code(completion.text)
    if not source.endswith("\n"):
        proposed = proposed.removesuffix("\n")
    return Suggestion(
        patch=make_patch(source, proposed, path),
        truncated=completion.finish_reason == "length",
        completion=completion,
    )
