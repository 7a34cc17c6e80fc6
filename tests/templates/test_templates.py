from __future__ import annotations

import builtins
import errno
import io
import json
import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import tether.templates as templates_module
from tests.conftest import make_settings
from tests.helpers import ScriptedEngine, isolate_tether
from tether.cli.main import cli
from tether.errors import ConfigError
from tether.languages import comment_marker
from tether.pipeline import Pipeline
from tether.pipeline.fim import ContextSnippet
from tether.plugins import bare_manager
from tether.suggestions import suggestion_messages
from tether.templates import NAMES, PromptTemplates


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        ("python", "# a.py\ndef a():\n    pass\n\nX = 1\n\n"),
        ("typescript", "// a.py\ndef a():\n    pass\n\nX = 1\n\n"),
    ],
)
def test_builtin_fim_template_lays_out_context(language: str, expected: str) -> None:
    snippets = (ContextSnippet("def a():\n    pass\n", "a.py"), ContextSnippet("X = 1", ""))
    rendered = PromptTemplates(None).render(
        "fim",
        snippets=[{"filename": s.filename, "text": s.text} for s in snippets],
        language=language,
        comment=comment_marker(language),
    )
    assert rendered == expected
    assert PromptTemplates(None).render("fim", snippets=[], language="", comment="//") == ""


def test_builtin_chat_template_adds_nothing() -> None:
    assert PromptTemplates(None).render("chat", messages=[]).strip() == ""


def test_folder_overrides_one_template(tmp_path: Path) -> None:
    (tmp_path / "suggest.j2").write_text("Change {{ filename }}: {{ instruction }}")
    templates = PromptTemplates(tmp_path)
    origins = {i.name: i.origin for i in templates.info()}
    assert origins == {
        "chat": "built-in",
        "fim": "built-in",
        "suggest": str(tmp_path / "suggest.j2"),
    }
    messages = suggestion_messages(Path("app.py"), "x = 1\n", "rename x", templates)
    assert messages[1]["content"] == "Change app.py: rename x"


def test_sandbox_and_strictness(tmp_path: Path) -> None:
    (tmp_path / "chat.j2").write_text("{{ messages.__class__.__mro__[1].__subclasses__() }}")
    with pytest.raises(ConfigError, match=r"chat\.j2"):
        PromptTemplates(tmp_path).render("chat", messages=[])
    (tmp_path / "chat.j2").write_text("{{ no_such_variable }}")
    with pytest.raises(ConfigError, match="no_such_variable"):
        PromptTemplates(tmp_path).render("chat", messages=[])
    (tmp_path / "chat.j2").write_text("{% macro r(n) %}{{ r(n + 1) }}{% endmacro %}{{ r(0) }}")
    with pytest.raises(ConfigError, match=r"chat\.j2 failed: it calls a macro within itself"):
        PromptTemplates(tmp_path).render("chat", messages=[])
    with pytest.raises(ConfigError, match="not a folder"):
        PromptTemplates(tmp_path / "missing")
    with pytest.raises(ConfigError, match="no prompt template"):
        PromptTemplates(None).render("nope")
    assert set(NAMES) == {"chat", "fim", "suggest"}


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"{% if x %}\nhello\n", "is broken at line"),
        (b"\xff\xfe{{ x }}", "is broken ('utf-8' codec"),
    ],
    ids=["syntax", "not-utf8"],
)
def test_a_broken_template_is_named_at_start_and_by_doctor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: bytes, says: str
) -> None:
    folder = tmp_path / "templates"
    folder.mkdir()
    (folder / "chat.j2").write_bytes(content)
    with pytest.raises(ConfigError) as raised:
        PromptTemplates(folder).load_all()
    assert f"prompt template {folder / 'chat.j2'} {says}" in raised.value.message
    assert "remove it to use the built-in one" in raised.value.message
    isolate_tether(monkeypatch, tmp_path)
    monkeypatch.setenv("TETHER_TEMPLATES_DIR", str(folder))
    monkeypatch.setenv("TETHER_ENGINE_KIND", "openai")  # doctor needs no model for this
    check = _doctor_check()
    assert not check["ok"] and says in check["fix"]
    with pytest.raises(ConfigError, match=r"chat\.j2 is broken"):  # before any request
        _pipeline(tmp_path, folder)


def test_doctor_names_the_templates_in_force(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "fim.j2").write_text("{{ language }}")
    _use_templates_in(tmp_path, monkeypatch)
    check = _doctor_check()
    assert check["ok"] and check["detail"] == str(tmp_path / "fim.j2")


