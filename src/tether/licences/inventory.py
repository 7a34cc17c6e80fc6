"""What tether ships: its installed dependency tree, each package's licence, and the model.

The tree starts at tether with the extras installed here (or those asked for) and follows
each requirement whose environment marker holds, with the extras it asks for.
"""

from __future__ import annotations

import importlib.metadata as metadata
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tether.errors import ConfigError
from tether.licences.identify import (
    PUBLIC_DOMAIN,
    UNKNOWN,
    Identified,
    from_name,
    identify,
    public_domain,
    spdx,
)
from tether.settings import Settings

ROOT = "tether"
_LICENCE_FILES = ("LICENSE", "LICENCE", "COPYING", "NOTICE")


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    kind: str  # application (tether), library, or machine-learning-model
    licence: Identified
    requires: tuple[str, ...] = ()  # canonical names of the packages it needs here
    sha256: str | None = None
    path: str | None = None  # the model file


@dataclass
class Inventory:
    root: Package
    packages: list[Package]  # the root first, then by name; the model last
    extras: list[str]
    missing: list[str] = field(default_factory=list)  # required here, not installed


def _licence_texts(dist: metadata.Distribution) -> list[str]:
    texts = []
    for file in dist.files or []:
        if Path(str(file)).name.upper().startswith(_LICENCE_FILES) and ".dist-info" in str(file):
            try:
                texts.append(Path(str(dist.locate_file(file))).read_text(errors="replace"))
            except OSError:
                continue
    return texts


def _identified(dist: metadata.Distribution) -> Identified:
    meta = dist.metadata
    return identify(
        meta["License-Expression"],
        meta["License"],
        meta.get_all("Classifier") or [],
        _licence_texts(dist),
    )


def installed_extras(dist: metadata.Distribution) -> list[str]:
    """Extras of ``dist`` whose every requirement is installed."""
    extras = []
    for extra in dist.metadata.get_all("Provides-Extra") or []:
        needed = [
            Requirement(r)
            for r in dist.requires or []
            if (req := Requirement(r)).marker is not None
            and req.marker.evaluate({"extra": extra})
            and not req.marker.evaluate({"extra": ""})
        ]
        if needed and all(_installed(r.name) for r in needed):
            extras.append(extra)
    return extras


def _installed(name: str) -> metadata.Distribution | None:
    try:
        return metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return None


# Per package reached: its distribution, the extras followed so far and what it needs here.
_Found = dict[str, tuple[metadata.Distribution, set[str], list[str]]]


def _walk(
    root_dist: metadata.Distribution, extras: Iterable[str]
) -> tuple[_Found, list[tuple[str, str]]]:
    """The installed tree from ``root_dist`` with ``extras``, and what it needs that is not
    installed: (its name, the name of the package that needs it)."""
    # A package reached again with other extras (uvicorn, then uvicorn[standard];
    # tether[test] asking for tether[check]) adds what those extras need.
    found: _Found = {}
    missing: list[tuple[str, str]] = []
    queue: deque[tuple[metadata.Distribution, set[str]]] = deque([(root_dist, set(extras))])
    while queue:
        dist, wanted = queue.popleft()
        name = canonicalize_name(dist.metadata["Name"])
        first = name not in found
        _, done, needs = found.setdefault(name, (dist, set(), []))
        new = wanted - done
        if not first and not new:
            continue
        done |= new
        marker_env = [{"extra": e} for e in new] + ([{"extra": ""}] if first else [])
        for line in dist.requires or []:
            req = Requirement(line)
            if req.marker is not None and not any(req.marker.evaluate(env) for env in marker_env):
                continue
            if not first and (req.marker is None or req.marker.evaluate({"extra": ""})):
                continue  # followed on the first visit
            child = _installed(req.name)
            if child is None:
                missing.append((req.name, dist.metadata["Name"]))
                continue
            if canonicalize_name(req.name) != name:
                needs.append(canonicalize_name(req.name))
            queue.append((child, set(req.extras)))
    return found, missing


def _root() -> metadata.Distribution:
    root_dist = _installed(ROOT)
    if root_dist is None:  # pragma: no cover - tether runs from an installed distribution
        raise ConfigError("tether is not installed as a distribution; install it with pip")
    return root_dist


def collect(extras: list[str] | None = None) -> Inventory:
    root_dist = _root()
    known = set(root_dist.metadata.get_all("Provides-Extra") or [])
    if extras is not None:
        # Named as pip takes them (tether[Embedded]): extras compare normalised (PEP 685).
        extras = [str(canonicalize_name(extra)) for extra in extras]
        if unknown := sorted(set(extras) - known):
            raise ConfigError(
                f"tether has no extra {', '.join(map(repr, unknown))}; it has "
                f"{', '.join(sorted(known))}"
            )
    chosen = installed_extras(root_dist) if extras is None else extras
    found, missing = _walk(root_dist, chosen)
    seen = {
        name: Package(
            name=dist.metadata["Name"],
            version=dist.version,
            kind="application" if name == ROOT else "library",
            licence=_identified(dist),
            requires=tuple(dict.fromkeys(needs)),
        )
        for name, (dist, _, needs) in found.items()
    }
    root = seen.pop(ROOT)
    packages = [root, *sorted(seen.values(), key=lambda p: canonicalize_name(p.name))]
    extras = sorted(found[ROOT][1])
    unreviewed = sorted({f"{name} (needed by {by})" for name, by in missing})
    return Inventory(root, packages, extras, unreviewed)


def needed_by_any_extra() -> set[str]:
    """Canonical names of the packages tether needs with every extra it has: those
    installed, and those its installed packages require that are not."""
    root_dist = _root()
    found, missing = _walk(root_dist, root_dist.metadata.get_all("Provides-Extra") or [])
    return set(found) | {str(canonicalize_name(name)) for name, _ in missing}


def installed(name: str) -> bool:
    return _installed(name) is not None


def model_package(settings: Settings) -> Package | None:
    """The embedded model, with the licence its GGUF metadata declares; None for a gateway."""
    if settings.engine.kind != "llamacpp":
        return None
    from tether.models import file_sha256, read_gguf, resolve_model_path

    path = resolve_model_path(settings.engine.model_path)
    meta, _ = read_gguf(path)
    declared = meta.get("general.license", "")
    found = (
        spdx(declared)
        or from_name(declared)
        or (PUBLIC_DOMAIN if public_domain(declared) else None)
        if declared
        else None
    )
    licence = Identified(found or UNKNOWN, "GGUF general.license" if found else "none")
    sha256 = file_sha256(path, settings.data.home / "cache")
    return Package(
        name=settings.engine.model_id or path.name.removesuffix(".gguf"),
        version=meta.get("general.version") or f"sha256-{sha256[:12]}",
        kind="machine-learning-model",
        licence=licence,
        sha256=sha256,
        path=str(path),
    )
