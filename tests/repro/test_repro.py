"""Pinned generations regenerate byte for byte; a changed one is caught and shown, and a
different model or build is said to be not comparable, never a false mismatch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tests.helpers import project_with, python_under_the_c_locale
from tests.stub_upstream import stub_upstream
from tether.cli.common import EXIT_NO, EXIT_USAGE
from tether.cli.main import cli
from tether.repro.manifest import Manifest, output_digest

SOURCE = "def area(radius):\n    return 3.14159 * radius ** 2\n"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return project_with(monkeypatch, tmp_path, "geometry.py", SOURCE)


def _invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


def test_a_completion_regenerates_and_a_changed_one_is_caught(project: Path) -> None:
    status, output = _invoke("complete", "geometry.py", "--line", "2", "--col", "5", "--json")
    assert status == 0, output
    answer = json.loads(output)
    status, output = _invoke("repro", "record", answer["id"], "-o", "answer.json")
    assert status == 0, output
    manifest = Manifest.load(project / "answer.json")
    # The engine's output, which the editor cut to the hole and then stopped.
    assert answer["text"].strip() in manifest.output and manifest.ended_early
    assert manifest.model_sha256
    assert manifest.system_fingerprint == answer["system_fingerprint"] and manifest.build
    assert manifest.params["seed"] == 0 and manifest.prompt == "def area(radius):\n    "
    assert manifest.output, "the model wrote nothing: this test needs an answer to change"

    status, output = _invoke("repro", "verify", "answer.json")
    assert status == 0 and "every byte regenerated; its audit record (seq" in output, output

    # One made where this audit log has no record of it: only regenerating can tell.
    changed = json.loads((project / "answer.json").read_text())
    changed["id"] = "made-elsewhere"
    changed["output"] = changed["output"][:3] + "XYZ" + changed["output"][3:]
    changed["output_sha256"] = output_digest(changed["output"])
    (project / "changed.json").write_text(json.dumps(changed))
    status, output = _invoke("repro", "verify", "answer.json", "changed.json")
    assert status == EXIT_NO
    assert "ok answer.json" in output and "MISMATCH changed.json" in output
    assert "(no audit record of made-elsewhere here tells an edit from this)" in output
    assert "first difference at character 4" in output  # counted from 1
    assert "+++ regenerated" in output


@pytest.mark.parametrize(
    ("change", "names"),
    [
        ({"output": "XYZ"}, "output"),
        ({"params": {"seed": 7}}, "seed"),
        ({"params": {"max_tokens": 3, "temperature": 0.5}}, "max_tokens, temperature"),
        ({"prompt": "def volume(radius):\n    "}, "prompt"),
        ({"model_sha256": "0" * 64}, "model_sha256"),
        ({"ended_early": False}, "ended_early"),  # the editor's fill ended it: it did
    ],
)
def test_a_manifest_changed_since_its_generation_was_audited_is_said_to_be_edited(
    project: Path, change: dict[str, Any], names: str
) -> None:
    """It read as a failure to reproduce (the engine's fault), or, with its output edited
    to what the edit regenerates, as a proof."""
    _, output = _invoke("complete", "geometry.py", "--line", "2", "--col", "5", "--json")
    _invoke("repro", "record", json.loads(output)["id"], "-o", "answer.json")
    edited = json.loads((project / "answer.json").read_text())
    edited.update({k: v for k, v in change.items() if k != "params"})
    edited["params"].update(change.get("params", {}))
    edited["output_sha256"] = output_digest(edited["output"])
    (project / "edited.json").write_text(json.dumps(edited))
    status, output = _invoke("repro", "verify", "edited.json")
    assert status == EXIT_NO, output
    assert f"EDITED edited.json: differs from the audit record of {edited['id']}" in output
    assert f"in {names}: the manifest was changed" in output and "MISMATCH" not in output
    status, output = _invoke("repro", "verify", "edited.json", "--json")
    (shown,) = json.loads(output)
    assert shown["verdict"] == "edited" and shown["audit_record"]["differs"] == names.split(", ")


def test_another_model_is_not_comparable_not_a_mismatch(project: Path) -> None:
    _, output = _invoke("chat", "-m", "hi", "--max-tokens", "4", "--json")
    answer = json.loads(output)
    _invoke("repro", "record", answer["id"], "-o", "chat.json")
    other = json.loads((project / "chat.json").read_text())
    other.update(id="made-elsewhere", model_sha256="0" * 64)  # no record here to edit
    (project / "other.json").write_text(json.dumps(other))
    status, output = _invoke("repro", "verify", "other.json")
    assert status == EXIT_USAGE
    assert "NOT COMPARABLE other.json: model file" in output and "MISMATCH" not in output
    # Made through a gateway, whose upstream's file has no hash: not "set it to ''".
    (project / "upstream.json").write_text(json.dumps({**other, "model_sha256": ""}))
    status, output = _invoke("repro", "verify", "upstream.json")
    assert status == EXIT_USAGE and "the manifest's was not known" in output
    assert "set engine.model_path" not in output
    # An empty build is another build, not one that skips the comparison.
    unbuilt = {**json.loads((project / "chat.json").read_text()), "build": ""}
    (project / "unbuilt.json").write_text(json.dumps(unbuilt))
    status, output = _invoke("repro", "verify", "unbuilt.json")
    assert status == EXIT_USAGE and "NOT COMPARABLE unbuilt.json: build" in output


def _recorded_chat(project: Path, prompt: str, name: str, *options: str) -> Manifest:
    status, output = _invoke("chat", "-m", prompt, "--json", "--temperature", "0", *options)
    assert status == 0, output
    status, output = _invoke("repro", "record", json.loads(output)["id"], "-o", name)
    assert status == 0, output
    return Manifest.load(project / name)


def test_engine_settings_that_change_the_bytes_are_not_comparable_nor_a_mismatch(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another KV cache type writes other bytes; a window that ended the answer would let
    it go on; one too small for the prompt cannot make it. Each says what to set."""
    monkeypatch.setenv("TETHER_ENGINE_N_CTX", "256")
    story = "Write a story about: " + "the cat sat on the mat. " * 30  # 246 tokens as chat
    cut = _recorded_chat(project, story, "cut.json")
    assert cut.params["max_tokens"] < cut.params["max_tokens_asked"]  # the window ended it
    monkeypatch.setenv("TETHER_ENGINE_N_CTX", "512")
    status, output = _invoke("repro", "verify", "cut.json")
    assert status == 0, output  # made again as far as it went, not on into the larger window
    # How far it went is the record's too: a shorter one would read as a mismatch.
    shorter = json.loads((project / "cut.json").read_text())
    shorter["params"]["max_tokens"] -= 1
    (project / "shorter.json").write_text(json.dumps(shorter))
    status, output = _invoke("repro", "verify", "shorter.json")
    assert status == EXIT_NO and "in max_tokens (as far as it went)" in output, output

    long = _recorded_chat(project, story + "Again. " * 60, "long.json", "--max-tokens", "3")
    assert long.output
    monkeypatch.setenv("TETHER_ENGINE_N_CTX", "256")
    status, output = _invoke("repro", "verify", "long.json", "cut.json")
    assert status == EXIT_USAGE, output
    assert "NOT COMPARABLE long.json: context window: the prompt is" in output
    assert "set engine.n_ctx (TETHER_ENGINE_N_CTX)" in output and "ok cut.json" in output

    monkeypatch.setenv("TETHER_ENGINE_KV_TYPE", "f16")
    status, output = _invoke("repro", "verify", "cut.json")
    assert status == EXIT_USAGE, output
    assert "NOT COMPARABLE cut.json: engine:" in output and "f16 cache" in output


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("not json", "is not JSON"),
        ('{"format": "something/9"}', "is not a tether.repro/1 manifest"),
        ('{"format": "tether.repro/1", "id": "x"}', "damaged manifest"),
    ],
)
def test_a_malformed_manifest_is_one_clear_line(project: Path, text: str, says: str) -> None:
    (project / "bad.json").write_text(text)
    status, output = _invoke("repro", "verify", "bad.json")
    assert status == EXIT_USAGE and says in output and output.count("\n") == 1


