"""``tether models``, ``tether config`` and ``tether doctor``: what is here and how it is set."""

from __future__ import annotations

import importlib.metadata
import json
import sqlite3
import sys
import tempfile
from collections.abc import Callable, Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

import click
import httpx

from tether import __version__, direct
from tether.cli.backend import certificate_problem, proxy_answer, server_models, server_url
from tether.cli.common import (
    EXIT_NO,
    backend_options,
    settings_from_flags,
    terminated_as_interrupted,
)
from tether.credentials import url_shown
from tether.databases import MEND, connect_to_check, damage_in, newer_schema_remedy
from tether.engines.decode_probe import probe_decode
from tether.errors import ConfigError, ModelError, TetherError
from tether.evals import store as evals_store
from tether.memory import usable_memory
from tether.models import file_sha256, read_gguf, resolve_model_path
from tether.openfiles import too_few_files
from tether.pipeline.fim import resolve_template
from tether.policy import Scanner
from tether.server.runtime import (
    default_runtime_dir,
    find_runtime_record,
    local_server,
    private_runtime_dir,
    remove_stale_records,
    trust_for,
)
from tether.settings import Settings, settings_reference, shown_setting
from tether.store import db as store_db
from tether.templates import NAMES, PromptTemplates
from tether.traces import store as trace_store


def _kv_cache(settings: Settings, metadata: dict[str, str]) -> str:
    from tether.engines.llamacpp import kv_cache_bytes

    engine = settings.engine
    size = kv_cache_bytes(metadata, engine) / 2**20
    shape = f"{engine.n_parallel} sequences x {engine.n_ctx} tokens, {engine.kv_type}"
    return f"{size:.0f} MiB ({shape})"


def describe_model(settings: Settings) -> dict[str, Any]:
    """Read a GGUF's identity and abilities without loading its weights."""
    path = resolve_model_path(settings.engine.model_path)
    metadata, fim_tokens = read_gguf(path)
    engine = settings.engine
    arch = metadata.get("general.architecture", "")
    template_name, _ = resolve_template(settings.engine.fim_template, fim_tokens)
    return {
        "id": settings.engine.model_id or path.name.removesuffix(".gguf"),
        "path": str(path),
        "size_bytes": path.stat().st_size,
        "sha256": file_sha256(path, settings.data.home / "cache"),
        "architecture": arch,
        "trained_context": int(metadata.get(f"{arch}.context_length", 0) or 0),
        "context": engine.n_ctx,
        "sequences": engine.n_parallel,
        "kv_cache": _kv_cache(settings, metadata),
        "fim": template_name,
        "fim_tokens": None if fim_tokens is None else vars(fim_tokens),
        "chat_template": "tokenizer.chat_template" in metadata,
    }


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@backend_options
def models(as_json: bool, server: str | None, token: str | None) -> None:
    """Show the model: path, size, sha256, context and FIM support."""
    settings = settings_from_flags()
    entries = server_models(settings, server, token) if server else [describe_model(settings)]
    if as_json:
        click.echo(json.dumps(entries, indent=2))
        return
    for number, entry in enumerate(entries):
        if number:
            click.echo()
        _show(_as_served(entry) if server else entry)


# A server lists its model's description under the names clients read (sha256, fim) and
# again under tether's own (model_sha256, fim_template); shown once, with the first.
_LISTED_TWICE = ("model", "model_sha256", "fim_template")


def _as_served(entry: dict[str, Any]) -> dict[str, Any]:
    """A server's /v1/models entry as lines to read: its id, then its description."""
    meta = entry.get("meta")
    described = meta if isinstance(meta, dict) else {}
    return {
        "id": entry.get("id"),
        **{k: v for k, v in described.items() if k not in _LISTED_TWICE},
    }


