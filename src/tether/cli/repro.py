"""``tether repro``: pin a generation in a manifest, and make it again to prove it."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import click

from tether.audit.log import audit_folder
from tether.audit.witness import Witness, witness
from tether.cli.backend import server_trace
from tether.cli.common import (
    EXIT_NO,
    EXIT_USAGE,
    OUTPUT_FILE,
    backend_options,
    run_until_terminated,
    settings_from_flags,
    terminated_as_interrupted,
    to_stdout,
    write_output,
)
from tether.engines.registry import build_engine
from tether.errors import ConfigError, NotFoundError
from tether.plugins import build_manager
from tether.printable import printable
from tether.repro import gitfiles
from tether.repro.attest import Attestation, attestation
from tether.repro.manifest import Manifest, from_trace
from tether.repro.verify import Verification, regenerate
from tether.settings import Settings
from tether.suggestions.prompt import extract_code
from tether.suggestions.service import secrets_put_back, with_line_end_runs
from tether.traces import Trace, TraceStore
from tether.traces.missing import why_no_local_trace


@click.group()
def repro() -> None:
    """Reproducible generation: manifests, and regenerating them byte for byte."""


@repro.command("record")
@click.argument("trace_id", metavar="TRACE_ID")
@click.option("-o", "--output", type=OUTPUT_FILE, help="Write the manifest to this file.")
@backend_options
def record(trace_id: str, output: Path | None, server: str | None, token: str | None) -> None:
    """The manifest of answer TRACE_ID (from `tether.trace_id`), as JSON."""
    settings = settings_from_flags()
    if server:
        trace, seen = server_trace(settings, server, token, trace_id)
    else:
        with TraceStore.from_settings(settings, read_only=True) as store:
            found = store.get(trace_id)
        if found is None:
            raise NotFoundError(  # a deleted trace, or a request that generated nothing
                why_no_local_trace(settings, trace_id)
                or f"no trace {trace_id!r} here; pass --server for an answer a server gave, "
                "or list recent ids with `tether explain --recent`"
            )
        trace = found
        folder = audit_folder(settings)
        seen = witness(trace, folder) if folder.is_dir() else None
    _refuse_a_changed_trace(trace, seen, server)
    text = from_trace(trace).to_json()
    write_output(output, text, utf8=True)  # a file for `repro verify`, on any machine
    if not to_stdout(output):
        click.echo(str(output))


def _refuse_a_changed_trace(trace: Trace, seen: Witness | None, server: str | None) -> None:
    """A manifest pins what was generated: a trace its audit record contradicts would
    pin an edit, and its `verify` would then look like a failure to reproduce."""
    if seen is not None and not seen.ok:
        where = f" --server {server}" if server else ""
        click.echo(
            f"error: the trace of {trace.id} no longer matches its audit record (seq "
            f"{seen.seq}): it was changed after it was written, so no manifest was written; "
            f"`tether explain {trace.id}{where}` shows what differs",
            err=True,
        )
        sys.exit(EXIT_NO)


def _verify_all(settings: Settings, manifests: list[Manifest]) -> list[Verification]:
    async def go() -> list[Verification]:
        engine = build_engine(settings, build_manager(settings))
        try:
            return [await regenerate(manifest, engine) for manifest in manifests]
        finally:
            await engine.close()

    return run_until_terminated(go)  # SIGTERM: the engine is closed as on Ctrl-C


@repro.command("verify")
@click.argument("manifests", nargs=-1, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--git", "revision", metavar="REV", help="Verify files committed at REV instead.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@terminated_as_interrupted()  # SIGTERM ends it as Ctrl-C does
def verify(manifests: tuple[Path, ...], revision: str | None, as_json: bool) -> None:
    """Regenerate each manifest's output and compare checksums.

    \b
    tether repro verify answer.json ...        # exit 0: every byte matches
    tether repro verify --git HEAD -- src/x.py  # the file as committed, from x.py.repro.json

    Exit 1 on a mismatch (with a diff and the first difference) or a manifest changed
    since its audit record was written (where this machine's audit log holds it), 2 when
    the model file, engine or build differs: then no comparison is made.
    """
    settings = settings_from_flags()
    if not manifests:
        raise click.UsageError("give manifest files, or --git REV -- PATH...")
    if revision:
        _verify_git(settings, revision, list(manifests), as_json)
        return
    loaded = [Manifest.load(path) for path in manifests]
    results = _verify_all(settings, loaded)
    rows = [
        _row(str(path), r, r.match, settings) for path, r in zip(manifests, results, strict=True)
    ]
    _report(rows, as_json)


@dataclass(frozen=True)
class Row:
    name: str
    verdict: str
    result: Verification
    attested: Attestation | None  # what the audit record says of the manifest, if found


def _row(name: str, result: Verification, same: bool, settings: Settings) -> Row:
    folder = audit_folder(settings)
    attested = attestation(result.manifest, folder) if folder.is_dir() else None
    if attested is not None and not attested.agrees:
        verdict = "edited"  # whatever it regenerates, it is not what was generated
    elif not result.comparable:
        verdict = "not comparable"
    else:
        verdict = "match" if same else "mismatch"
    return Row(name, verdict, result, attested)


def _verify_git(settings: Settings, revision: str, paths: list[Path], as_json: bool) -> None:
    """Each file as committed at ``revision`` against the file its manifest regenerates."""
    cwd = Path.cwd()
    names = [gitfiles.in_repository(str(p), cwd) for p in paths]
    manifests = []
    for name in names:
        where = f"{revision}:{name}{gitfiles.MANIFEST_SUFFIX}"
        try:
            text = gitfiles.show(revision, name + gitfiles.MANIFEST_SUFFIX, cwd)
        except ConfigError as exc:
            raise NotFoundError(f"no manifest {where}: {exc.message}") from exc
        manifests.append(Manifest.from_json(text, where))
    rows: list[Row] = []
    for name, result in zip(names, _verify_all(settings, manifests), strict=True):
        if not result.comparable:
            rows.append(_row(f"{revision}:{name}", result, False, settings))
            continue
        committed = gitfiles.show(revision, name, cwd)
        made = _as_file(result.manifest, result.output, committed, settings)
        same = gitfiles.hash_of(made, cwd) == gitfiles.blob_id(revision, name, cwd)
        # What is compared here is the file: committed against regenerated.
        shown = replace(result, manifest=replace(result.manifest, output=committed), output=made)
        row = _row(f"{revision}:{name}", result, same, settings)
        rows.append(replace(row, result=shown))
    _report(rows, as_json)


def _as_file(manifest: Manifest, output: str, committed: str, settings: Settings) -> str:
    """The file a generation became, as the manifest says it did; ``committed`` picks the
    reading of a suggestion whose fences read more than one way, as the file did for suggest,
    and holds the secrets the policy kept from the model, which suggest put back."""
    how = manifest.file.get("derive")
    if how == "suggestion":
        code = extract_code(output, like=committed)
        code = secrets_put_back(committed, code, settings.policy)
        if not manifest.file.get("trailing_newline", True):
            code = code.removesuffix("\n")
        ending = manifest.file.get("line_ending")
        runs = manifest.file.get("line_endings")
        ended = with_line_end_runs(code.replace("\r\n", "\n"), runs) if runs else None
        if ended is not None:  # lines that end both ways, each as suggest wrote it
            code = ended
        elif ending in ("\r\n", "\r"):
            code = code.replace("\r\n", "\n").replace("\n", ending)
        if manifest.file.get("bom") and not code.startswith("\ufeff"):
            code = "\ufeff" + code
        return code
    if how in (None, "output"):
        return output
    raise ConfigError(f"manifest {manifest.id} makes a file by {how!r}, which tether cannot")


def _report(rows: list[Row], as_json: bool) -> None:
    if as_json:
        body = [
            {
                "manifest": row.name,
                "verdict": row.verdict,
                "differences": row.result.differences,
                "first_difference": (
                    row.result.first_difference() if row.verdict == "mismatch" else None
                ),
                "audit_record": row.attested.as_dict() if row.attested else None,
            }
            for row in rows
        ]
        click.echo(json.dumps(body, indent=2))
    for row in [] if as_json else rows:
        name, verdict, result, attested = row.name, row.verdict, row.result, row.attested
        if attested is not None and not attested.agrees:
            click.echo(
                f"EDITED {name}: differs from the audit record of {result.manifest.id} "
                f"(seq {attested.seq}) in {', '.join(attested.differs)}: the manifest was "
                "changed after the generation was recorded, so it proves nothing"
            )
        elif verdict == "match":
            held = (
                f"its audit record (seq {attested.seq}) agrees"
                if attested
                else f"no audit record of {result.manifest.id} here says it is unchanged"
            )
            click.echo(f"ok {name}: every byte regenerated; {held}")
        elif verdict == "not comparable":
            click.echo(printable(f"NOT COMPARABLE {name}: " + "; ".join(result.differences)))
        else:
            at = result.first_difference()
            unseen = (
                ""
                if attested
                else f" (no audit record of {result.manifest.id} here tells an edit from this)"
            )
            click.echo(
                f"MISMATCH {name}: first difference at character {at + 1}: recorded "
                f"{result.manifest.output[at : at + 30]!r}, regenerated "
                f"{result.output[at : at + 30]!r}{unseen}"
            )
            # A committed file or a manifest is anyone's text: escapes shown, not sent.
            click.echo(printable(result.diff()), nl=False)
    verdicts = {row.verdict for row in rows}
    if verdicts & {"mismatch", "edited"}:
        sys.exit(EXIT_NO)
    if "not comparable" in verdicts:
        sys.exit(EXIT_USAGE)


COMMANDS = [repro]
