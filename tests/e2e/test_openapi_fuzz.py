"""The OpenAPI document tells the truth: a schema-driven fuzzer finds nothing to report.

schemathesis derives requests from ``/openapi.json`` (valid ones, invalid ones, and
sequences across operations) and checks every answer against the document: status codes,
content types, response schemas, the Allow header of a 405, that valid requests are
accepted and invalid ones refused. tether runs as a real server in front of an upstream
that answers at once, so the run stays quick; the examples per operation are bounded and
the seed is fixed, so a failure reproduces (`st replay` in its output tells how).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.helpers import tether_server
from tests.stub_upstream import stub_upstream

pytestmark = pytest.mark.e2e

SEED = "20261130"


def test_schemathesis_finds_no_failure(tmp_path: Path) -> None:
    st = Path(sys.executable).with_name("st")
    with (
        stub_upstream("def add(a, b):\n    return a + b\n") as stub,
        tether_server(
            tmp_path, TETHER_ENGINE_KIND="openai", TETHER_UPSTREAM_BASE_URLS=stub.base_url
        ) as srv,
    ):
        document = httpx.get(f"{srv.url}/openapi.json").json()
        operations = sum(len(methods) for methods in document["paths"].values())
        done = subprocess.run(
            [
                str(st),
                "--config-file",
                str(Path(__file__).with_name("schemathesis.toml")),
                "run",
                f"{srv.url}/openapi.json",
                "--header",
                f"Authorization: Bearer {srv.token}",
                "--checks",
                "all",
                "--max-examples",
                "12",
                "--seed",
                SEED,
                "--no-color",
            ],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=tmp_path,
        )
    report = done.stdout[-20000:] + done.stderr[-2000:]
    assert done.returncode == 0, report
    assert f"Tested: {operations}" in report  # every operation was exercised
