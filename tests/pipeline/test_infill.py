from __future__ import annotations

from tether.pipeline.infill import EditorFilter


def run(prefix: str, suffix: str, answer: str, pieces: int = 3) -> str:
    """The filter's output for ``answer`` streamed in ``pieces`` uneven parts."""
    editor = EditorFilter.around(prefix, suffix)
    step = max(1, len(answer) // pieces)
    out = [editor.feed(answer[i : i + step]) for i in range(0, len(answer), step)]
    return "".join(out) + editor.finish()


def test_mid_line_hole_is_one_line() -> None:
    editor = EditorFilter.around("    total = ", "\n    return total\n")
    assert not editor.single_line  # nothing after the cursor on its line
    assert EditorFilter.around("print(", ")\n").single_line is False  # only closers follow
    assert EditorFilter.around("x = f(", ", y)\n").single_line is True
    assert run("x = f(", ", y)\n", "a + b, z)\nprint(x)\n") == "a + b, z)"


def test_a_line_that_writes_the_rest_of_the_cursor_line_ends_before_it() -> None:
    assert run("x = f(", ", y)\n", "a + b, y)\nprint(x)\n") == "a + b"
    assert run("    return sum([i for i in xs if ", "])\n", "i > 0])\n") == "i > 0"
    # The blanks the suffix starts with are its own: inserted, the line reads as before.
    assert run("    return a", " + b\n\nprint(1)\n", " + b\n") == ""
    assert run("x = f(a", "  , y)\n", " * 2  , y)\n") == " * 2"
    assert run("x = a", "+ b\n", " + b\n") == " "  # a blank the suffix lacks stays


def test_after_code_at_the_line_end_the_answer_starts_a_new_line() -> None:
    prefix = "def f(xs):\n    for x in xs:"
    suffix = "\n    return xs\n"
    answer = "\n        print(x)\n    return xs\n"
    assert run(prefix, suffix, answer) == "\n        print(x)"


def test_a_line_opening_the_block_the_suffix_holds_ends_the_hole() -> None:
    prefix = "def f(xs):\n    t = 0\n"
    suffix = "        t += x\n    return t\n"
    answer = "    for x in xs:\n        t += x * 2\n"
    assert run(prefix, suffix, answer) == "    for x in xs:\n"


def test_stops_where_the_code_after_the_cursor_begins() -> None:
    prefix = "def add(a, b):\n    "
    suffix = "\n    return total\n"
    answer = "total = a + b\n    return total\n\nprint(add(1, 2))\n"
    assert run(prefix, suffix, answer) == "total = a + b"


def test_a_nearly_equal_line_also_ends_it() -> None:
    suffix = "\n    return sorted(result)\n"
    answer = "result = [x for x in xs]\n    return sorted(result )\n"
    assert run("def f(xs):\n    ", suffix, answer) == "result = [x for x in xs]"


def test_the_start_of_the_code_after_the_cursor_also_ends_it() -> None:
    suffix = "\n    return total / len(xs)\n"
    answer = "0\n    for x in xs:\n        total += x\n    return total\n"
    assert run("def mean(xs):\n    total = ", suffix, answer) == (
        "0\n    for x in xs:\n        total += x"
    )


def test_stops_when_a_line_leaves_the_block() -> None:
    prefix = "def f(xs):\n    for x in xs:\n        "
    answer = "y = x * 2\n        print(y)\n    return None\ndef g():\n"
    assert run(prefix, "\n", answer) == "y = x * 2\n        print(y)"


def test_a_line_that_leaves_the_block_ends_the_hole_at_its_first_character() -> None:
    # Without the wait for its end: a model that writes usage and a long comment there
    # would run on to max_tokens for nothing.
    prefix, suffix = "def fib(n):\n    if n < 2:\n        return n\n    ", "\n\ndef main():\n"
    editor = EditorFilter.around(prefix, suffix)
    assert editor.feed("\n# example usage\n") == "" and not editor.done  # an opening comment
    assert editor.feed("  ") == "" and not editor.done  # its indentation is not known yet
    assert editor.feed("p") == "" and editor.done
    assert editor.finish() == ""
    # Code inside the block goes on; a comment or fence line left of it waits for its end.
    inside = EditorFilter.around(prefix, suffix)
    assert inside.feed("ret") == "" and not inside.done
    assert inside.feed("urn fib(n - 1)\n") == "return fib(n - 1)" and not inside.done
    for opening in ("#", "`", "//"):
        waits = EditorFilter.around(prefix, suffix)
        assert waits.feed(f"\n{opening}") == "" and not waits.done
    # The same answer, whole lines or not, ends in the same place.
    answer = "return fib(n - 1) + fib(n - 2)\nprint(fib(10))  # prints 55\n"
    assert run(prefix, suffix, answer, pieces=40) == run(prefix, suffix, answer, pieces=1)


def test_drops_opening_comments_fences_and_blank_lines() -> None:
    prefix = "def f(x):\n"
    answer = "```python\n\n    # double it\n    return x * 2\n```\nmore prose\n"
    assert run(prefix, "", answer) == "    return x * 2"


def test_comments_are_kept_when_the_cursor_is_in_one() -> None:
    assert run("# compute the ", "\n", "total of all items\nx = 1\n").startswith("total")


def test_blank_lines_inside_the_answer_are_kept_only_before_more_code() -> None:
    prefix = "def f():\n    "
    answer = "a = 1\n\n    b = 2\n\n\n"
    assert run(prefix, "", answer) == "a = 1\n\n    b = 2"


def test_whole_line_hole_ends_with_a_newline() -> None:
    # The cursor is at the start of a line, code follows: the middle is whole lines.
    prefix = "def f(x):\n"
    suffix = "    return y\n"
    answer = "    y = x + 1\n    return y\n"
    assert run(prefix, suffix, answer) == "    y = x + 1\n"


def test_an_answer_that_is_only_the_suffix_is_empty() -> None:
    assert run("def f():\n    ", "\n    return 1\n", "return 1\n") == ""


def test_text_is_never_taken_back() -> None:
    editor = EditorFilter.around("def f():\n    ", "\n    return x\n")
    assert editor.feed("x = 1") == ""  # an unfinished line waits
    assert editor.feed("\n    y") == "x = 1"
    assert editor.feed(" = 2\n    return x\n") == "\n    y = 2"
    assert editor.done and editor.feed("more\n") == "" and editor.finish() == ""


def test_a_line_repeated_a_third_time_ends_the_hole() -> None:
    answer = "    i += 1\n    i += 1\n    i += 1\n    i += 1\n"
    assert run("def f(i):\n", "", answer) == "    i += 1\n    i += 1"


def _primed(prefix: str, suffix: str, answer: str) -> str:
    """The filter's output for a prompt that ended with the line's indentation."""
    editor = EditorFilter.around(prefix, suffix, primed=True)
    return editor.feed(answer) + editor.finish()


def test_a_first_line_one_space_deeper_than_the_editors_indentation_is_set_right() -> None:
    # At the end of a file the prompt ends with the whole indentation, and the model's
    # first word brings its own space.
    assert _primed("def add(a, b):\n", "", " return a + b\n") == "    return a + b"
    body = ' if n % 15 == 0:\n        print("FizzBuzz")\n    elif n % 3 == 0:\n'
    assert _primed("def fizzbuzz(n):\n", "", body) == (
        '    if n % 15 == 0:\n        print("FizzBuzz")\n    elif n % 3 == 0:'
    )  # the block is the body's, so the elif stays
    # The cursor after the indentation an editor gave an empty line.
    assert run("def is_even(n):\n    ", "\n", " return n % 2 == 0\n") == "return n % 2 == 0"
    assert run("for i in range(3):\n    ", "\n", " print(i)\n") == "print(i)"


def test_lines_that_go_on_from_a_first_line_one_space_deep_move_with_it() -> None:
    # The model wrote its first line one space deep and went on from there: the lines
    # after it, an odd number of spaces in from the cursor, go out one space shallower.
    fib = " fib_prev = 1\n     fib_next = n\n     if n:\n         return fib_next\n"
    expected = "fib_prev = 1\n    fib_next = n\n    if n:\n        return fib_next"
    for pieces in (1, 3, 17):
        assert run("def fib(n):\n    ", "\n", fib, pieces) == expected
    # A later line back at the cursor's indentation was not standing on the deep one.
    assert run("def f():\n    ", "\n", " a = 1\n\n    b = 2\n") == "a = 1\n\n    b = 2"
    # Nor is one an even number of spaces in: the body of the block the deep line opens.
    assert run("def f():\n    ", "\n", " if a:\n        b()\n") == "if a:\n        b()"


def test_deeper_indentation_the_model_chose_is_kept() -> None:
    assert _primed("def add(a, b):\n", "", "    return a + b\n") == "        return a + b"
    assert run("if x:\n  ", "\n", "  y = 1\n") == "  y = 1"


def test_a_line_the_model_writes_below_an_indented_cursor_loses_the_cursor_s_indentation() -> None:
    """Enter inside a block leaves the cursor after its indentation; a model that ends
    that line and writes its own used to get the indentation twice, and its second line
    then "left the block"."""
    prefix = "import os\n\ndef main():\n    "
    answer = '\n    max_weight = 100\n    print(f"{max_weight}")\n'
    assert run(prefix, "\n", answer) == 'max_weight = 100\n    print(f"{max_weight}")'
    # After an opening comment line too; a deeper line keeps what is its own.
    assert run(prefix, "\n", "\n    # set it\n        x = 1\n") == "    x = 1"
    tabbed = run("int main() {\n\t", "\n}\n", "\n\tint x = 10;\n\treturn x;\n")
    assert tabbed == "int x = 10;\n\treturn x;"
    # Written on the cursor's own line, the model's indentation is still its own.
    assert run("if x:\n  ", "\n", "  y = 1\n") == "  y = 1"


def test_opening_lines_that_loop_or_go_on_without_code_end_the_hole() -> None:
    editor = EditorFilter.around("def main():\n    ", "\n")
    assert editor.feed("\n# Example usage:\n" * 2) == "" and not editor.done
    assert editor.feed("\n# Example usage:\n") == "" and editor.done
    editor = EditorFilter.around("def main():\n    ", "\n")
    assert editor.feed("".join(f"# note {i}\n" for i in range(12))) == "" and not editor.done
    assert editor.feed("# note 12\n") == "" and editor.done
    # A comment block that ends in code is still passed over.
    assert run("def f(x):\n", "", "# one\n# two\n# three\n    return x\n") == "    return x"


def test_what_was_read_to_find_the_hole_filled_is_the_same_in_any_pieces() -> None:
    """The lines dropped on the way were generated and are charged: as far as the first
    character that ended the hole, however the answer came in pieces."""
    prefix, suffix = "def fib(n):\n    if n < 2:\n        return n\n    ", "\n\ndef main():\n"
    answer = "return fib(n - 1) + fib(n - 2)\n\n\nprint(fib(10))  # prints 55\n"
    decided = answer.index("print") + 1
    for pieces in (1, 3, 7, len(answer)):
        editor = EditorFilter.around(prefix, suffix)
        step = max(1, len(answer) // pieces)
        kept = "".join(editor.feed(answer[i : i + step]) for i in range(0, len(answer), step))
        assert kept == "return fib(n - 1) + fib(n - 2)", pieces
        assert editor.done and editor.read == decided, pieces
    # Dropped opening lines count too, and the character that ended the hole after them.
    opened = EditorFilter.around(prefix, suffix)
    assert opened.feed("\n# example usage\nreturn 1\n") == "" and opened.done
    assert opened.read == len("\n# example usage\nr")
    # One the stream ended: all of it was read.
    whole = EditorFilter.around(prefix, suffix)
    whole.feed("return fib(n - 1)")
    whole.finish()
    assert whole.read == len("return fib(n - 1)")
