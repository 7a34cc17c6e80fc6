"""What tether ships: its installed dependency tree, each package's licence, and the model.

The tree starts at tether with the extras installed here (or those asked for) and follows
each requirement whose environment marker holds, with the extras it asks for.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as metadata
import json
import re
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from email.utils import getaddresses
from pathlib import Path, PurePosixPath

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tether.errors import ConfigError
from tether.licences.bundled import Bundled, bundled, licence_files
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
# An address as the metadata's e-mail fields write one (not "jane at example dot org").
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


@dataclass(frozen=True)
class Person:
    """An author or maintainer, as the metadata names them."""

    name: str | None
    email: str | None = None


@dataclass(frozen=True)
class Carrier:
    """The installed distribution a file comes in, and the file's path in it."""

    name: str
    version: str
    member: str  # as its RECORD writes it


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    kind: str  # application (tether), library, or machine-learning-model
    licence: Identified
    requires: tuple[str, ...] = ()  # canonical names of the packages it needs here
    sha256: str | None = None
    sha256_of: str | None = None  # what was hashed: the model file, a RECORD, the wheel
    path: str | None = None  # the model file
    bundled: tuple[Bundled, ...] = ()  # native libraries inside it, under their licences
    authors: tuple[Person, ...] = ()
    maintainers: tuple[Person, ...] = ()
    organisation: str | None = None  # a model's, as its metadata names it
    carrier: Carrier | None = None  # the distribution a model file comes in


@dataclass
class Inventory:
    root: Package
    packages: list[Package]  # the root first, then by name; the model last
    extras: list[str]
    missing: list[str] = field(default_factory=list)  # required here, not installed


def _identified(dist: metadata.Distribution, licences: list[tuple[str, str]]) -> Identified:
    meta = dist.metadata
    return identify(
        meta["License-Expression"],
        meta["License"],
        meta.get_all("Classifier") or [],
        [text for _, text in licences],
    )


def people(name: str | None, emails: str | None) -> tuple[Person, ...]:
    """The people an ``Author``/``Maintainer`` field and its ``-email`` field name: each
    address with its name (``Jane Doe <jane@example.org>``), else the name alone."""
    found = [
        Person(who.strip() or None, address)
        for who, address in (getaddresses([emails]) if emails else [])
        if _EMAIL.fullmatch(address)
    ]
    if emails and emails.strip() and not found:  # no address in it: still a name
        found.append(Person(" ".join(emails.split())))
    written = " ".join(name.split()) if name else ""
    if written and written.upper() != "UNKNOWN" and written not in {p.name for p in found}:
        found.insert(0, Person(written))
    return tuple(found)


def dist_sha256(
    dist: metadata.Distribution, files: list[metadata.PackagePath] | None = None
) -> tuple[str, str] | None:
    """A SHA-256 that names what is installed, and what it is of: the wheel's own when the
    installer recorded it (PEP 610's ``direct_url.json``), else the distribution's RECORD,
    which holds the sha256 of every file it installed. None for an editable install, whose
    files are a working tree's."""
    try:
        direct = json.loads(dist.read_text("direct_url.json") or "{}")
    except json.JSONDecodeError:
        direct = {}
    if (direct.get("dir_info") or {}).get("editable"):
        return None
    archive = direct.get("archive_info") or {}
    digest = (archive.get("hashes") or {}).get("sha256") or (
        str(archive.get("hash", "")).partition("sha256=")[2] or None
    )
    if digest and re.fullmatch(r"[0-9a-f]{64}", digest):
        return digest, str(direct.get("url", "")).rsplit("/", 1)[-1] or "the archive installed"
    for file in dist.files or [] if files is None else files:
        path = PurePosixPath(str(file))
        if path.name == "RECORD" and path.parent.name.endswith(".dist-info"):
            try:
                content = Path(str(dist.locate_file(file))).read_bytes()
            except OSError:
                return None
            return hashlib.sha256(content).hexdigest(), str(path)
    return None


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
    seen = {name: _package(name, dist, needs) for name, (dist, _, needs) in found.items()}
    root = seen.pop(ROOT)
    packages = [root, *sorted(seen.values(), key=lambda p: canonicalize_name(p.name))]
    extras = sorted(found[ROOT][1])
    unreviewed = sorted({f"{name} (needed by {by})" for name, by in missing})
    return Inventory(root, packages, extras, unreviewed)


def _package(name: str, dist: metadata.Distribution, needs: list[str]) -> Package:
    meta = dist.metadata
    files = dist.files or []  # its RECORD, read once
    licences = licence_files(dist, files)
    hashed = dist_sha256(dist, files)
    return Package(
        name=meta["Name"],
        version=dist.version,
        kind="application" if name == ROOT else "library",
        licence=_identified(dist, licences),
        requires=tuple(dict.fromkeys(needs)),
        sha256=hashed[0] if hashed else None,
        sha256_of=hashed[1] if hashed else None,
        bundled=bundled(dist, files, licences),
        authors=people(meta["Author"], meta["Author-email"]),
        maintainers=people(meta["Maintainer"], meta["Maintainer-email"]),
    )


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
    author = meta.get("general.author")
    return Package(
        name=settings.engine.model_id or path.name.removesuffix(".gguf"),
        version=meta.get("general.version") or f"sha256-{sha256[:12]}",
        kind="machine-learning-model",
        licence=licence,
        sha256=sha256,
        sha256_of=path.name,
        path=str(path),
        authors=(Person(author),) if author else (),
        organisation=meta.get("general.organization") or None,
        carrier=carrier(path),
    )


def carrier(path: Path) -> Carrier | None:
    """The installed distribution whose RECORD lists ``path``: the wheel a model came in."""
    resolved = path.resolve()
    for dist in metadata.distributions():
        root = Path(str(dist.locate_file(""))).resolve()
        if resolved.is_relative_to(root):
            member = resolved.relative_to(root).as_posix()
            if any(str(file) == member for file in dist.files or []):
                return Carrier(dist.metadata["Name"], dist.version, member)
    return None
