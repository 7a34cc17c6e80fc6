"""Secrets the policy kept from the model go back where its file keeps their placeholders."""

from __future__ import annotations

from tether.compliance.secrets import policy_secret_scan
from tether.suggestions.secrets import put_back_secrets

KEY = "AKIAIOSFODNN7EXAMPLE"
OTHER = "AKIAI44QH8DHBEXAMPLE"
PLACEHOLDER = "[REDACTED:aws-access-key-id]"


def _put_back(source: str, proposed: str) -> tuple[str, list[int]]:
    found = policy_secret_scan()(source)
    assert found, "the scanner finds the key"
    put_back = put_back_secrets(source, proposed, found)
    return put_back.text, put_back.unsure


def test_a_kept_line_gets_its_secret_back() -> None:
    source = f'AWS_KEY = "{KEY}"\n\n\ndef region():\n    return "us-east-1"\n'
    answer = f'AWS_KEY = "{PLACEHOLDER}"\n\n\ndef region():\n    """R."""\n    return "us-east-1"\n'
    assert _put_back(source, answer) == (answer.replace(PLACEHOLDER, KEY), [])


def test_each_kept_or_moved_line_gets_its_own_secret_in_a_file_with_two() -> None:
    source = f'A = "{KEY}"\nB = "{OTHER}"\n'
    answer = f'B = "{PLACEHOLDER}"\nA = "{PLACEHOLDER}"\nC = 3\n'  # A moved below B
    assert _put_back(source, answer) == (f'B = "{OTHER}"\nA = "{KEY}"\nC = 3\n', [])


def test_a_changed_line_whose_secret_could_be_either_is_reported() -> None:
    source = f'A = "{KEY}"\nB = "{OTHER}"\n'
    answer = f'A = "{PLACEHOLDER}"\nB = "{PLACEHOLDER}"\nC = "{PLACEHOLDER}"\n'
    text, unsure = _put_back(source, answer)
    assert unsure == [3]
    assert text.startswith(f'A = "{KEY}"\nB = "{OTHER}"\n')


def test_a_changed_line_gets_the_one_secret_of_its_rule() -> None:
    source = f'AWS_KEY = "{KEY}"\n'
    answer = f'AWS_KEY: str = "{PLACEHOLDER}"  # typed\nCOPY = "{PLACEHOLDER}"\n'
    assert _put_back(source, answer) == (answer.replace(PLACEHOLDER, KEY), [])


def test_a_placeholder_the_file_held_already_stays() -> None:
    source = f'DOC = "{PLACEHOLDER} marks a secret"\nAWS_KEY = "{KEY}"\n'
    answer = f'DOC = "{PLACEHOLDER} marks a secret"\nAWS_KEY = "{PLACEHOLDER}"\nX = 1\n'
    text, unsure = _put_back(source, answer)
    assert text == f'DOC = "{PLACEHOLDER} marks a secret"\nAWS_KEY = "{KEY}"\nX = 1\n'
    assert unsure == []
