"""The function store: vetted snippets the assistant retrieves, cites and can call.

Snippets come in as candidates (``tether store add``, ``import``, ``POST /v1/snippets``);
automatic gates and then a person decide (``vet``); only vetted ones are searched, put
into prompts (step 3 of the pipeline) and, when marked callable, run in the sandbox.
"""

from __future__ import annotations

from dataclasses import dataclass

from tether.closing import Closeable
from tether.sandbox import Sandbox
from tether.settings import Settings
from tether.store.call_pool import CallPool
from tether.store.db import SnippetStore
from tether.store.embeddings import embedder_for
from tether.store.model import STATES, Added, Decision, Draft, Origin, Snippet, State, Version
from tether.store.retrieval import Retriever
from tether.store.search import Hit, Searcher

__all__ = [
    "STATES",
    "Added",
    "Decision",
    "Draft",
    "FunctionStore",
    "Hit",
    "Origin",
    "Retriever",
    "Searcher",
    "Snippet",
    "SnippetStore",
    "State",
    "Version",
]


@dataclass
class FunctionStore(Closeable):
    """The store with what works on it, as the server and the command line use it."""

    settings: Settings
    db: SnippetStore
    searcher: Searcher
    retriever: Retriever
    sandbox: Sandbox
    calls: CallPool  # where HTTP and MCP calls run

    @classmethod
    def open(
        cls, settings: Settings, write_wait_ms: int | None = None, *, read_only: bool = False
    ) -> FunctionStore:
        db = SnippetStore.from_settings(settings, write_wait_ms, read_only=read_only)
        searcher = Searcher(db, settings.store, embedder_for(settings.store.embeddings))
        calls = CallPool(settings.store.call_workers, settings.store.call_queue)
        return cls(settings, db, searcher, Retriever(searcher, settings.store), Sandbox(), calls)

    def close(self) -> None:
        self.calls.close()
        self.db.close()
