"""Governance steps of the pipeline: review the prompt before tokenization, the answer after.

The work itself is done by plugins (``govern_prompt``, ``check_completion``); this module
turns any task into named text parts for them, and their verdicts into a new task, a
refusal, or a reviewed answer.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection
from dataclasses import replace

import pluggy

from tether.errors import PolicyBlockedError, RequestError
from tether.findings import Finding
from tether.pipeline.fim import ContextSnippet
from tether.pipeline.reviews import CompletionReview, PromptReview
from tether.pipeline.task import ChatTask, CompletionTask, FimTask, Task

# Longest placeholder a restorer may have to wait for when it is split across chunks.
_HOLDBACK = 48

# Governing a prompt, fitting it to the context and checking the answer against it cost
# about 55 µs a KB of text. Beyond this many characters a server does that work in a
# worker thread, so that one large request does not hold up every other one on the
# event loop; below it the hop would cost more than it saves.
OFF_LOOP_CHARS = 32 * 1024


def parts_of(task: Task) -> dict[str, str]:
    """Every text of ``task`` that would reach the engine, by a name findings can cite."""
    parts = _texts_of(task)
    # Stop strings go to the engine too (a gateway's upstream), and into the trace and the
    # audit record with the other parameters.
    parts.update({f"stop[{i}]": stop for i, stop in enumerate(task.params.stop)})
    # So does the JSON schema the answer keeps to: its names, enums and consts are what
    # the model writes, and a required tool call's holds the functions' names.
    if task.params.response_format:
        parts["response_format"] = task.params.response_format
    if task.params.chosen_call_format:  # as a call the model chooses to write keeps to
        parts["chosen_call_format"] = task.params.chosen_call_format
    return parts


def _texts_of(task: Task) -> dict[str, str]:
    match task:
        case ChatTask(messages=messages, tools=tools):
            parts = {f"messages[{i}]": m["content"] for i, m in enumerate(messages)}
            if tools:  # the functions' names, descriptions and schemas, as the model reads them
                parts["tools"] = tools
            return parts
        case FimTask(fim=fim):
            parts = {"prefix": fim.prefix, "suffix": fim.suffix}
            parts.update({f"context[{i}]": s.text for i, s in enumerate(fim.context)})
            # File names and the language reach the prompt too (the context block, the
            # infill instruction), so a secret put there is scanned like any code.
            parts.update({f"context[{i}].filename": s.filename for i, s in enumerate(fim.context)})
            parts["language"] = fim.language
            return parts
        case CompletionTask(prompt=prompt):
            return {"prompt": prompt}


def is_large(task: Task) -> bool:
    """Whether ``task`` has more text than is worth governing on the event loop."""
    return sum(map(len, parts_of(task).values())) > OFF_LOOP_CHARS


def with_parts(task: Task, parts: dict[str, str]) -> Task:
    """``task`` with each text replaced by the part of the same name."""
    stop = tuple(parts.get(f"stop[{i}]", s) for i, s in enumerate(task.params.stop))
    if stop != task.params.stop:
        task = replace(task, params=replace(task.params, stop=stop))
    answer_format = parts.get("response_format", task.params.response_format)
    if answer_format != task.params.response_format:
        task = replace(task, params=replace(task.params, response_format=_as_json(answer_format)))
    call_format = parts.get("chosen_call_format", task.params.chosen_call_format)
    if call_format != task.params.chosen_call_format:
        task = replace(task, params=replace(task.params, chosen_call_format=_as_json(call_format)))
    match task:
        case ChatTask(messages=messages):
            chat = [{**m, "content": parts[f"messages[{i}]"]} for i, m in enumerate(messages)]
            return replace(task, messages=chat, tools=parts.get("tools", ""))
        case FimTask(fim=fim):
            context = tuple(
                ContextSnippet(
                    parts[f"context[{i}]"], parts.get(f"context[{i}].filename", s.filename)
                )
                for i, s in enumerate(fim.context)
            )
            governed = replace(
                fim,
                prefix=parts["prefix"],
                suffix=parts["suffix"],
                context=context,
                language=parts.get("language", fim.language),
            )
            return replace(task, fim=governed)
        case CompletionTask():
            return replace(task, prompt=parts["prompt"])


def _as_json(answer_format: str | None) -> str | None:
    """The governed ``response_format``: a value put in place of another in its JSON text
    (a redaction's marker, a pseudonym) is text, and left no JSON only where a value
    spanned a string's end, which is refused rather than sent on."""
    if answer_format is None:
        return None
    try:
        json.loads(answer_format)
    except ValueError:
        raise RequestError(
            "response_format (or the tools a required call is kept to) holds a value the "
            "policy replaces, and without it the schema is not JSON: take the value out",
            param="response_format",
        ) from None
    return answer_format


def describe_block(findings: list[Finding]) -> str:
    places = "; ".join(
        f"{f.rule_id} in {f.message}" + (f" at line {f.line}, column {f.column}" if f.line else "")
        for f in findings[:5]  # a plugin's finding may have no place: line 0
    )
    return (
        f"the prompt was blocked by policy: {places}. Remove the value, or ask an operator "
        "to allow it by its fingerprint, which this request's audit record holds where the "
        "audit log is on (policy.allow, for tether's own rules; a plugin's rule is changed "
        "in that plugin)"
    )


def govern(
    plugins: pluggy.PluginManager, task: Task, principal: str | None
) -> tuple[Task, PromptReview]:
    """Run ``govern_prompt``; a block finding raises, anything else rewrites the task."""
    review = govern_texts(plugins, task.kind, parts_of(task), principal)
    return with_parts(task, review.parts), review


def govern_texts(
    plugins: pluggy.PluginManager,
    kind: str,
    parts: dict[str, str],
    principal: str | None,
    reserved: tuple[str, ...] = (),
) -> PromptReview:
    """Run ``govern_prompt`` on named texts that are not a generation's (what is embedded
    or tokenized, context a plugin wrote beside texts governed before, ``reserved``); a
    block finding raises, and the review holds the texts as governed."""
    review = PromptReview(kind=kind, parts=dict(parts), principal=principal, reserved=reserved)
    plugins.hook.govern_prompt(review=review)
    if review.blocking:
        raise PolicyBlockedError(describe_block(review.blocking), findings=review.findings)
    return review


def check(
    plugins: pluggy.PluginManager,
    task: Task,
    text: str,
    *,
    cut_short: bool = False,
    given_back: frozenset[str] = frozenset(),
) -> CompletionReview:
    """Run ``check_completion`` on a whole answer (``cut_short``: at its token limit;
    ``given_back``: fingerprints of the pseudonymized values put back in it)."""
    match task:
        case FimTask(fim=fim):
            review = CompletionReview(
                kind=task.kind,
                text=text,
                language=fim.language,
                prefix=fim.prefix,
                suffix=fim.suffix,
            )
        case CompletionTask(prompt=prompt):
            # A plain completion continues its prompt: that is the code before it.
            review = CompletionReview(kind=task.kind, text=text, prefix=prompt)
        case ChatTask():
            review = CompletionReview(kind=task.kind, text=text)
    review.cut_short, review.given_back = cut_short, given_back
    plugins.hook.check_completion(review=review)
    # A finding whose action is to block blocks, whichever plugin made it: as a prompt's
    # does, and as the audit record of the answer will say.
    review.blocked = review.blocked or any(f.action == "block" for f in review.findings)
    return review


def file_checker(plugins: pluggy.PluginManager) -> Callable[[str, str], list[Finding]] | None:
    """The third-party plugins' ``check_completion``, for whole files (``tether check``,
    ``POST /v1/check``): each file is reviewed as an answer of kind ``file``, so that CI
    runs the rules the server runs on answers. A function of a file's text and language
    that gives their findings; None when no such plugin is enabled. Built-in plugins are
    left out: the caller's Checker runs their rules on whole files itself."""
    builtins = [p for name, p in plugins.list_name_plugin() if name.startswith("tether.")]
    hook = plugins.subset_hook_caller("check_completion", remove_plugins=builtins)
    if not hook.get_hookimpls():
        return None

    def check(code: str, language: str) -> list[Finding]:
        review = CompletionReview(kind="file", text=code, language=language)
        hook(review=review)
        return list(review.findings)

    return check


# The start of a placeholder such as <EMAIL_1> at the very end of an answer.
_UNFINISHED_PLACEHOLDER = re.compile(r"<[A-Z][A-Z0-9]*(?:_[A-Z0-9]*)*\Z")
# The end of a piece that may yet become a placeholder: a "<" and what may follow it.
_PLACEHOLDER_START = re.compile(r"<(?:[A-Z][A-Z0-9]*(?:_[A-Z0-9]*)*)?\Z")


class StreamRestorer:
    """Puts pseudonymized values back into text as it streams out.

    A placeholder may arrive split across chunks, so a short tail that could be the start
    of one is held back until the next chunk (or the end) shows what it is; any other
    text, a "<" in code included, goes on at once. With the request's ``placeholders``
    known, only a tail that begins one of them is held (and dropped where the answer
    ends in it), so that ``List<T`` is not taken for the start of ``<EMAIL_1>``.
    """

    def __init__(self, restore: Callable[[str], str], placeholders: Collection[str] = ()) -> None:
        self._restore = restore
        self._pending = ""
        self._starts = (
            frozenset(p[:size] for p in placeholders for size in range(1, len(p)))
            if placeholders
            else None
        )

    def feed(self, text: str, *, last: bool) -> str:
        pending, self._pending = self._pending + text, ""
        if last:  # cut off inside a placeholder (a token limit): its start must not go out
            return self._restore(pending[: self._cut_inside(pending)])
        held = self._may_become_one(pending)
        ready, self._pending = pending[:held], pending[held:]
        return self._restore(ready)

    def _may_become_one(self, text: str) -> int:
        """Where a tail of ``text`` that may yet become a placeholder begins, or its end."""
        if self._starts is None:
            found = _PLACEHOLDER_START.search(text, max(0, len(text) - _HOLDBACK))
            return len(text) if found is None else found.start()
        at = text.rfind("<", max(0, len(text) - _HOLDBACK))
        return at if at >= 0 and text[at:] in self._starts else len(text)

    def _cut_inside(self, text: str) -> int:
        """Where a placeholder that ``text`` ends inside begins (a "<" alone is text)."""
        if self._starts is None:
            found = _UNFINISHED_PLACEHOLDER.search(text)
            return len(text) if found is None else found.start()
        at = self._may_become_one(text)
        return at if len(text) - at > 1 else len(text)