def _show(entry: dict[str, Any], indent: str = "") -> None:
    """One ``key value`` line each; a nested object's keys indented below its own; a
    value the server does not know (a gateway's model has no sha256 here) is "-"."""
    for key, value in entry.items():
        if isinstance(value, dict) and value:
            click.echo(f"{indent}{key}")
            _show(value, indent + "  ")
        else:
            shown = json.dumps(value) if isinstance(value, (dict, list)) else value
            click.echo(
                f"{indent}{key:{max(16 - len(indent), 1)}} {'-' if value is None else shown}"
            )


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--reference", is_flag=True, help="Print the Markdown reference of every key.")
def config(as_json: bool, reference: bool) -> None:
    """Print each effective setting and where its value came from."""
    if reference and as_json:
        raise click.UsageError("--reference prints Markdown: drop --json, or drop --reference")
    if reference:
        click.echo(settings_reference(), nl=False)
        return
    settings = settings_from_flags()
    sources = settings.sources
    rows = []
    for key, value in settings.flat().items():
        rows.append({"key": key, "value": shown_setting(key, value), "source": sources[key]})
    if as_json:
        click.echo(
            json.dumps({"config_file": str(settings.config_file or ""), "settings": rows}, indent=2)
        )
        return
    click.echo(f"# config file: {settings.config_file or 'none found'}")
    width = max(len(r["key"]) for r in rows)
    for row in rows:
        click.echo(f"{row['key']:{width}}  {json.dumps(row['value'])}  ({row['source']})")


def _check(name: str, ok: bool, detail: str, fix: str = "") -> dict[str, Any]:
    return {"check": name, "ok": ok, "detail": detail, "fix": "" if ok else fix}


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _memory_check(settings: Settings, path: Path) -> dict[str, Any]:
    """What the embedded engine holds in memory: the mapped model and the KV cache."""
    try:
        metadata, _ = read_gguf(path)
    except ModelError as exc:
        return _check("engine memory", False, "cannot read the model", exc.message)
    from tether.engines.llamacpp import kv_cache_bytes

    mapped = path.stat().st_size / 2**20
    detail = f"model {mapped:.0f} MiB mapped, KV cache {_kv_cache(settings, metadata)}"
    usable, limited = usable_memory()
    total = usable / 2**20
    needed = mapped + kv_cache_bytes(metadata, settings.engine) / 2**20
    if needed > total:
        fix = "lower engine.n_ctx or engine.n_parallel"
        fix += ", or set engine.kv_type = q8_0" if settings.engine.kv_type == "f16" else ""
        where = "this container's memory limit of" if limited else "this machine's"
        over = f"{detail}: more than {where} {total:.0f} MiB"
        return _check("engine memory", False, over, fix)
    return _check("engine memory", True, detail)


def _decode_check(
    path: Path, probe: Sequence[str] | None = None, timeout_s: float = 120
) -> dict[str, Any]:
    """Whether llama.cpp decodes the model here; ``probe`` replaces the child's command."""
    result = probe_decode(path, probe, timeout_s)
    return _check("llama.cpp decode", result.ok, result.detail, result.fix)


