"""``tether licences``: every shipped package's licence and the model's, against the policy."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from packaging.utils import canonicalize_name

from tether.audit.events import record_event
from tether.cli.common import EXIT_NO, OUTPUT_FILE, settings_from_flags, write_output

if TYPE_CHECKING:
    from tether.licences import Package, Verdict
    from tether.licences.policy import StaleException


def _shown(verdict: Verdict) -> str:
    if verdict.ok:
        return "ok" if verdict.reason == "allowed" else verdict.reason
    return f"FAIL: {verdict.reason}"


def _table(
    packages: list[Package], verdicts: dict[str, Verdict], parts: dict[str, list[Verdict]]
) -> str:
    rows = [("package", "version", "licence", "from", "verdict")]
    for p in packages:
        rows.append((p.name, p.version, p.licence.expression, p.licence.source,
                     _shown(verdicts[p.name])))  # fmt: skip
        # What it bundles, each under its own licence: the package's verdict counts them.
        for part, verdict in zip(p.bundled, parts[p.name], strict=True):
            rows.append((f"  + {part.name}", "bundled", part.licence.expression,
                         part.licence.source, _shown(verdict)))  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths, strict=True)) + "  " + row[4]
        for row in rows
    )


def _as_json(
    packages: list[Package], verdicts: dict[str, Verdict], parts: dict[str, list[Verdict]]
) -> list[dict[str, Any]]:
    return [
        {
            "name": p.name,
            "version": p.version,
            "kind": p.kind,
            "licence": p.licence.expression,
            "source": p.licence.source,
            "ok": verdicts[p.name].ok,
            "reason": verdicts[p.name].reason,
            **({"sha256": p.sha256, "sha256_of": p.sha256_of} if p.sha256 else {}),
            **(
                {
                    "bundled": [
                        {
                            "name": part.name,
                            "licence": part.licence.expression,
                            "source": part.licence.source,
                            "licence_file": part.licence_file,
                            "files": [{"path": f, "sha256": h} for f, h in part.files],
                            "ok": verdict.ok,
                            "reason": verdict.reason,
                        }
                        for part, verdict in zip(p.bundled, parts[p.name], strict=True)
                    ]
                }
                if p.bundled
                else {}
            ),
        }
        for p in packages
    ]


def _stale_lines(stale: list[StaleException], level: str) -> list[str]:
    return [f"{level}: stale exception licences.exceptions.{s.package}: {s.reason}" for s in stale]


def _unreviewed(missing: list[str]) -> str:
    if not missing:
        return ""
    return (
        f"; {len(missing)} required but not installed here, so not reviewed: "
        f"{', '.join(missing)} (install them, e.g. pip install 'tether[EXTRA]', and run "
        "this again)"
    )


@click.command()
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "cyclonedx"]),
    default="table",
    show_default=True,
)
@click.option(
    "--extra",
    "extras",
    multiple=True,
    help="Review tether with these extras only (repeatable), e.g. --extra embedded for what "
    "the container image ships; default every extra installed here.",
)
@click.option(
    "--output",
    "-o",
    type=OUTPUT_FILE,
    help="Write the document to this file instead of standard output.",
)
@click.option("--no-audit", is_flag=True, help="Do not record the SBOM's digest in the audit log.")
@click.option(
    "--strict",
    is_flag=True,
    help="A stale exception fails too (exit status 1): keeps the exceptions list as short as "
    "what the tree needs.",
)
def licences(
    fmt: str, extras: tuple[str, ...], output: Path | None, no_audit: bool, strict: bool
) -> None:
    """Licences of the installed dependency tree and the model, checked against the policy.

    Exit status 1 when a package's licence (or that of a library its wheel bundles) is
    denied, not allowed or unknown, or a package the chosen extras need is not installed
    (its licence cannot be read). The policy is [licences] in tether.toml: allow, deny
    (SPDX ids) and exceptions (package = "reason"). An exception that is not used (its
    package passes without it, or is not installed) is reported as stale, as a warning (an
    error, with exit status 1, with --strict).
    """
    # Imported here: the SPDX and CycloneDX libraries would slow every other command's start.
    from tether.licences import LicencePolicy, collect, model_package
    from tether.licences.inventory import installed, needed_by_any_extra
    from tether.licences.sbom import cyclonedx_json, digest

    settings = settings_from_flags()
    policy = LicencePolicy.from_settings(settings)
    inventory = collect(list(extras) if extras else None)
    model = model_package(settings)
    packages = [*inventory.packages, *([model] if model else [])]
    bundled = {p.name: [(b.name, b.licence.expression) for b in p.bundled] for p in packages}
    verdicts = {
        p.name: policy.judge(p.name, p.licence.expression, bundled[p.name]) for p in packages
    }
    # Each bundled part's licence on its own, to show which one a package's verdict is for.
    parts = {p.name: [policy.judge_licence(b.licence.expression) for b in p.bundled]
             for p in packages}  # fmt: skip
    sbom = cyclonedx_json(inventory, model, verdicts, parts)
    failed = [p.name for p in packages if not verdicts[p.name].ok]
    stale = policy.stale_exceptions(
        {canonicalize_name(p.name): p.licence.expression for p in packages},
        needed_by_any_extra() if policy.exceptions else set(),
        installed,
        {canonicalize_name(name): found for name, found in bundled.items() if found},
    )
    warnings = _stale_lines(stale, "error" if strict else "warning")
    if fmt == "cyclonedx":
        document = sbom
    elif fmt == "json":
        body = {
            "extras": inventory.extras,
            "ok": not failed and not inventory.missing and not (strict and stale),
            "failed": failed,
            "missing": inventory.missing,
            "stale_exceptions": [{"package": s.package, "reason": s.reason} for s in stale],
            "packages": _as_json(packages, verdicts, parts),
        }
        document = json.dumps(body, indent=2) + "\n"
    else:
        summary = (
            f"{len(packages)} components (tether with extras: {', '.join(inventory.extras) or '-'}"
            f"{'; the model' if model else ''}); "
            + (
                f"{len(failed)} fail the policy: {', '.join(failed)}"
                if failed
                else "all pass"
                if not inventory.missing
                else "the installed ones pass"
            )
            + _unreviewed(inventory.missing)
            + (f"; --strict fails on the {len(stale)} stale below" if strict and stale else "")
        )
        document = "\n".join([_table(packages, verdicts, parts), summary, *warnings]) + "\n"
    # A document (JSON, the SBOM, whose digest is of its UTF-8) is that on standard output
    # too, whatever the locale; the table is for the terminal.
    write_output(output, document, utf8=fmt != "table")
    if fmt == "cyclonedx" or output is not None:  # else the document on screen says so
        for line in warnings:
            click.echo(line, err=True)
    if not no_audit:
        review = {"components": len(packages), "failed": failed, "extras": inventory.extras}
        if fmt == "cyclonedx":
            written = digest(sbom)
            where = record_event(settings, "licences.sbom", {"sbom_digest": written, **review})
            click.echo(f"SBOM {written} recorded in the audit log ({where})", err=True)
        else:  # no SBOM written: its digest (a fresh serial number each run) would match none
            where = record_event(settings, "licences.review", review)
            click.echo(f"review recorded in the audit log ({where})", err=True)
    if failed or inventory.missing or (strict and stale):
        raise SystemExit(EXIT_NO)


COMMANDS = [licences]
