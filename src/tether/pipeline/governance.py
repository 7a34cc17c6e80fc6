"""Governance steps of the pipeline: review the prompt before tokenization, the answer after.

The work itself is done by plugins (``govern_prompt``, ``check_completion``); this module
turns any request into named text parts for them, and their verdicts into a new request,
a refusal, or a changed answer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import replace

import pluggy

from tether.engines.base import GenerationChunk
from tether.errors import PolicyBlockedError
from tether.findings import Finding
from tether.pipeline.fim import ContextSnippet
from tether.pipeline.reviews import CompletionReview, PromptReview
from tether.pipeline.task import Task

# Longest placeholder a restorer may have to wait for when it is split across chunks.
_HOLDBACK = 48


def parts_of(task: Task) -> dict[str, str]:
    if task.kind == "chat":
        return {f"messages[{i}]": m["content"] for i, m in enumerate(task.messages or [])}
    if task.kind == "fim" and task.fim is not None:
        parts = {"prefix": task.fim.prefix, "suffix": task.fim.suffix}
        parts.update({f"context[{i}]": s.text for i, s in enumerate(task.fim.context)})
        return parts
    return {"prompt": task.prompt or ""}


def with_parts(task: Task, parts: dict[str, str]) -> Task:
    if task.kind == "chat":
        messages = [
            {**m, "content": parts[f"messages[{i}]"]} for i, m in enumerate(task.messages or [])
        ]
        return replace(task, messages=messages)
    if task.kind == "fim" and task.fim is not None:
        context = tuple(
            ContextSnippet(parts[f"context[{i}]"], s.filename)
            for i, s in enumerate(task.fim.context)
        )
        fim = replace(task.fim, prefix=parts["prefix"], suffix=parts["suffix"], context=context)
        return replace(task, fim=fim)
    return replace(task, prompt=parts["prompt"])


def describe_block(findings: list[Finding]) -> str:
    places = "; ".join(
        f"{f.rule_id} in {f.message} at line {f.line}, column {f.column}" for f in findings[:5]
    )
    return (
        f"the prompt was blocked by policy: {places}. Remove the value, or ask an operator "
        "to allow it by its fingerprint (policy.allow)"
    )


def govern(
    plugins: pluggy.PluginManager, task: Task, principal: str | None
) -> tuple[Task, PromptReview]:
    """Run ``govern_prompt``; a block finding raises, anything else rewrites the task."""
    review = PromptReview(kind=task.kind, parts=parts_of(task), principal=principal)
    plugins.hook.govern_prompt(review=review)
    if review.blocking:
        raise PolicyBlockedError(describe_block(review.blocking), findings=review.findings)
    return with_parts(task, review.parts), review


def check_answer(plugins: pluggy.PluginManager, task: Task, text: str) -> CompletionReview:
    fim = task.fim
    review = CompletionReview(
        kind=task.kind,
        text=text,
        language=fim.language if fim else "",
        # A plain completion continues its prompt: that is the code before it.
        prefix=fim.prefix if fim else (task.prompt or ""),
        suffix=fim.suffix if fim else "",
    )
    plugins.hook.check_completion(review=review)
    return review


async def reviewed(
    chunks: AsyncIterator[GenerationChunk],
    restore: Callable[[str], str] | None,
    check: Callable[[str], CompletionReview],
) -> AsyncIterator[GenerationChunk]:
    """Restore pseudonyms as text streams out, and attach findings to the last chunk."""
    emitted: list[str] = []
    raw: list[str] = []
    pending = ""
    try:
        async for chunk in chunks:
            raw.append(chunk.text)
            if restore is None:
                text = chunk.text
            else:
                # Hold back a tail that may be the start of a placeholder split in two.
                pending += chunk.text
                cut = pending.rfind("<")
                keep = chunk.finish_reason is None and cut >= 0 and len(pending) - cut < _HOLDBACK
                ready, pending = (pending[:cut], pending[cut:]) if keep else (pending, "")
                text = restore(ready)
            emitted.append(text)
            if chunk.finish_reason is None:
                if text:
                    yield replace(chunk, text=text)
                continue
            full = "".join(emitted)
            review = check(full)
            yield replace(
                chunk,
                text=text,
                findings=review.findings,
                blocked=review.blocked,
                reviewed_text=review.text if review.text != full else None,
                engine_text="".join(raw) if restore is not None else None,
            )
    finally:
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()