def run_checks(settings: Settings, server: str | None = None) -> list[dict[str, Any]]:
    checks = [
        _check("python", sys.version_info >= (3, 11), sys.version.split()[0], "use Python 3.11+"),
        _check("tether", True, _version("tether") or "source tree"),
    ]
    llama = _version("llama-cpp-python")
    needs_embedded = settings.engine.kind == "llamacpp"
    checks.append(
        _check(
            "llama-cpp-python",
            llama is not None or not needs_embedded,
            llama or "not installed",
            "run `make serve` or `pip install 'tether[embedded]'`",
        )
    )
    if needs_embedded:
        try:
            path = resolve_model_path(settings.engine.model_path)
            checks.append(_check("model", True, f"{path} ({path.stat().st_size} bytes)"))
            if llama is not None:  # reading the model's shape needs llama-cpp-python
                checks.append(_memory_check(settings, path))
                checks.append(_decode_check(path))
        except ModelError as exc:
            checks.append(_check("model", False, "not found", exc.message))
    else:
        urls = settings.upstream.base_urls
        checks.append(
            _check(
                "upstreams",
                bool(urls),
                ", ".join(map(url_shown, urls)) or "none configured",
                "set upstream.base_urls",
            )
        )
        checks.extend(_upstream_check(settings, url) for url in urls)
    checks.append(_templates_check(settings))
    checks.append(_serve_settings_check(settings))
    checks.append(_policy_check(settings))
    checks.append(_token_check(settings))
    home = settings.data.home
    checks.append(_data_directory_check(home))
    checks.extend(_database_checks(home))
    checks.append(_audit_check(settings))
    checks.extend(_stale_runtime_checks(settings))
    checks.append(_server_check(settings, server))
    for optional in ("openai", "psutil"):
        version = _version(optional)
        checks.append(_check(f"{optional} (optional)", True, version or "not installed"))
    return checks


def _templates_check(settings: Settings) -> dict[str, Any]:
    """Whether every prompt template in force compiles: a broken one fails each request."""
    try:
        templates = PromptTemplates(settings.templates.dir)
        templates.load_all()
    except ConfigError as exc:
        return _check("prompt templates", False, "broken", exc.message)
    strays = templates.strays()
    if strays:
        names = ", ".join(f"{n}.j2" for n in NAMES)
        fix = f"rename or remove it: templates.dir reads only {names}"
        return _check("prompt templates", False, "; ".join(strays), fix)
    overridden = [i.origin for i in templates.info() if i.origin != "built-in"]
    return _check("prompt templates", True, ", ".join(overridden) or "built-in")


def _serve_settings_check(settings: Settings) -> dict[str, Any]:
    """What `tether serve` refuses at start beyond the settings' own checks: an engine kind
    no plugin registers, a plugin whose routes fail to be added, a FIM template or
    compliance action it does not know, a TLS pair that does not load."""
    from fastapi import FastAPI

    from tether.compliance.actions import validate_actions
    from tether.engines.registry import engine_factory
    from tether.plugins import build_manager
    from tether.server.app import own_routers
    from tether.server.plugin_routes import add_plugin_routes
    from tether.server.runner import tls_files

    problems = []

    def named(check: Callable[[], object]) -> None:
        """Run ``check``, keeping what it refuses: each is named, not only the first."""
        try:
            check()
        except ModelError:
            pass  # the model check names it
        except ConfigError as exc:
            if exc.message not in problems:  # plugins load with the compliance actions
                problems.append(exc.message)
        except OSError as exc:  # a file it reads that this user may not (data.home)
            fix = too_few_files(exc) or "check its permissions"
            problems.append(f"{exc.strerror or exc} ({exc.filename}): {fix}")

    def fim_template() -> None:
        fim_tokens = read_gguf(resolve_model_path(settings.engine.model_path))[1]
        resolve_template(settings.engine.fim_template, fim_tokens)

    def plugins() -> None:
        manager = build_manager(settings)
        named(lambda: engine_factory(settings, manager))
        # Routes are added as the server starts: one that fails (a scope no token can hold,
        # a path of tether's own) refuses the start, so they are added here too, to an app
        # of their own beside tether's routes.
        own = [route for router in own_routers() for route in router.routes]
        # Without the pages build_app leaves out (/redoc), which a plugin may serve.
        app = FastAPI(docs_url=None, redoc_url=None)
        named(lambda: add_plugin_routes(app, manager, own))

    named(plugins)
    if settings.compliance.enabled:
        named(lambda: validate_actions(settings.compliance.actions))
    named(lambda: tls_files(settings))
    if settings.engine.kind == "llamacpp":
        named(fim_template)
    if problems:
        return _check("serve settings", False, "refused at start", "; ".join(problems))
    return _check(
        "serve settings", True, "the engine, plugin routes, compliance actions and TLS load"
    )


