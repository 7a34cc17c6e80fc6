"""``tether store``: the function store on this machine's data directory.

Every command takes ``--json``. Decisions (``vet``, ``retire``) and calls are recorded in
the audit log, through the running server when it holds the log.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, get_args

import click

from tether.audit.events import EventLog, Record, local_principal, record_event
from tether.cli.common import INT, IntRange, settings_from_flags, terminated_as_interrupted
from tether.errors import RequestError
from tether.store import Draft, FunctionStore, Snippet, State
from tether.store.calls import call_recorded
from tether.store.ingest import drafts_from_file, import_folder, split_target
from tether.store.search import search_listing
from tether.store.vetting import audit_details, retire, vet, withdrawals
from tether.strictjson import parse_json
from tether.textfile import read_text


@contextmanager
def _opened(*, read_only: bool = False) -> Iterator[FunctionStore]:
    store = FunctionStore.open(settings_from_flags(), read_only=read_only)
    try:
        yield store
    finally:
        store.close()


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def _line(snippet: Snippet) -> str:
    origin = snippet.current.origin
    where = f"{origin.path}:{origin.line}" if origin.path else "-"
    flag = " callable" if snippet.callable else ""
    if snippet.served is not None and snippet.served != snippet.current.version:
        flag += f" (v{snippet.served} in service)"
    return (
        f"{snippet.id:>6}  v{snippet.current.version:<3} {snippet.state:<9} "
        f"{snippet.language:<10} {snippet.name}{flag}  ({where})"
    )


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


@click.group()
def store() -> None:
    """Vetted snippets the assistant retrieves, cites and can call."""


@store.command("add")
@click.argument("targets", nargs=-1, required=True, metavar="FILE[::NAME]...")
@click.option("--licence", "--license", "licence", help="SPDX expression; default: from the file.")
@click.option("--tag", "tags", multiple=True, help="A tag to search by; repeat for more.")
@click.option(
    "--test",
    "test_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Python code that exercises the function; it must pass before approval.",
)
@click.option("--no-test", is_flag=True, help="Remove the test a stored version has.")
@click.option("--callable", "make_callable", is_flag=True, help="Ask for it to be callable.")
@json_option
def add(
    targets: tuple[str, ...],
    licence: str | None,
    tags: tuple[str, ...],
    test_file: Path | None,
    no_test: bool,
    make_callable: bool,
    as_json: bool,
) -> None:
    """Add one function (FILE::NAME) or every function of FILE, as candidates; one stored
    already gets a new version (what is not given, such as tags or a test, is kept)."""
    if test_file and no_test:
        raise click.UsageError("pass --test FILE or --no-test, not both")
    test = read_text(test_file) if test_file else ("" if no_test else None)
    if test_file and not (test or "").strip():  # "" would remove the test it means to add
        raise click.BadParameter(
            f"{test_file} is empty; give a test that exercises the function, or --no-test "
            "to remove the one it has",
            param_hint="--test",
        )
    drafts: list[Draft] = []
    skipped: list[tuple[str, str]] = []
    for target in targets:
        path, name = split_target(target)
        drafts += drafts_from_file(
            path,
            name=name,
            licence=licence,
            tags=tags or None,
            test=test,
            make_callable=make_callable,
            skipped=skipped,
        )
    for what, why in skipped:
        click.echo(f"skipped {what}: {why}", err=True)
    if not drafts:
        raise RequestError(f"{', '.join(targets)}: no function that parses to add")
    # The log is had before anything is added: an edit the add withdraws is a rejection,
    # which is not made where it cannot be recorded.
    with _opened() as opened, EventLog(opened.settings).held() as record:
        results = opened.db.add_many(drafts, local_principal())
        _record_withdrawals(record, withdrawals(results))
    if as_json:
        _echo_json([{"outcome": r.outcome, **r.snippet.as_record()} for r in results])
        return
    for result in results:
        click.echo(f"{result.outcome:<12} {_line(result.snippet)}")


@store.command("import")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--licence", "--license", "licence", help="SPDX expression for every file.")
@click.option("--tag", "tags", multiple=True, help="A tag for every snippet; repeat for more.")
@json_option
def import_command(folder: Path, licence: str | None, tags: tuple[str, ...], as_json: bool) -> None:
    """Every top-level function of the Python, JavaScript and TypeScript files in FOLDER.

    Duplicates (the same code, comments and layout aside) are merged; importing the same
    folder again changes nothing; an edited function becomes a new version."""
    started = time.perf_counter()
    with _opened() as opened, EventLog(opened.settings).held() as record:  # as for add
        report = import_folder(opened.db, folder, local_principal(), licence=licence, tags=tags)
        _record_withdrawals(record, withdrawals(report.results))
    seconds = time.perf_counter() - started
    if as_json:
        _echo_json({**report.as_record(), "seconds": round(seconds, 3)})
        return
    click.echo(
        f"{report.files} files: {report.added} added, {report.new_versions} new versions, "
        f"{report.unchanged} unchanged, {report.duplicates} duplicates"
        + (f", {report.withdrawn} edits withdrawn" if report.withdrawn else "")
        + f" ({seconds:.2f} s)"
    )
    for what, why in report.skipped:
        click.echo(f"skipped {what}: {why}", err=True)


def _record_withdrawals(record: Record, decided: list[dict[str, Any]]) -> None:
    """Audit the edits an add withdrew, each a decision as a reviewer's is."""
    for details in decided:
        record("store.vet", details)


