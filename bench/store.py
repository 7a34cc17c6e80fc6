"""The function store at 100,000 snippets: import rate, search latency, retrieval quality.

- import: ``tether store import`` of generated Python files (100 functions each), without
  embeddings; goal >= 2,000 snippets/s. Names, parameters and docstrings are drawn from
  the words of the standard library, as often as they occur there.
- search: p50 and p95 over varied queries, BM25 alone (goal p50 <= 5 ms) and hybrid
  including the query's embedding (goal p50 <= 20 ms), once every vector is computed.
- quality: a labelled set from real code, this Python's standard library: each public
  top-level function with a docstring is a snippet without its docstring, and the first
  sentence of the docstring is the query that must find it. recall@5 and MRR, BM25 and
  hybrid side by side, over the same store.
"""

from __future__ import annotations

import argparse
import ast
import random
import statistics
import sysconfig
import tempfile
import time
from collections import Counter
from pathlib import Path

from bench._common import percentile, print_table, write_result
from tether.settings import StoreSettings
from tether.store import Searcher, SnippetStore
from tether.store.embeddings import WordLlamaEmbedder, installed
from tether.store.ingest import import_folder
from tether.store.model import Draft, Origin
from tether.store.split import normalised_hash
from tether.store.text import STOPWORDS, words

PER_FILE = 100
VOCABULARY = 5000  # the most frequent words of the standard library's names and docstrings


def vocabulary() -> tuple[list[str], list[int]]:
    """Words of real code and their frequencies: generated snippets and queries draw from
    them, so word frequencies (and so what a search must rank) are as in real code."""
    counts: Counter[str] = Counter()
    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py")):
        try:
            tree = ast.parse(path.read_text())
        except (SyntaxError, UnicodeDecodeError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.ClassDef):
                counts.update(w for w in words(node.name) if len(w) > 2)
                counts.update(w for w in words(ast.get_docstring(node) or "") if len(w) > 2)
    for stopword in STOPWORDS:
        counts.pop(stopword, None)
    common = counts.most_common(VOCABULARY)
    return [w for w, _ in common], [n for _, n in common]


def _function(rng: random.Random, vocab: tuple[list[str], list[int]], index: int) -> str:
    names, weights = vocab
    name = "_".join(rng.choices(names, weights, k=rng.randint(2, 3))) + f"_{index}"
    params = list(dict.fromkeys(rng.choices(names, weights, k=rng.randint(1, 3))))
    doc = " ".join(rng.choices(names, weights, k=rng.randint(5, 10))).capitalize()
    local = rng.choice(names)
    return (
        f"def {name}({', '.join(params)}):\n"
        f'    """{doc}."""\n'
        f"    {local}_value = [{', '.join(params)}, {index}]\n"
        f"    if {params[0]} is None:\n"
        f"        return {local}_value\n"
        f"    return {params[-1]}\n"
    )


def generate(folder: Path, count: int, seed: int = 0) -> tuple[list[str], list[int]]:
    rng = random.Random(seed)
    vocab = vocabulary()
    (folder / "LICENSE").write_text("Permission is hereby granted, free of charge, to any person")
    for start in range(0, count, PER_FILE):
        functions = [_function(rng, vocab, i) for i in range(start, min(count, start + PER_FILE))]
        sub = folder / f"pkg{start // 10_000:02d}"
        sub.mkdir(exist_ok=True)
        (sub / f"mod{start // PER_FILE:05d}.py").write_text("\n\n".join(functions))
    return vocab


def stdlib_pairs(limit: int) -> list[tuple[Draft, str]]:
    """(snippet without its docstring, the docstring's first sentence) from the stdlib."""
    root = Path(sysconfig.get_paths()["stdlib"])
    pairs: list[tuple[Draft, str]] = []
    for path in sorted(root.glob("*.py")):
        try:
            source = path.read_text()
            tree = ast.parse(source)
        except (SyntaxError, UnicodeDecodeError):
            continue
        lines = source.splitlines(keepends=True)
        for node in tree.body:
            if not isinstance(node, ast.FunctionDef) or node.name.startswith("_"):
                continue
            doc = ast.get_docstring(node)
            first = node.body[0]
            if not doc or len(node.body) < 2 or first.end_lineno is None:
                continue
            query = doc.strip().split("\n\n")[0].split(". ")[0].replace("\n", " ").strip()
            if len(query.split()) < 4:
                continue  # too little to go on
            start = (node.decorator_list[0] if node.decorator_list else node).lineno
            code = "".join(
                lines[start - 1 : first.lineno - 1] + lines[first.end_lineno : node.end_lineno]
            )
            draft = Draft(
                name=node.name,
                language="python",
                code=code,
                body_hash=normalised_hash(code, "python"),
                signature=lines[node.lineno - 1].strip(),
                origin=Origin(path=f"{path.name}", line=node.lineno),
                licence="PSF-2.0",
            )
            pairs.append((draft, query))
    random.Random(0).shuffle(pairs)
    return pairs[:limit]


