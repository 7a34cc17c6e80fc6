from __future__ import annotations

import pytest

from tether.policy import Scanner


@pytest.fixture(scope="session")
def scanner() -> Scanner:
    """The built-in rules with default actions, as from default settings."""
    return Scanner()