@store.command("list")
@click.option("--state", type=click.Choice(get_args(State)), help="Only snippets in this state.")
@click.option(
    "--callable",
    "callable_only",
    is_flag=True,
    help="Only functions that can be called: callable, with a vetted version in service.",
)
@click.option("--limit", type=IntRange(1, 100_000), default=100, show_default=True)
@click.option("--offset", type=IntRange(min=0), default=0)
@json_option
def list_command(
    state: State | None, callable_only: bool, limit: int, offset: int, as_json: bool
) -> None:
    """Snippets, oldest first."""
    with _opened(read_only=True) as opened:
        found = opened.db.snippets(state, limit, offset, callable_only)
        counts = opened.db.counts()
    if as_json:
        _echo_json({"snippets": [s.as_record() for s in found], "counts": counts})
        return
    for snippet in found:
        click.echo(_line(snippet))
    click.echo(", ".join(f"{n} {state}" for state, n in counts.items()), err=True)


@store.command("show")
@click.argument("snippet_id", type=INT, metavar="ID")
@click.option("--gates", "with_gates", is_flag=True, help="Run the vetting gates now.")
@json_option
@terminated_as_interrupted()  # SIGTERM stops the gates' sandboxed test as Ctrl-C does
def show(snippet_id: int, with_gates: bool, as_json: bool) -> None:
    """A snippet: its code, versions and the decisions about it."""
    from tether.compliance import Checker
    from tether.store.gates import run_gates

    with _opened(read_only=True) as opened:
        snippet = opened.db.get(snippet_id)
        versions = opened.db.versions(snippet_id)
        decisions = opened.db.decisions(snippet_id)
        gates = []
        if with_gates:
            with Checker.from_settings(opened.settings) as checker:
                gates = run_gates(
                    snippet,
                    checker,
                    opened.settings.store.licences,
                    opened.sandbox,
                    snippet.callable,
                    opened.settings.store.test_timeout_s,
                )
    if as_json:
        _echo_json(
            {
                **snippet.as_record(),
                "versions": [{"version": v.version, "hash": v.body_hash, "author": v.author,
                              "created": v.created} for v in versions],
                "decisions": [d.__dict__ for d in decisions],
                "gates": [g.as_record() for g in gates],
            }
        )  # fmt: skip
        return
    current = snippet.current
    click.echo(_line(snippet))
    click.echo(f"signature: {current.signature}")
    click.echo(f"licence:   {current.licence or 'unknown'}")
    click.echo(f"hash:      {current.body_hash}")
    if current.tags:
        click.echo(f"tags:      {', '.join(current.tags)}")
    if current.origin.repository:
        click.echo(f"from:      {current.origin.repository} @ {current.origin.commit[:12]}")
    click.echo("")
    click.echo(current.code)
    click.echo("")
    for version in versions:
        when = time.strftime("%Y-%m-%d %H:%M %z", time.localtime(version.created))
        click.echo(f"v{version.version}  {when}  {version.author}  {version.body_hash[:12]}")
    for decision in decisions:
        when = time.strftime("%Y-%m-%d %H:%M %z", time.localtime(decision.at))
        click.echo(f"{when}  v{decision.version} {decision.state} by {decision.principal}: "
                   f"{decision.reason}")  # fmt: skip
    for gate in gates:
        click.echo(f"gate {gate.name:<10} {'pass' if gate.passed else 'FAIL'}  {gate.detail}")


