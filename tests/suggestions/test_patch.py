from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

import pytest

from tether.errors import PatchError
from tether.suggestions import apply_patch, make_patch
from tether.suggestions.patch import Move, patch_target, place_patch
from tether.suggestions.service import line_end_runs, with_line_end_runs

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


def test_answer_budget_follows_the_file_not_the_window() -> None:
    from tether.suggestions.service import ROOM_TO_ADD, answer_budget

    assert answer_budget("", 256, 4096) == max(ROOM_TO_ADD, 256)
    assert answer_budget("x" * 3000, 256, 4096) == 1000 * 3 // 2 + ROOM_TO_ADD
    assert answer_budget("x" * 300_000, 256, 4096) == 4096  # never past the window


ADD = "def add(a, b):\n    return a + b\n"
HEAD = "--- a/s.py\n+++ b/s.py\n"


@pytest.mark.parametrize(
    ("body", "says"),
    [
        # the "+" line is missing: applied, it would drop the function's body
        ("@@ -1,2 +1,2 @@\n def add(a, b):\n-    return a + b\n", "ends after 2 old and 1 new"),
        ("@@ -1,2 +1,9 @@\n def add(a, b):\n+    x = 1\n     return a + b\n", "promises 2 and 9"),
        ("@@ -1,1 +1,1 @@\n-def add(a, b):\n+def plus(a, b):\n+    x = 1\n", "more lines than"),
        ("@@ -1,2 +1,2 @@\n def add(a, b):\n-    return a + b\n+    return a +", "middle of"),
        ("@@ -1,2 +1,2 @@\n def add(a, b):\n-    return a + b\n\n+    return b\n", "not a line"),
        ("@@ -0,2 +1,2 @@\n def add(a, b):\n     return a + b\n", "impossible"),
        ("@@ -2 +5 @@\n-    return a + b\n+    return b + a\n", "lands at line 2"),
    ],
    ids=[
        "missing-line",
        "short-of-header",
        "longer-than-header",
        "cut-mid-line",
        "blank-line",
        "impossible-header",
        "wrong-new-start",
    ],
)
def test_a_malformed_patch_is_refused(body: str, says: str) -> None:
    with pytest.raises(PatchError, match=says):
        apply_patch(ADD, HEAD + body)


@pytest.mark.parametrize(
    "body",
    [
        "@@ -1,2 +1,2 @@\n\\ No newline at end of file\n def add(a, b):\n-    return a + b\n+x\n",
        "@@ -1,2 +1,2 @@\n def add(a, b):\n\\ No newline at end of file\n"
        "-    return a + b\n+    return b\n",
        "@@ -1 +1 @@\n-def add(a, b):\n+def plus(a, b):\n\\ No newline at end of file\n",
        "@@ -2 +2 @@\n-    return a + b\n\\ No newline at end of file\n"
        "\\ No newline at end of file\n+    return b\n",
    ],
    ids=["marks-nothing", "not-the-last-old-line", "not-the-last-new-line", "twice"],
)
def test_a_misplaced_no_newline_marker_is_refused(body: str) -> None:
    with pytest.raises(PatchError, match=r"No newline|marks no line"):
        apply_patch(ADD, HEAD + body)


def test_a_removed_line_that_looks_like_a_header_is_a_line() -> None:
    old = "-- a SQL comment\nselect 1;\n++ not a header\n"
    new = "select 1;\n"
    patch = make_patch(old, new, "q.sql")
    assert "\n--- a SQL comment\n" in patch and "\n-++ not a header\n" in patch
    assert patch_target(patch) == "q.sql"
    assert apply_patch(old, patch) == new


def test_crlf_lines_keep_their_endings_and_other_bytes_stay() -> None:
    old = "a = 1\r\nb = '\f'\r\nc = '\r'  # lone\r\nd = 4\r\n"
    new = old.replace("d = 4", "d = 5")
    patch = make_patch(old, new, "m.py")
    assert "-d = 4\r\n+d = 5\r\n" in patch and " a = 1\r\n" in patch
    assert apply_patch(old, patch) == new
    with pytest.raises(PatchError, match="no longer matches"):  # the endings are compared
        apply_patch(old.replace("\r\n", "\n"), patch)


