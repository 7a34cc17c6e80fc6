"""Winnowing fingerprints and the corpus index: copies survive renames and reformatting."""

from __future__ import annotations

import os
import random
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.compliance.helpers import rule_ids, tether
from tether.compliance import Checker, CorpusIndex
from tether.compliance.winnowing import WINDOW, K, fingerprints, tokenize, winnow
from tether.errors import ConfigError

ORIGINAL = '''# Copied from a GPL project: this must not be reproduced.
def levenshtein(source, target):
    """Edit distance between two strings."""
    if len(source) < len(target):
        return levenshtein(target, source)
    if len(target) == 0:
        return len(source)
    previous_row = range(len(target) + 1)
    for i, c1 in enumerate(source):
        current_row = [i + 1]
        for j, c2 in enumerate(target):
            insertions = previous_row[j + 1] + 1
            deletions = current_row[j] + 1
            substitutions = previous_row[j] + (c1 != c2)
            current_row.append(min(insertions, deletions, substitutions))
        previous_row = current_row
    return previous_row[-1]


def similarity(a, b):
    longest = max(len(a), len(b)) or 1
    return 1.0 - levenshtein(a, b) / longest
'''

# The same code with every name changed, other comments, strings and layout.
DISGUISED = """def edit_distance(first: str,
                  second: str) -> int:
    '''How many edits turn first into second.'''
    if len(first) < len(second): return edit_distance(second, first)
    if len(second) == 0:
        return len(first)   # nothing to compare
    prev = range(len(second) + 1)
    for x, ch_a in enumerate(first):
        cur = [x + 1]
        for y, ch_b in enumerate(second):
            ins = prev[y + 1] + 1
            dels = cur[y] + 1
            subs = prev[y] + (ch_a != ch_b)
            cur.append(min(ins, dels, subs,))
        prev = cur
    return prev[-1]
"""

UNRELATED = '''def merge_sorted(left, right):
    """Merge two sorted lists into one sorted list."""
    merged = []
    while left and right:
        if left[0] <= right[0]:
            merged.append(left.pop(0))
        else:
            merged.append(right.pop(0))
    merged.extend(left or right)
    return merged


class Stack:
    def __init__(self):
        self.items = []

    def push(self, item):
        self.items.append(item)

    def pop(self):
        return self.items.pop()
'''


@pytest.fixture
def corpus_dir(tmp_path: Path) -> Path:
    root = tmp_path / "corpus"
    (root / "vendor").mkdir(parents=True)
    (root / "vendor" / "distance.py").write_text(ORIGINAL)
    (root / "util.js").write_text(
        "export function clamp(v, lo, hi) {\n  return Math.min(Math.max(v, lo), hi);\n}\n"
    )
    (root / "README.md").write_text("not indexed: not source\n")
    (root / "node_modules" / "dep").mkdir(parents=True)
    (root / "node_modules" / "dep" / "index.js").write_text(ORIGINAL)
    return root


@pytest.fixture
def index(tmp_path: Path, corpus_dir: Path) -> Iterator[CorpusIndex]:
    built = CorpusIndex(tmp_path / "index" / "corpus.sqlite")
    built.add_tree(corpus_dir)
    yield built
    built.close()


def test_tokens_normalize_names_literals_and_layout() -> None:
    a = [t.text for t in tokenize("total = price * 2  # why\nname = 'x'", "python")]
    b = [t.text for t in tokenize('sum_ = cost*7\nlabel = "y"', "python")]
    assert a == b == ["V", "=", "V", "*", "N", "V", "=", "S"]
    assert [t.text for t in tokenize("if (a) { return b; } // done", "c")] == [
        "if", "(", "V", ")", "{", "return", "V", "}",
    ]  # fmt: skip


def test_import_statements_are_not_fingerprinted() -> None:
    # Every file starts with imports, which look alike once names are normalized.
    python = "import os\nfrom a.b import (\n    c,\n    d,\n)\nx = f(y)\n"
    assert [t.text for t in tokenize(python, "python")] == ["V", "=", "V", "(", "V", ")"]
    js = 'import { a,\n  b } from "m";\nconst z = g(a);\n'
    assert [t.text for t in tokenize(js, "c")] == ["const", "V", "=", "V", "(", "V", ")"]


