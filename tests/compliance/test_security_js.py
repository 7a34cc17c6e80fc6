"""JavaScript and TypeScript security rules: bad examples fire, safe look-alikes do not."""

from __future__ import annotations

import pytest

from tests.compliance.helpers import check, rule_ids

CASES = [
    ("security/eval", "const v = eval(input);", "const v = JSON.parse(input);"),
    ("security/eval", "window.eval(code);", "model.evaluate(code);"),
    ("security/eval", 'const f = new Function("a", body);', "const m = new Map();"),
    ("security/eval", 'setTimeout("tick()", 10);', "setTimeout(() => tick(), 10);"),
    (
        "security/command-injection",
        'const cp = require("child_process");\ncp.exec(`git log ${branch}`);',
        'const cp = require("child_process");\ncp.exec("git log");',
    ),
    (
        "security/command-injection",
        'import * as proc from "node:child_process";\nproc.execSync("rm -rf " + dir);',
        'import * as proc from "node:child_process";\nproc.execFileSync("rm", ["-rf", dir]);',
    ),
    (
        "security/command-injection",
        "execSync(`convert ${input} out.png`);",
        "const m = pattern.exec(`${prefix}-x`);",
    ),
    (
        "security/shell-true",
        "spawn(cmd, args, { shell: true });",
        "spawn(cmd, args, { shell: false });",
    ),
    (
        "security/tls-verify",
        "https.request({ host, rejectUnauthorized: false });",
        "https.request({ host, rejectUnauthorized: true });",
    ),
    (
        "security/tls-verify",
        'process.env.NODE_TLS_REJECT_UNAUTHORIZED = "0";',
        'process.env.NODE_TLS_REJECT_UNAUTHORIZED = "1";',
    ),
    (
        "security/inner-html",
        "el.innerHTML = location.hash;",
        'el.innerHTML = "<b>static</b>";\nel.textContent = location.hash;',
    ),
    ("security/inner-html", "el.outerHTML += html;", "el.className += name;"),
]


@pytest.mark.parametrize("language", ["javascript", "typescript", "tsx"])
@pytest.mark.parametrize(
    ("rule", "bad", "safe"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)]
)
def test_rule_fires_on_bad_and_not_on_safe(language: str, rule: str, bad: str, safe: str) -> None:
    assert rule in rule_ids(check(bad, language)), bad
    assert check(safe, language) == [], safe


def test_typescript_types_do_not_hide_a_call() -> None:
    code = "function run(code: string): number {\n  return eval(code) as number;\n}\n"
    (finding,) = check(code, "typescript")
    assert (finding.rule_id, finding.line, finding.column) == ("security/eval", 2, 10)
    assert code[finding.start : finding.end] == "eval(code)"


def test_a_fragment_that_does_not_parse_is_still_checked() -> None:
    code = "  }\n  el.innerHTML = data;\n  const x = ;\n"
    ids = rule_ids(check(code, "javascript"))
    assert {"syntax", "security/inner-html"} <= ids


def test_offsets_are_characters_after_non_ascii_text() -> None:
    code = 'const s = "ünïcödé";\neval(s);\n'
    (finding,) = check(code, "javascript")
    assert code[finding.start : finding.end] == "eval(s)"
    assert (finding.line, finding.column) == (2, 1)
