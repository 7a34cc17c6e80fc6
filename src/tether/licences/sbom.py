"""The inventory as a CycloneDX 1.6 SBOM (JSON), built with the CycloneDX library."""

from __future__ import annotations

import hashlib

from cyclonedx.contrib.license.factories import LicenseFactory
from cyclonedx.model import HashAlgorithm, HashType, Property
from cyclonedx.model.bom import Bom
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.model.license import DisjunctiveLicense, License, LicenseExpression
from cyclonedx.output.json import JsonV1Dot6
from packageurl import PackageURL
from packaging.utils import canonicalize_name

from tether.licences.identify import UNKNOWN
from tether.licences.inventory import Inventory, Package
from tether.licences.policy import Verdict

_TYPES = {
    "application": ComponentType.APPLICATION,
    "library": ComponentType.LIBRARY,
    "machine-learning-model": ComponentType.MACHINE_LEARNING_MODEL,
}


def _component(package: Package, verdict: Verdict) -> Component:
    licences: list[License] = []
    if package.licence.expression != UNKNOWN:
        found = LicenseFactory().make_from_string(package.licence.expression)
        if isinstance(found, DisjunctiveLicense) and found.id is None:
            # An expression with a LicenseRef-…: still an expression, not a licence's name.
            found = LicenseExpression(package.licence.expression)
        licences = [found]
    purl = None
    if package.kind != "machine-learning-model":
        purl = PackageURL(
            type="pypi", name=str(canonicalize_name(package.name)), version=package.version
        )
    hashes = []
    if package.sha256:
        hashes = [HashType(alg=HashAlgorithm.SHA_256, content=package.sha256)]
    return Component(
        name=package.name,
        version=package.version,
        type=_TYPES[package.kind],
        bom_ref=f"{package.kind}:{canonicalize_name(package.name)}@{package.version}",
        purl=purl,
        licenses=licences,
        hashes=hashes,
        properties=[
            Property(name="tether:licence:source", value=package.licence.source),
            Property(name="tether:licence:verdict", value="pass" if verdict.ok else "fail"),
            Property(name="tether:licence:reason", value=verdict.reason),
        ],
    )


def cyclonedx_json(
    inventory: Inventory, model: Package | None, verdicts: dict[str, Verdict]
) -> str:
    """The SBOM, as a file holds it (ending in a newline): tether as the described
    component, every package and the model under it, with the dependency graph of the
    installed tree."""
    bom = Bom()
    components = {p.name: _component(p, verdicts[p.name]) for p in inventory.packages}
    root = components[inventory.root.name]
    bom.metadata.component = root
    by_canonical = {str(canonicalize_name(name)): c for name, c in components.items()}
    for package in inventory.packages[1:]:
        bom.components.add(components[package.name])
    for package in inventory.packages:
        needs = [by_canonical[n] for n in package.requires if n in by_canonical]
        bom.register_dependency(components[package.name], needs)
    if model is not None:
        model_component = _component(model, verdicts[model.name])
        bom.components.add(model_component)
        bom.register_dependency(root, [model_component])
    return str(JsonV1Dot6(bom).output_as_string(indent=2)) + "\n"


def digest(document: str) -> str:
    """The digest of ``document`` as written, so that ``sha256sum`` of the file agrees."""
    return "sha256:" + hashlib.sha256(document.encode()).hexdigest()