def _policy_check(settings: Settings) -> dict[str, Any]:
    """Whether the prompt policy loads: a broken custom rule, action or allow-list entry
    stops ``tether serve`` at start, so it is named here first."""
    policy = settings.policy
    if not policy.enabled:
        return _check("prompt policy", True, "disabled (policy.enabled = false)")
    try:
        scanner = Scanner.from_settings(policy)
    except ConfigError as exc:
        return _check("prompt policy", False, "broken", f"{exc.message} (see docs/policy.md)")
    detail = f"{len(scanner.rules)} rules in force; {len(policy.rules)} custom in policy.rules"
    return _check("prompt policy", True, detail)


def _token_check(settings: Settings) -> dict[str, Any]:
    """Whether the server would get its admin token: a secret file that is not mounted or
    holds no token stops ``tether serve`` at start. The token itself is never shown."""
    server = settings.server
    if server.token_file is None and not server.token:
        return _check("admin token", True, "a new one at each start")
    source = f"from {server.token_file}" if server.token_file else "server.token"
    try:
        server.fixed_token()
    except ConfigError as exc:
        return _check(
            "admin token", False, f"{source}: `tether serve` would refuse it", exc.message
        )
    return _check("admin token", True, source)


def _data_directory_check(home: Path) -> dict[str, Any]:
    """Whether tether can keep its data in ``home``: a directory (or one it can make)."""
    existing = _existing_parent(home)
    if not existing.is_dir():
        what = "is a file" if existing == home else f"is under {existing}, a file"
        return _check(
            "data directory",
            False,
            f"{home} {what}, not a directory",
            "move the file aside, or set TETHER_HOME to a directory",
        )
    # Tried, not asked of os.access: root may "write" /proc and read-only mounts.
    try:
        with tempfile.TemporaryDirectory(dir=existing, prefix=".tether-doctor-"):
            pass
    except OSError as exc:
        detail = f"{home}: cannot write in {existing} ({exc.strerror or exc})"
        return _check(
            "data directory", False, detail, f"make {existing} writable or set TETHER_HOME"
        )
    return _check("data directory", True, str(home))


def _audit_check(settings: Settings) -> dict[str, Any]:
    """Whether the audit log would open: its chain and checkpoints as the writers check
    them (read only), so a damaged log is found here, not by the next request."""
    from tether.audit.log import audit_folder

    folder = audit_folder(settings)
    try:
        return _audit_folder_check(settings, folder)
    except OSError as exc:  # a data directory of another user's: the other checks go on
        where = exc.filename or folder
        detail = f"{folder} cannot be read ({exc.strerror or exc}: {where})"
        return _check(
            "audit log", False, detail, "make it readable by this user, or set TETHER_HOME"
        )


def _audit_folder_check(settings: Settings, folder: Path) -> dict[str, Any]:
    from tether.audit.checkpoint import parse_verifier_key
    from tether.audit.handoff import INCOMING, count_waiting
    from tether.audit.log import newest_uncovered_problem
    from tether.audit.verify import verify

    if not settings.audit.enabled:
        return _check("audit log", True, "off (audit.enabled = false)")
    if not folder.exists():
        return _check("audit log", True, f"{folder} (made by the first request)")
    if not folder.is_dir():
        return _check(
            "audit log", False, f"{folder} is not a folder", "move it aside: the log goes there"
        )
    key = folder / "verifier.key"
    if not key.is_file():
        return _unverifiable_check(settings, folder)
    try:
        verifier = parse_verifier_key(key.read_text())
        report = verify(folder, verifier)
    except (OSError, TetherError) as exc:
        return _check("audit log", False, f"{folder} cannot be read: {exc}", MEND_AUDIT)
    if not report.ok:
        return _check("audit log", False, f"{folder}: {report.error}", MEND_AUDIT)
    uncovered = newest_uncovered_problem(folder)
    if uncovered is not None:
        return _check("audit log", False, f"{folder}: {uncovered}", MEND_AUDIT)
    signing = settings.audit.key_file or folder / "signing.key"
    problem = _signing_key_problem(signing, verifier.public.encode())
    if problem:
        return _check("audit log", False, f"{folder}: {problem}", MEND_KEY)
    detail = f"{folder}: {report.records} records, verified"
    if report.uncovered:  # a log being written, or a crash's: its next opening says so
        detail += f"; {report.uncovered} after the last checkpoint: the next checkpoint signs them"
    if waiting := count_waiting(folder)[0]:
        detail += (
            f"; {waiting} left in {INCOMING}/ by commands while another kept the log: its "
            "keeper's next checkpoint signs them in, else the next to open it"
        )
    return _check("audit log", True, detail)


