"""``tether audit``: verify a copy of the log offline, show records, proofs and the key."""

from __future__ import annotations

import base64
import json
import sys
from collections import deque
from pathlib import Path
from typing import NoReturn

import click
from click.core import ParameterSource

from tether.audit import segments
from tether.audit.checkpoint import (
    Signer,
    Verifier,
    load_or_create_key,
    parse_note,
    parse_verifier_key,
    verify_note,
)
from tether.audit.log import (
    audit_folder,
    default_origin,
    proof_document,
    refuse_a_key_that_did_not_sign,
    signing_key_path,
)
from tether.audit.merkle import MerkleTree, leaf_hash, verify_inclusion
from tether.audit.verify import load_since, verify, verify_extension
from tether.cli.backend import call_server
from tether.cli.common import (
    EXIT_NO,
    FloatRange,
    IntRange,
    backend_options,
    settings_from_flags,
)
from tether.errors import AuditError, ConfigError, NotFoundError, TetherError
from tether.textfile import read_text


def _folder(folder: Path | None) -> Path:
    where = folder or audit_folder(settings_from_flags())
    if not where.is_dir():
        raise ConfigError(
            f"no audit log at {where}; pass --dir with a copy of <data.home>/audit, or run "
            "where the server's data directory is (TETHER_HOME)"
        )
    return where


def _key_text(key: str) -> str:
    """--key takes the verifier key itself or a file that holds it."""
    if "PRIVATE KEY" in key:  # pasted by mistake: never echoed
        raise ConfigError(
            "--key holds a private key; pass the verifier key (`tether audit key` prints it)"
        )
    path = Path(key)
    try:
        is_file = path.is_file()  # first: a file's name may hold a "+" too
    except OSError:  # a name too long for a file is not one
        is_file = False
    if is_file:
        return read_text(path)
    if "+" in key:
        return key
    if "/" in key or path.suffix:  # a path, not a key: there is no file there
        # Named by its length, not echoed: it may be a secret pasted by mistake.
        raise ConfigError(
            f"--key (a text of {len(key)} characters) names no file; pass the verifier key itself "
            "(<name>+<hex8>+<base64>, `tether audit key` prints it) or a file that holds it"
        )
    return key


@click.group()
def audit() -> None:
    """The tamper-evident audit log."""


