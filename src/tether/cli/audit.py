"""``tether audit``: verify a copy of the log offline, show records, proofs and the key."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from tether.audit import segments
from tether.audit.checkpoint import Signer, load_or_create_key, parse_note, parse_verifier_key
from tether.audit.log import audit_folder, default_origin, proof_document
from tether.audit.merkle import leaf_hash
from tether.audit.verify import load_since, verify
from tether.cli.common import settings_from_flags
from tether.errors import ConfigError


def _folder(folder: Path | None) -> Path:
    return folder or audit_folder(settings_from_flags())


@click.group()
def audit() -> None:
    """The tamper-evident audit log."""


@audit.command("verify")
@click.option("--dir", "folder", type=click.Path(path_type=Path), help="Audit folder (a copy).")
@click.option(
    "--since", type=click.Path(path_type=Path), help="A note or checkpoints file saved earlier."
)
@click.option("--key", "key", help="Verifier key; default: the verifier.key beside the log.")
@click.option("--max-gap", type=float, help="Report gaps between checkpoints longer than this.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def verify_command(
    folder: Path | None, since: Path | None, key: str | None, max_gap: float | None, as_json: bool
) -> None:
    """Check the chain, every checkpoint root and signature; name the first bad record."""
    where = _folder(folder)
    if key is None:
        stored = where / "verifier.key"
        if not stored.exists():
            raise ConfigError(f"no verifier.key in {where}; pass --key (see `tether audit key`)")
        key = stored.read_text()
        click.echo("note: trusting the verifier.key stored beside the log; pass --key", err=True)
    report = verify(
        where, parse_verifier_key(key), since=load_since(since) if since else [], max_gap_s=max_gap
    )
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        for warning in report.warnings:
            click.echo(f"warning: {warning}")
        verdict = f"FAILED: {report.error}" if report.error else "ok"
        click.echo(f"{report.records} records, {report.checkpoints} checkpoints: {verdict}")
    if not report.ok:
        sys.exit(1)


@audit.command()
@click.option("-n", "count", default=10, show_default=True, help="How many records.")
@click.option("--dir", "folder", type=click.Path(path_type=Path), help="Audit folder.")
def tail(count: int, folder: Path | None) -> None:
    """Print the last N records (JSON lines)."""
    lines = [i for i in segments.iter_records(_folder(folder)) if isinstance(i, segments.Line)]
    for line in lines[-count:]:
        click.echo(line.data.decode())


@audit.command()
@click.argument("seq", type=int)
@click.option("--dir", "folder", type=click.Path(path_type=Path), help="Audit folder.")
def prove(seq: int, folder: Path | None) -> None:
    """Print the inclusion proof of record SEQ against the latest checkpoint (JSON)."""
    where = _folder(folder)
    entries, _ = segments.read_checkpoints(where / segments.CHECKPOINTS)
    if not entries:
        raise ConfigError(f"no checkpoints in {where}; is this an audit folder?")
    note = entries[-1]["note"]
    size = parse_note(note)[0].size
    if not 0 <= seq < size:
        raise ConfigError(f"seq {seq} is not covered by the latest checkpoint (size {size})")
    leaves = [
        leaf_hash(i.data) for i in segments.iter_records(where) if isinstance(i, segments.Line)
    ][:size]
    click.echo(json.dumps(proof_document(seq, leaves, note), indent=2))


@audit.command()
def key() -> None:
    """Print the verifier key of this server's audit signing key (made if missing)."""
    settings = settings_from_flags()
    path = settings.audit.key_file or audit_folder(settings) / "signing.key"
    signer = Signer(settings.audit.origin or default_origin(), load_or_create_key(path))
    click.echo(signer.verifier_key)


COMMANDS = [audit]
