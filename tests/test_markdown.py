"""Fences read as CommonMark reads them, so code that holds "```" is not cut short."""

from __future__ import annotations

from tether.markdown import fenced_blocks, holds_fence, outermost_block


def _codes(answer: str) -> list[tuple[str, str]]:
    return [(block.info, block.code) for block in fenced_blocks(answer)]


def test_a_block_closes_only_on_a_fence_line_as_long_and_of_the_same_character() -> None:
    answer = (
        "Here:\n````markdown\n# Use\n```python\nf()\n```\n````\n"
        "~~~ sh title\nls ```x```\n```\n~~~~\nafter\n"
    )
    assert _codes(answer) == [
        ("markdown", "# Use\n```python\nf()\n```\n"),
        ("sh", "ls ```x```\n```\n"),
    ]


def test_a_fence_indented_past_three_spaces_or_inside_a_line_is_code() -> None:
    answer = 'x = 1 ```\n```python\ndef f():\n    """\n    ```\n    f()\n    ```\n    """\n```\n'
    (block,) = fenced_blocks(answer)
    assert block.code == 'def f():\n    """\n    ```\n    f()\n    ```\n    """\n'
    assert answer[block.start :].startswith(block.code)


def test_a_backtick_fence_with_backticks_after_it_opens_nothing() -> None:
    assert _codes("```not `a` fence\nx\n") == []


def test_an_unclosed_block_runs_to_the_end() -> None:
    assert _codes("```\nunterminated = True\n") == [("", "unterminated = True\n")]
    assert _codes("```python") == [("python", "")]
    # Said so: a model cut off by max_tokens leaves its block open.
    blocks = list(fenced_blocks("```\na\n```\n~~~\nb\n```\n"))
    assert [(block.code, block.closed) for block in blocks] == [("a\n", True), ("b\n```\n", False)]


def test_the_outermost_block_closes_on_the_last_fence_that_can_close_it() -> None:
    answer = "Sure:\n```markdown\n# T\n```python\nx\n```\nmore\n```\nDone.\n"
    block = outermost_block(answer)
    assert block is not None
    assert (block.info, block.code) == ("markdown", "# T\n```python\nx\n```\nmore\n")
    assert outermost_block("no fence") is None


def test_checks_read_a_fence_that_ends_a_line_of_prose_as_a_block() -> None:
    answer = "Sure! ```python\nimport os\nos.system(cmd)\n```\nDone.\n"
    assert not any("os.system" in b.code for b in fenced_blocks(answer))  # CommonMark: text
    (block,) = fenced_blocks(answer, lenient=True)
    assert block.info == "python" and block.code == "import os\nos.system(cmd)\n"
    assert answer[block.start :].startswith("import os")
    inline = "Use ```x``` or `y` here.\n"
    assert list(fenced_blocks(inline, lenient=True)) == []  # code spans in a line stay text


def test_a_text_holds_a_fence_only_where_a_line_could_open_or_close_a_block() -> None:
    assert holds_fence("# doc\n\n```python\nx = 1\n```\n")
    assert holds_fence("See this: ```python\r\nx = 1\r\n")  # a lenient reading opens one
    assert holds_fence("~~~\n")
    assert not holds_fence('def f():\n    """\n    ```\n    f()\n    ```\n    """\n')
    assert not holds_fence("x = '```'  # inside a line\n")
