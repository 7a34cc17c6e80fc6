"""A request as the pipeline sees it, whichever API or command it came from.

Three kinds, each a type of its own that refuses to exist half-formed: a plain
completion of a prompt, a chat, and a fill-in-the-middle at a cursor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from tether.engines.base import SamplingParams
from tether.errors import RequestError
from tether.pipeline.fim import FimInput

TaskKind = Literal["completion", "chat", "fim"]


@dataclass(frozen=True)
class CompletionTask:
    """Continue ``prompt`` as it stands."""

    params: SamplingParams
    prompt: str
    model: str | None = None
    kind: ClassVar[TaskKind] = "completion"


@dataclass(frozen=True)
class ChatTask:
    """Answer the last of ``messages`` (each ``{role, content}``)."""

    params: SamplingParams
    messages: list[dict[str, str]]
    model: str | None = None
    snippets: bool | None = None  # vetted snippets in the prompt; None: store.retrieve
    purpose: Literal["chat", "suggest"] = "chat"  # which snippet budget applies
    # The functions the answer must call one of, as the model is shown them in the system
    # message; empty where the answer is text.
    tools: str = ""
    kind: ClassVar[TaskKind] = "chat"

    def __post_init__(self) -> None:
        if not self.messages:
            raise RequestError(
                "messages is empty; send at least one {role, content} message", param="messages"
            )


@dataclass(frozen=True)
class FimTask:
    """Fill in the code between ``fim.prefix`` and ``fim.suffix``."""

    params: SamplingParams
    fim: FimInput
    model: str | None = None
    snippets: bool | None = None  # vetted snippets in the prompt; None: store.retrieve
    # Snippets (by body hash) not to retrieve: the code being rewritten, in evaluations.
    exclude_snippets: frozenset[str] = frozenset()
    kind: ClassVar[TaskKind] = "fim"


Task = CompletionTask | ChatTask | FimTask
