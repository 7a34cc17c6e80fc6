"""Licence review: every shipped package's and the model's SPDX licence, a policy, an SBOM."""

from tether.licences.inventory import Inventory, Package, collect, model_package
from tether.licences.policy import LicencePolicy, Verdict

__all__ = ["Inventory", "LicencePolicy", "Package", "Verdict", "collect", "model_package"]
