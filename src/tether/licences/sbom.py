"""The inventory as a CycloneDX 1.6 SBOM (JSON), built with the CycloneDX library.

tether (as the tool that wrote it, with its version) and the component it describes are
in the metadata; every package is a component with its package URL, its licence, its
authors and its maintainers (as the ``supplier``), and a SHA-256 of what is installed
(the wheel's, where the installer recorded it, else its RECORD's, which holds the hash of
every installed file; ``tether:sha256:of`` says which). What a wheel bundles (native
libraries, under licences of their own) are components nested in it, with the files
they are and those files' hashes. The model is a ``machine-learning-model`` component
with its file's hash and, where it comes in a wheel, that wheel's package URL with the
file's path in it as the subpath.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from cyclonedx.contrib.license.factories import LicenseFactory
from cyclonedx.model import (
    ExternalReference,
    ExternalReferenceType,
    HashAlgorithm,
    HashType,
    Property,
    XsUri,
)
from cyclonedx.model.bom import Bom
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.model.component_evidence import ComponentEvidence, Occurrence
from cyclonedx.model.contact import OrganizationalContact, OrganizationalEntity
from cyclonedx.model.license import DisjunctiveLicense, License, LicenseExpression
from cyclonedx.output.json import JsonV1Dot6
from packageurl import PackageURL
from packaging.utils import canonicalize_name

from tether.licences.bundled import Bundled
from tether.licences.identify import UNKNOWN, Identified
from tether.licences.inventory import Inventory, Package, Person
from tether.licences.policy import Verdict

_TYPES = {
    "application": ComponentType.APPLICATION,
    "library": ComponentType.LIBRARY,
    "machine-learning-model": ComponentType.MACHINE_LEARNING_MODEL,
}


def _licences(licence: Identified) -> list[License]:
    if licence.expression == UNKNOWN:
        return []
    found = LicenseFactory().make_from_string(licence.expression)
    if isinstance(found, DisjunctiveLicense) and found.id is None:
        # An expression with a LicenseRef-…: still an expression, not a licence's name.
        found = LicenseExpression(licence.expression)
    return [found]


def _verdict(licence: Identified, verdict: Verdict) -> list[Property]:
    return [
        Property(name="tether:licence:source", value=licence.source),
        Property(name="tether:licence:verdict", value="pass" if verdict.ok else "fail"),
        Property(name="tether:licence:reason", value=verdict.reason),
    ]


def _contacts(people: Iterable[Person]) -> list[OrganizationalContact]:
    return [OrganizationalContact(name=p.name, email=p.email) for p in people]


def _supplier(package: Package) -> OrganizationalEntity | None:
    """Who supplies the package, as its metadata says: its maintainers."""
    if not package.maintainers:
        return None
    names = [p.name for p in package.maintainers if p.name]
    return OrganizationalEntity(
        name=names[0] if len(names) == 1 else ", ".join(names) or None,
        contacts=_contacts(package.maintainers),
    )


def _sha256(digest: str | None) -> list[HashType]:
    return [HashType(alg=HashAlgorithm.SHA_256, content=digest)] if digest else []


def _bundled(part: Bundled, verdict: Verdict, ref: str) -> Component:
    properties = [*_verdict(part.licence, verdict)]
    if part.licence_file:
        properties.append(Property(name="tether:licence:file", value=part.licence_file))
    return Component(
        name=part.name,
        type=ComponentType.LIBRARY,
        bom_ref=ref,
        description=part.description,
        licenses=_licences(part.licence),
        # One file is the part: its hash is the part's. Several: each file's, in evidence.
        hashes=_sha256(part.files[0][1]) if len(part.files) == 1 else [],
        external_references=(
            [ExternalReference(type=ExternalReferenceType.WEBSITE, url=XsUri(part.url))]
            if part.url and part.url.startswith(("https://", "http://"))
            else []
        ),
        evidence=ComponentEvidence(
            occurrences=[
                Occurrence(location=path, additional_context=f"sha256:{digest}")
                for path, digest in part.files
            ]
        )
        if part.files
        else None,
        properties=properties,
    )


def _purl(package: Package) -> PackageURL | None:
    if package.kind != "machine-learning-model":
        return PackageURL(
            type="pypi", name=str(canonicalize_name(package.name)), version=package.version
        )
    if package.carrier is not None:  # the wheel it comes in, and where in it
        return PackageURL(
            type="pypi",
            name=str(canonicalize_name(package.carrier.name)),
            version=package.carrier.version,
            subpath=package.carrier.member,
        )
    return None


def _component(package: Package, verdict: Verdict, parts: list[Verdict]) -> Component:
    ref = f"{package.kind}:{canonicalize_name(package.name)}@{package.version}"
    properties = _verdict(package.licence, verdict)
    if package.sha256_of:
        properties.append(Property(name="tether:sha256:of", value=package.sha256_of))
    seen: dict[str, int] = {}
    nested = []
    for part, part_verdict in zip(package.bundled, parts, strict=True):
        slug = str(canonicalize_name(part.name)).replace(" ", "-")
        seen[slug] = seen.get(slug, 0) + 1
        suffix = f"-{seen[slug]}" if seen[slug] > 1 else ""
        nested.append(_bundled(part, part_verdict, f"{ref}/bundled:{slug}{suffix}"))
    return Component(
        name=package.name,
        version=package.version,
        type=_TYPES[package.kind],
        bom_ref=ref,
        purl=_purl(package),
        licenses=_licences(package.licence),
        hashes=_sha256(package.sha256),
        authors=_contacts(package.authors),
        supplier=_supplier(package),
        manufacturer=(
            OrganizationalEntity(name=package.organisation) if package.organisation else None
        ),
        components=nested,
        properties=properties,
    )


def cyclonedx_json(
    inventory: Inventory,
    model: Package | None,
    verdicts: dict[str, Verdict],
    parts: dict[str, list[Verdict]] | None = None,
) -> str:
    """The SBOM, as a file holds it (ending in a newline): tether as the described
    component and the tool, every package (with what it bundles) and the model under it,
    with the dependency graph of the installed tree. ``parts``: by package name, the
    verdict on each bundled part's licence."""
    bom = Bom()
    every = [*inventory.packages, *([model] if model else [])]
    components = {
        p.name: _component(p, verdicts[p.name], (parts or {}).get(p.name, [])) for p in every
    }
    root = components[inventory.root.name]
    bom.metadata.component = root
    bom.metadata.supplier = root.supplier
    bom.metadata.tools.components.add(
        Component(
            name=inventory.root.name,
            version=inventory.root.version,
            type=ComponentType.APPLICATION,
            bom_ref=f"tool:{inventory.root.name}@{inventory.root.version}",
            purl=_purl(inventory.root),
        )
    )
    by_canonical = {str(canonicalize_name(name)): c for name, c in components.items()}
    for package in inventory.packages[1:]:
        bom.components.add(components[package.name])
    for package in inventory.packages:
        needs = [by_canonical[n] for n in package.requires if n in by_canonical]
        bom.register_dependency(components[package.name], needs)
    if model is not None:
        bom.components.add(components[model.name])
        bom.register_dependency(root, [components[model.name]])
    return str(JsonV1Dot6(bom).output_as_string(indent=2)) + "\n"


def digest(document: str) -> str:
    """The digest of ``document`` as written, so that ``sha256sum`` of the file agrees."""
    return "sha256:" + hashlib.sha256(document.encode()).hexdigest()