def test_winnowing_guarantee_on_random_token_streams() -> None:
    # Any shared run of at least K + WINDOW - 1 tokens yields a shared fingerprint.
    rng = random.Random(7)
    words = ["a", "b", "c", "(", ")", "=", "+", "if", "for", "in"]
    for _ in range(50):
        shared = " ".join(rng.choice(words) for _ in range(K + WINDOW - 1))
        left = " ".join(rng.choice(words) for _ in range(rng.randint(0, 40)))
        right = " ".join(rng.choice(words) for _ in range(rng.randint(0, 40)))
        one = {fp.hash for fp in fingerprints(f"{left} {shared}", "any")}
        two = {fp.hash for fp in fingerprints(f"{shared} {right}", "any")}
        assert one & two


def test_winnow_keeps_the_rightmost_minimum_once() -> None:
    assert winnow([5, 3, 3, 7, 9, 1, 4], window=3) == [2, 5]
    assert winnow([4, 2], window=3) == [1]
    assert winnow([], window=3) == []


def test_add_tree_indexes_source_files_and_skips_node_modules(
    index: CorpusIndex, corpus_dir: Path
) -> None:
    assert index.stats()["files"] == 2  # distance.py and util.js
    again = index.add_tree(corpus_dir)
    assert (again.indexed, again.unchanged) == (0, 2)
    (corpus_dir / "util.js").write_text("export const x = 1;\n")
    changed = index.add_tree(corpus_dir)
    assert (changed.indexed, changed.unchanged) == (1, 1)


def test_renamed_and_reformatted_copy_is_found(index: CorpusIndex, corpus_dir: Path) -> None:
    (match, *_) = index.match(DISGUISED, "python")
    assert match.source == str((corpus_dir / "vendor" / "distance.py").resolve())
    assert match.overlap >= 0.8
    first, last = match.source_lines
    assert first >= 2 and last <= 17
    findings = Checker(corpus=index).check_code(DISGUISED, "python")
    (duplicate,) = [f for f in findings if f.rule_id == "duplication/corpus"]
    assert "vendor/distance.py" in duplicate.message
    assert (duplicate.action, duplicate.severity) == ("block", "warning")
    assert duplicate.line <= 5


@pytest.mark.parametrize("ending", ["\r\n", "\r"], ids=["crlf", "cr"])
def test_a_copy_is_placed_on_the_lines_an_editor_shows(tmp_path: Path, ending: str) -> None:
    """A file of lone CRs (classic Mac OS) had every copy placed on its line 1."""
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "distance.py").write_bytes(ORIGINAL.replace("\n", ending).encode())
    with CorpusIndex(tmp_path / "corpus.sqlite") as built:
        built.add_tree(tmp_path / "corpus")
        (match, *_) = built.match(DISGUISED, "python")
    first, last = match.source_lines
    assert 2 <= first < last <= 17


def test_unrelated_code_is_not_a_copy(index: CorpusIndex) -> None:
    assert "duplication/corpus" not in rule_ids(
        Checker(corpus=index).check_code(UNRELATED, "python")
    )


def test_a_completion_copied_inside_a_longer_file(index: CorpusIndex) -> None:
    checker = Checker(corpus=index)
    findings = checker.check_insertion(UNRELATED + "\n\n", DISGUISED, "\n", "python")
    assert "duplication/corpus" in rule_ids(findings)
    assert all(0 <= f.start <= f.end <= len(DISGUISED) for f in findings)


def test_the_indexed_file_itself_is_not_reported_as_its_own_copy(
    index: CorpusIndex, corpus_dir: Path
) -> None:
    path = corpus_dir / "vendor" / "distance.py"
    checker = Checker(corpus=index)
    assert "duplication/corpus" not in rule_ids(checker.check_code(ORIGINAL, "", path=str(path)))
    assert "duplication/corpus" in rule_ids(checker.check_code(ORIGINAL, "", path="elsewhere.py"))


def test_a_file_whose_name_is_not_utf8_is_indexed_and_named(tmp_path: Path) -> None:
    """`tether corpus index` ended as an internal error on such a name (SQLite text holds
    no byte that is not UTF-8), indexing nothing."""
    root = tmp_path / "corpus"
    root.mkdir()
    try:
        path = root / os.fsdecode(b"dist\xff.py")
        path.write_text(ORIGINAL)
    except (OSError, UnicodeEncodeError):
        pytest.skip("this file system takes only UTF-8 names")
    with CorpusIndex(tmp_path / "corpus.sqlite") as index:
        assert index.add_tree(root).indexed == 1
        (match,) = index.match(DISGUISED, "python")
        assert match.source == f'"{root.resolve()}/dist\\377.py"'
        checker = Checker(corpus=index)  # the file itself is no copy of itself
        assert "duplication/corpus" not in rule_ids(
            checker.check_code(ORIGINAL, "", path=str(path))
        )


