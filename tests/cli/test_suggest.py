"""`tether suggest`: a patch is written whole, and --apply changes only the patched lines
of a file, or nothing at all, with one line saying why."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from tests.helpers import project_with, tether_env
from tests.stub_upstream import MODEL, StubUpstream, stub_upstream
from tether.cli.common import EXIT_NO, EXIT_USAGE
from tether.cli.main import cli
from tether.suggestions import make_patch

SOURCE = "def add(a, b):\n    return a + b\n"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return project_with(monkeypatch, tmp_path, "s.py", SOURCE)


@contextmanager
def _swapping(monkeypatch: pytest.MonkeyPatch) -> Iterator[StubUpstream]:
    """The engine, an upstream whose answer is the file with ``a + b`` swapped."""
    with stub_upstream(f"```python\n{SOURCE.replace('a + b', 'b + a')}```\n") as stub:
        monkeypatch.setenv("TETHER_ENGINE_KIND", "openai")
        monkeypatch.setenv("TETHER_UPSTREAM_BASE_URLS", stub.base_url)
        yield stub


def _invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def _one_error(result: Result) -> str:
    errors = [line for line in result.output.splitlines() if line.lower().startswith("error")]
    assert len(errors) == 1, result.output
    return errors[0]


def test_a_truncated_patch_is_refused_and_nothing_is_written(project: Path) -> None:
    (project / "t.patch").write_text(
        "--- a/s.py\n+++ b/s.py\n@@ -1,2 +1,2 @@\n def add(a, b):\n-    return a + b\n"
    )
    result = _invoke("suggest", "--apply", "t.patch")
    assert result.exit_code == EXIT_USAGE
    assert "promises 2 and 2" in _one_error(result)
    assert (project / "s.py").read_text() == SOURCE
    assert sorted(p.name for p in project.iterdir()) == ["s.py", "t.patch"]


def test_a_project_in_a_folder_named_beyond_ascii_takes_a_patch_under_the_c_locale(
    tmp_path: Path,
) -> None:
    """Under the C locale with UTF-8 mode off, git's name for the work tree was read as
    ASCII text: a folder named `prøj` ended --apply saying a file was not UTF-8 text."""
    project = tmp_path / "pr\u00f8j"
    project.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    (project / "s.py").write_text(SOURCE)
    (project / "t.patch").write_text(
        '--- a/s.py\n+++ b/s.py\n@@ -1,2 +1,3 @@\n def add(a, b):\n+    """Add."""\n'
        "     return a + b\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "tether", "suggest", "--apply", "t.patch"],
        env={**tether_env(tmp_path), "LC_ALL": "C", "PYTHONUTF8": "0"},
        cwd=project,
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert (project / "s.py").read_text() == SOURCE.replace("\n", '\n    """Add."""\n', 1)


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["s.py", "-i", "x"], "drop FILE and -i,"),
        (["-o", "p.patch", "--seed", "3", "--server", "http://x"], "drop -o, --seed and --server,"),
    ],
)
def test_apply_with_options_it_cannot_use_is_refused(
    project: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], named: str
) -> None:
    patch = project / "t.patch"
    patch.write_text(make_patch(SOURCE, SOURCE.replace("a + b", "b + a"), "s.py"))
    result = _invoke("suggest", *args, "--apply", "t.patch")
    assert result.exit_code == EXIT_USAGE
    assert named in _one_error(result)
    assert (project / "s.py").read_text() == SOURCE
    monkeypatch.setenv("TETHER_SERVER", "http://127.0.0.1:9")  # set, but not on the line
    result = _invoke("suggest", "--apply", "t.patch", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"applied": "s.py", "moved": []}


def test_a_patch_applies_where_the_file_moved_its_lines_and_says_so(project: Path) -> None:
    code = "".join(f"def f{n}(x):\n    return x + {n}\n\n" for n in range(1, 9))
    (project / "m.py").write_text(code)
    (project / "m.patch").write_text(make_patch(code, code.replace("x + 6", "x - 6"), "m.py"))
    (project / "m.py").write_text('"""Added during review."""\n\n' + code)
    result = _invoke("suggest", "--apply", "m.patch")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "applied m.patch to m.py",
        "  the hunk at line 3 of the patch went 2 lines lower",
    ]
    applied = '"""Added during review."""\n\n' + code.replace("x + 6", "x - 6")
    assert (project / "m.py").read_text() == applied
    again = _invoke("suggest", "--apply", "m.patch", "--json")
    assert again.exit_code != 0 and "already applied" in again.output
    (project / "m.py").write_text("\n" + code)
    result = _invoke("suggest", "--apply", "m.patch", "--json")
    assert json.loads(result.output) == {"applied": "m.py", "moved": [{"hunk_line": 3, "by": 1}]}


def test_a_crlf_file_keeps_its_endings_and_its_mode(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    crlf = SOURCE.replace("\n", "\r\n") + "\f\r\n# end\r\n"
    (project / "c.py").write_bytes(crlf.encode())
    (project / "c.py").chmod(0o750)
    changed = SOURCE.replace("a + b", "b + a") + "\f\n# end\n"  # the model answers with "\n"
    with stub_upstream(f"```python\n{changed}```\n") as stub:
        monkeypatch.setenv("TETHER_ENGINE_KIND", "openai")
        monkeypatch.setenv("TETHER_UPSTREAM_BASE_URLS", stub.base_url)
        made = _invoke("suggest", "c.py", "-i", "swap", "-o", "c.patch")
    assert made.exit_code == 0, made.output
    patch = (project / "c.patch").read_bytes()
    assert b"-    return a + b\r\n+    return b + a\r\n" in patch
    assert patch.count(b"\n-") == 1  # only the changed line, not every line
    applied = _invoke("suggest", "--apply", "c.patch")
    assert applied.exit_code == 0, applied.output
    assert (project / "c.py").read_bytes() == crlf.replace("a + b", "b + a").encode()
    assert stat.S_IMODE((project / "c.py").stat().st_mode) == 0o750


def test_an_empty_file_gets_lines_that_end(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file of 0 bytes has no last line to keep without its newline: the new file's
    last line lacked one, as no editor writes it."""
    (project / "e.py").write_bytes(b"")
    with _swapping(monkeypatch):
        made = _invoke("suggest", "e.py", "-i", "write add", "-o", "e.patch")
    assert made.exit_code == 0, made.output
    assert "No newline at end of file" not in (project / "e.patch").read_text()
    assert _invoke("suggest", "--apply", "e.patch").exit_code == 0
    assert (project / "e.py").read_text() == SOURCE.replace("a + b", "b + a")