def test_a_manifest_with_a_field_of_the_wrong_kind_is_one_clear_line(project: Path) -> None:
    _, output = _invoke("chat", "-m", "hi", "--max-tokens", "4", "--json")
    _invoke("repro", "record", json.loads(output)["id"], "-o", "good.json")
    good = json.loads((project / "good.json").read_text())
    for change, says in (
        ({"params": {**good["params"], "max_tokens": "abc"}}, "params.max_tokens"),
        ({"params": {**good["params"], "max_tokens": -5}}, "params.max_tokens"),
        ({"params": {**good["params"], "temperature": None}}, "params.temperature"),
        ({"params": {**good["params"], "seed": -1}}, "params.seed"),
        ({"params": {**good["params"], "seed": 2**32}}, "params.seed"),
        ({"params": [1]}, "params"),
        ({"prompt": 5}, "prompt"),
        ({"output": 5}, "output"),
        ({"kind": "weird"}, "kind"),
        ({"output": "\ud800"}, "output"),  # lone surrogates: JSON can spell them, UTF-8 not
        ({"prompt": "x\udfff"}, "prompt"),
        # What the engine was given is a prompt or messages: both ran the prompt alone.
        ({"messages": [{"role": "user", "content": "x"}]}, "it holds both"),
        ({"prompt": None}, "it holds neither"),
        # How a suggested file's lines end, in runs of one ending: verify writes them so.
        ({"file": {"line_endings": 5}}, "file.line_endings"),
        ({"file": {"line_endings": [["\n", "x"]]}}, "file.line_endings.0.1"),
        ({"file": {"line_endings": [["\n", 0]]}}, "file.line_endings.0.1"),
        ({"file": {"line_endings": [["<b>", 2]]}}, "file.line_endings.0.0"),
    ):
        (project / "bad.json").write_text(json.dumps({**good, **change}))
        status, output = _invoke("repro", "verify", "bad.json")
        assert status == EXIT_USAGE and output.count("\n") == 1, output
        assert f"damaged manifest ({says}" in output


