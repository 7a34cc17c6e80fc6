"""Decisions about snippets: approve (only past every gate), reject, retire.

The caller records each decision in the audit log (``audit_details``): the server through
the request's audit record, the command line through ``tether.audit.events``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tether.compliance import Checker
from tether.errors import NotFoundError, RequestError
from tether.sandbox import Sandbox
from tether.settings import StoreSettings
from tether.store.db import SnippetStore
from tether.store.gates import Gate, run_gates
from tether.store.model import Added, Decision, Snippet, State


def vet(
    store: SnippetStore,
    snippet_id: int,
    *,
    approve: bool,
    reason: str,
    principal: str,
    checker: Checker,
    settings: StoreSettings,
    sandbox: Sandbox | None = None,
    make_callable: bool | None = None,
    version: int | None = None,
    seen_state: State | None = None,
) -> tuple[Snippet, Decision]:
    """Approve or reject the snippet; ``version`` and ``seen_state``: what the reviewer
    looked at, refused if it is no longer so."""
    snippet = store.get(snippet_id)
    if snippet.state == "retired":
        raise RequestError(
            f"snippet {snippet_id} is retired; add a new version of it to bring it back"
        )
    if version is not None and version != snippet.current.version:
        raise RequestError(
            f"snippet {snippet_id} is at version {snippet.current.version}, not {version}; "
            "look at the new version before deciding",
            param="version",
        )
    if seen_state is not None and seen_state != snippet.state:
        raise RequestError(
            f"snippet {snippet_id} is {snippet.state} now, not {seen_state}: it was decided "
            "since you looked; look at its decisions before deciding again",
            param="state",
        )
    # The decision is about the version and state read and gated here: a version added or
    # a decision made meanwhile (the attached test may run for seconds) is refused by
    # decide, never overridden unseen nor recorded twice.
    version = snippet.current.version
    gates: list[Gate] = []
    callable_ = snippet.callable if make_callable is None else make_callable
    state: State = "vetted" if approve else "rejected"
    if snippet.state == state and callable_ == snippet.callable:
        # A second click, or a second reviewer: a decision already on record is not
        # recorded again.
        raise RequestError(
            f"snippet {snippet_id} is {state} already, at version {version}; nothing to decide"
        )
    if approve:
        gates = run_gates(
            snippet,
            checker,
            settings.licences,
            sandbox,
            make_callable=callable_,
            test_timeout_s=settings.test_timeout_s,
        )
        failed = [g for g in gates if not g.passed]
        if failed:
            problems = "; ".join(f"{g.name}: {g.detail}" for g in failed)
            raise RequestError(f"snippet {snippet_id} cannot be approved: {problems}")
        if callable_:
            _check_unique_name(store, snippet)
    decision = store.decide(
        snippet_id,
        state,
        principal,
        reason,
        [g.as_record() for g in gates],
        version=version,
        callable_=callable_,
        from_state=snippet.state,
    )
    return store.get(snippet_id), decision


def retire(store: SnippetStore, snippet_id: int, *, reason: str, principal: str) -> Decision:
    snippet = store.get(snippet_id)
    if snippet.state == "retired":
        raise RequestError(f"snippet {snippet_id} is retired already")
    return store.decide(snippet_id, "retired", principal, reason)


def audit_details(snippet: Snippet, decision: Decision) -> dict[str, Any]:
    """What the audit record of a decision carries: never the code, its hash."""
    return {
        "snippet": snippet.id,
        "name": snippet.name,
        "version": decision.version,
        "hash": decision.hash,
        "state": decision.state,
        "by": decision.principal,
        "reason": decision.reason,
        "gates": {g["name"]: g["passed"] for g in decision.gates},
    }


def withdrawals(results: Iterable[Added]) -> list[dict[str, Any]]:
    """The audit details of each edit an add withdrew (its code went back to the version
    in service): a rejection made by adding, which the log records as a reviewer's are."""
    return [
        audit_details(result.snippet, result.withdrawal)
        for result in results
        if result.withdrawal is not None
    ]


def _check_unique_name(store: SnippetStore, snippet: Snippet) -> None:
    try:
        other = store.callable_named(snippet.name)
    except NotFoundError:
        return
    if other.id != snippet.id:
        raise RequestError(
            f"snippet {other.id} is already the callable {snippet.name}(); retire it "
            "first, or approve this one as not callable (untick Callable on the dashboard; "
            '--not-callable; over HTTP "callable": false)'
        )