def test_a_hunk_with_no_old_lines_goes_after_the_line_it_names() -> None:
    old = "a\nb\nc\n"
    patch = "--- a/m\n+++ b/m\n@@ -2,0 +3 @@\n+inserted\n"  # as `git diff -U0` writes it
    assert apply_patch(old, patch) == "a\nb\ninserted\nc\n"
    assert apply_patch("", make_patch("", "x\n", "m")) == "x\n"
    assert apply_patch("x\n", make_patch("x\n", "", "m")) == ""


def test_the_model_answer_takes_the_line_endings_of_the_file() -> None:
    from tether.suggestions.service import (
        ends_its_last_line,
        keep_line_endings,
        usual_line_ending,
    )

    crlf = "def add(a, b):\r\n    return a + b\r\n"
    answer = "def add(a, b):\n    '''Sum.'''\n    return a + b\n"
    assert (
        keep_line_endings(crlf, answer)
        == "def add(a, b):\r\n    '''Sum.'''\r\n    return a + b\r\n"
    )
    mixed = "a\r\nb\nc\r\n"  # each kept line keeps its own ending; a new one takes "\r\n"
    assert keep_line_endings(mixed, "a\nb\nnew\nc\n") == "a\r\nb\nnew\r\nc\r\n"
    assert keep_line_endings("a\r\nb", "a\nb\nc") == "a\r\nb\r\nc"
    assert keep_line_endings("\ufeffx = 1\n", "x = 2\n") == "\ufeffx = 2\n"
    # Classic Mac OS: every line ends in a lone CR, a new one too.
    assert keep_line_endings("a\rb\r", "a\nnew\nb\n") == "a\rnew\rb\r"
    # A one-line file whose one CR stands inside a string is two lines to Python and
    # JavaScript too: a new line ends as that one does.
    one_cr = 'x = "a\rb"'
    assert (usual_line_ending(one_cr), ends_its_last_line(one_cr)) == ("\r", False)
    assert keep_line_endings(one_cr, 'x = "a\nb"\ny = 1\n') == 'x = "a\rb"\ry = 1\r'
    patch = make_patch(crlf, keep_line_endings(crlf, answer), "m.py")
    assert patch.splitlines(keepends=True)[3:] == [  # one line added, none changed
        " def add(a, b):\r\n",
        "+    '''Sum.'''\r\n",
        "     return a + b\r\n",
    ]


CALC = "def add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n    return a - b\n"
MUL = "\n\ndef mul(a, b):\n    return a * b\n"


def test_a_patch_that_adds_at_the_end_applies_once() -> None:
    patch = make_patch(CALC, CALC + MUL, "calc.py")
    assert "@@ -4,3 +4,7 @@" in patch  # three lines of context before, none after
    once = apply_patch(CALC, patch)
    assert once == CALC + MUL
    with pytest.raises(PatchError, match=r"already applied"):
        apply_patch(once, patch)
    with pytest.raises(PatchError, match=r"no longer matches.*goes on after its line 6"):
        apply_patch(once + "# more\n", patch)  # changed since: not the patch's own lines


def test_a_patch_applied_twice_is_named_so_and_the_file_is_left_as_it_is() -> None:
    old = "".join(f"line {n}\n" for n in range(1, 30))
    new = old.replace("line 3\n", "line three\n").replace("line 20\n", "")
    patch = make_patch(old, new, "m")
    once = apply_patch(old, patch)
    assert once == new
    with pytest.raises(PatchError, match=r"the patch is already applied: the file holds every"):
        apply_patch(once, patch)
    half = old.replace("line 3\n", "line three\n")  # one hunk's change made by hand
    with pytest.raises(PatchError, match=r"no longer matches the patch at its line 3"):
        apply_patch(half, patch)


def test_a_patch_for_an_empty_file_is_refused_a_second_time() -> None:
    patch = "--- a/m.py\n+++ b/m.py\n@@ -0,0 +1 @@\n+print('hi')\n"
    once = apply_patch("", patch)
    assert once == "print('hi')\n"
    with pytest.raises(PatchError, match=r"no longer matches.*already holds exactly the lines"):
        apply_patch(once, patch)
    # With context elsewhere, "@@ -0,0" can only mean an empty file.
    with_context = patch + "@@ -1,2 +2,2 @@\n a\n-b\n+c\n"
    with pytest.raises(PatchError, match=r"made for an empty file.*no longer empty"):
        apply_patch("a\nb\n", with_context)


