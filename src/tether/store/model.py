"""What the function store keeps: snippets, their versions and the decisions about them."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal, get_args

State = Literal["candidate", "vetted", "rejected", "retired"]
STATES: tuple[State, ...] = get_args(State)


@dataclass(frozen=True)
class Origin:
    """Where a snippet's code came from."""

    path: str = ""  # the file, relative to the repository when there is one
    repository: str = ""  # a URL or a folder
    commit: str = ""
    line: int = 0


@dataclass(frozen=True)
class Draft:
    """A snippet as offered to the store, before it has an id."""

    name: str
    language: str
    code: str  # the whole definition
    body_hash: str  # split.normalised_hash of ``code``
    signature: str = ""
    docstring: str = ""
    tags: tuple[str, ...] | None = None  # None: the current version's, for an edit
    origin: Origin = field(default_factory=Origin)
    licence: str = ""  # an SPDX expression, "" when unknown
    test: str | None = None  # code that exercises it (Python: runs after it); "" removes it
    callable: bool = False  # asked to be callable once vetted


@dataclass(frozen=True)
class Version:
    version: int
    code: str
    body_hash: str
    signature: str
    docstring: str
    tags: tuple[str, ...]
    origin: Origin
    licence: str
    test: str
    created: float
    author: str


@dataclass(frozen=True)
class Decision:
    version: int
    state: State
    principal: str
    reason: str
    at: float
    gates: list[dict[str, Any]] = field(default_factory=list)  # what the gates found
    hash: str = ""  # the body hash of the version decided


@dataclass(frozen=True)
class Snippet:
    id: int
    name: str
    language: str
    state: State
    callable: bool
    created: float
    updated: float
    current: Version
    served: int | None = None  # the vetted version in service, while ``current`` is reviewed

    @property
    def reference(self) -> dict[str, Any]:
        """How answers and audit records name it: id, version and hash."""
        return {"id": self.id, "version": self.current.version, "hash": self.current.body_hash}

    def as_record(self) -> dict[str, Any]:
        current = asdict(self.current)
        current["tags"] = list(self.current.tags)
        # "created" is the snippet's, as the dashboard shows it; the version's is its own.
        current["version_created"] = current.pop("created")
        return {
            "id": self.id,
            "name": self.name,
            "language": self.language,
            "state": self.state,
            "callable": self.callable,
            "created": self.created,
            "updated": self.updated,
            "served_version": self.served,
            **current,
        }


@dataclass(frozen=True)
class Added:
    """What adding a draft did."""

    snippet: Snippet
    # "withdrawn": the code offered is the version in service again, so the edit that
    # waited for review is withdrawn.
    outcome: Literal["added", "new version", "unchanged", "duplicate", "withdrawn"]
    # The rejection a withdrawal made, as recorded: what the audit log is told.
    withdrawal: Decision | None = None
