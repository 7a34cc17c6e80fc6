"""tether's own policy runs around every other plugin's ``govern_prompt``: a plugin never
sees a secret or a prompt the policy blocks, and what a plugin writes is governed too."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import make_settings
from tether import Finding, PromptReview, hookimpl
from tether.engines.base import SamplingParams
from tether.errors import ConfigError, PolicyBlockedError
from tether.pipeline import CompletionTask
from tether.pipeline.governance import govern
from tether.plugins import PluginManager, build_manager, register_plugins

AWS = "AKIA" + "Z7QX4M2P9LKD3VHT"
EMAIL = "dana.kowalski@globex-corp.com"


class _Seeing:
    """Keeps what it was given, as a plugin that logs prompts or sends them away would."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    @hookimpl
    def govern_prompt(self, review: PromptReview) -> None:
        self.seen.extend(review.parts.values())


class _SeeingFirst(_Seeing):
    @hookimpl(tryfirst=True)
    def govern_prompt(self, review: PromptReview) -> None:
        self.seen.extend(review.parts.values())


class _Writing:
    """Adds a text of its own (here, one holding a key and an address) to the prompt."""

    @hookimpl
    def govern_prompt(self, review: PromptReview) -> None:
        review.parts["prompt"] += f"\n# deploy key {AWS}, owner {EMAIL}\n"


class _Naming:
    """Pseudonymizes a name of its own, as a house plugin might."""

    @hookimpl
    def govern_prompt(self, review: PromptReview) -> None:
        review.parts["prompt"] = review.parts["prompt"].replace("Globex", "<ORG_1>")
        review.findings.append(Finding("house/org", "the company's name", "policy", "annotate"))
        review.add_restorer(
            lambda text: text.replace("<ORG_1>", "Globex"),
            lambda text: text.replace("Globex", "<ORG_1>"),
            {"<ORG_1>"},
        )


class _Wrapping:
    @hookimpl(wrapper=True, tryfirst=True)
    def govern_prompt(self, review: PromptReview) -> object:
        return (yield)


def test_a_plugin_that_wraps_a_request_hook_is_refused(tmp_path: Path) -> None:
    manager = build_manager(make_settings(tmp_path))
    with pytest.raises(ConfigError, match="plugin 'wrapping' wraps the request hook govern_pr"):
        register_plugins(manager, [("wrapping", _Wrapping())])


def _governed(manager: PluginManager, prompt: str) -> tuple[str, PromptReview]:
    """The prompt the engine would be given, and the review that governed it."""
    task, review = govern(manager, CompletionTask(SamplingParams(max_tokens=8), prompt), None)
    assert isinstance(task, CompletionTask)
    return task.prompt, review


@pytest.mark.parametrize("plugin", [_Seeing(), _SeeingFirst()], ids=["plain", "tryfirst"])
def test_a_plugin_is_given_the_prompt_with_its_secrets_replaced(
    tmp_path: Path, plugin: _Seeing
) -> None:
    manager = build_manager(make_settings(tmp_path))
    register_plugins(manager, [("seeing", plugin)])
    prompt, review = _governed(manager, f"key = '{AWS}'  # ask {EMAIL}\n")
    (seen,) = plugin.seen
    assert AWS not in seen and EMAIL not in seen
    assert seen == prompt  # and the engine is given what the plugin saw
    assert {f.rule_id for f in review.findings} >= {"aws-access-key-id", "email"}


def test_a_plugin_never_sees_a_prompt_the_policy_blocks(tmp_path: Path) -> None:
    (tmp_path / "tether.toml").write_text('[policy.actions]\naws-access-key-id = "block"\n')
    manager = build_manager(make_settings(tmp_path))
    seeing = _Seeing()
    register_plugins(manager, [("seeing", seeing)])
    with pytest.raises(PolicyBlockedError, match="aws-access-key-id"):
        _governed(manager, f"key = '{AWS}'\n")
    assert seeing.seen == []


def test_what_a_plugin_writes_is_governed_before_the_engine_reads_it(tmp_path: Path) -> None:
    manager = build_manager(make_settings(tmp_path))
    register_plugins(manager, [("writing", _Writing())])
    prompt, review = _governed(manager, f"# from {EMAIL}\nx = 1\n")
    assert AWS not in prompt and EMAIL not in prompt
    assert "[REDACTED:" in prompt
    assert [f.rule_id for f in review.findings].count("email") == 2  # the client's, the plugin's
    # The address is the same value in both places, so it has one placeholder.
    assert prompt.count("<EMAIL_1>") == 2 and "<EMAIL_2>" not in prompt
    assert review.restore("Mail <EMAIL_1>.") == f"Mail {EMAIL}."