def _unverifiable_check(settings: Settings, folder: Path) -> dict[str, Any]:
    """A log without its verifier.key: at least the signing key must be the one that
    signed its last checkpoint, or the next start refuses to sign on."""
    from tether.audit import segments
    from tether.audit.checkpoint import Signer, load_or_create_key
    from tether.audit.log import default_origin, refuse_a_key_that_did_not_sign

    unchecked = f"{folder} (not checked: no verifier.key)"
    if not (folder / segments.CHECKPOINTS).exists():
        return _check("audit log", True, unchecked)
    signing = settings.audit.key_file or folder / "signing.key"
    if not signing.is_file():
        problem = f"its signing key {signing} and its verifier.key are both missing"
        return _check("audit log", False, f"{folder}: {problem}", MEND_KEY)
    try:
        signer = Signer(settings.audit.origin or default_origin(), load_or_create_key(signing))
        refuse_a_key_that_did_not_sign(folder, signer)
    except (OSError, TetherError) as exc:
        return _check("audit log", False, f"{folder}: {exc}", MEND_KEY)
    return _check(
        "audit log",
        True,
        f"{unchecked}; its signing key signed its last checkpoint, and the next start "
        "writes verifier.key again (keep a copy of it apart from the log)",
    )


def _signing_key_problem(path: Path, public: bytes) -> str:
    """Why the log could not be signed on with the key at ``path``; "" when it can."""
    from tether.audit.checkpoint import load_or_create_key

    if not path.is_file():
        return f"its signing key {path} is missing, so the next start would refuse to sign"
    try:
        key = load_or_create_key(path)  # there: read, never made
    except (OSError, TetherError) as exc:
        return str(exc)
    if key.verify_key.encode() != public:
        return f"its signing key {path} is not the one verifier.key names, which signed it"
    return ""


MEND_KEY = (
    "restore the signing key this log was signed with; to start a new log with another key, "
    "move the log's folder aside and keep it, as it still verifies with its verifier.key"
)
MEND_AUDIT = (
    "`tether audit verify` names the first bad record or line; where the damage is in the "
    "records or the last checkpoint, the server and the commands that write the log refuse "
    "to open it until it is mended: restore the log from a copy, or move the folder aside "
    "to start a new one"
)


def _database_checks(home: Path) -> list[dict[str, Any]]:
    """SQLite's quick check of each database in the data directory."""
    checks = []
    for path in sorted(home.glob("*.sqlite")) if home.is_dir() else ():
        if not path.is_file():
            checks.append(
                _check(
                    path.name,
                    False,
                    f"{path} is not a file",
                    "move it aside: tether keeps a database there",
                )
            )
            continue
        try:
            damage = damage_in(path)
        except sqlite3.Error as exc:  # locked or unreadable: not known to be damaged
            checks.append(_check(path.name, True, f"{path} (not checked: {exc})"))
            continue
        if damage is not None:
            checks.append(_check(path.name, False, f"{path} is damaged: {damage}", MEND))
            continue
        checks.append(_schema_check(path))
    return checks