@store.command("vet")
@click.argument("snippet_id", type=INT, metavar="ID")
@click.option("--approve", is_flag=True, help="Vet it, if every automatic gate passes.")
@click.option("--reject", is_flag=True, help="Reject it.")
@click.option("--reason", required=True, help="Why; kept with the decision and audited.")
@click.option("--callable", "make_callable", is_flag=True,
              help="It may be called (default: as it was added).")  # fmt: skip
@click.option("--not-callable", "not_callable", is_flag=True, help="It may not be called.")
@click.option("--version", type=IntRange(min=1), help="Decide only if still this version.")
@json_option
@terminated_as_interrupted()  # SIGTERM stops the gates' sandboxed test as Ctrl-C does
def vet_command(
    snippet_id: int,
    approve: bool,
    reject: bool,
    reason: str,
    make_callable: bool,
    not_callable: bool,
    version: int | None,
    as_json: bool,
) -> None:
    """Approve (after every automatic gate passes) or reject a snippet.

    Give exactly one of --approve and --reject."""
    from tether.compliance import Checker

    if approve == reject:
        raise click.UsageError(
            "pass --approve or --reject, not both" if approve else "pass --approve or --reject"
        )
    if make_callable and not_callable:
        raise click.UsageError("pass --callable or --not-callable, not both")
    with _opened() as opened, Checker.from_settings(opened.settings) as checker:
        snippet, decision = vet(
            opened.db,
            snippet_id,
            approve=approve,
            reason=reason,
            principal=local_principal(),
            checker=checker,
            settings=opened.settings.store,
            sandbox=opened.sandbox,
            make_callable=None if make_callable == not_callable else make_callable,
            version=version,
        )
        audited = record_event(opened.settings, "store.vet", audit_details(snippet, decision))
    if as_json:
        _echo_json({**snippet.as_record(), "decision": decision.__dict__, "audit": audited})
        return
    click.echo(f"{decision.state} {_line(snippet)}")


@store.command("retire")
@click.argument("snippet_id", type=INT, metavar="ID")
@click.option("--reason", required=True, help="Why; kept with the decision and audited.")
@json_option
def retire_command(snippet_id: int, reason: str, as_json: bool) -> None:
    """Take a snippet out of search, prompts and calls; its history stays."""
    with _opened() as opened:
        decision = retire(opened.db, snippet_id, reason=reason, principal=local_principal())
        snippet = opened.db.get(snippet_id)
        audited = record_event(opened.settings, "store.retire", audit_details(snippet, decision))
    if as_json:
        _echo_json({**snippet.as_record(), "decision": decision.__dict__, "audit": audited})
        return
    click.echo(f"retired {_line(snippet)}")


@store.command("search")
@click.argument("query")
@click.option("--limit", type=IntRange(1, 100), default=10, show_default=True)
@json_option
def search(query: str, limit: int, as_json: bool) -> None:
    """Vetted snippets for QUERY, best first, with each ranker's score."""
    with _opened(read_only=True) as opened:
        hits = opened.searcher.search(query, limit)
        hybrid = opened.searcher.hybrid
    if as_json:
        _echo_json(search_listing(hits, hybrid))
        return
    for hit in hits:
        scores = hit.scores()
        bm25, similarity = (
            "-" if scores[name] is None else scores[name] for name in ("bm25", "similarity")
        )
        click.echo(f"{scores['fused']:.4f}  bm25 {bm25}  sim {similarity}  {_line(hit.snippet)}")
    if not hits:
        click.echo("no vetted snippet matches", err=True)


@store.command("call")
@click.argument("name")
@click.option("--args", "arguments", default="{}", show_default=True, help="A JSON object.")
@json_option
@terminated_as_interrupted()  # SIGTERM stops and records the call as Ctrl-C does
def call_command(name: str, arguments: str, as_json: bool) -> None:
    """Call the vetted callable function NAME in the sandbox and print its result."""
    try:
        parsed = parse_json(arguments)
    except ValueError as exc:
        message = f"--args is not JSON ({exc}); give an object, e.g. '{{\"a\": 1}}'"
        raise RequestError(message) from exc
    # The log is held (or the server found) before the function runs: nothing runs that
    # cannot be recorded.
    with _opened() as opened, EventLog(opened.settings).held() as record:
        _, result = call_recorded(opened, name, parsed, lambda d: record("store.call", d))
    if as_json:
        _echo_json({"result": result.result, "duration_s": round(result.duration_s, 4)})
        return
    click.echo(json.dumps(result.result, ensure_ascii=False))


COMMANDS = [store]
