"""The CLI and HTTP faces of the audit log."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tether.audit.checkpoint import parse_note
from tether.audit.log import AuditLog
from tether.audit.merkle import verify_inclusion
from tether.cli.main import cli
from tether.errors import NotFoundError
from tether.server.errors import install_error_handlers
from tether.server.routes.audit import router
from tether.settings import Settings, load_settings
from tether.tokens import TokenStore


def test_cli_verify_prove_tail(audit: AuditLog, settings: Settings) -> None:
    for i in range(7):
        audit.append({"request_id": str(i)})
    audit.close()
    folder = str(settings.data.home / "audit")
    runner = CliRunner()
    ok = runner.invoke(cli, ["audit", "verify", "--dir", folder, "--json"])
    assert ok.exit_code == 0 and '"records": 7' in ok.output
    proof = json.loads(runner.invoke(cli, ["audit", "prove", "3", "--dir", folder]).stdout)
    checkpoint = parse_note(proof["checkpoint"])[0]
    leaf = base64.b64decode(proof["leaf_hash"])
    path = [base64.b64decode(p) for p in proof["proof"]]
    assert verify_inclusion(3, checkpoint.size, leaf, path, checkpoint.root)
    assert (
        len(runner.invoke(cli, ["audit", "tail", "-n", "2", "--dir", folder]).output.splitlines())
        == 2
    )


def test_prove_refuses_a_checkpoint_its_key_did_not_sign(
    audit: AuditLog, settings: Settings
) -> None:
    for i in range(4):
        audit.append({"request_id": str(i)})
    audit.close()
    folder = settings.data.home / "audit"
    checkpoints = folder / "checkpoints.jsonl"
    lines = checkpoints.read_text().splitlines()
    entry = json.loads(lines[-1])
    origin, size, _signed_root, *rest = entry["note"].split("\n")
    forged = base64.b64encode(bytes(32)).decode()  # the root of records rewritten
    entry["note"] = "\n".join([origin, size, forged, *rest])
    checkpoints.write_text("\n".join([*lines[:-1], json.dumps(entry)]) + "\n")
    refused = CliRunner().invoke(cli, ["audit", "prove", "1", "--dir", str(folder)])
    assert refused.exit_code == 1 and "signature" in refused.output, refused.output


def test_a_signing_key_given_as_the_verifier_key_is_not_echoed(
    audit: AuditLog, settings: Settings, tmp_path: Path
) -> None:
    audit.append({"request_id": "a"})
    audit.close()
    folder = settings.data.home / "audit"
    runner = CliRunner()
    wrong = runner.invoke(cli, ["audit", "verify", "--dir", str(folder), "--key",
                                str(folder / "signing.key")])  # fmt: skip
    assert wrong.exit_code == 2 and "given (a private key) is not" in wrong.output
    assert "PRIVATE KEY" not in wrong.output
    secret = runner.invoke(cli, ["audit", "verify", "--dir", str(folder), "--key", "hunter2"])
    assert secret.exit_code == 2 and "hunter2" not in secret.output
    pasted = (folder / "signing.key").read_text()  # the key itself, pasted, "/" and all
    for text in (pasted, pasted.replace("+", "/")):
        said = runner.invoke(cli, ["audit", "verify", "--dir", str(folder), "--key", text])
        assert said.exit_code == 2 and "holds a private key" in said.output
        assert text.splitlines()[1] not in said.output
    # A file whose name has a "+" in it is read as a file, not as the key itself.
    named = tmp_path / "tether+prod.key"
    named.write_text((folder / "verifier.key").read_text())
    ok = runner.invoke(cli, ["audit", "verify", "--dir", str(folder), "--key", str(named)])
    assert ok.exit_code == 0, ok.output


def test_http_checkpoint_and_proof(audit: AuditLog) -> None:
    app = FastAPI()
    app.state.audit = audit
    app.state.tokens = TokenStore()
    app.state.tokens.add_admin("admin-token")
    install_error_handlers(app)
    app.include_router(router)
    audit.append({"request_id": "a"})
    audit.flush()
    client = TestClient(app)
    assert client.get("/v1/audit/checkpoint").status_code == 401
    headers = {"Authorization": "Bearer admin-token"}
    note = client.get("/v1/audit/checkpoint", headers=headers)
    assert note.status_code == 200 and note.text.startswith("tether/test\n1\n")
    assert client.get("/v1/audit/proof/0", headers=headers).json()["seq"] == 0
    missing = client.get("/v1/audit/proof/99", headers=headers)
    assert missing.status_code == 404
    assert missing.json()["error"]["message"] == "no audit record 99: the log holds records 0 to 0"


def test_a_proof_names_a_record_that_is_not_yet_checkpointed(tmp_path: Path) -> None:
    settings = load_settings(
        {"data.home": str(tmp_path), "audit.checkpoint_interval_s": 3600.0}, environ={}
    )
    log = AuditLog.open(settings)
    try:
        log.append({"request_id": "a"})
        log.flush()
        seq = log.append({"request_id": "b"})  # the next checkpoint is an hour away
        with pytest.raises(NotFoundError, match=f"record {seq} is not covered .* yet"):
            log.inclusion_proof(seq)
        with pytest.raises(NotFoundError, match=f"no audit record {seq + 1}: .* 0 to {seq}"):
            log.inclusion_proof(seq + 1)
    finally:
        log.close()
