"""Compliance checks on code a client sends: the inline rules used on answers (scope check)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import Field

from tether.compliance import Checker
from tether.compliance.languages import language_for
from tether.compliance.source import lone_cr_as_lf
from tether.default_plugins import compliance
from tether.findings import Finding
from tether.languages import CHECKED, canonical
from tether.pipeline.governance import OFF_LOOP_CHARS, file_checker
from tether.server.auth import require
from tether.server.openapi import AUTHENTICATED, errors
from tether.server.routing import ApiRoute
from tether.server.schemas import OwnModel
from tether.server.serving import state_of

router = APIRouter(
    route_class=ApiRoute,
    prefix="/v1/check",
    tags=["check"],
    dependencies=[Depends(require("check"))],
    responses=errors(*AUTHENTICATED),
)


class CheckRequest(OwnModel):
    code: str = Field(max_length=1_000_000)
    language: str = Field("", description="python, javascript, typescript; or give path.")
    path: str = Field("", description="File name, used for the language and in findings.")


@router.post("")
async def check_code(request: Request, body: CheckRequest) -> dict[str, Any]:
    state = state_of(request)
    plugins = state.pipeline.plugins
    # The enabled plugins' check_completion too: the rules answers are checked with.
    plugin_check = file_checker(plugins)

    def check() -> list[Finding]:
        # The answers' checker, already built; a fresh one only when answers go unchecked.
        plugin = plugins.get_plugin(compliance.NAME)
        findings: list[Finding]
        if plugin is not None:
            findings = plugin.checker.check_code(body.code, body.language, path=body.path)
        else:
            with Checker.from_settings(state.settings) as checker:
                findings = checker.check_code(body.code, body.language, path=body.path)
        if plugin_check is not None:
            # Lines as the checker counts them (a lone CR ends one), as `tether check` does.
            found = plugin_check(lone_cr_as_lf(body.code), canonical(body.language, body.path))
            findings = sorted([*findings, *found], key=lambda f: (f.line, f.column, f.rule_id))
        return findings

    # Off the event loop where a plugin's hook may run, or the text is large.
    findings = await state.pipeline.run_step(check, large=len(body.code) > OFF_LOOP_CHARS)
    answer: dict[str, Any] = {
        "object": "check",
        "language": language_for(body.language, body.path),
        "findings": [f.as_record() for f in findings],
    }
    if answer["language"] is None:  # an empty list must not read as clean code
        named = body.language or body.path or "no language and no path"
        answer["note"] = (
            f"only secrets and licences were checked: {named} names none of the languages "
            f"whose syntax and security rules run ({', '.join(sorted(CHECKED))}); give "
            "language or a path with its suffix"
        )
    return answer