def test_a_hunk_with_its_full_context_after_it_need_not_end_the_file() -> None:
    old = "".join(f"line {n}\n" for n in range(1, 11))
    patch = make_patch(old, old.replace("line 2\n", "line two\n"), "m")
    assert apply_patch(old + "more\n", patch) == old.replace("line 2\n", "line two\n") + "more\n"
    minimal = "--- a/m\n+++ b/m\n@@ -10,0 +11 @@\n+line 11\n"  # `git diff -U0`: no context
    assert apply_patch(old + "more\n", minimal) == old + "line 11\nmore\n"


# (old, new) pairs whose `git diff -U0` has hunks with no old lines ("@@ -N,0"): at the top
# ("@@ -0,0 +1,N @@"), in the middle and at the end, and a few that remove or replace.
ZERO_CONTEXT = {
    "top": ("a\nb\nc\n", "top1\ntop2\na\nb\nc\n"),
    "middle": ("a\nb\nc\n", "a\nmid\nb\nc\n"),
    "end": ("a\nb\nc\n", "a\nb\nc\nend\n"),
    "top-middle-end": ("a\nb\nc\n", "top1\ntop2\na\nb\nmid\nc\nend\n"),
    "top-no-final-newline": ("a", "x\na"),
    "top-of-the-same-line": ("a\nb\n", "a\na\nb\n"),
    "remove-top": ("a\nb\nc\n", "b\nc\n"),
    "replace-top-add-end": ("a\nb\nc\n", "A\nb\nc\nd\n"),
}


def _git_diff_u0(tmp_path: Path, old: str, new: str) -> str:
    """What `git diff -U0` writes for this change of a file ``f``, left holding ``old``."""
    git = ["git", "-c", "core.autocrlf=false", "-c", "diff.noprefix=false"]
    subprocess.run([*git, "init", "-q", str(tmp_path)], check=True)
    target = tmp_path / "f"
    target.write_bytes(old.encode())
    subprocess.run([*git, "add", "f"], cwd=tmp_path, check=True)
    target.write_bytes(new.encode())
    done = subprocess.run(
        [*git, "diff", "-U0", "--no-color", "--no-ext-diff", "--", "f"],
        cwd=tmp_path,
        capture_output=True,
        check=True,
    )
    target.write_bytes(old.encode())
    return done.stdout.decode()


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
@pytest.mark.parametrize(("old", "new"), ZERO_CONTEXT.values(), ids=ZERO_CONTEXT.keys())
def test_a_zero_context_patch_applies_as_patch_and_git_apply_do(
    tmp_path: Path, old: str, new: str
) -> None:
    patch = _git_diff_u0(tmp_path, old, new)
    assert apply_patch(old, patch) == new
    (tmp_path / "p.diff").write_bytes(patch.encode())
    git_apply = ["git", "apply", "--unidiff-zero", "p.diff"]
    subprocess.run(git_apply, cwd=tmp_path, check=True, capture_output=True)
    assert (tmp_path / "f").read_bytes().decode() == new
    if shutil.which("patch") is not None:
        (tmp_path / "f").write_bytes(old.encode())
        gnu = ["patch", "--quiet", "--batch", "-o", "out", "f", "p.diff"]
        subprocess.run(gnu, cwd=tmp_path, check=True, capture_output=True)
        assert (tmp_path / "out").read_bytes().decode() == new


def test_a_zero_context_hunk_at_the_top_goes_before_the_first_line() -> None:
    top = "--- a/m\n+++ b/m\n@@ -0,0 +1,2 @@\n+x\n+y\n"  # `git diff -U0` inserting at the top
    assert apply_patch("a\nb\n", top) == "x\ny\na\nb\n"
    assert apply_patch("", top) == "x\ny\n"
    both = "--- a/m\n+++ b/m\n@@ -0,0 +1 @@\n+x\n@@ -2,0 +4 @@\n+z\n"
    assert apply_patch("a\nb\n", both) == "x\na\nb\nz\n"
    with pytest.raises(PatchError, match="lands at line 1"):  # "+2": not at the top
        apply_patch("a\nb\n", "--- a/m\n+++ b/m\n@@ -0,0 +2 @@\n+x\n")


CODE = "".join(f"def f{n}(x):\n    return x + {n}\n\n" for n in range(1, 13))


def _changed(code: str, *names: str) -> str:
    for name in names:
        code = code.replace(f"def {name}(x):\n    return x", f"def {name}(x):\n    return -x")
    return code