# The databases whose owner refuses a schema newer than its own (the usage ledger takes
# one in its stride), so that serve and their commands would stop on it.
NEWEST_SCHEMA = {
    "store.sqlite": store_db.SCHEMA_VERSION,
    "evals.sqlite": evals_store.SCHEMA_VERSION,
    "traces.sqlite": trace_store.SCHEMA_VERSION,
}


def _schema_check(path: Path) -> dict[str, Any]:
    """Whether this tether reads ``path``'s schema: the server does not start on one a
    newer tether wrote (after a downgrade), though the file is whole."""
    newest = NEWEST_SCHEMA.get(path.name)
    if newest is None:
        return _check(path.name, True, str(path))
    try:
        with closing(connect_to_check(path)) as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
    except sqlite3.Error as exc:
        return _check(path.name, True, f"{path} (not checked: {exc})")
    if version == newest or version == 0:  # 0: made, and not yet set up
        return _check(path.name, True, str(path))
    if version < newest:  # written by an older tether: said before it is done
        return _check(
            path.name,
            True,
            f"{path} (schema {version}): the server, or the first command that writes it, "
            f"upgrades it to schema {newest}, after which a tether that reads schema "
            f"{version} at most no longer opens it; to keep a way back, copy the data "
            "directory first",
        )
    return _check(
        path.name,
        False,
        f"{path} was written by a newer tether (schema {version}; this tether, {__version__}, "
        f"reads schema {newest} at most): the server will not start, nor will the commands "
        "that use it",
        newer_schema_remedy(path, version, may_start_empty=path.name == "traces.sqlite"),
    )


def _stale_runtime_checks(settings: Settings) -> list[dict[str, Any]]:
    """A line for each runtime file left by a server that ended without removing it
    (killed, or crashed): removed now, as any command looking for a server does, but said,
    since that server is not running and its end may not have been meant."""
    runtime_dir = settings.server.runtime_dir or default_runtime_dir()
    return [
        _check(
            "runtime file",
            True,
            f"the server at {record.url} (pid {record.pid}) ended without removing its "
            "runtime file (killed, or crashed); removed it. If that end was not meant, see "
            "the server's log and start it again with `tether serve`",
        )
        for record in remove_stale_records(runtime_dir)
    ]


def _server_check(settings: Settings, server: str | None = None) -> dict[str, Any]:
    """The server at ``server`` (--server, TETHER_SERVER), else the one the runtime file
    names, if any, checked by asking it."""
    runtime_dir = settings.server.runtime_dir or default_runtime_dir()
    if server is not None:
        try:
            url = server_url(server)
        except TetherError as exc:
            return _check("server", False, exc.message, "fix --server or TETHER_SERVER")
        record = find_runtime_record(runtime_dir, url)
        where, fix = url, "start `tether serve` there, or fix --server or TETHER_SERVER"
    else:
        record = local_server(runtime_dir, settings.data.home)
        if record is None:
            return _free_port_check(settings)
        url, where = record.url, f"{record.url} (pid {record.pid})"
        fix = f"restart it with `tether serve`, or stop process {record.pid}"
    try:
        ready = direct.request("GET", f"{url}/readyz", timeout=5.0, verify=trust_for(record))
    except httpx.HTTPError as exc:
        refused = certificate_problem(exc)
        if refused is not None:  # it is there: restarting it would mend nothing
            return _check(
                "server",
                False,
                f"{where} answers, but its certificate did not verify ({refused})",
                "give the CA that issued it in SSL_CERT_FILE, or an address the certificate "
                "names in --server or TETHER_SERVER",
            )
        return _check("server", False, f"{where} does not answer", fix)
    if ready.status_code == 200:
        return _check("server", True, where)
    proxied = proxy_answer(ready)
    if proxied is not None:
        return _check("server", False, f"{where} did not answer /readyz: {proxied}", fix)
    if ready.status_code in (404, 405, 501):  # every tether server has /readyz
        return _check(
            "server",
            False,
            f"{where} answers but is not a tether server (HTTP {ready.status_code} on /readyz)",
            "give --server (or TETHER_SERVER) the address `tether serve` prints",
        )
    why = _not_ready_reason(ready)
    fix = "see its log; a gateway needs an upstream that answers (`upstream.base_urls`)"
    return _check("server", False, f"{where} answers but is not ready: {why}", fix)


