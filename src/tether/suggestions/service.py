"""A suggestion from start to finish: the request to the model, and the patch from its answer."""

from __future__ import annotations

import difflib
import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from tether.compliance.secrets import policy_secret_scan
from tether.compliance.syntax import parse_python
from tether.engines.base import SamplingParams
from tether.errors import ContextLengthError
from tether.languages import canonical
from tether.markdown import fenced_blocks
from tether.pipeline import ChatTask, Completion
from tether.settings import PolicySettings
from tether.store.split import SPLIT_LANGUAGES, has_syntax_errors
from tether.suggestions.patch import make_patch, split_lines
from tether.suggestions.prompt import extract_code, suggestion_messages
from tether.suggestions.secrets import put_back_secrets
from tether.templates import PromptTemplates


@dataclass(frozen=True)
class Suggestion:
    patch: str  # empty when the model proposed no change
    truncated: bool  # the answer hit max_tokens, after its file (else no patch)
    completion: Completion
    problem: str = ""  # why the answer gives no file to compare, though the model answered


_ONE_WORD = re.compile(r"\s*[\w'-]+[.!]?\s*\Z")  # "Done", "None.", "OK!"
# Code runs at about three characters a token; the answer is the whole file again, so it
# gets room for half as much again as the file, plus room to add to a short one.
CHARS_PER_TOKEN = 3
ROOM_TO_ADD = 256


def answer_budget(source: str, default: int, n_ctx: int) -> int:
    """Tokens a rewrite of ``source`` may take when the caller did not say.

    Bounded by the file, not the context window: a model that rambles on an empty file
    stops after ``ROOM_TO_ADD`` tokens instead of filling the window. The engine lowers
    it further when the prompt leaves less room.
    """
    wanted = len(source) // CHARS_PER_TOKEN * 3 // 2 + ROOM_TO_ADD
    return min(max(wanted, default), n_ctx) if n_ctx else max(wanted, default)


def suggestion_task(
    path: str,
    source: str,
    instruction: str,
    params: SamplingParams,
    templates: PromptTemplates,
    n_ctx: int,
    snippets: bool | None = None,
) -> ChatTask:
    if not params.max_tokens_explicit:
        params = replace(params, max_tokens=answer_budget(source, params.max_tokens, n_ctx))
    # A byte-order mark is no part of the code the model reads; the patch keeps it.
    messages = suggestion_messages(Path(path), _as_shown(source), instruction, templates)
    return ChatTask(params, messages, snippets=snippets, purpose="suggest")


def _as_shown(source: str) -> str:
    """``source`` as the model reads it: lines, each ended. Without a final line end the
    fence after the file stood on its last line ("return x```"), where it closes no
    block, and a file of lone CRs (classic Mac OS) read as one long line."""
    if usual_line_ending(source) == "\r":
        source = source.replace("\r", "\n")
    source = source.removeprefix("\ufeff")
    return source if not source or source.endswith("\n") else source + "\n"


def file_too_long(path: str, exc: ContextLengthError) -> ContextLengthError:
    """The engine's refusal of a prompt too long for its window, said of the file: a
    suggestion's prompt is the file and the instruction, so "shorten the prompt" named
    nothing the user had written. One about the max_tokens asked for stays as it is."""
    if exc.param == "max_tokens":
        return exc
    why = str(exc).split("; ")[0]
    return ContextLengthError(
        f"{path} is too long for a suggestion in this context window ({why}): the model "
        "is shown the whole file and writes it again whole; ask on a shorter file, or "
        "serve a model with a larger window (engine.n_ctx)",
        prompt_tokens=exc.prompt_tokens,
    )


def _body(line: str) -> str:
    return line.removesuffix("\n").removesuffix("\r")


def usual_line_ending(source: str) -> str:
    """The ending most of ``source``'s lines have: "\r\n" or "\n", or "\r" where no
    line ends in "\n" and one ends in a lone "\r" (as classic Mac OS wrote them)."""
    # Any CR in a file without a LF ends a line, even the one CR of a one-line file
    # (``x = "a<CR>b"``): Python's tokenizer and JavaScript end a line at a lone CR (a raw
    # one in a string is a syntax error there, and a triple-quoted or template string reads
    # it as "\n"), as tether check, editors that detect line ends and classic Mac OS do.
    # Read as one line of a LF file, a line the model added would end in "\n" beside a
    # line the language ends at a CR: the file's lines would end two ways.
    if "\n" not in source and "\r" in source:
        return "\r"
    crlf = source.count("\r\n")
    return "\r\n" if crlf > source.count("\n") - crlf else "\n"


