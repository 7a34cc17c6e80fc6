"""What a FIM request searches the store for: whole lines around the cursor."""

from __future__ import annotations

import pytest

from tether.engines.base import SamplingParams
from tether.pipeline.fim import FimInput
from tether.pipeline.task import FimTask
from tether.settings import StoreSettings
from tether.store.retrieval import FIM_LINES_AFTER, FIM_LINES_BEFORE, Retriever


def _query(prefix: str, suffix: str) -> str:
    retriever = Retriever(None, StoreSettings())  # type: ignore[arg-type]  # not searched
    task = FimTask(SamplingParams(max_tokens=8), FimInput(prefix, suffix))
    return retriever._query_and_budget(task)[0]


@pytest.mark.parametrize("odd", ["\u2028", "\f", "\x85", "\x1c", "\u2029", "\v"])
def test_a_fim_query_reads_whole_lines_past_a_character_splitlines_ends_them_at(
    odd: str,
) -> None:
    # A file's lines end at \n, \r\n and \r alone: str.splitlines() also ends one at
    # these, and the query kept part of the cursor's line, or of the one after it.
    before = [f"b{i}" for i in range(FIM_LINES_BEFORE - 1)]
    prefix = "\n".join(["far = 1", *before, f"near = {odd}cursor("])
    suffix = f"){odd}tail\n" + "\n".join(f"a{i}" for i in range(FIM_LINES_AFTER + 2))
    query = _query(prefix, suffix)
    assert query.startswith("b0\n") and "far" not in query
    assert f"near = {odd}cursor(\n){odd}tail\n" in query
    assert query.endswith(f"a{FIM_LINES_AFTER - 2}")


@pytest.mark.parametrize("end", ["\n", "\r\n", "\r"])
def test_a_fim_query_counts_lines_as_files_end_them(end: str) -> None:
    prefix = end.join(f"b{i}" for i in range(FIM_LINES_BEFORE + 3)) + end + "x = "
    suffix = "1" + end + end.join(f"a{i}" for i in range(FIM_LINES_AFTER + 3)) + end
    query = _query(prefix, suffix)
    assert query.split("\n")[0] == "b4" and query.split("\n")[-1] == f"a{FIM_LINES_AFTER - 2}"
    assert "\r" not in query