@audit.command("verify")
@click.option("--dir", "folder", type=click.Path(path_type=Path), help="Audit folder (a copy).")
@click.option(
    "--since",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A note or checkpoints file saved earlier; the log must extend it.",
)
@click.option(
    "--key",
    "key",
    help="Verifier key, or a file holding it; default: the verifier.key beside the log.",
)
@click.option(
    "--max-gap",
    type=FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="Report gaps between checkpoints longer than this many seconds.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@backend_options
def verify_command(
    folder: Path | None,
    since: Path | None,
    key: str | None,
    max_gap: float | None,
    as_json: bool,
    server: str | None,
    token: str | None,
) -> None:
    """Check the chain, every checkpoint root and signature; name the first bad record.

    With --server and --since, check without a copy of the log that the server's latest
    checkpoint extends the saved one (an RFC 9162 consistency proof).
    """
    if server and _set_in_environment("server") and (folder or since is None or key is None):
        # TETHER_SERVER is there for the commands that talk to a server: with what an
        # online check needs not all given, the check reads the log as it does without it.
        server = None
    if server and folder is not None:
        raise click.UsageError(
            "--server checks the server's log by proof and --dir a copy of one: give one of them"
        )
    if server and (since is None or key is None):
        raise ConfigError(
            "--server checks that the log extends a checkpoint you saved: give --since FILE "
            "and the --key you trust (not one the server sends)"
        )
    saved = load_since(since) if since else []
    if server and key is not None:
        _verify_online(server, token, saved, key, as_json)
        return
    where = _folder(folder)
    report = verify(where, _trusted_key(where, key), since=saved, max_gap_s=max_gap)
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        for warning in report.warnings:
            click.echo(f"warning: {warning}")
        verdict = f"FAILED: {report.error}" if report.error else "ok"
        if report.error and not (report.records or report.checkpoints):
            click.echo(f"FAILED before any record was checked: {report.error}")
        elif report.error and report.unchecked:  # not "0 checkpoints", as if it had none
            click.echo(
                f"FAILED after {report.records} records, before the {report.unchecked} "
                f"checkpoints were checked: {report.error}"
            )
        else:
            click.echo(f"{report.records} records, {report.checkpoints} checkpoints: {verdict}")
        sizes = sorted(set(report.extends))
        if len(sizes) == 1:
            click.echo(
                f"the latest checkpoint extends the saved one of size {sizes[0]} (proof checked)"
            )
        elif sizes:  # a saved copy of a checkpoints file: one line for all of them
            click.echo(
                f"the latest checkpoint extends the {len(sizes)} saved ones of sizes "
                f"{sizes[0]} to {sizes[-1]} (each proof checked)"
            )
    if not report.ok:
        sys.exit(EXIT_NO)


def _trusted_key(where: Path, key: str | None) -> Verifier:
    """The verifier key given, or else (said on stderr) the one stored beside the log."""
    if key is None:
        stored = where / "verifier.key"
        if not stored.exists():
            raise ConfigError(f"no verifier.key in {where}; pass --key (see `tether audit key`)")
        key = read_text(stored)
        click.echo("note: trusting the verifier.key stored beside the log; pass --key", err=True)
    return parse_verifier_key(_key_text(key))


def _verify_online(
    server: str, token: str | None, saved: list[str], key: str, as_json: bool
) -> None:
    verifier = parse_verifier_key(_key_text(key))
    settings = settings_from_flags()
    results = []
    for note in saved:
        size = parse_note(note)[0].size
        try:
            document = call_server(settings, server, token, "GET", f"/v1/audit/consistency/{size}")
        except NotFoundError as exc:  # the log is smaller now than what was saved of it
            error = f"{exc.message}: the server's log was cut back or replaced since"
            results.append({"saved_size": size, "ok": False, "error": error})
            continue
        try:
            old, new = verify_extension(note, document, verifier)
        except AuditError as exc:
            results.append({"saved_size": size, "ok": False, "error": exc.message})
            continue
        results.append({"saved_size": old.size, "ok": True, "latest_size": new.size})
    if as_json:
        click.echo(json.dumps(results, indent=2))
    for result in [] if as_json else results:
        if result["ok"]:
            click.echo(
                f"ok: the server's checkpoint (size {result['latest_size']}) extends the saved "
                f"one (size {result['saved_size']})"
            )
        else:
            click.echo(f"FAILED: {result['error']}")
    if not all(r["ok"] for r in results):
        sys.exit(EXIT_NO)


@audit.command()
@click.option(
    "-n",
    "count",
    type=IntRange(min=0),
    default=10,
    show_default=True,
    help="How many records.",
)
@click.option("--dir", "folder", type=click.Path(path_type=Path), help="Audit folder.")
def tail(count: int, folder: Path | None) -> None:
    """Print the last N records (JSON lines)."""
    last: list[bytes] = []
    # Newest segment first, as far back as N reaches: a long log holds many.
    for path in reversed(segments.segment_paths(_folder(folder))):
        if len(last) >= count:
            break
        lines, _ = segments.read_raw(path)  # a torn last line is no record
        last = lines[max(0, len(lines) - (count - len(last))) :] + last
    for data in last:
        click.echo(data.decode())


@audit.command()
@click.argument("seq", type=IntRange(min=0))
@click.option("--dir", "folder", type=click.Path(path_type=Path), help="Audit folder.")
@click.option(
    "--key",
    help="Verifier key, or a file holding it; default: the verifier.key beside the log.",
)
def prove(seq: int, folder: Path | None, key: str | None) -> None:
    """Print the inclusion proof of record SEQ against the latest checkpoint (JSON), once
    that checkpoint's signature verifies."""
    where = _folder(folder)
    try:  # a checkpoints file that cannot be read was changed or damaged
        # The latest is what it proves against; a line at a time, as the file grows by
        # one each heartbeat.
        entries = deque(
            (
                entry
                for entry in segments.iter_checkpoints(where / segments.CHECKPOINTS)
                if not isinstance(entry, segments.Torn)
            ),
            maxlen=1,
        )
    except AuditError as exc:
        _not_proven(exc.message)
    if not entries:
        if any(isinstance(i, segments.Line) for i in segments.iter_records(where)):
            # A log signs a checkpoint each time it opens: records without one were left
            # when checkpoints were removed, as `verify` says too.
            _not_proven(
                f"{where} holds records but no checkpoints: they were removed; restore "
                f"{segments.CHECKPOINTS} from a copy; run `tether audit verify`"
            )
        raise ConfigError(f"no checkpoints in {where}; is this an audit folder?")
    verifier = _trusted_key(where, key)
    try:
        checkpoint = parse_note(entries[-1]["note"])[0]
        # A proof against a checkpoint no key signed proves nothing: one rewritten with
        # the records would "prove" them.
        verify_note(entries[-1]["note"], verifier)
    except AuditError as exc:
        _not_proven(f"the latest checkpoint: {exc.message}; run `tether audit verify`")
    size = checkpoint.size
    if not 0 <= seq < size:
        raise ConfigError(f"seq {seq} is not covered by the latest checkpoint (size {size})")
    tree = MerkleTree()
    for item in segments.iter_records(where):
        if isinstance(item, segments.Line) and tree.size < size:
            tree.append(leaf_hash(item.data))
    if tree.size < size:
        _not_proven(
            f"the latest checkpoint covers {size} records but the log holds only "
            f"{tree.size}: records were removed; run `tether audit verify`"
        )
    document = proof_document(seq, tree, size, entries[-1]["note"])
    path = [base64.b64decode(p) for p in document["proof"]]
    if not verify_inclusion(seq, size, tree.leaf(seq), path, checkpoint.root):
        _not_proven(
            f"record {seq} is not included under the latest checkpoint: the log does not "
            "match it; run `tether audit verify`"
        )
    click.echo(json.dumps(document, indent=2))


def _set_in_environment(parameter: str) -> bool:
    """Whether ``parameter`` came from its environment variable, not the command line."""
    source = click.get_current_context().get_parameter_source(parameter)
    return source is ParameterSource.ENVIRONMENT


def _not_proven(message: str) -> NoReturn:
    """The log fails the check: the answer is no, not bad input."""
    click.echo(f"error: {message}", err=True)
    sys.exit(EXIT_NO)


@audit.command()
def key() -> None:
    """Print the verifier key of this server's audit signing key (made if missing, before
    the log's first record)."""
    settings = settings_from_flags()
    folder = audit_folder(settings)
    path = signing_key_path(settings)
    signer = Signer(settings.audit.origin or default_origin(), load_or_create_key(path))
    try:
        named = parse_verifier_key(read_text(folder / "verifier.key"))
    except (OSError, TetherError):  # none yet (a new log), or damaged: the start says
        named = None
    if named is not None and named.public.encode() != signer.public:
        raise ConfigError(
            f"the audit signing key {path} is not the one that signed the log in {folder} "
            f"(its verifier.key holds {named.name}+{named.hash.hex()}): restore that key, "
            "or fix audit.key_file"
        )
    try:  # the checkpoints name the key that signed the log, whatever verifier.key says
        refuse_a_key_that_did_not_sign(folder, signer, replaced=named is not None)
    except AuditError as exc:
        raise ConfigError(exc.message) from exc
    click.echo(signer.verifier_key)


COMMANDS = [audit]