def ends_its_last_line(source: str) -> bool:
    """Whether ``source``'s last line has its line end; an empty file has no line that
    lacks one."""
    return not source or source.endswith(usual_line_ending(source)[-1])


def line_end_runs(text: str) -> list[tuple[str, int]]:
    """How the lines of ``text`` end ("\r\n" or "\n"), in order, as runs of one ending:
    what a file whose lines end both ways needs to be written again, beyond its usual one."""
    ends = [line[len(_body(line)) :] for line in split_lines(text) if line.endswith("\n")]
    return [(end, len(list(run))) for end, run in itertools.groupby(ends)]


def with_line_end_runs(code: str, runs: Sequence[Sequence[object]]) -> str | None:
    """``code`` with its lines ended as ``runs`` (from :func:`line_end_runs`) says; None
    where it has another number of lines."""
    lines = split_lines(code)
    # Counted before they are spelled out: a manifest is anyone's text, its counts too.
    if sum(line.endswith("\n") for line in lines) != sum(int(str(n)) for _, n in runs):
        return None
    ends = [str(end) for end, count in runs for _ in range(int(str(count)))]
    return "".join(_body(line) + end for line, end in zip(lines, ends, strict=False)) + (
        lines[-1] if len(lines) > len(ends) else ""
    )


def keep_line_endings(source: str, proposed: str) -> str:
    """``proposed`` written the way ``source`` is: a line the model kept keeps its own
    ending, a new line takes the file's usual one ("\r\n" when most of its lines end so),
    and a byte order mark stays. Models answer with "\n"; without this a file with
    "\r\n" endings would change on every line."""
    if source.startswith("\ufeff") and not proposed.startswith("\ufeff"):
        proposed = "\ufeff" + proposed
    if "\r" not in source and "\r" not in proposed:
        return proposed
    usual = usual_line_ending(source)
    if usual == "\r":  # every line ends so; git and the patch read the file as one line
        return proposed.replace("\r\n", "\n").replace("\n", "\r")
    old, new = split_lines(source), split_lines(proposed)
    endings = [usual] * len(new)
    matcher = difflib.SequenceMatcher(
        None, [_body(line) for line in old], [_body(line) for line in new], autojunk=False
    )
    for a, b, size in matcher.get_matching_blocks():
        for k in range(size):
            kept = old[a + k][len(_body(old[a + k])) :]
            endings[b + k] = kept or usual
    if new and not proposed.endswith("\n"):
        endings[-1] = ""
    return "".join(_body(line) + ending for line, ending in zip(new, endings, strict=True))


def _no_file(answer: str, source: str, language: str) -> str:
    """Why an answer without a code block cannot be the file again, or ""."""
    if any(fenced_blocks(answer, lenient=True)) or not source.strip():
        return ""
    if not answer.strip():
        return "the model's answer is empty"
    if _ONE_WORD.match(answer) and len(source.strip().splitlines()) > 1:
        return f"the model answered {answer.strip()!r} without a code block"
    if _parses(source, language) and not _parses(answer, language):
        return f"the model answered without a code block, and its answer is not {language} code"
    return ""


def _parses(text: str, language: str) -> bool:
    """Whether ``text`` parses as ``language``; true where tether cannot tell."""
    if language == "python":
        return not isinstance(parse_python(text), SyntaxError)
    if language in SPLIT_LANGUAGES:
        return not has_syntax_errors(text, language)
    return True


