"""The automatic gates a snippet passes before anyone may approve it.

Valid syntax; no secret (the policy's scanner); no error-level finding of the compliance
rules; a licence the policy allows; and, when a test is attached, the test passing in the
evaluation sandbox. A snippet to be made callable must also be one pure-Python function.
"""

from __future__ import annotations

import ast
import warnings
from collections.abc import Collection
from dataclasses import asdict, dataclass

from tether.compliance import Checker
from tether.licences.policy import LicencePolicy
from tether.sandbox import Limits, Sandbox
from tether.store.model import Snippet
from tether.store.split import has_syntax_errors

TEST_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Gate:
    name: str
    passed: bool
    detail: str = ""

    def as_record(self) -> dict[str, object]:
        return asdict(self)


def run_gates(
    snippet: Snippet,
    checker: Checker,
    licences: Collection[str],
    sandbox: Sandbox | None = None,
    make_callable: bool = False,
) -> list[Gate]:
    code, language = snippet.current.code, snippet.language
    gates = [_syntax(code, language)]
    secrets = checker.check_secrets(code)
    gates.append(
        Gate("secrets", not secrets, "; ".join(f"line {f.line}: {f.message}" for f in secrets))
    )
    secret_rules = {f.rule_id for f in secrets}
    errors = [
        f
        for f in checker.check_code(code, language)
        if f.severity == "error" and f.rule_id not in secret_rules and f.rule_id != "syntax"
    ]
    gates.append(
        Gate(
            "compliance",
            not errors,
            "; ".join(f"line {f.line}: {f.rule_id}: {f.message}" for f in errors),
        )
    )
    gates.append(_licence(snippet.current.licence, licences))
    if snippet.current.test:
        gates.append(_test(snippet, sandbox or Sandbox()))
    if make_callable:
        gates.append(_callable(snippet))
    return gates


def _syntax(code: str, language: str) -> Gate:
    if language == "python":
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ast.parse(code)
        except SyntaxError as exc:
            return Gate("syntax", False, f"line {exc.lineno}: {exc.msg}")
        return Gate("syntax", True)
    if has_syntax_errors(code, language):
        return Gate("syntax", False, f"the {language} parser found errors")
    return Gate("syntax", True)


def _licence(licence: str, allowed: Collection[str]) -> Gate:
    """An expression passes when a choice it offers uses only licences in
    ``store.licences``: ``MIT AND GPL-3.0-only`` does not pass on MIT alone."""
    if not licence:
        return Gate("licence", False, "no licence known; give one (--licence SPDX-ID)")
    verdict = LicencePolicy.allowing(allowed).allows(licence)
    if not verdict.ok:
        return Gate("licence", False, f"{licence}: {verdict.reason} ({', '.join(allowed)})")
    return Gate("licence", True, licence)


def _test(snippet: Snippet, sandbox: Sandbox) -> Gate:
    if snippet.language != "python":
        return Gate(
            "test", False, "tests run in the Python sandbox only; remove this test to vet it"
        )
    program = f"{snippet.current.code}\n\n{snippet.current.test}\n"
    outcome = sandbox.run(program, Limits(timeout_s=TEST_TIMEOUT_S))
    detail = outcome.status.value if outcome.passed else f"{outcome.status.value}: "
    if not outcome.passed:
        detail += outcome.detail.strip().splitlines()[-1] if outcome.detail.strip() else ""
    return Gate("test", outcome.passed, detail)


def _callable(snippet: Snippet) -> Gate:
    if snippet.language != "python":
        return Gate("callable", False, "only Python functions can be called")
    try:
        tree = ast.parse(snippet.current.code)
    except SyntaxError:
        return Gate("callable", False, "the code does not parse")
    functions = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
    if len(tree.body) != 1 or len(functions) != 1:
        return Gate("callable", False, "a callable snippet is one plain (not async) function")
    if functions[0].decorator_list:
        return Gate("callable", False, "a callable function has no decorators")
    return Gate("callable", True)