def test_a_file_whose_name_is_not_utf8_is_read_in_its_language(tmp_path: Path) -> None:
    """Its language was taken from the quoted name, whose last character is a quote, not
    the suffix: the file was fingerprinted as text of no language, and a copy of it, read
    as Python, matched little of it or nothing (no finding from `tether check`): `//`,
    Python's floor division, begins a comment in no language's text."""
    code = "".join(
        f"def part_{i}(total, count):\n    return total // count + {i}\n\n" for i in range(9)
    )
    for name in (b"dist\xff.py", b"dist.py"):
        root = tmp_path / os.fsdecode(name).replace(".", "_")
        root.mkdir()
        try:
            (root / os.fsdecode(name)).write_text(code)
        except (OSError, UnicodeEncodeError):
            pytest.skip("this file system takes only UTF-8 names")
        with CorpusIndex(root / "corpus.sqlite") as index:
            index.add_tree(root)
            (match,) = index.match(code, "python")
        assert (match.matched, match.overlap) == (match.total, 1.0), name


def test_the_index_is_its_owners_only(tmp_path: Path) -> None:
    """It names the files it holds and fingerprints their code; SQLite made it as the umask
    allowed, 0644 as a rule, in a data directory another user may read."""
    before = os.umask(0)
    try:
        CorpusIndex(tmp_path / "data" / "corpus.sqlite").close()
    finally:
        os.umask(before)
    assert stat.S_IMODE((tmp_path / "data" / "corpus.sqlite").stat().st_mode) == 0o600


def test_a_file_that_is_not_an_index_is_a_config_error(tmp_path: Path) -> None:
    bogus = tmp_path / "corpus.sqlite"
    bogus.write_text("not sqlite at all " * 100)
    with pytest.raises(ConfigError, match="not a tether corpus index"):
        CorpusIndex(bogus)
    with pytest.raises(ConfigError, match="tether corpus index DIR"):
        CorpusIndex(tmp_path / "missing.sqlite", create=False)


@pytest.mark.parametrize("create", [True, False])
def test_another_database_or_an_empty_file_is_left_as_it_was(tmp_path: Path, create: bool) -> None:
    other = tmp_path / "traces.sqlite"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE traces (id INTEGER PRIMARY KEY)")
    db.close()
    before = other.read_bytes()
    with pytest.raises(ConfigError, match="not a tether corpus index"):
        CorpusIndex(other, create=create)
    assert other.read_bytes() == before
    empty = tmp_path / "empty.py"
    empty.touch()
    if not create:
        with pytest.raises(ConfigError, match="no corpus index"):
            CorpusIndex(empty, create=False)
        assert empty.read_bytes() == b""


def test_checker_from_settings_opens_the_configured_index(tmp_path: Path, corpus_dir: Path) -> None:
    from tests.conftest import make_settings

    path = tmp_path / "mine.sqlite"
    with CorpusIndex(path) as built:
        built.add_tree(corpus_dir)
    settings = make_settings(tmp_path, TETHER_COMPLIANCE_CORPUS_INDEX=str(path))
    with Checker.from_settings(settings) as checker:
        assert checker.corpus is not None
        assert "duplication/corpus" in rule_ids(checker.check_code(DISGUISED, "python"))
    missing = make_settings(tmp_path, TETHER_COMPLIANCE_CORPUS_INDEX=str(tmp_path / "nope.db"))
    with pytest.raises(ConfigError, match="no corpus index"):
        Checker.from_settings(missing)
    assert Checker.from_settings(make_settings(tmp_path)).corpus is None  # default: optional


def test_cli_builds_the_index_and_check_reports_the_copy(tmp_path: Path, corpus_dir: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "new.py").write_text(DISGUISED)
    index_path = tmp_path / "cli.sqlite"
    built = tether(project, "corpus", "index", str(corpus_dir), "--index", str(index_path))
    assert built.returncode == 0, built.stderr
    assert "2 files indexed" in built.stdout
    found = tether(
        project, "check", "--tools", "none", "--corpus", str(index_path), "--format", "json"
    )
    assert found.returncode == 1, found.stderr
    assert '"rule_id": "duplication/corpus"' in found.stdout