def _with_secrets(
    source: str, proposed: str, completion: Completion, policy: PolicySettings | None
) -> tuple[str, str]:
    """``proposed`` with the secrets the policy kept from the model put back where it kept
    their placeholders, and why it cannot be used ("" when it can)."""
    redacted = {
        (f.rule_id, f.fingerprint)
        for f in completion.findings.policy
        if f.action in ("redact", "block")
    }
    if not redacted or "[REDACTED:" not in proposed:
        return proposed, ""
    found = policy_secret_scan(policy)(source)
    # The scanner's findings in the file that the policy redacted in the prompt.
    hidden = [f for f in found if (f.rule_id, f.fingerprint) in redacted]
    put_back = put_back_secrets(source, proposed, hidden)
    if not put_back.unsure:
        return put_back.text, ""
    lines = ", ".join(map(str, put_back.unsure))
    return "", (
        f"the model's file holds a placeholder of a secret the policy kept from it "
        f"([REDACTED:...], line {lines} of its file) where the file had more than one "
        "such secret, so tether cannot tell which to put back, and will not write the "
        "placeholder into the code"
    )


def suggestion_from(
    path: str,
    source: str,
    completion: Completion,
    policy: PolicySettings | None = None,
    max_tokens: int | None = None,
) -> Suggestion:
    """The patch from the model's file to ``source``; a blocked answer (empty, by design)
    is no file, so it proposes nothing rather than deleting every line. ``policy`` is the
    one that governed the prompt: the secrets it redacted go back into the model's file.
    ``max_tokens`` is what the answer was allowed: one cut off short of it ran out of
    context window instead."""
    if completion.blocked:
        return Suggestion(patch="", truncated=False, completion=completion)
    truncated = completion.finish_reason == "length"
    problem = _no_file(completion.text, source, canonical("", path))
    if not problem and truncated and _cut_inside_the_file(completion.text):
        # What is missing would read as lines to delete: the rest of the file.
        used = completion.completion_tokens
        if max_tokens is not None and used < max_tokens:
            prompt = completion.prompt_tokens
            cause = (
                f"the answer was cut off at {used} tokens, where the prompt ({prompt} tokens, "
                "the file in it) and the answer filled the model's context window"
            )
            remedy = "the file is too long to be written again whole in this context: ask on "
            remedy += "a shorter file, or serve a model with a larger window (engine.n_ctx)"
        else:
            cause = f"the answer was cut off at {used} tokens (max_tokens)"
            remedy = "raise --max-tokens, or ask for a smaller change"
        # An empty file has no rest to lose: its patch would add a file that stops part way.
        harm = "delete the rest of the file" if source.strip() else "write a file cut off part way"
        return Suggestion(
            patch="",
            truncated=True,
            completion=completion,
            problem=f"{cause} while the model was still writing the file, and a patch from "
            f"it would {harm}; nothing was proposed ({remedy})",
        )
    if problem:
        # Prose, a word or nothing in place of the file would become a patch deleting it.
        problem += ", so it holds no file to compare"
    else:
        proposed = extract_code(completion.text, like=source)
        proposed, problem = _with_secrets(source, proposed, completion, policy)
    if problem:
        return Suggestion(
            patch="",
            truncated=truncated,
            completion=completion,
            problem=f"{problem}; nothing was proposed (retry, perhaps with another --seed, "
            "or put the instruction more plainly)",
        )
    if not ends_its_last_line(source):
        proposed = proposed.removesuffix("\n")
    proposed = keep_line_endings(source, proposed)
    return Suggestion(
        patch=make_patch(source, proposed, path),
        truncated=truncated,
        completion=completion,
    )


def _cut_inside_the_file(answer: str) -> bool:
    """Whether an answer that ran out of tokens ended inside its file: no fence at all (the
    answer is the file), or its last fenced block left open. A model that closed the
    block and rambled on gave its whole file."""
    blocks = list(fenced_blocks(answer, lenient=True))
    return not blocks or not blocks[-1].closed


def secrets_put_back(source: str, proposed: str, policy: PolicySettings | None) -> str:
    """``proposed`` with the secrets ``policy`` redacts from ``source`` put back where it
    keeps their placeholders, as ``suggestion_from`` did: for ``repro verify``, which has
    the committed file but not the prompt's findings. A placeholder that cannot be told
    stays, and the file then differs."""
    if "[REDACTED:" not in proposed:
        return proposed
    found = policy_secret_scan(policy)(source)
    hidden = [f for f in found if f.action in ("redact", "block")]
    return put_back_secrets(source, proposed, hidden).text
