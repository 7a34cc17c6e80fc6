from __future__ import annotations

import pytest

from tether.errors import PatchError
from tether.suggestions import apply_patch, extract_code, make_patch
from tether.suggestions.patch import patch_target

OLD = "import os\n\n\ndef f(x):\n    return x\n\n\ndef g():\n    pass\n"


def test_round_trip() -> None:
    new = OLD.replace("return x", "return x + 1").replace("pass", "return None")
    patch = make_patch(OLD, new, "pkg/mod.py")
    assert patch.startswith("--- a/pkg/mod.py\n+++ b/pkg/mod.py\n")
    assert patch_target(patch) == "pkg/mod.py"
    assert apply_patch(OLD, patch) == new


def test_missing_final_newline_round_trips() -> None:
    new = OLD.rstrip("\n")
    patch = make_patch(OLD, new, "m.py")
    assert "\\ No newline at end of file" in patch
    assert apply_patch(OLD, patch) == new
    assert apply_patch(new, make_patch(new, OLD, "m.py")) == OLD


def test_changed_file_is_refused() -> None:
    patch = make_patch(OLD, OLD.replace("return x", "return -x"), "m.py")
    with pytest.raises(PatchError, match="no longer matches"):
        apply_patch(OLD.replace("return x", "return 2 * x"), patch)


def test_no_hunks_is_refused() -> None:
    with pytest.raises(PatchError):
        apply_patch(OLD, "--- a/m.py\n+++ b/m.py\n")


def test_extract_code_takes_the_longest_fence() -> None:
    answer = "Sure!\n```python\nx = 1\n```\nand\n```python\ndef f():\n    return 2\n```\nDone."
    assert extract_code(answer) == "def f():\n    return 2\n"
    assert extract_code("y = 2") == "y = 2\n"
    assert extract_code("```\nunterminated = True\n") == "unterminated = True\n"


def test_answer_budget_follows_the_file_not_the_window() -> None:
    from tether.suggestions.service import ROOM_TO_ADD, answer_budget

    assert answer_budget("", 256, 4096) == max(ROOM_TO_ADD, 256)
    assert answer_budget("x" * 3000, 256, 4096) == 1000 * 3 // 2 + ROOM_TO_ADD
    assert answer_budget("x" * 300_000, 256, 4096) == 4096  # never past the window
