"""Getting the file back out of a model's answer, when the file itself holds fences."""

from __future__ import annotations

import pytest

from tether.engines.base import SamplingParams
from tether.suggestions import extract_code
from tether.suggestions.service import suggestion_task
from tether.templates import PromptTemplates

DOC = (
    'def f():\n    """Run f.\n\n    ```python\n    f()\n    ```\n    """\n    return 1\n'
    "\n\ndef g():\n    return 2\n"
)
NEW_DOC = DOC.replace("def g():", "def g() -> int:")
README = "# calc\n\nUse it:\n\n```python\nfrom calc import add\nadd(1, 2)\n```\n\nMIT licence.\n"
NEW_README = README.replace("Use it:", "Use it like this:")


def test_extract_code_takes_the_longest_fence() -> None:
    answer = "Sure!\n```python\nx = 1\n```\nand\n```python\ndef f():\n    return 2\n```\nDone."
    assert extract_code(answer) == "def f():\n    return 2\n"
    assert extract_code("y = 2") == "y = 2\n"
    assert extract_code("```\nunterminated = True\n") == "unterminated = True\n"


@pytest.mark.parametrize("fence", ["```", "````", "~~~"])
def test_a_docstring_with_a_fenced_example_is_kept_whole(fence: str) -> None:
    answer = f"{fence}python\n{NEW_DOC}{fence}\n"
    assert extract_code(answer, like=DOC) == NEW_DOC
    assert extract_code(answer) == NEW_DOC  # indented fences close nothing, with or without


@pytest.mark.parametrize(
    "answer",
    [
        f"```markdown\n{NEW_README}```\n",  # a fence no longer than the file's own
        f"Here is the updated README:\n\n```markdown\n{NEW_README}```\n\nI reworded one line.\n",
        f"````markdown\n{NEW_README}````\n",  # as CommonMark says to fence it
        NEW_README,  # no fence of its own: the file's fences are not the answer's
    ],
    ids=["same-fence", "prose-around", "longer-fence", "unfenced"],
)
def test_a_file_that_holds_fences_at_column_0_is_read_whole(answer: str) -> None:
    assert extract_code(answer, like=README) == NEW_README


def test_a_block_after_the_file_is_not_part_of_it() -> None:
    source = "def add(a, b):\n    return a + b\n"
    new = source.replace("a + b", "b + a")
    answer = f"```python\n{new}```\n\nRun it with:\n\n```sh\npython -c 'import calc'\n```\n"
    assert extract_code(answer, like=source) == new


def test_a_fence_that_ends_a_line_of_prose_still_opens_the_file() -> None:
    answer = f"Here is the updated file: ```python\n{NEW_DOC}```\nDone.\n"
    assert extract_code(answer, like=DOC) == NEW_DOC
    assert extract_code(answer) == NEW_DOC


def test_a_file_without_fences_is_never_read_as_the_whole_answer() -> None:
    """A short block and prose after it share more lines with the file than the block
    alone does, yet the fences and the prose are not the file."""
    source = (
        'OWNER = "bob@example.com"\nCODENAME = "PROJECT-FALCON"\n\n\n'
        "def owner():\n    return OWNER\n\n\ndef codename():\n    return CODENAME\n"
    )
    answer = "```python\ndef owner():\n    return OWNER\n```\n\nThe function is now renamed."
    assert extract_code(answer, like=source) == "def owner():\n    return OWNER\n"
    assert extract_code(answer, like=source.replace("\n", "\r\n")).startswith("def owner")


@pytest.mark.parametrize(
    "source",
    ["x = 1\ny = 2", "x = 1\ry = 2\r", "\ufeffx = 1\r\ny = 2"],
    ids=["no-final-newline", "lone-cr", "bom-crlf-no-final-newline"],
)
def test_the_model_reads_the_file_in_lines_with_its_fence_on_a_line_of_its_own(
    source: str,
) -> None:
    """A file without a final newline put the closing fence on its last line, where it
    closes no block; one of lone CRs (classic Mac OS) read as a single line."""
    task = suggestion_task("m.py", source, "go", SamplingParams(100), PromptTemplates(None), 2048)
    shown = task.messages[-1]["content"]
    assert "```python\nx = 1\ny = 2\n```\n" in shown.replace("\r\n", "\n")
    assert "y = 2```" not in shown and "\ufeff" not in shown