def _latencies(searcher: Searcher, queries: list[str]) -> list[float]:
    times = []
    for query in queries:
        started = time.perf_counter()
        searcher.search(query, 5)
        times.append((time.perf_counter() - started) * 1000)
    return times


def _quality(searcher: Searcher, pairs: list[tuple[int, str]]) -> dict[str, float]:
    found_at: list[int | None] = []
    for snippet_id, query in pairs:
        ids = [h.snippet.id for h in searcher.search(query, 10)]
        found_at.append(ids.index(snippet_id) + 1 if snippet_id in ids else None)
    recall5 = sum(1 for r in found_at if r is not None and r <= 5) / len(found_at)
    mrr = sum(1 / r for r in found_at if r is not None) / len(found_at)
    return {"recall@5": recall5, "mrr@10": mrr, "queries": len(found_at)}


def quality(pairs: list[tuple[Draft, str]], folder: Path) -> dict[str, dict[str, float]]:
    """recall@5 and MRR@10 of each ranker over a store of the labelled snippets alone."""
    db = SnippetStore(folder / "quality.sqlite")
    added = db.add_many([draft for draft, _ in pairs], "bench")
    labelled = [(a.snippet.id, query) for a, (_, query) in zip(added, pairs, strict=True)]
    db.decide_many(sorted({i for i, _ in labelled}), "vetted", "bench", "stdlib")
    settings = StoreSettings(per_origin=100)
    found = {"BM25": _quality(Searcher(db, settings), labelled)}
    if installed():
        found["hybrid"] = _quality(Searcher(db, settings, WordLlamaEmbedder()), labelled)
    db.close()
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--snippets", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--labelled", type=int, default=5000, help="stdlib functions at most")
    args = parser.parse_args()
    embedder = WordLlamaEmbedder() if installed() else None
    pairs = stdlib_pairs(args.labelled)
    with tempfile.TemporaryDirectory(prefix="tether-store-bench-") as folder:
        root = Path(folder)
        code = root / "code"
        code.mkdir()
        names, weights = generate(code, args.snippets)
        db = SnippetStore(root / "store.sqlite")
        started = time.perf_counter()
        report = import_folder(db, code, "bench")
        import_s = time.perf_counter() - started
        db.decide_many([s.id for s in db.snippets(limit=args.snippets + 1)], "vetted", "b", "ok")
        rng = random.Random(1)
        queries = [" ".join(rng.choices(names, weights, k=3)) for _ in range(args.queries // 2)]
        queries += [query for _, query in pairs[: args.queries - len(queries)]]
        settings = StoreSettings(per_origin=100)
        lexical = Searcher(db, settings)
        _latencies(lexical, queries[:20])  # warm the page cache
        bm25_ms = _latencies(lexical, queries)
        results: dict[str, object] = {
            "snippets": report.added,
            "import": {"seconds": import_s, "per_second": report.added / import_s},
            "bm25_ms": {"p50": statistics.median(bm25_ms), "p95": percentile(bm25_ms, 95)},
        }
        rows = [
            ["import (snippets/s)", f"{report.added / import_s:,.0f}", ">= 2,000"],
            ["BM25 search p50 (ms)", f"{statistics.median(bm25_ms):.2f}", "<= 5"],
            ["BM25 search p95 (ms)", f"{percentile(bm25_ms, 95):.2f}", ""],
        ]
        if embedder is not None:
            hybrid = Searcher(db, settings, embedder)
            started = time.perf_counter()
            hybrid.search("warm up", 5)  # embeds every vetted snippet once
            embed_s = time.perf_counter() - started
            hybrid_ms = _latencies(hybrid, queries)
            results["embed_all_seconds"] = embed_s
            results["hybrid_ms"] = {
                "p50": statistics.median(hybrid_ms),
                "p95": percentile(hybrid_ms, 95),
            }
            rows += [
                ["hybrid search p50 (ms)", f"{statistics.median(hybrid_ms):.2f}", "<= 20"],
                ["hybrid search p95 (ms)", f"{percentile(hybrid_ms, 95):.2f}", ""],
                ["embedding every snippet (s)", f"{embed_s:.1f}", "once"],
            ]
        db.close()
        results["quality"] = found = quality(pairs, root)
    print_table(["figure", "value", "goal"], rows)
    print_table(
        ["ranker", "recall@5", "MRR@10", "queries"],
        [
            [name, f"{q['recall@5']:.3f}", f"{q['mrr@10']:.3f}", q["queries"]]
            for name, q in found.items()
        ],
    )
    print(f"wrote {write_result('store', results)}")


if __name__ == "__main__":
    main()
