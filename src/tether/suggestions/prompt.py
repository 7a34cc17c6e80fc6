"""The suggestion prompt, and getting code back out of a model's answer."""

from __future__ import annotations

from pathlib import Path

from tether.languages import canonical
from tether.markdown import fenced_blocks
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


def extract_code(answer: str) -> str:
    """The longest fenced block of the answer, or the whole answer when it has no fence."""
    blocks = [block.code for block in fenced_blocks(answer)]
    code = max(blocks, key=len) if blocks else answer
    return code if code.endswith("\n") or not code else code + "\n"
