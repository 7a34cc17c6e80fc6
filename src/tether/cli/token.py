"""``tether token``: scoped, short-lived tokens, issued by a running server."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import click

from tether.cli.backend import call_server
from tether.cli.common import IntRange, settings_from_flags
from tether.errors import EngineUnavailableError, RequestError
from tether.server.runtime import default_runtime_dir, local_server
from tether.settings import Settings
from tether.tokens import (
    GIVEN_A_TOKEN,
    MAX_TTL_S,
    SCOPES,
    TOKEN_PREFIX,
    check_principal,
    check_scopes,
)

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_ttl(text: str) -> float:
    # Digits 0-9 only (re.ASCII): \d alone takes any script's digits, and float() reads them.
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text, re.ASCII)
    if not match:
        raise RequestError(f"--ttl {text!r} is not a duration; write e.g. 90s, 30m, 8h or 7d")
    seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    if not 1 <= seconds <= MAX_TTL_S:
        raise RequestError(f"--ttl {text!r}: a token lives from 1s to {MAX_TTL_S // 86400}d")
    return seconds


def _text(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """``value`` when it is text: an argument holding bytes that are not UTF-8 (a name from a
    Latin-1 file) cannot be sent to the server."""
    if value is not None:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise click.BadParameter(f"{value!r} holds bytes that are not UTF-8 text") from None
    return value


def _server_url(settings: Settings, server: str | None) -> str:
    if server:
        return server
    record = local_server(settings.server.runtime_dir or default_runtime_dir(), settings.data.home)
    if record is None:
        raise EngineUnavailableError(
            "tokens are issued by a running server: start `tether serve`, or pass --server URL"
        )
    return record.url


def _call(server: str | None, token: str | None, method: str, path: str, body: Any = None) -> Any:
    settings = settings_from_flags()
    return call_server(settings, _server_url(settings, server), token, method, path, body)


def _server_options(func: Any) -> Any:
    func = click.option(
        "--server",
        envvar="TETHER_SERVER",
        metavar="URL",
        help="The server; default: the one running here.",
    )(func)
    return click.option(
        "--token",
        envvar="TETHER_TOKEN",
        help="A token with the tokens:admin scope; default: the admin token.",
    )(func)


@click.group()
def token() -> None:
    """Scoped, short-lived tokens; they live in the server's memory and die with it."""


@token.command("create")
@click.option("--scopes", required=True, help=f"Comma-separated, of: {', '.join(SCOPES)}.")
@click.option(
    "--ttl",
    help="Lifetime, e.g. 90s, 30m, 8h, 7d, 2w (at most 30d); default 1h, or what the "
    "issuing token has left when that is less.",
)
@click.option(
    "--principal",
    default="cli",
    show_default=True,
    callback=_text,
    help="Who the token is for.",
)
@click.option("--rpm", type=IntRange(min=1), help="Most requests a minute.")
@click.option("--tpm", type=IntRange(min=1), help="Most tokens (prompt + answer) a minute.")
@click.option("--daily-tokens", type=IntRange(min=1), help="Most tokens a (UTC) day.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_server_options
def create(
    scopes: str,
    ttl: str | None,
    principal: str,
    rpm: int | None,
    tpm: int | None,
    daily_tokens: int | None,
    as_json: bool,
    server: str | None,
    token: str | None,
) -> None:
    """Issue a token and print it (it is shown only this once)."""
    chosen = sorted(check_scopes(scopes.split(",")))  # named here, before any server is asked
    check_principal(principal)
    body: dict[str, Any] = {"principal": principal, "scopes": chosen}
    if ttl is not None:
        body["ttl_s"] = parse_ttl(ttl)
    limits = {"rpm": rpm, "tpm": tpm, "daily_tokens": daily_tokens}
    body.update({name: value for name, value in limits.items() if value is not None})
    created = _call(server, token, "POST", "/v1/tokens", body)
    click.echo(json.dumps(created, indent=2) if as_json else created["token"])


@token.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option(
    "--expired",
    "with_expired",
    is_flag=True,
    help="Also those expired within the last day, which can still be revoked.",
)
@_server_options
def list_tokens(as_json: bool, with_expired: bool, server: str | None, token: str | None) -> None:
    """Show live tokens: id, principal, scopes, expiry, limits and use (never the secret).

    With --expired, also those that expired within the last day: they can still be
    revoked, and revoking one revokes the tokens issued through it."""
    path = "/v1/tokens?expired=true" if with_expired else "/v1/tokens"
    records = _call(server, token, "GET", path)["data"]
    if as_json:
        click.echo(json.dumps(records, indent=2))
        return
    for r in records:
        limits = ", ".join(f"{k} {v}" for k, v in r["limits"].items() if v is not None)
        use = r["usage"]
        click.echo(
            f"{r['id']}  {r['principal']:16} {','.join(r['scopes']):40} "
            f"created {_when(r['created_at'])}, "
            f"{'expired' if r.get('expired') else 'expires'} {_when(r['expires_at'])}"
            f"  limits: {limits or 'none'}; used {use['requests_last_minute']} requests and "
            f"{use['tokens_last_minute']} tokens this minute, {use['tokens_today']} today"
        )


def _when(ts: float | None) -> str:
    """A Unix time as a person reads it, in UTC (the server's clock may be in another
    zone than the reader's): 2026-12-04 13:21 UTC."""
    if ts is None:
        return "never"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


@token.command("revoke")
@click.argument("token_id", callback=_text)
@_server_options
def revoke(token_id: str, server: str | None, token: str | None) -> None:
    """Revoke a token by its id (from `tether token list`), and the tokens issued through it."""
    if token_id.startswith(TOKEN_PREFIX):  # sent in a URL, it would be kept in logs
        raise click.UsageError(GIVEN_A_TOKEN)
    if not token_id.strip() or token_id in (".", ".."):
        raise click.UsageError(f"{token_id!r} is not a token id; tether token list shows them")
    answer = _call(server, token, "DELETE", f"/v1/tokens/{quote(token_id, safe='')}")
    issued = [i for i in (answer or {}).get("revoked", []) if i != token_id]
    also = f", and {len(issued)} issued through it: {', '.join(issued)}" if issued else ""
    expired = " (it had already expired)" if (answer or {}).get("expired") else ""
    click.echo(f"revoked {token_id}{expired}{also}")


COMMANDS = [token]