def test_a_file_changed_above_a_hunk_takes_it_where_its_lines_moved() -> None:
    patch = make_patch(CODE, _changed(CODE, "f4", "f9"), "m.py")
    hunks = [n for n, line in enumerate(patch.splitlines(), 1) if line.startswith("@@")]
    assert len(hunks) == 2
    # An import added at the top moves both hunks two lines down; the second is looked for
    # where the first moved, and found there.
    above = "import os\nimport sys\n" + CODE
    placed = place_patch(above, patch)
    assert placed.text == "import os\nimport sys\n" + _changed(CODE, "f4", "f9")
    assert placed.moves == (Move(hunks[0], 2), Move(hunks[1], 2))
    # A function removed between them moves the second one up alone.
    between = CODE.replace("def f6(x):\n    return x + 6\n\n", "")
    placed = place_patch(between, patch)
    assert placed.text == _changed(between, "f4", "f9")
    assert placed.moves == (Move(hunks[1], -3),)
    assert apply_patch(CODE, patch) == _changed(CODE, "f4", "f9")  # unmoved as before
    # Applied, then moved: named as applied, not applied again.
    with pytest.raises(PatchError, match="already applied"):
        apply_patch("# header\n" + _changed(CODE, "f4", "f9"), patch)
    # A changed line of its own is still a refusal, wherever else the file changed.
    with pytest.raises(PatchError, match="no longer matches the patch at its line"):
        apply_patch("import os\n" + CODE.replace("return x + 9", "return x + 90"), patch)


def test_lines_that_moved_to_two_places_are_refused_not_guessed_at() -> None:
    block = "a\nb\nc\nd\ne\nf\ng\n"
    old = "x\n" * 5 + block + "y\n" * 10 + block + "z\n" * 5
    patch = make_patch(old, old.replace("d\n", "D\n", 1), "m")  # the first block's d
    # Moved by lines added above it, the block stands twice: git takes the nearer copy,
    # which need not be the one the patch was made for.
    with pytest.raises(PatchError, match=r"now stand at its lines 10 and 27: it cannot tell"):
        apply_patch("w\n" * 4 + old, patch)
    assert apply_patch(old, patch) == old.replace("d\n", "D\n", 1)  # where it says: as before
    # Once only, wherever it went, it is found: far from its header's line too.
    far = "--- a/m\n+++ b/m\n@@ -100000000,7 +100000000,7 @@\n a\n b\n c\n-d\n+D\n e\n f\n g\n"
    placed = place_patch("w\n" * 3 + block, far)
    assert placed.text == "w\n" * 3 + block.replace("d", "D")
    assert placed.moves == (Move(3, 3 - 99_999_999),)


def test_a_patch_that_removes_one_of_two_copies_is_not_called_applied() -> None:
    block = "".join(f"    p.add('--{name}')\n" for name in "abcd")
    old = "import argparse\n\n\ndef make():\n    p = P()\n" + block + block
    old += "    return p\n\n\ndef main():\n    make()\n"
    dropped = old.replace(block + block, block)
    patch = make_patch(old, dropped, "f")
    # Moved, its lines read both as before the patch and as after it (the copy it leaves
    # and the lines after): before, one line down; after, five. The nearer is taken.
    placed = place_patch("import sys\n" + old, patch)
    assert placed.text == "import sys\n" + dropped and placed.moves == (Move(3, 1),)
    # Two lines up as before, two down as after: it cannot tell, and says so.
    with pytest.raises(PatchError, match="cannot tell whether the patch is applied"):
        apply_patch(old.removeprefix("import argparse\n\n"), patch)
    with pytest.raises(PatchError, match="already applied"):
        apply_patch("import sys\n" + dropped, patch)


