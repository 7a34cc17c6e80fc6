from __future__ import annotations

from typing import Any

import pytest

from tests.store.conftest import SETTINGS, draft
from tether.compliance import Checker
from tether.errors import RequestError
from tether.settings import Settings
from tether.store import SnippetStore
from tether.store.gates import run_gates

AWS = "AKIA" + "Z7QX4M2P9LKD3VHT"


def _gates(db: SnippetStore, code: str, **kwargs: Any) -> dict[str, tuple[bool, str]]:
    snippet = db.add(draft(code, **kwargs), "ana").snippet
    checker = Checker.from_settings(Settings())
    found = run_gates(snippet, checker, SETTINGS.licences, make_callable=True)
    return {g.name: (g.passed, g.detail) for g in found}


def test_clean_code_passes_every_gate(db: SnippetStore) -> None:
    gates = _gates(db, "def inc(x: int) -> int:\n    return x + 1\n", test="assert inc(1) == 2\n")
    assert all(passed for passed, _ in gates.values()), gates
    assert set(gates) == {"syntax", "secrets", "compliance", "licence", "test", "callable"}


def test_a_secret_fails_its_gate(db: SnippetStore) -> None:
    gates = _gates(db, f'def key():\n    return "{AWS}"\n')
    assert gates["secrets"][0] is False and "line 2" in gates["secrets"][1]


def test_an_error_level_finding_fails_compliance(db: SnippetStore) -> None:
    gates = _gates(db, "def run(cmd):\n    return eval(cmd)\n")
    assert gates["compliance"][0] is False and "eval" in gates["compliance"][1]


def test_the_licence_must_be_known_and_allowed(db: SnippetStore) -> None:
    assert _gates(db, "def a():\n    return 1\n", licence="")["licence"][0] is False
    gpl = _gates(db, "def b():\n    return 2\n", licence="GPL-3.0")["licence"]
    assert gpl[0] is False and "GPL-3.0 is not among" in gpl[1]


def test_an_attached_test_must_pass_in_the_sandbox(db: SnippetStore) -> None:
    gates = _gates(db, "def inc(x):\n    return x + 2\n", test="assert inc(1) == 2, 'off by one'\n")
    assert gates["test"][0] is False and "off by one" in gates["test"][1]


def test_callable_means_one_plain_function(db: SnippetStore) -> None:
    gates = _gates(db, "async def fetch():\n    return 1\n")
    assert gates["callable"][0] is False


def test_a_version_added_while_the_gates_run_is_not_vetted_unseen(db: SnippetStore) -> None:
    from tether.sandbox import Sandbox
    from tether.store.model import Origin
    from tether.store.vetting import vet

    origin = Origin(repository="r", path="p.py")
    code = 'def double(x: int) -> int:\n    """Twice x."""\n    return 2 * x\n'
    first = db.add(draft(code, test="assert double(2) == 4\n", origin=origin), "ana").snippet

    class SlowTest(Sandbox):  # while the attached test runs, someone adds another version
        def run(self, *args: Any, **kwargs: Any) -> Any:
            db.add(draft(code.replace("2 * x", "x + x + 0"), origin=origin), "mallory")
            return super().run(*args, **kwargs)

    checker = Checker.from_settings(Settings.model_validate({}))
    with pytest.raises(RequestError, match="is at version 2, not 1"):
        vet(db, first.id, approve=True, reason="reviewed v1", principal="bo",
            checker=checker, settings=SETTINGS, sandbox=SlowTest())  # fmt: skip
    assert db.get(first.id).state == "candidate"
