from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from tests.store.conftest import SETTINGS, draft
from tether.compliance import Checker
from tether.errors import ConfigError, RequestError
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
    assert gpl[0] is False and "GPL-3.0-only is not in store.licences" in gpl[1]


@pytest.mark.parametrize(
    ("licence", "passes"),
    [
        ("MIT OR GPL-3.0-only", True),  # MIT may be chosen
        ("MIT AND GPL-3.0-only", False),  # both apply: GPL is not allowed
        ("(MIT AND Apache-2.0) OR GPL-3.0-only", True),
        ("mit", True),
        ("Apache-2.0 WITH LLVM-exception", True),  # an SPDX exception grants more
        ("MIT WITH Classpath-exception-2.0", True),
        ("Apache-2.0 WITH Commons-Clause", False),  # takes rights away
        ("MIT WITH GPL-3.0-only", False),
        ("MIT WITH LicenseRef-no-commercial-use", False),
    ],
)
def test_the_licence_gate_reads_the_whole_expression(
    db: SnippetStore, licence: str, passes: bool
) -> None:
    # As a file's SPDX line gives it: kept as written when it names an unlisted id.
    written = draft(f"def f_{abs(hash(licence))}():\n    return 3\n")
    snippet = db.add(replace(written, licence=licence), "ana").snippet
    gates = run_gates(snippet, Checker.from_settings(Settings()), SETTINGS.licences)
    gate = next(g for g in gates if g.name == "licence")
    assert gate.passed is passes, gate


def test_a_licence_that_does_not_parse_is_refused_on_entry_and_by_the_gate(
    db: SnippetStore,
) -> None:
    for bad, says in (
        ("MIT AND", "has no licence after it"),
        ("MIT OR Apache-2.0 OR", "has no licence after it"),  # not stored as less
        ("(MIT OR) AND ISC", "has no licence after it"),
        ("NOT A LICENCE", "NOT A LICENCE is not on SPDX's list"),
        ("Foo-Bar OR MIT", "Foo-Bar is not on SPDX's list; name your own licence LicenseRef-"),
        ("MIT OR ()", "it does not parse"),  # the parser's own IndexError, once a 500
        ("MIT WITH GPL-3.0-only", "cannot be used as an exception"),
        ("Classpath-exception-2.0", "can only be used as an exception"),
    ):
        with pytest.raises(RequestError, match="not an SPDX licence expression") as info:
            draft("def h():\n    return 5\n", licence=bad)
        assert says in info.value.message
    for fine in ("MIT OR LicenseRef-acme-1.0", "licenseref-acme", "Apache-2.0+"):
        assert draft("def h():\n    return 5\n", licence=fine).licence == fine
    # An SPDX line in a file is kept as written, for the gate to refuse.
    written = draft("def h():\n    return 5\n", licence="")
    snippet = db.add(replace(written, licence="MIT AND"), "ana").snippet
    gates = run_gates(snippet, Checker.from_settings(Settings()), ["MIT"])
    gate = next(g for g in gates if g.name == "licence")
    assert not gate.passed and "not an SPDX expression" in gate.detail


def test_an_older_id_in_store_licences_still_matches(db: SnippetStore) -> None:
    snippet = db.add(draft("def old():\n    return 6\n", licence="GPL-2.0"), "ana").snippet
    assert snippet.current.licence == "GPL-2.0-only"
    gates = run_gates(snippet, Checker.from_settings(Settings()), ["GPL-2.0", "LGPL-2.1"])
    assert next(g for g in gates if g.name == "licence").passed


def test_a_licence_ref_passes_when_store_licences_lists_it(db: SnippetStore) -> None:
    snippet = db.add(draft("def g():\n    return 4\n", licence="LicenseRef-acme"), "ana").snippet
    checker = Checker.from_settings(Settings())
    listed = run_gates(snippet, checker, ["MIT", "LicenseRef-acme"])
    assert next(g for g in listed if g.name == "licence").passed
    unlisted = run_gates(snippet, checker, ["MIT"])
    assert not next(g for g in unlisted if g.name == "licence").passed


def test_a_store_licence_that_is_no_spdx_id_is_a_settings_error(db: SnippetStore) -> None:
    """A typo ("Apache2.0") failed every Apache-2.0 snippet's gate, saying it was not in
    store.licences."""
    snippet = db.add(draft("def h():\n    return 5\n", licence="Apache-2.0"), "ana").snippet
    with pytest.raises(ConfigError, match=r"store\.licences names 'Apache2\.0', not an SPDX"):
        run_gates(snippet, Checker.from_settings(Settings()), ["MIT", "Apache2.0"])


