"""The automatic gates a snippet passes before anyone may approve it.

Valid syntax; no secret (the policy's scanner); no error-level finding of the compliance
rules; a licence the policy allows; and, when a test is attached, the test passing in the
evaluation sandbox. A snippet to be made callable must also be imports (of modules installed
here) and one plain Python function that uses no other name from its file.
"""

from __future__ import annotations

import ast
import importlib.util
import warnings
from collections.abc import Collection
from dataclasses import asdict, dataclass

from tether.compliance import Checker
from tether.sandbox import Limits, Sandbox, Status
from tether.store.model import Snippet
from tether.store.split import global_names, has_syntax_errors


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
    test_timeout_s: float = 30.0,
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
        gates.append(_test(snippet, sandbox or Sandbox(), test_timeout_s))
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
    # Imported here: the licence review's modules (packaging among them) would add 30 ms
    # and about 1 MB to every server's start, for a gate run only when snippets are vetted.
    from tether.licences.policy import LicencePolicy

    if not licence:
        return Gate(
            "licence",
            False,
            "no licence known; add the function again with one, as a new version "
            "(`tether store add FILE --licence SPDX-ID`, or `licence` in POST /v1/snippets)",
        )
    verdict = LicencePolicy.allowing(allowed).allows(licence)
    if not verdict.ok:
        return Gate("licence", False, f"{licence}: {verdict.reason} ({', '.join(allowed)})")
    return Gate("licence", True, licence)


def _test(snippet: Snippet, sandbox: Sandbox, timeout_s: float) -> Gate:
    if snippet.language != "python":
        return Gate(
            "test", False, "tests run in the Python sandbox only; remove this test to vet it"
        )
    program = f"{snippet.current.code}\n\n{snippet.current.test}\n"
    outcome = sandbox.run(program, Limits(timeout_s=timeout_s))
    detail = outcome.status.value if outcome.passed else f"{outcome.status.value}: "
    if outcome.status is Status.TIMEOUT:
        detail += f"the test ran past {timeout_s:g} s (store.test_timeout_s)"
    elif not outcome.passed:
        detail += outcome.detail.strip().splitlines()[-1] if outcome.detail.strip() else ""
    return Gate("test", outcome.passed, detail)


def _callable(snippet: Snippet) -> Gate:
    if snippet.language != "python":
        return Gate("callable", False, "only Python functions can be called")
    try:
        tree = ast.parse(snippet.current.code)
        names = global_names(snippet.current.code)
    except SyntaxError:
        return Gate("callable", False, "the code does not parse")
    imports = [s for s in tree.body[:-1] if isinstance(s, ast.Import | ast.ImportFrom)]
    function = tree.body[-1] if tree.body else None
    if not isinstance(function, ast.FunctionDef) or len(imports) != len(tree.body) - 1:
        return Gate("callable", False, "a callable snippet is imports and one plain function")
    if function.decorator_list:
        return Gate("callable", False, "a callable function has no decorators")
    if function.name.startswith("_tether_"):
        return Gate("callable", False, "names starting with _tether_ are the call's own")
    problems = [_import_problem(i) for i in imports]
    if undefined := sorted(names):
        problems.append(
            f"it uses {', '.join(undefined)}, which it neither defines nor imports "
            "(a module's constants and helpers stay behind in its file)"
        )
    problems = [p for p in problems if p]
    return Gate("callable", not problems, "; ".join(problems))


def _import_problem(statement: ast.Import | ast.ImportFrom) -> str:
    """Why the sandbox could not run ``statement``, or ""."""
    if isinstance(statement, ast.ImportFrom) and statement.level:
        return f"{ast.unparse(statement)} imports from its own package, which a call lacks"
    if isinstance(statement, ast.ImportFrom):
        modules = [statement.module or ""]
    else:
        modules = [alias.name for alias in statement.names]
    missing = [m for m in modules if importlib.util.find_spec(m.partition(".")[0]) is None]
    return f"{', '.join(missing)} is not installed where calls run" if missing else ""
