"""A real server leaves a verifiable audit log and explainable traces of its requests."""

from __future__ import annotations

import json
import shutil
import sqlite3
from contextlib import closing
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_cli import tether
from tests.helpers import tether_server

pytestmark = pytest.mark.e2e

AWS_KEY = "AKIA" + "QZ7RVN2XWLKD5HJT"


def test_every_request_is_audited_and_explained(tmp_path: Path) -> None:
    with tether_server(tmp_path) as srv, srv.client() as http:
        ok = http.post("/v1/completions", json={"prompt": f"key = '{AWS_KEY}'\n", "max_tokens": 4})
        assert ok.status_code == 200
        trace_id = ok.json()["tether"]["trace_id"]
        stream = http.post(
            "/v1/chat/completions",
            json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3, "stream": True},
        )
        assert stream.status_code == 200
        blocked = http.post("/v1/completions", json={"prompt": "t = 'tth_" + "Ab1" * 14 + "c'"})
        assert blocked.status_code == 400
        unauthorised = httpx.post(srv.url + "/v1/completions", json={"prompt": "x"})
        assert unauthorised.status_code == 401
        note = http.get("/v1/audit/checkpoint")
        assert note.status_code == 200 and "\n\u2014 " in note.text
        trace = http.get(f"/v1/traces/{trace_id}").json()
        assert (
            AWS_KEY not in json.dumps(trace) and "[REDACTED:aws-access-key-id]" in trace["prompt"]
        )
        remote = tether(tmp_path, "explain", trace_id, "--server", srv.url)
        assert remote.returncode == 0, remote.stderr
        assert "aws-access-key-id" in remote.stdout
        # An auditor who saved that checkpoint checks, without the log, that it still holds.
        (tmp_path / "saved.note").write_text(note.text)
        http.post("/v1/completions", json={"prompt": "x", "max_tokens": 2})
        key = (tmp_path / "data" / "audit" / "verifier.key").read_text().strip()
        args = ["--since", str(tmp_path / "saved.note"), "--key", key, "--server", srv.url]
        online = tether(tmp_path, "audit", "verify", *args)
        assert online.returncode == 0, online.stdout + online.stderr
        assert "extends the saved one" in online.stdout
        # A saved checkpoint larger than the server's log now: it was cut back (exit 1).
        origin, size, *rest = note.text.split("\n")
        (tmp_path / "later.note").write_text("\n".join([origin, str(int(size) + 1000), *rest]))
        args[1] = str(tmp_path / "later.note")
        rolled_back = tether(tmp_path, "audit", "verify", *args)
        assert rolled_back.returncode == 1, rolled_back.stdout + rolled_back.stderr
        assert "was cut back or replaced" in rolled_back.stdout
    audit_dir = tmp_path / "data" / "audit"
    copy = tmp_path / "copy"
    shutil.copytree(audit_dir, copy)
    verified = tether(tmp_path, "audit", "verify", "--dir", str(copy), "--json")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    records = [
        json.loads(line)
        for line in tether(
            tmp_path, "audit", "tail", "-n", "50", "--dir", str(copy)
        ).stdout.splitlines()
        if line.startswith("{")
    ]
    endpoints = [r["endpoint"] for r in records]
    assert "/v1/completions" in endpoints and "/v1/chat/completions" in endpoints
    assert any(r["params"].get("status") == 400 and r["policy"] for r in records)
    assert any(r["params"].get("status") == 401 for r in records)
    text = json.dumps(records)
    assert AWS_KEY not in text and "tth_" not in text  # commitments, never content
    local = tether(tmp_path, "explain", trace_id)
    assert local.returncode == 0 and "aws-access-key-id" in local.stdout
    assert "prompt and answer match what the record committed to" in local.stdout
    # A trace changed in its database (SQLite keeps no checksums) is caught by the record.
    with closing(sqlite3.connect(tmp_path / "data" / "traces.sqlite")) as db, db:
        (body,) = db.execute("SELECT body FROM traces WHERE id = ?", (trace_id,)).fetchone()
        changed = json.loads(body)
        changed["output"] += " # changed"
        db.execute("UPDATE traces SET body = ? WHERE id = ?", (json.dumps(changed), trace_id))
    caught = tether(tmp_path, "explain", trace_id)
    assert caught.returncode == 1, caught.stdout + caught.stderr
    assert "the trace's answer does NOT match what the record committed to" in caught.stdout
    shown = json.loads(tether(tmp_path, "explain", trace_id, "--json").stdout)["audit"]
    assert shown["ok"] is False and shown["prompt"] is True and shown["answer"] is False
    pinned = tether(tmp_path, "repro", "record", trace_id, "-o", str(tmp_path / "m.json"))
    assert pinned.returncode == 1 and "no longer matches its audit record" in pinned.stderr
    assert not (tmp_path / "m.json").exists()  # an edit is not pinned as a generation
    # Tampering with the copy is found and located.
    segment = sorted(copy.glob("*.jsonl"))
    target = next(p for p in segment if "checkpoint" not in p.name)
    lines = target.read_text().splitlines()
    lines[0] = lines[0].replace('"endpoint":"', '"endpoint":"X', 1)
    target.write_text("\n".join(lines) + "\n")
    tampered = tether(tmp_path, "audit", "verify", "--dir", str(copy))
    assert tampered.returncode != 0


def test_server_ships_its_records_to_a_webhook(tmp_path: Path) -> None:
    from tests.audit.test_sinks import Receiver

    receiver = Receiver()
    try:
        with (
            tether_server(tmp_path, TETHER_AUDIT_WEBHOOK_URL=receiver.url) as srv,
            srv.client() as http,
        ):
            for _ in range(3):
                assert (
                    http.post("/v1/completions", json={"prompt": "x", "max_tokens": 2}).status_code
                    == 200
                )
        # The server's last checkpoint went out as it stopped.
        seqs = sorted(set(receiver.seqs()))
        assert seqs == list(range(len(seqs))) and len(seqs) >= 3
        assert all("\u2014 " in body["checkpoint"] for body in receiver.bodies)
        shipped = [r for body in receiver.bodies for r in body["records"] if r.get("prompt")]
        assert shipped and all(set(r["prompt"]) == {"salt", "sha256"} for r in shipped)
    finally:
        receiver.stop()