def test_the_answer_is_restored_through_every_plugin_s_placeholders(tmp_path: Path) -> None:
    manager = build_manager(make_settings(tmp_path))
    register_plugins(manager, [("naming", _Naming())])
    prompt, review = _governed(manager, f"# Globex: ask {EMAIL}\n")
    assert "Globex" not in prompt and EMAIL not in prompt
    assert "<ORG_1>" in prompt and "<EMAIL_1>" in prompt
    answer = "# <ORG_1> support: <EMAIL_1>"
    assert review.restore(answer) == f"# Globex support: {EMAIL}"
    assert review.hide(f"# Globex support: {EMAIL}") == answer
    assert review.placeholders >= {"<ORG_1>", "<EMAIL_1>"}


class _Heading:
    """Puts a line of its own before each text, changing every part it is given."""

    @hookimpl
    def govern_prompt(self, review: PromptReview) -> None:
        for name, text in review.parts.items():
            review.parts[name] = "# reviewed\n" + text


def test_a_finding_the_policy_only_notes_is_recorded_once_when_a_plugin_changes_its_part(
    tmp_path: Path,
) -> None:
    (tmp_path / "tether.toml").write_text('[policy.actions]\nemail = "annotate"\n')
    manager = build_manager(make_settings(tmp_path))
    register_plugins(manager, [("heading", _Heading())])
    prompt, review = _governed(manager, f"# ask {EMAIL}\n")
    assert prompt == f"# reviewed\n# ask {EMAIL}\n"  # noted, left in place
    assert [f.rule_id for f in review.findings] == ["email"]


class _Copying:
    """Repeats the prompt: the value it holds is then there twice."""

    @hookimpl
    def govern_prompt(self, review: PromptReview) -> None:
        review.parts["prompt"] += review.parts["prompt"]


def test_a_noted_value_a_plugin_repeats_is_noted_again(tmp_path: Path) -> None:
    (tmp_path / "tether.toml").write_text('[policy.actions]\nemail = "annotate"\n')
    manager = build_manager(make_settings(tmp_path))
    register_plugins(manager, [("copying", _Copying())])
    prompt, review = _governed(manager, f"# ask {EMAIL}\n")
    assert prompt.count(EMAIL) == 2
    assert [f.rule_id for f in review.findings] == ["email", "email"]


class _Hinting:
    """Ends the code before the cursor with a text of its own."""

    def __init__(self, hint: str) -> None:
        self.hint = hint

    @hookimpl
    def govern_prompt(self, review: PromptReview) -> None:
        review.parts["prefix"] += self.hint


def test_a_value_a_plugin_s_change_joins_across_the_cursor_reaches_no_engine(
    tmp_path: Path,
) -> None:
    from tether.pipeline import FimTask
    from tether.pipeline.fim import FimInput

    # The client's suffix starts with the end of a key; the plugin ends the prefix with
    # its start: the engine would read the whole key across the cursor.
    manager = build_manager(make_settings(tmp_path))
    register_plugins(manager, [("hinting", _Hinting(f"key = '{AWS[:10]}"))])
    fim = FimInput(prefix="x = 1\n", suffix=f"{AWS[10:]}'\n", language="python")
    task, review = govern(manager, FimTask(SamplingParams(max_tokens=8), fim), None)
    assert isinstance(task, FimTask)
    assert AWS[10:] not in task.fim.suffix and AWS[:10] not in task.fim.prefix
    assert {f.message.split(":")[0] for f in review.findings} == {"prefix", "suffix"}


def test_what_the_policy_wrote_is_not_taken_for_a_value_when_it_scans_again(
    tmp_path: Path,
) -> None:
    manager = build_manager(make_settings(tmp_path))
    register_plugins(manager, [("heading", _Heading())])
    url = "postgres://admin:S3cretPassw0rd@db.example.com:5432/app"
    prompt, review = _governed(manager, f'DATABASE_URL = "{url}"\n')
    assert prompt == (
        '# reviewed\nDATABASE_URL = "postgres://admin:[REDACTED:database-url]@db.example.com'
        ':5432/app"\n'
    )
    # Its redaction, read as a URL's password, is no second value.
    assert [f.rule_id for f in review.findings] == ["database-url"]
