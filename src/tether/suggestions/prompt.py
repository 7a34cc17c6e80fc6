"""The suggestion prompt, and getting code back out of a model's answer."""

from __future__ import annotations

import difflib
from pathlib import Path

from tether.languages import canonical
from tether.markdown import fenced_blocks, holds_fence, outermost_block
from tether.templates import PromptTemplates


def suggestion_messages(
    path: Path, source: str, instruction: str, templates: PromptTemplates | None = None
) -> list[dict[str, str]]:
    user = (templates or PromptTemplates(None)).render(
        "suggest",
        filename=path.name,
        language=canonical("", path),
        source=source,
        instruction=instruction,
    )
    return [
        {
            "role": "system",
            "content": "You edit source files. Answer with the complete updated file in one "
            "fenced code block and nothing else.",
        },
        {"role": "user", "content": user},
    ]


def extract_code(answer: str, like: str = "") -> str:
    """The file in a model's answer: its longest fenced block, or the whole answer when it
    has no fence.

    A file that holds fences itself (Markdown, a docstring's example) can be read more
    than one way: a "```" fence around it closes on its first "```" line, and a model may
    give such a file unfenced. Given ``like``, the file the model was asked to change, the
    reading most like it is taken (the longest block, counting a fence that ends a line of
    prose as opening one, the answer's outermost fence, or the whole answer, preferred in
    that order), so a fence inside the file cannot cut it short. A file without fences is
    always its answer's longest block.
    """
    blocks = [block.code for block in fenced_blocks(answer)]
    # "Here it is: ```python" opens no block in CommonMark, but a model means one.
    loose = [block.code for block in fenced_blocks(answer, lenient=True)]
    if not loose:
        return _ending(answer)
    readings = [_ending(max([*blocks, *loose], key=len))]
    outermost = outermost_block(answer)
    # Only a file with fences of its own is read past its block: one without, quoted in
    # a short block and followed by prose, is more like the whole answer than the block.
    if outermost is not None and holds_fence(like):
        readings += [_ending(outermost.code), _ending(answer)]
    # Most answers read one way only: compare (a costly diff) only when they differ.
    distinct = list(dict.fromkeys(readings))
    return (
        max(distinct, key=lambda reading: _likeness(reading, like)) if distinct[1:] else distinct[0]
    )


def _ending(code: str) -> str:
    return code if code.endswith("\n") or not code else code + "\n"


def _likeness(code: str, like: str) -> float:
    """How much of ``code`` and ``like`` is the same lines, from 0 to 1; line endings aside."""
    lines = [line.removesuffix("\r") for line in code.split("\n")]
    wanted = [line.removesuffix("\r") for line in like.removeprefix("\ufeff").split("\n")]
    return difflib.SequenceMatcher(None, wanted, lines, autojunk=False).ratio()
