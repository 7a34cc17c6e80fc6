"""An example tether plugin, enabled with ``[plugins] enabled = ["example"]``.

- ``govern_prompt``: internal host names (``*.corp.example``) never reach the model, and
  the code name of an unannounced project blocks the request.
- ``check_completion``: flags ``print(`` left in generated Python.
- ``register_commands`` / ``register_routes``: ``tether example-rules`` and
  ``GET /example/rules`` (for any valid token) list these rules.
"""

from __future__ import annotations

import re

import click
from fastapi import Depends, FastAPI

from tether import CompletionReview, Finding, PromptReview, fingerprint, hookimpl, require

INTERNAL_HOST = re.compile(r"\b[a-z0-9-]+(?:\.[a-z0-9-]+)*\.corp\.example\b")
CODE_NAME = "NIGHTJAR"
RULES = {
    "example/internal-host": "internal host names are redacted",
    "example/code-name": f"the code name {CODE_NAME} blocks the request",
    "example/print": "print( in generated Python is flagged",
}


def _position(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


@hookimpl
def govern_prompt(review: PromptReview) -> None:
    for part, text in review.parts.items():
        if CODE_NAME in text:
            line, column = _position(text, text.index(CODE_NAME))
            review.findings.append(
                Finding("example/code-name", part, "policy", "block", "error", line=line,
                        column=column, fingerprint=fingerprint(CODE_NAME))
            )
        for match in INTERNAL_HOST.finditer(text):
            line, column = _position(text, match.start())
            review.findings.append(
                Finding("example/internal-host", part, "policy", "redact", line=line,
                        column=column, fingerprint=fingerprint(match.group()))
            )
        review.parts[part] = INTERNAL_HOST.sub("[REDACTED:example/internal-host]", text)


@hookimpl
def check_completion(review: CompletionReview) -> None:
    for number, line in enumerate(review.text.splitlines(), start=1):
        if "print(" in line:
            review.findings.append(
                Finding("example/print", "print( left in generated code", "compliance",
                        "annotate", "note", line=number, column=line.index("print(") + 1)
            )


@hookimpl
def register_commands(cli: click.Group) -> None:
    @cli.command("example-rules")
    def example_rules() -> None:
        """List the example plugin's rules."""
        for rule_id, meaning in RULES.items():
            click.echo(f"{rule_id}: {meaning}")


@hookimpl
def register_routes(app: FastAPI) -> None:
    @app.get("/example/rules", dependencies=[Depends(require(None))])  # any valid token
    async def example_rules() -> dict[str, str]:
        return RULES
