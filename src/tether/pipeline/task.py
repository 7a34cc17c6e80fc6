"""A request as the pipeline sees it, whichever API or command it came from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tether.engines.base import SamplingParams
from tether.pipeline.fim import FimInput

TaskKind = Literal["completion", "chat", "fim"]


@dataclass(frozen=True)
class Task:
    kind: TaskKind
    params: SamplingParams
    prompt: str | None = None
    messages: list[dict[str, str]] | None = None
    fim: FimInput | None = None
    model: str | None = None
