"""Hybrid search over vetted snippets: BM25 on words, embeddings when installed, fused.

Each ranker proposes its best ``CANDIDATES`` above its threshold; reciprocal rank fusion
(Cormack et al., 2009, k = 60) merges the lists, so neither ranker's scale matters. At
most ``per_origin`` results come from one file, so one big module does not crowd out the
rest. Every hit keeps each ranker's score and rank, so a result can be explained.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tether.errors import DatabaseLockedError, RequestError
from tether.settings import StoreSettings
from tether.store.db import SnippetStore
from tether.store.embeddings import Embedder
from tether.store.model import Snippet
from tether.store.text import query_words, words

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

log = logging.getLogger(__name__)

RRF_K = 60
MAX_QUERY_CHARS = 4000  # a query longer than a page is no description of code
CANDIDATES = 50
# How long a search waits to save new snippets' vectors while another process writes,
# and how often, while it still cannot, a search tries again without waiting.
SAVE_WAIT_MS = 200
SAVE_RETRY_S = 30.0
EMBEDDED_CODE_CHARS = 1000  # of the code, after name, docstring and signature


@dataclass(frozen=True)
class Hit:
    snippet: Snippet
    score: float  # fused: the sum over rankers of 1 / (RRF_K + rank)
    bm25: float | None = None
    bm25_rank: int | None = None
    similarity: float | None = None
    similarity_rank: int | None = None

    def scores(self) -> dict[str, Any]:
        return {
            "fused": round(self.score, 6),
            "bm25": None if self.bm25 is None else round(self.bm25, 4),
            "bm25_rank": self.bm25_rank,
            "similarity": None if self.similarity is None else round(self.similarity, 4),
            "similarity_rank": self.similarity_rank,
        }


def search_listing(hits: list[Hit], hybrid: bool) -> dict[str, Any]:
    """What a search answers, over HTTP and ``store search --json`` alike."""
    return {
        "object": "list",
        "hybrid": hybrid,
        "data": [{**h.snippet.as_record(), "scores": h.scores()} for h in hits],
    }


def embedded_text(snippet: Snippet) -> str:
    current = snippet.current
    parts = [" ".join(words(snippet.name)), current.docstring, current.signature]
    return "\n".join([*parts, current.code[:EMBEDDED_CODE_CHARS]])


def origin_of(snippet: Snippet) -> str:
    origin = snippet.current.origin
    return f"{origin.repository}:{origin.path}" if origin.path else f"#{snippet.id}"


class Searcher:
    def __init__(
        self, store: SnippetStore, settings: StoreSettings, embedder: Embedder | None = None
    ) -> None:
        self.store = store
        self.settings = settings
        self.embedder = embedder
        self._lock = threading.Lock()
        self._revision = -1
        self._ids: list[int] = []
        self._matrix: NDArray[np.float32] | None = None
        # Vectors made while another process held the store locked, by snippet id: used
        # at once, saved when a later search finds the lock gone (tried now and then).
        self._unsaved: dict[int, bytes] = {}
        self._retry_at = 0.0

    @property
    def hybrid(self) -> bool:
        return self.embedder is not None

    def search(
        self,
        query: str,
        limit: int | None = None,
        exclude: Callable[[Snippet], bool] | None = None,
    ) -> list[Hit]:
        terms = query_words(query)
        if not terms:
            raise RequestError(
                "the query has no words to search for; describe the code you want",
                param="q",
            )
        limit = limit or self.settings.max_results
        lexical = [
            (i, s) for i, s in self.store.bm25(terms, CANDIDATES) if s >= self.settings.min_bm25
        ]
        semantic = self._similar(query) if self.embedder is not None else []
        fused: dict[int, dict[str, Any]] = {}
        for rank, (snippet_id, score) in enumerate(lexical, 1):
            entry = fused.setdefault(snippet_id, {"score": 0.0})
            entry.update(score=entry["score"] + 1 / (RRF_K + rank), bm25=score, bm25_rank=rank)
        for rank, (snippet_id, similarity) in enumerate(semantic, 1):
            entry = fused.setdefault(snippet_id, {"score": 0.0})
            entry.update(
                score=entry["score"] + 1 / (RRF_K + rank),
                similarity=similarity,
                similarity_rank=rank,
            )
        ordered = sorted(fused, key=lambda i: (-fused[i]["score"], i))
        snippets = self.store.served_many(ordered)
        hits: list[Hit] = []
        per_origin: dict[str, int] = {}
        for snippet_id in ordered:
            snippet = snippets.get(snippet_id)
            if snippet is None or snippet.state != "vetted":
                continue  # changed since the index was read
            if exclude is not None and exclude(snippet):
                continue
            origin = origin_of(snippet)
            if per_origin.get(origin, 0) >= self.settings.per_origin:
                continue
            per_origin[origin] = per_origin.get(origin, 0) + 1
            hits.append(Hit(snippet, **fused[snippet_id]))
            if len(hits) >= limit:
                break
        return hits

    def _similar(self, query: str) -> list[tuple[int, float]]:
        import numpy as np

        assert self.embedder is not None
        ids, matrix = self._vectors()
        if matrix is None or not ids:
            return []
        query_vector = self.embedder.embed([query])[0]
        similarities = matrix @ query_vector
        count = min(CANDIDATES, len(ids))
        best = np.argpartition(-similarities, count - 1)[:count]
        best = best[np.argsort(-similarities[best], kind="stable")]
        floor = self.settings.min_similarity
        return [(ids[i], float(similarities[i])) for i in best if similarities[i] >= floor]

    def _vectors(self) -> tuple[list[int], NDArray[np.float32] | None]:
        """Every vetted snippet's vector, embedding the new ones; cached per revision."""
        import numpy as np

        assert self.embedder is not None
        with self._lock:
            revision = self.store.revision()
            if revision == self._revision:
                self._save_unsaved(wait_ms=0)
                return self._ids, self._matrix
            missing = self.store.unembedded(self.embedder.name)
            self._unsaved = {s.id: self._unsaved[s.id] for s in missing if s.id in self._unsaved}
            new = [s for s in missing if s.id not in self._unsaved]
            if new:
                vectors = self.embedder.embed([embedded_text(s) for s in new])
                for snippet, vector in zip(new, vectors, strict=True):
                    self._unsaved[snippet.id] = vector.astype("<f4").tobytes()
                self._retry_at = 0.0  # a request waits on it: briefly, once
            self._save_unsaved(wait_ms=SAVE_WAIT_MS)
            stored = self.store.vectors(self.embedder.name) + list(self._unsaved.items())
            self._ids = [snippet_id for snippet_id, _ in stored]
            self._matrix = (
                np.frombuffer(b"".join(blob for _, blob in stored), dtype="<f4").reshape(
                    len(stored), -1
                )
                if stored
                else None
            )
            self._revision = revision
            return self._ids, self._matrix

    def _save_unsaved(self, wait_ms: int) -> None:
        """Save the vectors made while the store was locked, if it is time to try again."""
        if not self._unsaved or time.monotonic() < self._retry_at or self.store.read_only:
            return
        assert self.embedder is not None
        try:
            self.store.set_vectors(self.embedder.name, self._unsaved.items(), wait_ms=wait_ms)
        except DatabaseLockedError as exc:
            if not self._retry_at:
                log.warning("%s; new snippets' vectors are used unsaved meanwhile", exc)
            self._retry_at = time.monotonic() + SAVE_RETRY_S
        else:
            self._unsaved, self._retry_at = {}, 0.0
