from __future__ import annotations

from tether.policy import Scanner
from tether.policy.validators import random_looking


def test_type_annotations_are_not_secrets() -> None:
    assert not random_looking("FimTokens")
    assert random_looking("FimT0kens")
    source = "    fim_tokens: FimTokens | None = None\n    auth_token: AccessToken = load()\n"
    assert Scanner().scan(source) == []