def _free_port_check(settings: Settings) -> dict[str, Any]:
    """No server of this data directory runs: whether `tether serve` could write its
    runtime file and listen where its settings say (another program, or another data
    directory's server, may hold the port)."""
    from tether.server.runner import bind_socket

    host, port = settings.server.host, settings.server.port
    try:  # the server's first step: a folder it cannot make (HOME not writable) ends it
        _check_runtime_folder(settings.server.runtime_dir or default_runtime_dir())
        bind_socket(host, port).close()
    except ConfigError as exc:
        reason, _, fix = exc.message.partition("; ")
        return _check(
            "server", False, f"none running, and `tether serve` would fail: {reason}", fix
        )
    return _check("server", True, f"none running; {host}:{port} is free for `tether serve`")


def _check_runtime_folder(runtime_dir: Path) -> None:
    """ConfigError where `tether serve` could not make ``runtime_dir`` its own, as it
    would say it; one that is missing is tried, not made."""
    existing = _existing_parent(runtime_dir)
    if existing == runtime_dir:
        private_runtime_dir(runtime_dir)  # another user's is refused, a loose one tightened
        return
    try:
        with tempfile.TemporaryDirectory(dir=existing, prefix=".tether-doctor-"):
            pass
    except OSError as exc:
        raise ConfigError(
            f"cannot make the runtime folder {runtime_dir} ({exc.strerror or exc}); set "
            "server.runtime_dir (TETHER_SERVER_RUNTIME_DIR) to a folder of your own"
        ) from exc


# How long doctor waits for an upstream's one-token completion (or its read timeout).
UPSTREAM_ANSWER_WAIT_S = 30.0


def _upstream_check(settings: Settings, url: str) -> dict[str, Any]:
    """Whether an upstream lists the gateway's model and answers a one-token completion
    with it, with the gateway's key: answering its listing is not enough (a model it does
    not serve, a generation that fails or hangs)."""
    from tether.engines.openai import (
        checked_url,
        gateway_secrets,
        refusal_reason,
        without_secrets,
    )

    name = f"upstream {url_shown(url)}"
    key = settings.upstream.api_key
    try:
        url = checked_url(url, key).rstrip("/")
    except ConfigError as exc:  # what `tether serve` refuses
        return _check(name, False, "unusable", exc.message)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    fix_settings = "fix the gateway's upstream settings, or the upstream"
    try:
        listing = direct.request(  # directly, as the gateway reaches it
            "GET",
            f"{url}/models",
            headers=headers,
            timeout=settings.upstream.connect_timeout_s,
            always_direct=True,
        )
    except httpx.HTTPError as exc:
        why = str(exc) or type(exc).__name__
        return _check(name, False, f"does not answer ({why})", "start it, or fix the URL")
    if not listing.is_success:  # read as the gateway reads it: its key, its URL
        return _check(name, False, refusal_reason(listing.status_code), fix_settings)
    listed = _listed_ids(listing)
    model = settings.upstream.model or next(iter(listed), "")
    if not model:
        return _check(name, False, "lists no models", "load a model there, or fix the URL")
    if settings.upstream.model and model not in listed:
        shown = ", ".join(listed[:5]) or "none"
        return _check(
            name,
            False,
            f"does not list upstream.model {model!r} (it lists {shown})",
            "set upstream.model to a model it lists, or leave it unset",
        )
    wait_s = min(settings.upstream.read_timeout_s, UPSTREAM_ANSWER_WAIT_S)
    try:
        answer = direct.request(
            "POST",
            f"{url}/completions",
            headers=headers,
            json={"model": model, "prompt": "Hi", "max_tokens": 1},
            timeout=httpx.Timeout(wait_s, connect=settings.upstream.connect_timeout_s),
            always_direct=True,
        )
    except httpx.TimeoutException:
        return _check(
            name,
            False,
            f"lists {model} but leaves a one-token completion unanswered for {wait_s:g} s",
            "see the upstream's log: its generation may be stuck or its queue full",
        )
    except httpx.HTTPError as exc:
        why = str(exc) or type(exc).__name__
        return _check(name, False, f"lists {model} but a completion failed ({why})", fix_settings)
    if answer.status_code == 429:  # busy: it serves, just not this one now
        return _check(name, True, f"lists {model}; busy (HTTP 429) when asked for a completion")
    if not answer.is_success:
        # The upstream's words, without the gateway's own key, which it may echo back; cut
        # once that is out.
        said = without_secrets(_error_message(answer), gateway_secrets(key, [url]))[:200]
        reason = refusal_reason(answer.status_code) + (f": {said}" if said else "")
        return _check(
            name, False, f"lists {model} but fails a one-token completion ({reason})", fix_settings
        )
    if not _is_completion(answer):
        return _check(
            name,
            False,
            f"lists {model} but its answer to a completion is not an OpenAI completion",
            "upstream.base_urls should name an OpenAI-compatible API, ending in /v1",
        )
    return _check(name, True, f"answers a one-token completion with {model}")