def test_a_committed_file_is_found_in_a_folder_named_beyond_ascii_under_the_c_locale(
    tmp_path: Path,
) -> None:
    """git's name for the work tree was read as UTF-8 where the system reads names as
    ASCII (the C locale with UTF-8 mode off) or Latin-1: under ASCII, `repro verify --git`
    in a folder named `prøj` ended as an internal error."""
    project = tmp_path / "pr\u00f8j"
    project.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    code = "from pathlib import Path\nfrom tether.repro.gitfiles import in_repository\n"
    code += "print(in_repository('s.py', Path.cwd()))\n"
    status, out, err = python_under_the_c_locale(code, project)
    assert (status, out) == (0, "s.py\n"), err


@pytest.mark.parametrize("ending", ["\n", "\r\n", "\r"], ids=["lf", "crlf", "cr"])
def test_a_committed_suggestion_is_verified_against_its_git_blob(
    project: Path, monkeypatch: pytest.MonkeyPatch, ending: str
) -> None:
    changed = SOURCE.replace("def area(radius):\n", 'def area(radius):\n    """Area."""\n')
    (project / "geometry.py").write_bytes(SOURCE.replace("\n", ending).encode())
    with stub_upstream(f"```python\n{changed}```\n") as stub:  # models answer with \n
        monkeypatch.setenv("TETHER_ENGINE_KIND", "openai")
        monkeypatch.setenv("TETHER_UPSTREAM_BASE_URLS", stub.base_url)
        subprocess.run(["git", "init", "-q"], check=True)
        status, output = _invoke("suggest", "geometry.py", "-i", "docstring", "-o", "s.patch")
        assert status == 0, output
        assert (project / "s.patch.repro.json").is_file()
        status, output = _invoke("suggest", "--apply", "s.patch")
        assert status == 0, output
        assert (project / "geometry.py").read_bytes() == changed.replace("\n", ending).encode()
        changed = changed.replace("\n", ending)
        git = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]
        subprocess.run([*git, "add", "geometry.py", "geometry.py.repro.json"], check=True)
        subprocess.run([*git, "commit", "-qm", "generated"], check=True)
        status, output = _invoke("repro", "verify", "--git", "HEAD", "--", "geometry.py")
        assert status == 0 and "ok HEAD:geometry.py" in output, output
        (project / "geometry.py").write_bytes((changed + "# edited by hand\n").encode())
        subprocess.run([*git, "commit", "-qam", "edited"], check=True)
        status, output = _invoke("repro", "verify", "--git", "HEAD", "--", "geometry.py")
        assert status == EXIT_NO and "MISMATCH HEAD:geometry.py" in output, output
        # In the lines git shows: a file of lone CRs is one line, its CRs shown escaped.
        assert ("\\x0d# edited" if ending == "\r" else "-# edited by hand") in output