@pytest.mark.parametrize("args", [["templates"], ["templates", "show", "chat"]])
def test_the_templates_command_names_a_template_that_is_not_utf8(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> None:
    (tmp_path / "chat.j2").write_bytes(b"\xff\xfe{{ x }}")
    isolate_tether(monkeypatch, tmp_path)
    monkeypatch.setenv("TETHER_TEMPLATES_DIR", str(tmp_path))
    shown = CliRunner().invoke(cli, args)
    assert shown.exit_code == 2
    assert f"prompt template {tmp_path / 'chat.j2'} is not UTF-8 text" in shown.output


@pytest.mark.parametrize("args", [["templates", "--json", "show"], ["templates", "show", "--json"]])
def test_a_template_is_shown_as_json_when_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> None:
    (tmp_path / "fim.j2").write_text("{{ language }}")
    isolate_tether(monkeypatch, tmp_path)
    monkeypatch.setenv("TETHER_TEMPLATES_DIR", str(tmp_path))
    shown = CliRunner().invoke(cli, [*args, "fim"])
    assert shown.exit_code == 0, shown.output
    document = json.loads(shown.output)
    assert document["name"] == "fim" and document["source"] == "{{ language }}"
    assert document["origin"] == str(tmp_path / "fim.j2") and len(document["sha256"]) == 64


def test_a_template_naming_a_variable_no_request_gives_is_broken_everywhere_it_is_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It compiles, so it passed doctor, `tether templates` and the server's start, then
    failed every chat request."""
    (tmp_path / "chat.j2").write_text("{{ house_rules }}\n")
    _use_templates_in(tmp_path, monkeypatch)
    listed = CliRunner().invoke(cli, ["templates"])
    assert listed.exit_code == 1, listed.output
    assert "chat" in listed.output and "BROKEN: prompt template chat.j2 failed" in listed.output
    as_json = json.loads(CliRunner().invoke(cli, ["templates", "--json"]).output)
    assert [t["name"] for t in as_json if t["problem"]] == ["chat"]
    assert "'house_rules' is undefined" in as_json[0]["problem"]
    check = _doctor_check()
    assert not check["ok"] and "house_rules" in check["fix"]
    with pytest.raises(ConfigError, match="house_rules"):  # before any request
        _pipeline(tmp_path, tmp_path)


def test_a_template_that_would_make_something_huge_or_never_end_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "chat.j2").write_text("{{ 'x' * 50000000 }}")
    with pytest.raises(ConfigError, match="a repetition would make 50,000,000 items"):
        PromptTemplates(tmp_path).render("chat", messages=[], snippets=[])
    (tmp_path / "chat.j2").write_text("{{ 2 ** 100000 }}")
    with pytest.raises(ConfigError, match="a power would have more than"):
        PromptTemplates(tmp_path).render("chat", messages=[], snippets=[])
    (tmp_path / "chat.j2").write_text("{{ 'ab' * 3 }} {{ [0] * 2 }} {{ 2 ** 10 }}")
    assert (
        PromptTemplates(tmp_path).render("chat", messages=[], snippets=[]) == "ababab [0, 0] 1024"
    )
    # A loop within a loop is named at start, not waited on by each request (this one
    # ends by itself within a second or so, in a thread the trial leaves behind).
    monkeypatch.setattr(templates_module, "TRIAL_TIMEOUT_S", 0.05)
    (tmp_path / "chat.j2").write_text(
        "{% for i in range(100000) %}{% for j in range(40) %}{% endfor %}{% endfor %}"
    )
    with pytest.raises(ConfigError, match=r"chat\.j2 takes more than 0\.05 s to render"):
        PromptTemplates(tmp_path).load_all()


def test_a_misspelt_template_file_is_named_not_silently_passed_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "chatt.j2").write_text("Be brief.\n")
    _use_templates_in(tmp_path, monkeypatch)
    check = _doctor_check()
    assert not check["ok"] and "chatt.j2 is not a template tether reads" in check["detail"]
    assert "did you mean chat.j2?" in check["detail"]
    listed = CliRunner().invoke(cli, ["templates"])
    assert listed.exit_code == 0 and "warning: chatt.j2 is not a template" in listed.stderr


def _doctor_check() -> dict[str, Any]:
    """The prompt templates' line of `tether doctor --json`."""
    doctor = CliRunner().invoke(cli, ["doctor", "--json"])
    (check,) = [c for c in json.loads(doctor.output) if c["check"] == "prompt templates"]
    return dict(check)


def _pipeline(tmp_path: Path, folder: Path) -> Pipeline:
    settings = make_settings(tmp_path, TETHER_TEMPLATES_DIR=str(folder))
    return Pipeline(ScriptedEngine("x"), settings, bare_manager())


def _use_templates_in(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Commands run here read their templates from ``folder``, and need no model."""
    isolate_tether(monkeypatch, folder)
    monkeypatch.setenv("TETHER_TEMPLATES_DIR", str(folder))
    monkeypatch.setenv("TETHER_ENGINE_KIND", "openai")


@pytest.mark.parametrize("args", [["templates"], ["templates", "show", "chat"]])
def test_a_template_that_cannot_open_for_want_of_files_names_the_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> None:
    """Under a low `ulimit -n` it said to check the template's permissions."""
    isolate_tether(monkeypatch, tmp_path)
    monkeypatch.setenv("TETHER_TEMPLATES_DIR", str(tmp_path))
    (tmp_path / "chat.j2").write_text("{{ messages }}\n")
    real_open = io.open

    def no_file_left(file: Any, *rest: Any, **named: Any) -> Any:
        if str(file).endswith(".j2"):
            raise OSError(errno.EMFILE, os.strerror(errno.EMFILE), str(file))
        return real_open(file, *rest, **named)

    monkeypatch.setattr(io, "open", no_file_left)  # pathlib's
    monkeypatch.setattr(builtins, "open", no_file_left)  # jinja's
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    assert "Too many open files" in result.output and "ulimit -n" in result.output
    assert "permissions" not in result.output
