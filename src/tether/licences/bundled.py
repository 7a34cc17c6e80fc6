"""Native libraries a wheel carries inside it, and the licences its licence files give them.

A wheel repaired for manylinux (auditwheel) or Windows (delvewheel) copies the shared
libraries its extensions link into ``NAME.libs/``, one for macOS (delocate) into
``.dylibs/``: numpy's carries OpenBLAS and the GCC runtime (libgfortran, libquadmath).
They ship under their own licences, which the wheel's licence file lists in blocks, as
numpy's and scipy's do::

    Name: GCC runtime library
    Files: numpy.libs/libgfortran*.so
    License: GPL-3.0-or-later WITH GCC-exception-3.1

Each block whose ``Files`` match files the wheel installed is a bundled part with that
licence (a glob ``lib*.so`` matches the versioned ``lib-1a2b.so.5.0.0`` auditwheel
writes). A library in those folders that no block names has no known licence: a review
does not pass on a guess.
"""

from __future__ import annotations

import fnmatch
import hashlib
import importlib.metadata as metadata
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from tether.licences.identify import UNKNOWN, Identified, from_name

# A block: "Name:" then the fields that follow it, one a line, until a line that is not one.
_BLOCK = re.compile(
    r"^Name:[ \t]*(?P<name>\S[^\n]*)\n(?P<fields>(?:[A-Z][A-Za-z-]*:[ \t]*[^\n]*(?:\n|$))+)",
    re.MULTILINE,
)
_FIELD = re.compile(r"^(?P<key>[A-Z][A-Za-z-]*):[ \t]*(?P<value>.*)$", re.MULTILINE)
# What follows ".so" in a versioned shared library's name (libgfortran-…so.5.0.0).
_SO_VERSION = re.compile(r"(\.so)(?:\.\d+)+$")
_LICENCE_NAMES = ("LICENSE", "LICENCE", "COPYING", "NOTICE")


@dataclass(frozen=True)
class Bundled:
    """A part a distribution ships inside it, under a licence of its own."""

    name: str  # as the licence file names it, else the library's file name
    licence: Identified
    files: tuple[tuple[str, str], ...]  # (path as the RECORD writes it, its sha256)
    licence_file: str | None = None  # where the licence is said, as the RECORD writes it
    description: str | None = None
    url: str | None = None  # where the licence file says it is available


def licence_files(
    dist: metadata.Distribution, files: list[metadata.PackagePath]
) -> list[tuple[str, str]]:
    """The licence files a distribution ships in its metadata folder, (path, text): those
    named LICENSE, COPYING and the like first, then the rest of PEP 639's ``licenses/``.
    ``files``: its files, as its RECORD lists them."""
    named, others = [], []
    for file in files:
        path = PurePosixPath(str(file))
        in_metadata = [p for p in path.parts[:-1] if p.endswith(".dist-info")]
        if not in_metadata:
            continue
        if path.name.upper().startswith(_LICENCE_NAMES):
            named.append(file)
        elif "licenses" in path.parts[path.parts.index(in_metadata[0]) + 1 : -1]:
            others.append(file)
    texts = []
    for file in [*named, *others]:
        try:
            texts.append((str(file), Path(str(dist.locate_file(file))).read_text(errors="replace")))
        except OSError:
            continue
    return texts


def _library_folder(path: PurePosixPath) -> bool:
    """Whether ``path`` lies where wheel repair tools put the libraries they copy in."""
    return (len(path.parts) > 1 and path.parts[0].endswith(".libs")) or ".dylibs" in path.parts[:-1]


def _matches(path: str, pattern: str) -> bool:
    return fnmatch.fnmatchcase(path, pattern) or fnmatch.fnmatchcase(
        _SO_VERSION.sub(r"\1", path), pattern
    )


def _sha256(dist: metadata.Distribution, path: str) -> str | None:
    try:
        with Path(str(dist.locate_file(path))).open("rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()
    except OSError:
        return None


def bundled(
    dist: metadata.Distribution,
    files: list[metadata.PackagePath],
    licences: list[tuple[str, str]],
) -> tuple[Bundled, ...]:
    """What ``dist`` bundles: each part its licence files (``licences``, as
    :func:`licence_files` reads them) name whose files it installed (``files``), then each
    library in a repair tool's folder that none names."""
    installed = [str(file) for file in files if not str(file).endswith((".pyc", "RECORD"))]
    libraries = [path for path in installed if _library_folder(PurePosixPath(path))]
    hashes: dict[str, str | None] = {}

    def hashed(paths: list[str]) -> tuple[tuple[str, str], ...]:
        for path in paths:
            if path not in hashes:
                hashes[path] = _sha256(dist, path)
        return tuple((path, digest) for path in paths if (digest := hashes[path]) is not None)

    parts: list[Bundled] = []
    named: set[str] = set()
    for source, text in licences:
        for block in _BLOCK.finditer(text):
            fields = {
                m["key"].lower(): m["value"].strip() for m in _FIELD.finditer(block["fields"])
            }
            patterns = [p for p in re.split(r"[,\s]+", fields.get("files", "")) if p]
            its = [path for path in installed if any(_matches(path, p) for p in patterns)]
            if not its:  # a part of another platform's wheel, or one with no files named
                continue
            named.update(its)
            written = fields.get("license", "")
            found = from_name(written) if written else None
            parts.append(
                Bundled(
                    name=block["name"].strip(),
                    licence=Identified(found or UNKNOWN, "licence file" if found else "none"),
                    files=hashed(its),
                    licence_file=source,
                    description=fields.get("description") or None,
                    url=fields.get("availability") or None,
                )
            )
    for path in libraries:
        if path not in named:
            parts.append(
                Bundled(PurePosixPath(path).name, Identified(UNKNOWN, "none"), hashed([path]))
            )
    return tuple(parts)