def test_a_committed_suggestion_to_a_file_of_mixed_line_ends_verifies(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each line suggest kept keeps its own ending; verifying wrote every line with the
    file's usual one, and the file suggest wrote was called a mismatch."""
    mixed = (
        "def area(radius):\r\n    return 3.14159 * radius ** 2\n\r\n\ndef zero():\r\n    return 0\n"
    )
    (project / "geometry.py").write_bytes(mixed.encode())
    changed = mixed.replace("\r\n", "\n").replace("return 0", "return 0.0")
    with stub_upstream(f"```python\n{changed}```\n") as stub:  # models answer with \n
        monkeypatch.setenv("TETHER_ENGINE_KIND", "openai")
        monkeypatch.setenv("TETHER_UPSTREAM_BASE_URLS", stub.base_url)
        subprocess.run(["git", "init", "-q"], check=True)
        assert _invoke("suggest", "geometry.py", "-i", "float", "-o", "s.patch")[0] == 0
        made = json.loads((project / "s.patch.repro.json").read_text(encoding="utf-8"))["file"]
        assert {"path", "derive", "line_ending", "line_endings"} <= made.keys()
        guide = (Path(__file__).parents[2] / "docs" / "evals.md").read_text(encoding="utf-8")
        undocumented = [key for key in made if f"- `file.{key}`: " not in guide]
        assert undocumented == [], "docs/evals.md says nothing of these fields of file"
        assert _invoke("suggest", "--apply", "s.patch")[0] == 0
        assert (project / "geometry.py").read_bytes() == mixed.replace("0\n", "0.0\n").encode()
        git = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]
        subprocess.run([*git, "add", "geometry.py", "geometry.py.repro.json"], check=True)
        subprocess.run([*git, "commit", "-qm", "generated"], check=True)
        status, output = _invoke("repro", "verify", "--git", "HEAD", "--", "geometry.py")
        assert status == 0 and "ok HEAD:geometry.py" in output, output
        # Line ends changed since are told from the generation's, as any other byte.
        (project / "geometry.py").write_bytes(
            (project / "geometry.py").read_bytes().replace(b"\r\n", b"\n")
        )
        subprocess.run([*git, "commit", "-qam", "converted"], check=True)
        status, output = _invoke("repro", "verify", "--git", "HEAD", "--", "geometry.py")
        assert status == EXIT_NO and "MISMATCH HEAD:geometry.py" in output, output


