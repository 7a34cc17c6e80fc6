"""Syntax validity per language, language detection, and licence markers."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.compliance.helpers import PLAIN, check, rule_ids
from tether.compliance import check as check_module
from tether.compliance.check import Checker
from tether.compliance.languages import language_for
from tether.settings import load_settings


def test_python_syntax_error_has_its_place() -> None:
    (finding,) = check("def f(:\n    pass\n")
    assert finding.rule_id == "syntax"
    assert (finding.line, finding.column) == (1, 7)
    assert finding.severity == "error"
    assert "Python syntax error" in finding.message


def test_python_invalid_escape_is_not_a_warning_or_error() -> None:
    # pytest turns warnings into errors: the parser's SyntaxWarning must stay inside.
    assert check('pattern = "\\d+"\n') == []


@pytest.mark.parametrize(
    ("language", "code", "line"),
    [
        ("javascript", "function f(a) {\n  return a +;\n}\n", 2),
        ("javascript", "const xs = [1, 2;\n", 1),
        ("typescript", "let n: number = ;\n", 1),
        ("typescript", "interface A {\n  x: number\n  y: \n}\n", 3),
        ("tsx", "const e = <div>{x</div>;\n", 1),
    ],
)
def test_tree_sitter_syntax_errors(language: str, code: str, line: int) -> None:
    findings = [f for f in check(code, language) if f.rule_id == "syntax"]
    assert findings, code
    assert findings[0].line == line


@pytest.mark.parametrize(
    ("language", "code"),
    [
        ("javascript", "const f = (a, b) => a + b;\nexport default f;\n"),
        ("javascript", "const e = <div className={c}>{x}</div>;\n"),  # JSX is JavaScript too
        ("typescript", "let n: number = 1;\ntype P = { a?: string };\n"),
        ("tsx", "const e = <Item<T> value={v as T} />;\n"),
    ],
)
def test_valid_js_and_ts_have_no_syntax_finding(language: str, code: str) -> None:
    assert check(code, language) == []


def test_type_annotations_are_errors_in_javascript_only() -> None:
    code = "let n: number = 1;\n"
    assert check(code, "typescript") == []
    assert rule_ids(check(code, "javascript")) == {"syntax"}


def test_language_from_name_or_path() -> None:
    assert language_for("typescriptreact") == "tsx"
    assert language_for("JS") == "javascript"
    assert language_for("", "src/app.mts") == "typescript"
    assert language_for("", "notes.txt") is None
    assert PLAIN.check_code("x = eval(s)\n", "", path="tool.py")[0].rule_id == "security/eval"


def test_unknown_language_still_gets_language_neutral_rules() -> None:
    code = "/* Copyright (c) 2019 Someone */\nint main() { return system(argv[1]); }\n"
    assert rule_ids(check(code, "c")) == {"licence/copyright"}


LICENCE_CASES = [
    ("licence/spdx", "# SPDX-License-Identifier: MIT\n", "license = 'MIT'\n"),
    (
        "licence/copyleft",
        "// SPDX-License-Identifier: GPL-2.0-or-later\n",
        "// SPDX-License-Identifier: Apache-2.0\n",
    ),
    (
        "licence/copyleft",
        "# This program is free software: you can redistribute it under the terms of\n"
        "# the GNU Affero General Public License as published by the FSF.\n",
        "# gpl_mode = load_gpl_settings()\n",
    ),
    ("licence/copyleft", "/* Licensed under LGPL-2.1 */\n", "/* unlike the GPL, this is MIT */\n"),
    ("licence/copyright", "# Copyright (c) 2021 Acme Corp.\n", "copyright_holder = owner\n"),
    ("licence/copyright", "# Copyright 2014 Google LLC\n", "# see the copyright notice\n"),
    (
        "licence/all-rights-reserved",
        "// (C) Acme. All rights reserved.\n",
        "// rights are reserved for admins\n",
    ),
]


@pytest.mark.parametrize(
    ("rule", "bad", "safe"),
    LICENCE_CASES,
    ids=[f"{c[0]}-{i}" for i, c in enumerate(LICENCE_CASES)],
)
def test_licence_markers(rule: str, bad: str, safe: str) -> None:
    assert rule in rule_ids(check(bad, "text")), bad
    assert rule not in rule_ids(check(safe, "text")), safe


def test_spdx_copyleft_is_reported_once() -> None:
    findings = check("# SPDX-License-Identifier: AGPL-3.0-only\n")
    assert [(f.rule_id, f.severity) for f in findings] == [("licence/copyleft", "warning")]
    assert "AGPL-3.0-only" in findings[0].message


def test_secret_scanner_is_called_through_the_injected_function() -> None:
    from tether.findings import Finding

    seen: list[str] = []

    def scan(text: str) -> list[Finding]:
        seen.append(text)
        start = text.index("sk-")
        return [
            Finding("openai-api-key", "OpenAI key", "policy", "pseudonymize", "warning",
                    start, start + 10, 1, 1, "f" * 64),
            Finding("email", "e-mail address", "policy", "redact", "warning", 0, 3, 1, 1, ""),
        ]  # fmt: skip

    code = 'import os\nKEY = "sk-abcdefgh"\n'
    (finding,) = Checker(secrets=scan).check_code(code, "python")
    assert seen == [code]
    assert finding.rule_id == "secrets/openai-api-key"
    assert (finding.stage, finding.action, finding.severity) == ("compliance", "redact", "error")
    assert (finding.line, finding.column) == (2, 8)
    assert finding.fingerprint == "f" * 64


def test_the_real_policy_scanner_finds_a_hard_coded_token() -> None:
    pytest.importorskip("tether.policy")
    from tether.compliance.secrets import policy_secret_scan

    scan = policy_secret_scan()
    assert scan is not None
    token = "ghp_" + "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5"
    code = f'TOKEN = "{token}"\nAUTHOR = "jane@example.com"\n'
    findings = Checker(secrets=scan).check_code(code, "python")
    assert [f.rule_id for f in findings] == ["secrets/github-pat"]
    assert code[findings[0].start : findings[0].end] == token
    assert token not in findings[0].message


def test_a_file_too_large_to_parse_gets_the_text_rules_and_a_note(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("tether.policy")
    monkeypatch.setattr(check_module, "MAX_PARSED_CHARS", 200)
    token = "ghp_" + "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5"
    code = f"# SPDX-License-Identifier: GPL-3.0-only\nx = eval(s)\ntoken = '{token}'\n"
    settings = load_settings(environ={})
    with Checker.from_settings(settings) as checker:
        small = rule_ids(checker.check_code(code, "", path="a.py"))
        large = checker.check_code(code + "y = 1\n" * 40, "", path="a.py")
    assert "security/eval" in small and "too-large" not in small
    assert "security/eval" not in rule_ids(large)
    assert {"licence/copyleft", "secrets/github-pat", "too-large"} <= set(rule_ids(large))
    (note,) = [f for f in large if f.rule_id == "too-large"]
    assert note.severity == "note" and (note.line, note.column) == (1, 1)
    assert "not parsed (0.0 M characters, over 0 M)" in note.message


TROJAN = (
    "def greet(level):\n"
    "    if level != 'none\u202e\u2066': # admins\u2069\u2066' and level != 'user\n"
    "        return 'admin'\n"
    "    return 'hi'\n"
)


@pytest.mark.parametrize("language", ["python", "javascript", ""])
def test_bidirectional_controls_are_found_in_any_language(language: str) -> None:
    found = [f for f in PLAIN.check_code(TROJAN, language) if f.rule_id == "unicode/bidi"]
    assert [(f.line, f.severity) for f in found] == [(2, "error"), (2, "error")]
    assert "U+202E, U+2066" in found[0].message
    # The marks localized strings carry are not controls that reorder code.
    assert (
        rule_ids(PLAIN.check_code("msg = '\u05e9\u05dc\u05d5\u05dd\u200f!'\n", "python")) == set()
    )


def test_a_snippet_with_a_bidirectional_control_fails_its_compliance_gate(tmp_path: Path) -> None:
    from tests.store.conftest import SETTINGS, draft
    from tether.store import SnippetStore
    from tether.store.gates import run_gates

    with SnippetStore(tmp_path / "store.sqlite") as db:
        snippet = db.add(draft(TROJAN), "mallory").snippet
        gates = {g.name: g for g in run_gates(snippet, PLAIN, SETTINGS.licences)}
    assert not gates["compliance"].passed and "unicode/bidi" in gates["compliance"].detail