def test_a_hunk_that_begins_the_file_or_has_no_context_stays_and_one_that_ends_it_ends_it() -> None:
    short = "a\nb\nc\nd\ne\nf\ng\nh\n"
    top = make_patch(short, short.replace("b\n", "B\n"), "m")
    assert "@@ -1," in top
    with pytest.raises(PatchError, match="no longer matches"):
        apply_patch("new\n" + short, top)
    end = make_patch(short, short.replace("g\n", "G\n"), "m")
    with pytest.raises(PatchError, match="no longer matches"):
        apply_patch(short + "more\n", end)
    # Lines added above: it still ends the file, and is found there.
    assert place_patch("new\n" + short, end).moves == (Move(3, 1),)
    added = "h1\nh2\nh3\n" + "x\n" * 6  # its lines stand where it says, too: not the end
    assert apply_patch("new\n" + added, make_patch(added, added + "y\n", "m")).endswith("x\ny\n")
    zero = "--- a/m\n+++ b/m\n@@ -5 +5 @@\n-e\n+E\n"  # `git diff -U0`: placed by number
    with pytest.raises(PatchError, match="no longer matches the patch at its line 5"):
        apply_patch("new\n" + short, zero)


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_moved_hunks_land_where_git_apply_puts_them(tmp_path: Path) -> None:
    rng = random.Random(7)
    code = "".join(f"value_{n} = compute({n})\n" + ("\n" if n % 4 == 0 else "") for n in range(80))
    lines = code.splitlines(keepends=True)
    agreed = moved = 0
    for trial in range(40):
        new = list(lines)
        for at in sorted(rng.sample(range(10, len(lines) - 10), 3), reverse=True):
            new[at] = f"value_{at} = changed({trial})\n"
        patch = make_patch(code, "".join(new), "f")
        # The reviewer's own edit, above the first change or between two: lines added or
        # removed, so every hunk after it stands elsewhere.
        edited = list(lines)
        where = rng.randrange(4, 10)
        if trial % 2:
            edited[where:where] = [f"extra_{k} = {k}\n" for k in range(rng.randint(1, 6))]
        else:
            del edited[where : where + rng.randint(1, 3)]
        source = "".join(edited)
        (tmp_path / "f").write_text(source)
        (tmp_path / "p.diff").write_text(patch)
        git = subprocess.run(
            ["git", "apply", "--no-index", "p.diff"], cwd=tmp_path, capture_output=True
        )
        try:
            placed = place_patch(source, patch)
        except PatchError:
            assert git.returncode != 0, (trial, patch)
            continue
        assert git.returncode == 0, (trial, git.stderr)
        assert placed.text == (tmp_path / "f").read_text()
        agreed += 1
        moved += bool(placed.moves)
    assert agreed >= 30 and moved >= 25, (agreed, moved)


@pytest.mark.skipif(shutil.which("patch") is None, reason="GNU patch is not installed")
@pytest.mark.parametrize("name", ["my file.py", "plain.py"])
def test_a_patch_names_its_file_as_git_and_gnu_patch_read_it(tmp_path: Path, name: str) -> None:
    """A name with a space ends with a tab, as git writes it, or patch finds no file."""
    old, new = "x = 1\n", "x = 2\n"
    (tmp_path / name).write_text(old)
    (tmp_path / "p.diff").write_text(make_patch(old, new, name))
    for command in (
        ["git", "apply", "--check", "p.diff"],
        ["patch", "-p1", "--batch", "-i", "p.diff"],
    ):
        done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / name).read_text() == new
    assert apply_patch(old, make_patch(old, new, name)) == new


@pytest.mark.parametrize("converted", ["patch", "file"])
def test_line_ends_converted_since_are_named_as_the_cause(converted: str) -> None:
    """A patch saved again by a Windows editor, or checked out with core.autocrlf, has
    CRLF lines where the file has LF: "no longer matches" named no cause."""
    old = "a = 1\nb = 2\n"
    patch = make_patch(old, "a = 1\nb = 3\n", "m.py")
    if converted == "patch":
        patch = patch.replace("\n", "\r\n")
    else:
        old = old.replace("\n", "\r\n")
    with pytest.raises(PatchError, match=r"at its line 1: .* only in their line ends \(CRLF"):
        apply_patch(old, patch)
    with pytest.raises(PatchError, match=r"at its line 2; make a new suggestion"):
        apply_patch("a = 1\nb = 9\n", make_patch("a = 1\nb = 2\n", "a = 1\nb = 3\n", "m.py"))


def test_line_end_runs_write_a_file_again_and_a_count_of_another_file_is_refused() -> None:
    """A manifest is anyone's text: a run counting more lines than the file has is told
    at once, where it was first spelled out one line end at a time (2**60 of them)."""
    mixed = "a\r\nb\r\nc\nd\r\ne"
    runs = line_end_runs(mixed)
    assert runs == [("\r\n", 2), ("\n", 1), ("\r\n", 1)]
    assert with_line_end_runs(mixed.replace("\r\n", "\n"), runs) == mixed
    assert with_line_end_runs("a\nb\n", [("\n", 1)]) is None
    assert with_line_end_runs("a\nb\n", [("\n", 1), ("\r\n", 2**60)]) is None