def test_an_attached_test_must_pass_in_the_sandbox(db: SnippetStore) -> None:
    gates = _gates(db, "def inc(x):\n    return x + 2\n", test="assert inc(1) == 2, 'off by one'\n")
    assert gates["test"][0] is False and "off by one" in gates["test"][1]


def test_callable_means_one_plain_function(db: SnippetStore) -> None:
    gates = _gates(db, "async def fetch():\n    return 1\n")
    assert gates["callable"][0] is False


@pytest.mark.parametrize(
    ("code", "says"),
    [
        ("import re\n\ndef ok(s: str) -> str:\n    return re.escape(s)\n", ""),
        ("def uses(s):\n    return PATTERN.sub('', s) + helper(s)\n", "uses PATTERN, helper"),
        ("from .util import x\n\ndef rel():\n    return x\n", "imports from its own package"),
        (
            "import numpyy_absent\n\ndef np():\n    return numpyy_absent.one\n",
            "numpyy_absent is not installed",
        ),
        ("def _tether_call():\n    return 1\n", "_tether_"),
        ("X = 1\n\ndef g():\n    return X\n", "uses X"),  # the function alone is stored
    ],
)
def test_a_callable_has_everything_it_uses(db: SnippetStore, code: str, says: str) -> None:
    passed, detail = _gates(db, code)["callable"]
    assert passed is (not says) and says in detail, detail


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


def test_a_decision_made_while_the_gates_run_is_not_overridden_nor_doubled(
    db: SnippetStore,
) -> None:
    from tether.sandbox import Sandbox
    from tether.store.vetting import vet

    code = 'def double(x: int) -> int:\n    """Twice x."""\n    return 2 * x\n'
    first = db.add(draft(code, test="assert double(2) == 4\n"), "ana").snippet
    checker = Checker.from_settings(Settings.model_validate({}))

    def decide(approve: bool, who: str, **kwargs: Any) -> Any:
        return vet(db, first.id, approve=approve, reason=f"by {who}", principal=who,
                   checker=checker, settings=SETTINGS, **kwargs)  # fmt: skip

    class SlowTest(Sandbox):  # while the attached test runs, another reviewer rejects it
        def run(self, *args: Any, **kwargs: Any) -> Any:
            decide(False, "cy")
            return super().run(*args, **kwargs)

    with pytest.raises(RequestError, match="is rejected now, not candidate: it was decided"):
        decide(True, "bo", sandbox=SlowTest())
    assert db.get(first.id).state == "rejected"
    # A reviewer who saw it as a candidate is told it was decided since, not let through.
    with pytest.raises(RequestError, match="is rejected now, not candidate") as refused:
        decide(True, "bo", seen_state="candidate")
    assert refused.value.param == "state"
    assert [d.principal for d in db.decisions(first.id)] == ["ana", "cy"]


def test_a_test_that_hangs_fails_its_gate_naming_the_setting(db: SnippetStore) -> None:
    snippet = db.add(draft("def idle():\n    return 0\n", test="while True:\n    pass\n"), "a")
    checker = Checker.from_settings(Settings())
    gates = run_gates(snippet.snippet, checker, ["MIT"], test_timeout_s=1.0)
    test = next(g for g in gates if g.name == "test")
    assert not test.passed and "ran past 1 s (store.test_timeout_s)" in test.detail


def test_a_decision_already_on_record_is_not_recorded_again(db: SnippetStore) -> None:
    from tether.store.vetting import vet

    snippet = db.add(draft("def inc(x: int) -> int:\n    return x + 1\n"), "ana").snippet
    checker = Checker.from_settings(Settings.model_validate({}))

    def approve(**kwargs: Any) -> None:
        vet(db, snippet.id, approve=True, reason="ok", principal="bo", checker=checker,
            settings=SETTINGS, **kwargs)  # fmt: skip

    approve(make_callable=False)
    with pytest.raises(RequestError, match=f"snippet {snippet.id} is vetted already, at version 1"):
        approve()  # a second click
    approve(make_callable=True)  # making it callable is a decision of its own
    assert db.get(snippet.id).callable
    vet(db, snippet.id, approve=False, reason="no", principal="bo", checker=checker,
        settings=SETTINGS)  # fmt: skip
    with pytest.raises(RequestError, match="is rejected already"):
        vet(db, snippet.id, approve=False, reason="no", principal="cy", checker=checker,
            settings=SETTINGS)  # fmt: skip
    assert [d.state for d in db.decisions(snippet.id)] == [
        "candidate",
        "vetted",
        "vetted",
        "rejected",
    ]