def test_a_mismatch_is_shown_in_the_lines_git_shows_with_escapes_not_sent_to_the_terminal(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A committed file is anyone's text: an escape sequence in it was printed raw in the
    diff (OSC 0 retitled the terminal, OSC 52 sets the clipboard), and a line holding
    U+2028 was shown as two, a "No newline" marker between them."""
    changed = SOURCE.replace("def area(radius):\n", 'def area(radius):\n    """Area."""\n')
    with stub_upstream(f"```python\n{changed}```\n") as stub:
        monkeypatch.setenv("TETHER_ENGINE_KIND", "openai")
        monkeypatch.setenv("TETHER_UPSTREAM_BASE_URLS", stub.base_url)
        subprocess.run(["git", "init", "-q"], check=True)
        assert _invoke("suggest", "geometry.py", "-i", "docstring", "-o", "s.patch")[0] == 0
        assert _invoke("suggest", "--apply", "s.patch")[0] == 0
        edited = changed + "# \x1b]0;owned\x07 a\u2028b\n"
        (project / "geometry.py").write_text(edited)
        git = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]
        subprocess.run([*git, "add", "geometry.py", "geometry.py.repro.json"], check=True)
        subprocess.run([*git, "commit", "-qm", "generated, then edited"], check=True)
        status, output = _invoke("repro", "verify", "--git", "HEAD", "--", "geometry.py")
    assert status == EXIT_NO and "MISMATCH HEAD:geometry.py" in output, output
    assert "\x1b" not in output and "\x07" not in output
    assert "\n-# \\x1b]0;owned\\x07 a\\u2028b\n" in output and "No newline" not in output


def test_a_committed_suggestion_whose_secret_the_model_never_saw_verifies(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keyed = 'KEY = "AKIAIOSFODNN7EXAMPLE"\n\n\n' + SOURCE
    (project / "geometry.py").write_text(keyed)
    seen = keyed.replace("AKIAIOSFODNN7EXAMPLE", "[REDACTED:aws-access-key-id]")
    changed = seen.replace("def area(radius):\n", 'def area(radius):\n    """Area."""\n')
    with stub_upstream(f"```python\n{changed}```\n") as stub:  # the file as the model saw it
        monkeypatch.setenv("TETHER_ENGINE_KIND", "openai")
        monkeypatch.setenv("TETHER_UPSTREAM_BASE_URLS", stub.base_url)
        subprocess.run(["git", "init", "-q"], check=True)
        assert _invoke("suggest", "geometry.py", "-i", "docstring", "-o", "s.patch")[0] == 0
        assert _invoke("suggest", "--apply", "s.patch")[0] == 0
        assert "AKIAIOSFODNN7EXAMPLE" in (project / "geometry.py").read_text()
        git = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]
        subprocess.run([*git, "add", "geometry.py", "geometry.py.repro.json"], check=True)
        subprocess.run([*git, "commit", "-qm", "generated"], check=True)
        status, output = _invoke("repro", "verify", "--git", "HEAD", "--", "geometry.py")
        assert status == 0 and "ok HEAD:geometry.py" in output, output


def test_a_diff_of_outputs_without_a_final_newline_keeps_its_lines_apart() -> None:
    from tether.unidiff import unified_diff  # what `repro verify` shows a mismatch with

    shown = unified_diff(["Alec - the AI assistanT."], ["Alec - the AI assistant."], "a", "b")
    assert shown.endswith("\n") and "\\ No newline at end of file" in shown
    assert "-Alec - the AI assistanT.\n" in shown and "+Alec - the AI assistant.\n" in shown


def test_a_path_is_named_from_the_repository_top_wherever_it_is_given(tmp_path: Path) -> None:
    from tether.errors import ConfigError
    from tether.repro.gitfiles import in_repository

    repo = tmp_path / "repo"
    (repo / "sub").mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    assert in_repository("../app.py", repo / "sub") == "app.py"
    assert in_repository(str(repo / "sub" / "x.py"), repo / "sub") == "sub/x.py"
    assert in_repository("./y/../x.py", repo / "sub") == "sub/x.py"
    with pytest.raises(ConfigError, match="outside the git repository"):
        in_repository("../../elsewhere.py", repo / "sub")


def test_a_manifest_beyond_ascii_is_read_under_the_c_locale(project: Path) -> None:
    """Manifests are written as UTF-8; `repro verify` read them in the locale's encoding,
    so under the C locale with UTF-8 mode off one holding `café` was "cannot read"."""
    manifest = _recorded_chat(project, "Say caf\u00e9 \U0001f600", "m.json", "--max-tokens", "4")
    assert "caf\u00e9 \U0001f600" in (manifest.prompt or "")
    code = "from pathlib import Path\nfrom tether.repro.manifest import Manifest\n"
    code += "print(ascii(Manifest.load(Path('m.json')).prompt))\n"
    status, out, err = python_under_the_c_locale(code, Path.cwd())
    assert (status, out) == (0, ascii(manifest.prompt) + "\n"), err


def test_a_manifest_on_standard_output_is_utf8_under_a_locale_that_is_not(project: Path) -> None:
    """Under a Latin-1 locale, `repro record -o -` wrote é as Latin-1 and 😀 as `\\U0001f600`,
    which no JSON reader takes: the manifest could be verified nowhere."""
    _recorded_chat(project, "Say caf\u00e9 \U0001f600", "m.json", "--max-tokens", "4")
    trace_id = json.loads((project / "m.json").read_bytes())["id"]
    done = subprocess.run(
        [sys.executable, "-m", "tether", "repro", "record", trace_id, "-o", "-"],
        env={**os.environ, "PYTHONIOENCODING": "latin-1"},
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == (project / "m.json").read_bytes()
