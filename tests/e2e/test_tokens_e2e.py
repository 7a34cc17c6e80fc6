"""Tokens through the CLI against a real server: scopes, restart, and no token in logs."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_cli import tether
from tests.helpers import tether_server

pytestmark = pytest.mark.e2e


def test_cli_token_lifecycle_and_restart(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    with tether_server(tmp_path, log=log, log_level="debug") as srv:
        created = tether(
            tmp_path,
            "token",
            "create",
            "--scopes",
            "completions",
            "--ttl",
            "10m",
            "--principal",
            "editor",
            "--rpm",
            "2",
        )
        assert created.returncode == 0, created.stderr
        user_token = created.stdout.strip()
        assert user_token.startswith("tth_")
        user = {"Authorization": f"Bearer {user_token}"}
        ok = httpx.post(  # the first answer warms the model: seconds on a busy machine
            srv.url + "/v1/completions",
            headers=user,
            json={"prompt": "x", "max_tokens": 2},
            timeout=60,
        )
        assert ok.status_code == 200
        chat = httpx.post(
            srv.url + "/v1/chat/completions",
            headers=user,
            json={"messages": [{"role": "user", "content": "x"}]},
        )
        assert chat.status_code == 403
        statuses = [
            httpx.post(
                srv.url + "/v1/completions", headers=user, json={"prompt": "x", "max_tokens": 2}
            ).status_code
            for _ in range(2)
        ]
        assert statuses == [200, 429]  # rpm 2: a refused scope does not count
        listed = tether(tmp_path, "token", "list", "--json")
        assert "editor" in listed.stdout and user_token not in listed.stdout
        (editor,) = [t for t in json.loads(listed.stdout) if t["principal"] == "editor"]
        assert editor["limits"]["rpm"] == 2 and editor["usage"]["requests_last_minute"] == 2
        # Expired ones (revocable for a day) on request: none yet, so the same tokens.
        all_known = json.loads(tether(tmp_path, "token", "list", "--expired", "--json").stdout)
        assert {t["id"] for t in all_known} == {t["id"] for t in json.loads(listed.stdout)}
        assert not any(t["expired"] for t in all_known)
        # Dates a person reads, in UTC whatever the reader's zone; the admin's never ends.
        shown = tether(tmp_path, "token", "list", TZ="Pacific/Kiritimati").stdout.splitlines()
        (line,) = [line for line in shown if " editor " in line]
        made = datetime.fromtimestamp(editor["created_at"], UTC).strftime("%Y-%m-%d %H:%M")
        ends = datetime.fromtimestamp(editor["expires_at"], UTC).strftime("%Y-%m-%d %H:%M")
        assert f"created {made} UTC, expires {ends} UTC" in line
        assert any(" admin " in line and "expires never" in line for line in shown)
        bad = tether(tmp_path, "token", "create", "--scopes", "root")
        assert bad.returncode == 2 and "unknown scope" in bad.stderr
        denied = tether(tmp_path, "token", "list", "--token", user_token)
        assert denied.returncode == 4 and "tokens:admin" in denied.stderr
        assert "does not allow it" in denied.stderr  # the token is valid: the action is not
        lead = tether(tmp_path, "token", "create", "--scopes", "tokens:admin,chat",
                      "--principal", "lead")  # fmt: skip
        lead_token = lead.stdout.strip()
        team = tether(tmp_path, "token", "create", "--scopes", "chat", "--principal", "team",
                      "--token", lead_token)  # fmt: skip
        assert team.returncode == 0, team.stderr
        ids = {t["principal"]: t["id"] for t in json.loads(tether(tmp_path, "token", "list",
               "--json").stdout)}  # fmt: skip
        revoked = tether(tmp_path, "token", "revoke", ids["lead"])
        assert revoked.returncode == 0, revoked.stderr
        assert revoked.stdout.strip() == (
            f"revoked {ids['lead']}, and 1 issued through it: {ids['team']}"
        )
        admin = srv.token
    with tether_server(tmp_path, log=log, log_level="debug") as again:
        # A restart forgets every token, the old admin one included.
        for token in (user_token, admin):
            response = httpx.get(
                again.url + "/v1/models", headers={"Authorization": f"Bearer {token}"}
            )
            assert response.status_code == 401
    text = log.read_text(errors="replace")
    assert "tth_" not in text.replace(f"admin token in {tmp_path}", "")
    assert user_token not in text and admin not in text


def test_token_command_without_server(tmp_path: Path) -> None:
    result = tether(tmp_path, "token", "list")
    assert result.returncode == 3 and "start `tether serve`" in result.stderr
