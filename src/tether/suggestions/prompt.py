"""The suggestion prompt, and getting code back out of a model's answer."""

from __future__ import annotations

import re
from pathlib import Path

from tether.templates import PromptTemplates

_FENCE = re.compile(r"```[^\n`]*\n(.*?)(?:```|\Z)", re.DOTALL)

_LANGUAGES = {
    ".py": "python",
    ".js": "javascript",
    ".ts": "typescript",
    ".tsx": "tsx",
    ".go": "go",
    ".rs": "rust",
    ".java": "java",
    ".c": "c",
    ".h": "c",
    ".cpp": "cpp",
    ".rb": "ruby",
    ".sh": "bash",
    ".sql": "sql",
    ".md": "markdown",
    ".toml": "toml",
    ".yaml": "yaml",
}


def language_of(path: Path) -> str:
    return _LANGUAGES.get(path.suffix.lower(), "")


def suggestion_messages(
    path: Path, source: str, instruction: str, templates: PromptTemplates | None = None
) -> list[dict[str, str]]:
    user = (templates or PromptTemplates(None)).render(
        "suggest",
        filename=path.name,
        language=language_of(path),
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
    blocks = _FENCE.findall(answer)
    code = max(blocks, key=len) if blocks else answer
    return code if code.endswith("\n") or not code else code + "\n"