def _is_completion(answer: httpx.Response) -> bool:
    try:
        choices = answer.json().get("choices")
    except (ValueError, AttributeError):
        return False
    return isinstance(choices, list) and bool(choices)


def _listed_ids(listing: httpx.Response) -> list[str]:
    """The ids of the models an upstream's ``/models`` answer lists."""
    try:
        data = listing.json().get("data") or []
        return [str(m["id"]) for m in data if isinstance(m, dict) and "id" in m]
    except (ValueError, AttributeError, TypeError):
        return []


def _error_message(response: httpx.Response) -> str:
    """The message of an OpenAI-shaped error answer; "" for another body."""
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        return ""
    message = error.get("message") if isinstance(error, dict) else error
    return str(message) if message else ""


def _not_ready_reason(response: httpx.Response) -> str:
    """Why ``/readyz`` says the server is not ready, from its body when it is readable."""
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}"
    if not isinstance(body, dict):
        return f"HTTP {response.status_code}"
    if body.get("reason"):
        return str(body["reason"])
    if body.get("audit") or body.get("engine"):  # a server from before "reason"
        return str(body.get("audit") or f"the {body['engine']} engine is not answering")
    return f"HTTP {response.status_code}"


def _existing_parent(path: Path) -> Path:
    while not path.exists():
        path = path.parent
    return path


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option(
    "--server",
    envvar="TETHER_SERVER",
    metavar="URL",
    help="The running server to check; default: the one the runtime file names.",
)
@terminated_as_interrupted()  # SIGTERM stops the decode probe's child as Ctrl-C does
def doctor(as_json: bool, server: str | None) -> None:
    """Check what is installed and configured, and say what to do about what is missing."""
    try:
        checks = run_checks(settings_from_flags(), server)
    except TetherError as exc:
        checks = [_check("config", False, exc.message, "fix tether.toml or the TETHER_* variables")]
    if as_json:
        click.echo(json.dumps(checks, indent=2))
    else:
        for c in checks:
            mark = "ok " if c["ok"] else "FIX"
            click.echo(
                f"[{mark}] {c['check']}: {c['detail']}" + (f" → {c['fix']}" if c["fix"] else "")
            )
    if not all(c["ok"] for c in checks):
        sys.exit(EXIT_NO)


COMMANDS = [models, config, doctor]