def test_output_dash_prints_the_patch_alone(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    changed = SOURCE.replace("a + b", "b + a")
    with stub_upstream(f"```python\n{changed}```\n") as stub:
        monkeypatch.setenv("TETHER_ENGINE_KIND", "openai")
        monkeypatch.setenv("TETHER_UPSTREAM_BASE_URLS", stub.base_url)
        result = _invoke("suggest", "s.py", "-i", "swap", "-o", "-")
        both = _invoke("suggest", "s.py", "-i", "swap", "-o", "-", "--json")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("--- a/s.py\n+++ b/s.py\n")
    assert not (project / "-").exists() and not list(project.glob("*.patch*"))
    (project / "p.patch").write_text(result.output)
    assert _invoke("suggest", "--apply", "p.patch").exit_code == 0
    assert (project / "s.py").read_text() == changed
    assert both.exit_code == EXIT_USAGE and "give one of them" in _one_error(both)


def test_a_patch_on_standard_output_is_utf8_under_a_locale_that_is_not(project: Path) -> None:
    """Under a Latin-1 locale, `-o -` wrote the patch in Latin-1, with what it cannot hold
    escaped: `git apply` refused the patch of a UTF-8 file, or wrote its lines changed."""
    source = 'def greet():\n    return "caf\u00e9 \u4f60"\n'
    (project / "g.py").write_text(source)
    changed = source.replace("greet", "hello")
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    with stub_upstream(f"```python\n{changed}```\n") as stub:
        env = tether_env(
            project.parent,
            TETHER_ENGINE_KIND="openai",
            TETHER_UPSTREAM_BASE_URLS=stub.base_url,
            PYTHONIOENCODING="latin-1",
        )
        done = subprocess.run(
            [sys.executable, "-m", "tether", "suggest", "g.py", "-i", "rename", "-o", "-"],
            env=env,
            cwd=project,
            capture_output=True,
            timeout=60,
        )
    assert done.returncode == 0, done.stderr
    assert done.stdout == make_patch(source, changed, "g.py").encode()
    subprocess.run(["git", "apply"], input=done.stdout, cwd=project, check=True)
    assert (project / "g.py").read_text() == changed


def test_an_interrupted_suggestion_leaves_the_old_patch_whole(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (project / "s.patch").write_text("the patch under review\n")
    changed = SOURCE.replace("a + b", "b + a")

    fsync = os.fsync

    def interrupted(fd: int) -> None:  # Ctrl-C while the new patch is half on disk
        if Path(os.readlink(f"/proc/self/fd/{fd}")).name.startswith(".s.patch."):
            raise KeyboardInterrupt
        fsync(fd)

    with stub_upstream(f"```python\n{changed}```\n") as stub:
        monkeypatch.setenv("TETHER_ENGINE_KIND", "openai")
        monkeypatch.setenv("TETHER_UPSTREAM_BASE_URLS", stub.base_url)
        monkeypatch.setattr(os, "fsync", interrupted)
        result = _invoke("suggest", "s.py", "-i", "swap", "-o", "s.patch")
    assert result.exit_code == 130, result.output
    assert (project / "s.patch").read_text() == "the patch under review\n"
    assert not list(project.glob(".*.tmp"))


def test_a_blocked_suggestion_writes_nothing_and_says_why(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A blocked answer comes back empty: as a file it would delete every line."""
    changed = "def add(a, b):\n    return eval('a + b')\n"
    with stub_upstream(f"```python\n{changed}```\n") as stub:
        monkeypatch.setenv("TETHER_ENGINE_KIND", "openai")
        monkeypatch.setenv("TETHER_UPSTREAM_BASE_URLS", stub.base_url)
        monkeypatch.setenv("TETHER_COMPLIANCE_ACTIONS", '{"security/eval": "block"}')
        result = _invoke("suggest", "s.py", "-i", "use eval", "-o", "-")
        summary = _invoke("suggest", "s.py", "-i", "use eval", "--json")
    assert result.exit_code == EXIT_NO, result.output
    assert "blocked the suggested file (security/eval)" in _one_error(result)
    assert "---" not in result.output and not list(project.glob("*.patch*"))
    assert summary.exit_code == EXIT_NO
    shown = json.loads(summary.output.splitlines()[0])
    assert shown["patch"] is None and shown["blocked"] == ["security/eval"]
    assert (project / "s.py").read_text() == SOURCE


def test_with_traces_off_the_patch_is_written_without_a_manifest(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TETHER_TRACES_ENABLED", "false")
    with _swapping(monkeypatch):
        result = _invoke("suggest", "s.py", "-i", "swap", "-o", "s.patch")
    assert result.exit_code == 0, result.output
    assert "traces are off (traces.enabled = false)" in result.output
    assert (project / "s.patch").read_text().startswith("--- a/s.py\n")
    assert not list(project.glob("*.repro.json"))


def test_the_manifest_beside_a_patch_is_checked_and_never_written_through_a_link(
    project: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    changed = SOURCE.replace("a + b", "b + a")
    with stub_upstream(f"```python\n{changed}```\n") as stub:
        monkeypatch.setenv("TETHER_ENGINE_KIND", "openai")
        monkeypatch.setenv("TETHER_UPSTREAM_BASE_URLS", stub.base_url)
        made = _invoke("suggest", "s.py", "-i", "swap", "-o", "s.patch")
    assert made.exit_code == 0, made.output
    manifest = project / "s.patch.repro.json"
    real = manifest.read_text()
    # A link where the manifest goes would write wherever it points.
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (project / "s.py.repro.json").symlink_to(victim)
    linked = _invoke("suggest", "--apply", "s.patch")
    assert linked.exit_code == EXIT_USAGE and "symbolic link" in _one_error(linked)
    assert victim.read_text() == "precious" and (project / "s.py").read_text() == SOURCE
    (project / "s.py.repro.json").unlink()
    # A folder there, or something that is not a manifest beside the patch: refused first.
    (project / "s.py.repro.json").mkdir()
    folder = _invoke("suggest", "--apply", "s.patch")
    assert folder.exit_code == EXIT_USAGE and "not a regular file" in _one_error(folder)
    (project / "s.py.repro.json").rmdir()
    manifest.write_text('{"any": "content"}')
    garbage = _invoke("suggest", "--apply", "s.patch")
    assert garbage.exit_code == EXIT_USAGE and "not a tether" in _one_error(garbage)
    assert (project / "s.py").read_text() == SOURCE
    assert not (project / "s.py.repro.json").exists()
    manifest.write_text(real)
    applied = _invoke("suggest", "--apply", "s.patch")
    assert applied.exit_code == 0, applied.output
    assert (project / "s.py.repro.json").read_text() == real


PROSE = "The given instruction should return the complete updated file with a docstring."


@pytest.mark.parametrize(
    ("name", "answer"),
    [("s.py", PROSE), ("s.ts", PROSE), ("s.py", ""), ("s.py", "  \n"), ("s.py", "Done.")],
)
def test_an_answer_in_prose_is_no_file_and_proposes_nothing(
    project: Path, monkeypatch: pytest.MonkeyPatch, name: str, answer: str
) -> None:
    if name != "s.py":
        (project / name).write_text("export function add(a: number): number {\n  return a;\n}\n")
    with stub_upstream(answer) as stub:
        monkeypatch.setenv("TETHER_ENGINE_KIND", "openai")
        monkeypatch.setenv("TETHER_UPSTREAM_BASE_URLS", stub.base_url)
        result = _invoke("suggest", name, "-i", "add a docstring", "-o", "p.patch", "--json")
    assert result.exit_code == EXIT_NO, result.output
    assert "holds no file to compare" in _one_error(result)
    summary = json.loads(result.output.splitlines()[0])
    assert summary["patch"] is None and "nothing was proposed" in summary["problem"]
    assert not (project / "p.patch").exists()


def test_an_unfenced_answer_that_is_code_is_still_a_file(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with stub_upstream(SOURCE.replace("a + b", "b + a")) as stub:
        monkeypatch.setenv("TETHER_ENGINE_KIND", "openai")
        monkeypatch.setenv("TETHER_UPSTREAM_BASE_URLS", stub.base_url)
        result = _invoke("suggest", "s.py", "-i", "swap", "-o", "p.patch")
    assert result.exit_code == 0, result.output
    assert "+    return b + a\n" in (project / "p.patch").read_text()


def test_a_file_with_a_long_name_gets_a_patch_whose_name_fits(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = "é" * 60 + "a" * 120 + ".py"  # 243 bytes: legal, but not with more around it
    (project / name).write_text(SOURCE)
    with _swapping(monkeypatch):
        made = _invoke("suggest", name, "-i", "swap")
    assert made.exit_code == 0, made.output
    patch = Path(made.output.strip().splitlines()[-1])
    assert patch.is_file() and len((patch.name + ".repro.json").encode()) <= 255


FENCED_DOC = 'def f():\n    """Run f.\n\n    ```python\n    f()\n    ```\n    """\n    return 1\n'


@pytest.mark.parametrize("fence", ["```", "````"])
def test_a_file_with_fences_in_it_is_not_cut_at_its_first_fence(
    project: Path, monkeypatch: pytest.MonkeyPatch, fence: str
) -> None:
    (project / "doc.py").write_text(FENCED_DOC)
    new = FENCED_DOC.replace("def f():", "def f() -> int:")
    with stub_upstream(f"{fence}python\n{new}{fence}\n") as stub:
        monkeypatch.setenv("TETHER_ENGINE_KIND", "openai")
        monkeypatch.setenv("TETHER_UPSTREAM_BASE_URLS", stub.base_url)
        result = _invoke("suggest", "doc.py", "-i", "add a return type", "-o", "-")
    assert result.exit_code == 0, result.output
    assert result.output == make_patch(FENCED_DOC, new, "doc.py")


KEYED = 'AWS_KEY = "AKIAIOSFODNN7EXAMPLE"\n\n\ndef region():\n    return "us-east-1"\n'
SEEN = KEYED.replace("AKIAIOSFODNN7EXAMPLE", "[REDACTED:aws-access-key-id]")


def test_a_secret_kept_from_the_model_stays_in_the_file(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (project / "conf.py").write_text(KEYED)
    documented = KEYED.replace("def region():\n", 'def region():\n    """The region."""\n')
    answer = documented.replace("AKIAIOSFODNN7EXAMPLE", "[REDACTED:aws-access-key-id]")
    with stub_upstream(f"```python\n{answer}```\n") as stub:
        monkeypatch.setenv("TETHER_ENGINE_KIND", "openai")
        monkeypatch.setenv("TETHER_UPSTREAM_BASE_URLS", stub.base_url)
        result = _invoke("suggest", "conf.py", "-i", "add a docstring", "-o", "-")
        sent = json.dumps(stub.requests)
    assert "[REDACTED:aws-access-key-id]" in sent and "AKIAIOSFODNN7EXAMPLE" not in sent
    assert result.exit_code == 0, result.output
    assert result.output == make_patch(KEYED, documented, "conf.py")


def test_a_placeholder_that_could_be_either_secret_is_not_written(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (project / "conf.py").write_text(KEYED + 'OTHER = "AKIAI44QH8DHBEXAMPLE"\n')
    answer = SEEN + 'OTHER = "[REDACTED:aws-access-key-id]"\nNEW = "[REDACTED:aws-access-key-id]"\n'
    with stub_upstream(f"```python\n{answer}```\n") as stub:
        monkeypatch.setenv("TETHER_ENGINE_KIND", "openai")
        monkeypatch.setenv("TETHER_UPSTREAM_BASE_URLS", stub.base_url)
        result = _invoke("suggest", "conf.py", "-i", "add a key", "-o", "p.patch")
    assert result.exit_code == EXIT_NO, result.output
    assert "line 7 of its file" in _one_error(result)
    assert not (project / "p.patch").exists()


def test_an_output_in_a_missing_folder_is_refused_before_the_model_runs(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _swapping(monkeypatch) as stub:
        result = _invoke("suggest", "s.py", "-i", "swap", "-o", "nowhere/x.patch")
        assert stub.requests == []
    assert result.exit_code != 0
    error = _one_error(result)
    assert "--output nowhere/x.patch" in error and "does not exist; create it first" in error
    assert ".tmp" not in error


@pytest.mark.parametrize("name", ["/dev/stdout", "/dev/fd/1"])
def test_output_to_standard_output_by_name_prints_the_patch_alone(
    project: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    with _swapping(monkeypatch):
        result = _invoke("suggest", "s.py", "-i", "swap", "-o", name)
    assert result.exit_code == 0, result.output
    assert result.output.startswith("--- a/s.py\n+++ b/s.py\n")  # no path printed after it
    assert name not in result.output
    assert not list(Path(name).parent.glob("*.repro.json"))  # no manifest beside it


def test_output_over_the_file_itself_is_refused_and_the_file_kept(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _swapping(monkeypatch) as stub:
        result = _invoke("suggest", "s.py", "-i", "swap", "-o", "./s.py")
        assert stub.requests == []
    assert result.exit_code == EXIT_USAGE, result.output
    assert "is s.py itself" in _one_error(result)
    assert (project / "s.py").read_text() == SOURCE


def test_a_file_too_long_for_the_window_is_named_not_the_prompt(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The engine's "shorten the prompt" named nothing the user wrote: a suggestion's
    prompt is the file, so the refusal names the file and what to do instead."""
    with _swapping(monkeypatch) as stub:
        monkeypatch.setenv("TETHER_UPSTREAM_MODEL", MODEL)  # its listing is refused too
        stub.refuse = (400, {})
        stub.refusal = "This model's maximum context length is 2048 tokens; prompt is 9000 tokens"
        result = _invoke("suggest", "s.py", "-i", "swap")
    assert result.exit_code == EXIT_USAGE, result.output
    error = _one_error(result)
    assert "s.py is too long for a suggestion in this context window" in error
    assert "ask on a shorter file" in error and "engine.n_ctx" in error
    assert sorted(p.name for p in project.iterdir()) == ["s.py"]
