"""Completions are judged in their file, and report only what overlaps them; then actions."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.compliance.helpers import PLAIN, rule_ids
from tether.compliance import Checker, apply_actions
from tether.compliance.window import top_level_start
from tether.errors import ConfigError
from tether.findings import Finding
from tether.settings import Settings


def complete(prefix: str, completion: str, suffix: str, language: str = "python") -> list[Finding]:
    return PLAIN.check_insertion(prefix, completion, suffix, language)


def test_fragment_valid_in_its_file_has_no_finding() -> None:
    # Alone, "    values\n" is an unexpected indent; between its prefix and suffix it is fine.
    assert complete("total = sum(\n", "    values\n", ")\n") == []


def test_an_empty_completion_is_no_one_s_fault() -> None:
    # A warm-up (n_predict 0) answers nothing where the file does not parse yet.
    assert complete("def add(a, b):\n    ", "", "") == []
    assert complete("function f() {\n  ", "", "", "javascript") == []
    assert rule_ids(complete("def add(a, b):\n    ", "return a +", "")) == {"syntax"}


def test_completion_that_breaks_the_syntax_is_reported_in_its_own_coordinates() -> None:
    prefix = "def add(a, b):\n    "
    completion = "return a +"
    (finding,) = complete(prefix, completion, "\n\nprint(add(1, 2))\n")
    assert finding.rule_id == "syntax"
    assert 0 <= finding.start <= len(completion)
    assert finding.line == 1


def test_completion_error_reported_after_it_is_still_its_fault() -> None:
    # Python reports the missing block at the suffix's line; without the completion the
    # file parses, so the completion is to blame.
    prefix = "def f(x):\n    "
    completion = "if x:"
    (finding,) = complete(prefix, completion, "\n    return 1\n")
    assert finding.rule_id == "syntax"
    assert "after the completion" in finding.message
    assert finding.end <= len(completion)


def test_broken_prefix_is_not_blamed_on_the_completion() -> None:
    # The editor sent a window that starts inside a block, and an unclosed call at the end.
    prefix = "        return self.items[0]\n\ndef total(values):\n    return sum(\n"
    assert complete(prefix, "        values", "\n    )\n") == []
    findings = complete(prefix, "        values +", "\n    )\n")
    assert rule_ids(findings) == {"syntax"}


def test_cut_at_the_last_top_level_statement_keeps_decorators() -> None:
    prefix = "    x = 1\n\n@cache\n@trace\ndef f():\n    return "
    assert prefix[top_level_start(prefix) :].startswith("@cache\n")
    assert top_level_start("    only indented\n") == 0


def test_only_findings_overlapping_the_completion_are_reported() -> None:
    # The function around the completion is checked whole; only its line is reported.
    prefix = "import os\n\ndef handle(cmd, text):\n    os.system(cmd)\n    value = "
    completion = "eval(text)"
    suffix = "\n    return pickle.loads(value)\n"
    (finding,) = complete(prefix, completion, suffix)
    assert finding.rule_id == "security/eval"
    assert (finding.start, finding.end) == (0, len(completion))
    assert (finding.line, finding.column) == (1, 1)


def test_call_started_in_the_prefix_and_finished_by_the_completion() -> None:
    (finding,) = complete("subprocess.run(cmd, ", "shell=True)", "\n")
    assert finding.rule_id == "security/shell-true"
    assert (finding.start, finding.end) == (0, len("shell=True)"))


def test_suppression_comments_written_by_the_model_are_ignored() -> None:
    findings = complete("", "x = eval(s)  # tether: ignore\n", "")
    assert rule_ids(findings) == {"security/eval"}


def test_licence_marker_in_the_prefix_is_not_the_completions() -> None:
    prefix = "# SPDX-License-Identifier: GPL-3.0-only\nimport os\n"
    assert complete(prefix, "path = os.getcwd()\n", "") == []
    findings = complete("import os\n", "# Copyright (c) 2003 Free Software Foundation\n", "")
    assert rule_ids(findings) == {"licence/copyright"}


@pytest.mark.parametrize("language", ["javascript", "typescript"])
def test_js_completion_syntax(language: str) -> None:
    prefix = "function f(a) {\n  return "
    assert complete(prefix, "a + 1;", "\n}\n", language) == []
    (finding,) = complete(prefix, "a +;", "\n}\n", language)
    assert finding.rule_id == "syntax"
    assert finding.end <= len("a +;")


def test_js_error_in_the_prefix_is_not_reported() -> None:
    prefix = "const broken = ;\nfunction g() {\n  return "
    assert complete(prefix, "1;", "\n}\n", "javascript") == []


def test_js_completion_that_breaks_code_after_it() -> None:
    # An unclosed brace turns the rest of the file into an error; it parses without it.
    prefix = "function f(a) {\n  if (a) "
    findings = complete(prefix, "{", "\n  return 1;\n}\nconst x = 2;\n", "javascript")
    assert rule_ids(findings) == {"syntax"}
    assert all(f.end <= 1 for f in findings)


def test_checker_from_default_settings_finds_unsafe_yaml(settings: Settings) -> None:
    with Checker.from_settings(settings) as checker:
        findings = checker.check_insertion("", "yaml.load(text)", "\n", "python")
    assert rule_ids(findings) == {"security/yaml-load"}


def test_apply_actions_redacts_lines_keeping_indentation_and_line_count() -> None:
    completion = "def run(cmd):\n    return subprocess.run(\n        cmd, shell=True)\n"
    checker = Checker(actions={"security/shell-true": "redact"})
    findings = checker.check_insertion("", completion, "", "python")
    text, blocked = apply_actions(completion, findings)
    assert not blocked
    assert text == (
        "def run(cmd):\n"
        "    # [REDACTED:security/shell-true]\n"
        "        # [REDACTED:security/shell-true]\n"
    )


def test_apply_actions_uses_the_languages_comment() -> None:
    checker = Checker(actions={"security": "redact"})
    completion = "const v = 1;\n  eval(v);\n"
    findings = checker.check_insertion("", completion, "", "typescript")
    assert apply_actions(completion, findings, language="typescript") == (
        "const v = 1;\n  // [REDACTED:security/eval]\n",
        False,
    )


def test_block_wins_and_returns_nothing() -> None:
    checker = Checker(actions={"licence/*": "block", "security/eval": "redact"})
    completion = "x = eval(s)\n# Copyright (c) 2020 Someone\n"
    findings = checker.check_insertion("", completion, "", "python")
    assert {f.action for f in findings} == {"block", "redact"}
    assert apply_actions(completion, findings) == ("", True)


def test_annotate_leaves_the_completion_alone_and_allow_drops_the_finding() -> None:
    completion = "x = eval(s)\n"
    findings = PLAIN.check_insertion("", completion, "", "python")
    assert [f.action for f in findings] == ["annotate"]
    assert apply_actions(completion, findings) == (completion, False)
    allowed = Checker(actions={"security/eval": "allow"}).check_insertion("", completion, "", "py")
    assert allowed == []


def test_the_most_specific_action_key_wins() -> None:
    checker = Checker(actions={"security": "block", "security/eval": "annotate"})
    findings = checker.check_code("eval(a)\nos.system(b)\n", "python")
    assert {f.rule_id: f.action for f in findings} == {
        "security/eval": "annotate",
        "security/shell-true": "block",
    }


def test_unknown_action_in_settings_is_a_config_error(tmp_path: Path) -> None:
    from tests.conftest import make_settings

    settings = make_settings(tmp_path, TETHER_COMPLIANCE_ACTIONS='{"security/eval": "delete"}')
    with pytest.raises(ConfigError, match=r"compliance.actions\['security/eval'\] = 'delete'"):
        Checker.from_settings(settings)


def test_long_files_are_windowed_and_imports_still_resolve() -> None:
    from tether.compliance.window import CONTEXT_LINES, window

    filler = "".join(f"def f{i}(x):\n    return x + {i}\n\n\n" for i in range(400))
    prefix = "import subprocess as sp\nfrom os import system\n\n\n" + filler
    suffix = "\n\n" + filler
    window_prefix, window_suffix = window(prefix, suffix, "python")
    assert window_prefix.startswith("import subprocess as sp\nfrom os import system\ndef f")
    assert CONTEXT_LINES - 4 <= window_prefix.count("\n") <= CONTEXT_LINES + 2
    assert CONTEXT_LINES <= window_suffix.count("\n") <= CONTEXT_LINES + 4
    assert window_suffix.endswith("\n\n\n") and suffix.startswith(window_suffix)

    findings = complete(prefix, "sp.getoutput(cmd)\nsystem(cmd)\n", suffix)
    assert [(f.rule_id, f.line) for f in findings] == [
        ("security/shell-true", 1),
        ("security/shell-true", 2),
    ]
    (error,) = complete(prefix, "value = (1,\n", suffix)
    assert (error.rule_id, error.line) == ("syntax", 1)


def test_the_imports_kept_come_once_each_in_file_order() -> None:
    from tether.compliance.window import CONTEXT_LINES, window

    filler = "def g():\n    return 1\n\n\n" * CONTEXT_LINES
    dropped = (
        "from os import path\nimport sys  # why\n  import indented\nimportant = 1\n"
        + filler
        + "import json\nfrom os import path\nfromage = 2\n"
        + filler
    )
    kept, _ = window(dropped + "def h():\n    return 2\n", "", "python")
    assert kept.startswith("from os import path\nimport sys  # why\nimport json\ndef g")


def test_long_js_files_are_windowed_and_requires_still_resolve() -> None:
    filler = "".join(f"function f{i}(x) {{\n  return x + {i};\n}}\n\n" for i in range(400))
    prefix = 'const cp = require("child_process");\n' + filler + "function run(dir) {\n  "
    suffix = "\n}\n" + filler
    findings = complete(prefix, "cp.exec(`ls ${dir}`);", suffix, "javascript")
    assert [(f.rule_id, f.line, f.column) for f in findings] == [
        ("security/command-injection", 1, 1)
    ]
    assert "syntax" in rule_ids(complete(prefix, "cp.exec(`ls ${dir}`;", suffix, "javascript"))


def test_code_after_the_completion_that_was_broken_already_is_not_its_fault() -> None:
    assert complete("def f(x):\n    ", "y = 1", "\n    return (\n") == []
    prefix = "function f(a) {\n  return "
    assert complete(prefix, "a + 1;", "\n}\nconst broken = ;\n", "typescript") == []


@pytest.mark.parametrize("kind", ["fim", "completion", "chat"])
def test_an_answer_cut_at_its_token_limit_is_not_judged_on_its_syntax(kind: str) -> None:
    from tether.default_plugins.compliance import CompliancePlugin
    from tether.pipeline.reviews import CompletionReview

    answer = "import os\nos.system(cmd, shell=True)\nresult = compute(a,"
    if kind == "chat":
        answer = f"Here:\n```python\n{answer}"
    prefix = "" if kind == "chat" else "def run(cmd, a):\n    "
    answer = answer.replace("\n", "\n    ") if kind != "chat" else answer
    plugin = CompliancePlugin(Checker())
    found = {}
    for cut_short in (False, True):
        review = CompletionReview(kind=kind, text=answer, prefix=prefix, cut_short=cut_short)
        plugin.check_completion(review)
        found[cut_short] = rule_ids(review.findings)
    assert "syntax" in found[False] and "syntax" not in found[True]
    assert found[True] == found[False] - {"syntax"} and found[True]  # the rest still holds
