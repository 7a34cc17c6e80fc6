"""Every suite loads from its release file, and its reference solutions pass in the sandbox."""

from __future__ import annotations

import gzip
import json
import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tether.errors import ConfigError
from tether.evals.datasets import SUITES, iter_samples, load
from tether.evals.scoring import TIME_FLOOR_S, Scorer

DATASETS = Path(__file__).resolve().parents[3] / "shared" / "datasets"
SIZES = {
    "humaneval": 164,
    "humaneval+": 164,
    "mbpp+": 378,
    "humaneval-fim-single": 1033,
    "humaneval-fim-multi": 5815,
    "humaneval-fim-span": 164,
}
PER_SUITE = 12  # a bounded sample of each suite's tasks, spread over the whole suite


@pytest.mark.parametrize("name", sorted(SUITES))
def test_references_pass(name: str, tmp_path: Path) -> None:
    dataset = load(name, DATASETS)
    assert len(dataset.problems) == SIZES[name]
    step = max(1, len(dataset.problems) // PER_SUITE)
    # HumanEval+'s test for task 32 cannot pass: its check unpacks a float (a known erratum).
    chosen = [p for p in dataset.problems[::step] if p.task_id != "HumanEval/32"][:PER_SUITE]
    scorer = Scorer(dataset, tmp_path)
    scorer.measure_references(p.task_id for p in chosen)
    with ThreadPoolExecutor(2) as pool:
        verdicts = list(pool.map(lambda p: scorer.verdict(p, 0, p.reference), chosen))
    assert [v.status for v in verdicts] == ["passed"] * len(chosen)
    if dataset.suite.mode == "fim":
        assert all(v.exact for v in verdicts)
    wrong = scorer.verdict(chosen[0], 0, "\n    return 12345\n")
    assert not wrong.passed


def test_a_damaged_reference_time_is_measured_again_not_trusted(tmp_path: Path) -> None:
    dataset = load("humaneval", None)
    cache = tmp_path / f"reference-times-{dataset.sha256[:16]}.json"
    # Valid JSON, but not times: each entry is dropped, the good one kept.
    cache.write_text(
        '{"HumanEval/0": null, "HumanEval/1": "x", "HumanEval/2": Infinity, '
        '"HumanEval/3": -1, "HumanEval/4": true, "HumanEval/5": NaN, "HumanEval/6": 0.5}'
    )
    scorer = Scorer(dataset, tmp_path)
    for task in ("HumanEval/0", "HumanEval/2", "HumanEval/3", "HumanEval/5"):
        assert scorer.timeout_for(dataset.get(task)) == TIME_FLOOR_S
    assert scorer.timeout_for(dataset.get("HumanEval/6")) == TIME_FLOOR_S  # 4 * 0.5 + 1
    scorer.measure_references(["HumanEval/0", "HumanEval/6"])  # the damaged one again
    kept = json.loads(cache.read_text())
    assert set(kept) == {"HumanEval/0", "HumanEval/6"} and kept["HumanEval/6"] == 0.5


@pytest.mark.parametrize("damage", ["cut short", "damaged inside", "not gzip"])
def test_a_samples_file_that_is_not_whole_gzip_is_explained(damage: str, tmp_path: Path) -> None:
    # Completions that do not repeat, so that the compressed stream is long enough to damage.
    words = random.Random(0).choices(["a", "b", "c", "return", "x", "+", "1"], k=4000)
    lines = [{"task_id": f"HumanEval/{i}", "completion": " ".join(words[i::40])} for i in range(40)]
    data = gzip.compress("".join(json.dumps(line) + "\n" for line in lines).encode())
    if damage == "cut short":
        data = data[: len(data) // 2]
    elif damage == "damaged inside":
        data = data[:12] + bytes([data[12] ^ 0xFF]) + data[13:]
    else:
        data = b"task_id, completion\n"
    path = tmp_path / "samples.jsonl.gz"
    path.write_bytes(data)
    with pytest.raises(ConfigError, match=r"samples\.jsonl\.gz: it is not a whole gzip file"):
        list(iter_samples(path))


def test_samples_may_hold_line_separators_and_mbpp_s_number_ids(tmp_path: Path) -> None:
    """JSON text may hold U+2028 and U+0085 as they are (json.dumps with ensure_ascii off
    writes them), and MBPP's task ids are numbers: both were refused."""
    path = tmp_path / "samples.jsonl"
    separated = "    return 1  # a\u2028b\u0085c\n"
    rows = [
        {"task_id": "HumanEval/0", "completion": separated},
        {"task_id": 2, "completion": "    return 2\n"},
    ]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    read = list(iter_samples(path))
    assert [r["task_id"] for r in read] == ["HumanEval/0", "2"]
    assert read[0]["completion"] == separated


def test_samples_in_utf_16_are_named_so(tmp_path: Path) -> None:
    """Windows PowerShell 5.1's ``>`` writes UTF-16: the refusal quoted Python's codec
    ("'utf-8' codec can't decode byte 0xff in position 0")."""
    path = tmp_path / "samples.jsonl"
    path.write_text('{"task_id": "HumanEval/0", "completion": "    return 1\\n"}\n', "utf-16")
    with pytest.raises(
        ConfigError, match=r"samples\.jsonl is not UTF-8 text: it begins with a UTF-16 byte-order"
    ):
        list(iter_samples(path))
