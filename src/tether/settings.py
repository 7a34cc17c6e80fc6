"""Every configuration key of tether, declared once, typed and documented.

Values come from, lowest precedence first: the defaults below, ``tether.toml`` (found
from the working directory upwards, or named by ``TETHER_CONFIG``), the environment
(``TETHER_<SECTION>_<KEY>``, e.g. ``TETHER_SERVER_PORT``), then command-line flags.
``tether config`` prints the effective value of each key and where it came from.
"""

from __future__ import annotations

import difflib
import json
import logging
import os
import re
import tomllib
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from tether.credentials import url_shown
from tether.errors import ConfigError
from tether.openfiles import too_few_files

CONFIG_FILE_NAME = "tether.toml"
log = logging.getLogger("tether.settings")


def _numeric(annotation: Any) -> bool:
    """Whether a field holds a number (``int``, ``float``, or either or None)."""
    members = typing.get_args(annotation) or (annotation,)
    return bool(members) and any(m in (int, float) for m in members) and bool not in members


class _Section(BaseModel):
    # A price, a limit or a timeout of inf or nan would be written out as invalid JSON.
    model_config = ConfigDict(extra="forbid", validate_default=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _numbers_are_not_booleans(cls, value: Any, info: ValidationInfo) -> Any:
        """``port = true`` is a mistake, not port 1 (which Pydantic would make of it)."""
        field = cls.model_fields.get(info.field_name or "")
        if isinstance(value, bool) and field is not None and _numeric(field.annotation):
            raise PydanticCustomError(
                "bool_for_number", "a number is needed, not {value}", {"value": str(value).lower()}
            )
        return value

    @field_validator("*", mode="after")
    @classmethod
    def _home_folder_expanded(cls, value: Any) -> Any:
        """``~/tether`` is the home folder's, as a shell would read it: not a folder named
        ``~`` in the current one."""
        if not isinstance(value, Path):
            return value
        try:
            return value.expanduser()
        except RuntimeError:  # ~someone who is no user here, or no home folder known
            raise ValueError(
                f"{str(value).split('/')[0]} names no home folder known here; give the "
                "folder's full path"
            ) from None


MIN_ADMIN_TOKEN_CHARS = 16


def _long_enough(token: str | None, where: str) -> str | None:
    """``token``, unless it is short enough to guess: it opens every route."""
    if token is not None and len(token) < MIN_ADMIN_TOKEN_CHARS:
        raise ConfigError(
            f"{where} holds an admin token of {len(token)} characters, short enough to guess; "
            f"give one of {MIN_ADMIN_TOKEN_CHARS} or more random characters "
            "(`openssl rand -hex 24`), or leave it unset for a new one at each start"
        )
    return token


class ServerSettings(_Section):
    host: str = Field("127.0.0.1", description="Address to bind; loopback unless told otherwise.")
    port: int = Field(
        8421, ge=0, le=65535, description="TCP port to listen on (0 picks a free one)."
    )
    token: str | None = Field(
        None,
        description="Fixed admin bearer token, of 16 characters or more; by default a random "
        "one is made at each start and written to the runtime file.",
    )
    token_file: Path | None = Field(
        None,
        description="File holding the fixed admin token (a Docker or Kubernetes secret), "
        "instead of server.token.",
    )
    runtime_dir: Path | None = Field(
        None,
        description="Where the running server writes its address and admin token (mode 0600); "
        "a folder of this user's, made or tightened to 0700 when the server starts; "
        "default $XDG_RUNTIME_DIR/tether or ~/.cache/tether/run.",
    )
    tls_cert: Path | None = Field(
        None,
        description="PEM certificate (chain) to serve HTTPS with, for teams without a proxy "
        "in front; needs server.tls_key.",
    )
    tls_key: Path | None = Field(None, description="PEM private key of server.tls_cert.")
    access_log: bool = Field(
        True,
        description="Write one line per request to stderr: time, request id, principal, "
        "method, path, status, duration, tokens; never prompts, answers or credentials.",
    )
    log_format: Literal["text", "json"] = Field(
        "text",
        description="Log lines as text, or each as one JSON object: the access log, the "
        "server's own lines and the start line.",
    )
    max_body_mb: float = Field(
        8.0,
        gt=0,
        description="Largest request body, in MB; a larger one gets 413 before it is read. "
        "`tether chat` refuses a longer line of its input as it reads it.",
    )
    keep_alive_s: int = Field(
        75,
        ge=1,
        description="How long a connection idle between requests is kept open. Keep it "
        "above the idle timeout of a load balancer or proxy that reuses its connections "
        "to tether (60 s on AWS's ALB, 600 s on Google Cloud's): one that sends a request "
        "on a connection tether is closing answers its client 502.",
    )
    shutdown_grace_s: float = Field(
        20.0,
        ge=0,
        description="On SIGTERM or Ctrl-C, how long requests in flight may go on; then each "
        "gets an answer that says the server shut down (503, or an error event in a "
        "stream). Keep it below your orchestrator's kill timeout.",
    )
    stream_keepalive_s: float = Field(
        5.0,
        gt=0,
        description="How often a stream with nothing to send sends a comment line (`: "
        "keepalive`), which SSE clients skip: while it waits for its first token (a free "
        "sequence, a long prompt read, a slow upstream; the whole answer where a rule "
        "blocks or redacts answers, held for its checks) and while it holds its answer "
        "back because it may be a tool call. A proxy's or client's read timeout would otherwise "
        "cut it. A stream that waited this long has begun (200): an error after that is an "
        "error event inside it, as one after its first token is.",
    )

    def fixed_token(self) -> str | None:
        """The configured admin token, from server.token or server.token_file, if any."""
        if self.token_file is None:
            return _long_enough(self.token, "server.token")
        try:
            token = self.token_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(
                f"server.token_file {self.token_file} cannot be read ({exc}); mount the secret "
                "there or unset server.token_file"
            ) from exc
        if not token or any(c.isspace() for c in token):
            raise ConfigError(
                f"server.token_file {self.token_file} must hold one token on one line"
            )
        return _long_enough(token, f"server.token_file {self.token_file}")

    @field_validator("host")
    @classmethod
    def _an_address(cls, host: str) -> str:
        """An empty host binds every interface, the opposite of what leaving it out does."""
        if not host.strip():
            raise ValueError(
                "is empty, which would listen on every interface; leave it out for "
                "127.0.0.1 (this machine only), or give 0.0.0.0 to listen on all"
            )
        return host.strip()

    @field_validator("token")
    @classmethod
    def _one_word(cls, token: str | None) -> str | None:
        """A bearer token is read without surrounding blanks: one with blanks in it could
        never be matched."""
        if token is not None and not token.strip():
            return None  # empty, as an unset variable: a fresh token at each start
        if token is not None and any(c.isspace() for c in token):
            raise ValueError(
                "must be one word, without blanks (a bearer token is read without them)"
            )
        return token

    @model_validator(mode="after")
    def _one_token_source(self) -> ServerSettings:
        if self.token is not None and self.token_file is not None:
            raise ValueError("set server.token or server.token_file, not both")
        return self


class EngineSettings(_Section):
    kind: str = Field(
        "llamacpp",
        description="`llamacpp`: embedded model; `openai`: OpenAI-compatible upstreams; "
        "or a kind an enabled plugin registers.",
    )
    model_path: Path | None = Field(
        None, description="GGUF file for the embedded engine; default SmolLM2-135M-Instruct Q4_1."
    )
    model_id: str | None = Field(
        None, description="Model name clients use; default the GGUF file name without suffix."
    )
    n_ctx: int = Field(
        2048, ge=256, description="Context window of each request (prompt and answer), in tokens."
    )
    n_parallel: int = Field(
        4,
        ge=1,
        le=64,
        description="Requests generated at once, batched on one context of n_ctx x n_parallel "
        "tokens.",
    )
    n_threads: int | None = Field(
        None,
        ge=1,
        le=512,  # llama.cpp's own limit (GGML_MAX_N_THREADS): more would fail at load
        description="CPU threads, at most 512; default the cores this process may use (its "
        "CPU set, within a container's CPU limit).",
    )
    n_batch: int = Field(
        512, ge=16, description="Tokens decoded per step, prompt chunks and answers together."
    )
    kv_type: Literal["f16", "q8_0"] = Field(
        "q8_0",
        description="KV cache precision: q8_0 holds twice the tokens in the same memory; f16 "
        "reads long prompts about 1.5x faster and checks drafted tokens faster.",
    )
    max_queue: int = Field(
        256, ge=0, description="Requests that may wait for a free sequence; beyond it: HTTP 429."
    )
    stream_interval_ms: int = Field(
        15,
        ge=0,
        le=1000,
        description="Generated text goes to a request at most this often, the tokens of that "
        "time as one chunk; a request's first text and its end do not wait for it. Fewer, larger "
        "chunks leave the cores to the model (bench/peer_server.py); 0: each token as it is "
        "made.",
    )
    prompt_lookup: int | None = Field(
        None,
        ge=0,
        le=64,
        description="Tokens a suggestion drafts from its own text and checks in one step "
        "(prompt-lookup speculative decoding: a rewrite mostly copies the file); 0: off. "
        "Default: 8 with the q8_0 cache, whose answers stay the same bytes; off with f16, "
        "whose batched arithmetic can change a greedy answer (bench/suggest_lookup.py).",
    )
    slot_save_path: Path | None = Field(
        None,
        description="Directory where llama.cpp's `POST /slots/{id}?action=save` writes a "
        "sequence's KV cache and `restore` reads it back (llama-server's --slot-save-path); "
        "unset: both are refused (501). Files are mode 0600: a cache holds its prompt's tokens.",
    )
    fim_template: str | None = Field(
        None,
        description="FIM prompt template: a built-in family name (qwen2.5-coder, starcoder2, "
        "deepseek-coder, codellama, codestral); for models without FIM tokens `prefix-editor` "
        "(the code before the cursor, the answer cut to the hole as editors do), `chat-infill` "
        "(an instruction through the chat template, cut the same way) or `prefix-only` (the "
        "code before the cursor, raw); or a template with {prefix} and {suffix}. Default: the "
        "model's own FIM tokens, else prefix-editor.",
    )


class UpstreamSettings(_Section):
    base_urls: list[str] = Field(
        default_factory=list,
        description="OpenAI-compatible base URLs (ending in /v1) for engine.kind = openai; "
        "comma-separated in the environment.",
    )

    balance: Literal["least-outstanding", "in-order"] = Field(
        "least-outstanding",
        description="How requests spread over the healthy upstreams: to the one with the "
        "fewest in flight, keeping requests that begin alike on one upstream "
        "(least-outstanding), or to the first in the list (in-order); both fail over to "
        "the next.",
    )
    affinity_slack: int = Field(
        2,
        ge=0,
        description="Requests in flight by which an upstream holding a prompt's cache may "
        "exceed the least busy one and still get it.",
    )
    api_key: str | None = Field(None, description="Bearer token sent to the upstreams.")
    model: str | None = Field(
        None,
        description="Model name sent upstream; default the first one the upstream lists. "
        "Named, the gateway starts while every upstream is down, and learns the model's "
        "context window from the first listing that gives it.",
    )
    connect_timeout_s: float = Field(2.0, gt=0, description="Connect timeout per upstream.")
    read_timeout_s: float = Field(
        300.0,
        gt=0,
        description="Seconds an upstream may send nothing: between streamed chunks, and "
        "before an answer asked for whole (a plain chat or completion) arrives at all; then "
        "504. Raise it for long plain answers from a slow upstream, or stream them.",
    )
    health_interval_s: float = Field(
        2.0,
        gt=0,
        description="Seconds between health checks of an upstream that is down (one in "
        "service is judged by its answers).",
    )

    @field_validator("base_urls")
    @classmethod
    def _each_once(cls, urls: list[str]) -> list[str]:
        seen: set[str] = set()
        for url in urls:
            key = url.strip().rstrip("/")
            if key in seen:
                raise ValueError(
                    f"{url_shown(url)} is listed twice; name each upstream once (it would get "
                    "twice the share of requests and two series in the metrics)"
                )
            seen.add(key)
        return urls


# Seeds are llama.cpp's: 32-bit and unsigned. A larger one would be cut to its low bits,
# and two requests with different seeds would sample alike; the largest, 0xFFFFFFFF, is
# LLAMA_DEFAULT_SEED, which llama.cpp reads as "draw one at random".
MAX_SEED = 2**32 - 2


class GenerationSettings(_Section):
    seed: int = Field(
        0,
        ge=0,
        le=MAX_SEED,
        description="Seed used when a request gives none; recorded with each answer.",
    )
    max_tokens: int = Field(
        256,
        ge=1,
        description="Tokens generated when a chat or FIM request gives no max_tokens, or -1.",
    )
    compress_context: bool = Field(
        True,
        description="Shrink the files editors send beside a FIM request: drop repeats, strip "
        "comments, docstrings and blank runs, reduce to signatures what still does not fit.",
    )


class PolicySettings(_Section):
    enabled: bool = Field(
        True,
        description="Scan prompts for secrets and personal data. Answers and `tether check` "
        "are scanned for secrets with these rules either way (`compliance.enabled`).",
    )
    rules: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Custom scanner rules, tables of id, description, regex, keywords, "
        "entropy, action (docs/policy.md).",
    )
    actions: dict[str, str] = Field(
        default_factory=dict,
        description="Action per rule id, overriding the rule's own: block, redact, "
        "pseudonymize, annotate or allow.",
    )
    allow: list[str] = Field(
        default_factory=list,
        description="sha256 fingerprints (hex) of values never flagged; from a finding's "
        "fingerprint field.",
    )


class ComplianceSettings(_Section):
    enabled: bool = Field(True, description="Check generated code before it is returned.")
    actions: dict[str, str] = Field(
        default_factory=dict,
        description="Action per compliance rule id: annotate, redact or block. With a rule "
        "set to redact or block (here or in policy), streamed answers are held until checked.",
    )
    stream_holdback: bool = Field(
        True,
        description="In a live stream, hold text that may be a secret the checks redact or "
        "block (from a rule's keyword to the line's end; each run of token characters) "
        "until it is checked. Off, such a secret is redacted only in the recorded answer.",
    )
    corpus_index: Path | None = Field(
        None,
        description="Fingerprint index of code that must not be reproduced; default "
        "<data.home>/corpus.sqlite.",
    )


class TemplateSettings(_Section):
    dir: Path | None = Field(
        None,
        description="Folder of prompt templates (chat.j2, fim.j2, suggest.j2) that override "
        "the built-ins; see `tether templates`.",
    )


class AuditSettings(_Section):
    enabled: bool = Field(
        True, description="Write a signed, hash-chained audit record per request."
    )
    content: Literal["commitment", "redacted", "full"] = Field(
        "commitment",
        description="How prompts and completions appear in records: salted sha256 "
        "commitments, the redacted text, or the full text.",
    )
    unwritable: Literal["serve", "refuse"] = Field(
        "serve",
        description="While the log cannot be written (a full or read-only disk; /readyz "
        "fails meanwhile): serve, holding the records in memory until the disk takes them "
        "(lost if the server stops first), or refuse every audited request with 503 "
        "audit_unavailable until it can.",
    )
    segment_bytes: int = Field(
        64 * 1024 * 1024, ge=4096, description="Start a new JSONL segment past this size."
    )
    checkpoint_interval_s: float = Field(
        1.0, gt=0, description="Seconds between signed checkpoints while records flow."
    )
    heartbeat_s: float = Field(
        10.0,
        ge=1.0,
        description="Seconds between checkpoints when idle, so a cut tail shows (at least 1: "
        "each is a signed line kept for good).",
    )
    origin: str | None = Field(
        None, description="Checkpoint origin line; default tether/<host name>."
    )
    key_file: Path | None = Field(
        None,
        description="Ed25519 signing key (made once, mode 0600); default "
        "<data.home>/audit/signing.key.",
    )
    webhook_url: str | None = Field(
        None, description="Ship records in batches, with the latest checkpoint, to this URL."
    )
    webhook_batch: int = Field(100, ge=1, description="Most records per webhook batch.")
    sentry_dsn: str | None = Field(
        None, description="Send checkpoints and policy violations (never content) to Sentry."
    )

    @field_validator("webhook_url")
    @classmethod
    def _an_http_url(cls, url: str | None) -> str | None:
        """Checked at start: a URL the sender cannot use would hold every record in the
        spool while the server served on as if they were shipped."""
        if not url:
            return None
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises for a port that is not a number
        except ValueError:
            parts = None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                f"{url_shown(url, path=False)!r} is not an http(s) URL; give one such as "
                "https://audit.example/tether"
            )
        return url


class TraceSettings(_Section):
    enabled: bool = Field(
        True, description="Keep a local trace of each request for `tether explain`."
    )
    max_age_days: float = Field(14.0, gt=0, description="Delete traces older than this.")
    max_mb: float = Field(256.0, gt=0, description="Delete the oldest traces past this size.")


class EvalSettings(_Section):
    datasets_dir: Path | None = Field(
        None,
        description="Folder of benchmark release files (humanevalplus/, mbppplus/, "
        "humaneval-infilling/) that `tether eval` reads; HumanEval itself ships with tether.",
    )
    workers: int | None = Field(
        None, ge=1, description="Sandboxes that score samples at once; default all cores."
    )


PERMISSIVE_LICENCES = [
    "0BSD", "Apache-2.0", "BSD-2-Clause", "BSD-3-Clause", "BSD-3-Clause-Open-MPI", "CC0-1.0",
    "ISC", "MIT", "MIT-0", "PSF-2.0", "Python-2.0", "Unlicense", "Zlib",
]  # fmt: skip


WEAK_COPYLEFT_LICENCES = [
    "BSD-3-Clause-Clear", "CNRI-Python", "HPND", "MPL-2.0", "LGPL-2.0-or-later",
    "LGPL-2.1-only", "LGPL-2.1-or-later", "LGPL-3.0-only", "LGPL-3.0-or-later",
    # The GCC runtime library (libgcc, libgfortran, libstdc++), which wheels built with GCC
    # bundle: its exception lets a program compiled with GCC ship it under any licence.
    "GPL-3.0-only WITH GCC-exception-3.1", "GPL-3.0-or-later WITH GCC-exception-3.1",
]  # fmt: skip
STRONG_COPYLEFT_LICENCES = [
    "GPL-2.0-only", "GPL-2.0-or-later", "GPL-3.0-only", "GPL-3.0-or-later",
    "AGPL-3.0-only", "AGPL-3.0-or-later", "SSPL-1.0",
]  # fmt: skip


class StoreSettings(_Section):
    retrieve: bool = Field(
        True,
        description="Put vetted snippets from the function store into prompts (chat, "
        'suggestions, FIM); a request may turn it off with "snippets": false in its body.',
    )
    chat_tokens: int = Field(512, ge=0, description="Tokens of snippets a chat may get.")
    suggest_tokens: int = Field(768, ge=0, description="Tokens of snippets a suggestion may get.")
    fim_tokens: int = Field(256, ge=0, description="Tokens of snippets a FIM prompt may get.")
    max_results: int = Field(5, ge=1, le=100, description="Snippets retrieved at most.")
    per_origin: int = Field(
        2, ge=1, description="Snippets from one file at most among the results."
    )
    min_similarity: float = Field(
        0.35,
        ge=-1.0,
        le=1.0,
        description="Cosine similarity an embedding match needs to count (hybrid search).",
    )
    min_bm25: float = Field(0.0, ge=0, description="BM25 score a full-text match needs.")
    embeddings: bool | None = Field(
        None,
        description="Hybrid search with embeddings: true, false, or unset for 'when the "
        "tether[embeddings] extra is installed'.",
    )
    licences: list[str] = Field(
        default_factory=lambda: list(PERMISSIVE_LICENCES),
        description="SPDX licences a snippet may carry to be vetted.",
    )
    max_code_kb: int = Field(64, ge=1, description="Largest snippet the store takes.")
    call_timeout_s: float = Field(
        5.0, gt=0, le=300, description="Wall-clock limit of one call to a stored function."
    )
    call_workers: int = Field(
        4,
        ge=1,
        le=64,
        description="Stored-function calls the server runs at once (HTTP and MCP), each in a "
        "sandboxed process.",
    )
    call_queue: int = Field(
        16,
        ge=0,
        le=4096,
        description="Calls that may wait for one of those; beyond, 429 with Retry-After.",
    )
    test_timeout_s: float = Field(
        30.0,
        gt=0,
        le=600,
        description="Wall-clock limit of a snippet's attached test, run before approval.",
    )


# Past these, costs could overflow to infinity, which JSON cannot hold; no real price
# comes near them (a million dollars per million tokens is a dollar a token).
MAX_PRICE_USD = 1_000_000.0
MAX_HARDWARE_USD = 1e12
MAX_POWER_WATTS = 1e9


class ModelPrice(_Section):
    input: float = Field(
        ge=0, le=MAX_PRICE_USD, description="USD per million prompt tokens (up to 1,000,000)."
    )
    output: float = Field(
        ge=0, le=MAX_PRICE_USD, description="USD per million completion tokens (up to 1,000,000)."
    )
    cached_input: float | None = Field(
        None,
        ge=0,
        le=MAX_PRICE_USD,
        description="USD per million prompt tokens read from a cache; default input.",
    )


class UsageSettings(_Section):
    enabled: bool = Field(
        True,
        description="Keep a ledger of every API request (who, model, tokens, times, bytes; "
        "never content) for `tether usage report`.",
    )
    retention_days: float = Field(400.0, gt=0, description="Delete ledger rows older than this.")
    compare_with: list[str] = Field(
        default_factory=lambda: ["gpt-4o", "claude-sonnet-4", "gpt-4o-mini"],
        description="Hosted models whose list prices the cost report shows (names in the "
        "bundled price table or in usage.prices).",
    )
    compare_embeddings_with: str = Field(
        "text-embedding-3-small",
        min_length=1,
        description="Hosted embedding model whose list price the cost report charges "
        "`/v1/embeddings` requests at, beside each model of compare_with (a name in the "
        "price table or usage.prices).",
    )
    prices: dict[str, ModelPrice] = Field(
        default_factory=dict,
        description="Prices to add to or replace in the bundled table, per model: "
        "{input, output, cached_input} in USD per million tokens.",
    )
    hardware_usd: float = Field(
        0.0,
        ge=0,
        le=MAX_HARDWARE_USD,
        description="What the serving machine cost, amortised in the cost report.",
    )
    amortise_years: float = Field(3.0, gt=0, description="Years to spread hardware_usd over.")
    power_watts: float = Field(
        0.0,
        ge=0,
        le=MAX_POWER_WATTS,
        description="Extra power the machine draws while generating; used for energy when "
        "no meter is readable.",
    )
    usd_per_kwh: float = Field(
        0.15, ge=0, le=MAX_PRICE_USD, description="Electricity price for the energy cost."
    )
    powercap_dir: Path = Field(
        Path("/sys/class/powercap"),
        description="Linux powercap (RAPL) folder whose energy counters the server samples "
        "for measured energy, when readable.",
    )


class LicenceSettings(_Section):
    allow: list[str] = Field(
        default_factory=lambda: [*PERMISSIVE_LICENCES, *WEAK_COPYLEFT_LICENCES],
        description="SPDX licences `tether licences` lets ship: permissive and weak "
        "copyleft by default, and the GCC runtime library's GPL with its exception.",
    )
    deny: list[str] = Field(
        default_factory=lambda: list(STRONG_COPYLEFT_LICENCES),
        description="SPDX licences that never pass: an expression offering one as a choice "
        "(`MIT OR GPL-3.0-only`) passes only through its other licences.",
    )
    exceptions: dict[str, str] = Field(
        default_factory=dict,
        description="Packages that pass whatever their licence, each with the reason a "
        'reviewer gave: {package = "reason"}.',
    )


class PluginSettings(_Section):
    enabled: list[str] = Field(
        default_factory=list,
        description="Third-party plugins (entry points of the `tether` group) to load, by name.",
    )
    hook_timeout_s: float = Field(
        30.0,
        gt=0,
        description="Seconds a third-party plugin's `govern_prompt`, `compress_context` or "
        "`check_completion` may take on a request; past it the request fails (HTTP 504 "
        "`plugin_timeout`) naming the plugin. Python cannot stop the call: it runs on in "
        "a thread of its own, and a plugin with 32 calls still running so is refused at "
        "once until some end (restart the server to be rid of them).",
    )


class DataSettings(_Section):
    home: Path = Field(
        Path.home() / ".local" / "share" / "tether",
        description="Data directory (TETHER_HOME): caches, audit, store, traces. Never tokens.",
    )


class Settings(_Section):
    server: ServerSettings = Field(default_factory=ServerSettings)
    engine: EngineSettings = Field(default_factory=EngineSettings)
    upstream: UpstreamSettings = Field(default_factory=UpstreamSettings)
    generation: GenerationSettings = Field(default_factory=GenerationSettings)
    policy: PolicySettings = Field(default_factory=PolicySettings)
    compliance: ComplianceSettings = Field(default_factory=ComplianceSettings)
    templates: TemplateSettings = Field(default_factory=TemplateSettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)
    traces: TraceSettings = Field(default_factory=TraceSettings)
    evals: EvalSettings = Field(default_factory=EvalSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    usage: UsageSettings = Field(default_factory=UsageSettings)
    licences: LicenceSettings = Field(default_factory=LicenceSettings)
    plugins: PluginSettings = Field(default_factory=PluginSettings)
    data: DataSettings = Field(default_factory=DataSettings)

    _sources: dict[str, str] = PrivateAttr(default_factory=dict)
    _config_file: Path | None = PrivateAttr(default=None)

    @property
    def sources(self) -> dict[str, str]:
        """Where each dotted key's value came from."""
        return dict(self._sources)

    @property
    def config_file(self) -> Path | None:
        return self._config_file

    def flat(self) -> dict[str, Any]:
        """Every key as ``section.key`` → value."""
        dumped = self.model_dump(mode="json")
        return {f"{s}.{k}": v for s, keys in dumped.items() for k, v in keys.items()}


SECTIONS: dict[str, type[_Section]] = {
    name: field.annotation
    for name, field in Settings.model_fields.items()
    if isinstance(field.annotation, type) and issubclass(field.annotation, _Section)
}

# Short names that people expect, beside the systematic TETHER_<SECTION>_<KEY>.
ENV_ALIASES = {"TETHER_HOME": "data.home"}


def env_name(dotted: str) -> str:
    return "TETHER_" + dotted.replace(".", "_").upper()


def declared_keys() -> list[str]:
    return [f"{s}.{k}" for s, model in SECTIONS.items() for k in model.model_fields]


def find_config_file(start: Path) -> Path | None:
    for folder in (start, *start.parents):
        candidate = folder / CONFIG_FILE_NAME
        if candidate.is_file():
            return candidate
        if candidate.is_symlink():  # a link to nothing: its settings would silently go unread
            raise ConfigError(
                f"{candidate} is a link to {os.readlink(candidate)}, which is not a file; "
                "point the link at the settings file, or remove it"
            )
    return None


def _is_path(dotted: str) -> bool:
    """Whether setting ``dotted`` names a file or folder."""
    section, key = dotted.split(".")
    return "Path" in str(SECTIONS[section].model_fields[key].annotation)


def _beside(config_file: Path, dotted: str, value: Any) -> Any:
    """A relative path in ``config_file`` names a place beside that file: read from the
    current folder, a command run in a subfolder found the same file yet opened (and
    started) a store of its own there."""
    if not isinstance(value, str) or not value or not _is_path(dotted):
        return value
    if value.startswith("~") or Path(value).is_absolute():
        return value
    return str(config_file.absolute().parent / value)


def _parse_env_value(name: str, dotted: str, raw: str) -> Any:
    section, key = dotted.split(".")
    annotation = str(SECTIONS[section].model_fields[key].annotation)
    # The outer type decides: a list of tables is a list (policy.rules), not a table.
    first_list, first_dict = annotation.find("list"), annotation.find("dict")
    if first_dict >= 0 and (first_list < 0 or first_dict < first_list):
        return _env_json(name, raw, 'a JSON object, e.g. \'{"key": "value"}\'')
    if "list" in annotation:
        raw = raw.strip()
        if "list[dict" in annotation:  # tables: only as JSON
            return _env_json(name, raw, "a JSON array")
        if raw.startswith("["):
            return _env_json(name, raw, "a JSON array, or values separated by commas")
        return [part.strip() for part in raw.split(",") if part.strip()]
    return raw


def _env_json(name: str, raw: str, expected: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{name} is not valid JSON ({exc}); set it to {expected}") from None


def _same_form(dotted: str, raw: str) -> str:
    """``raw`` as the setting reads it, for two variables of one setting to be compared:
    ``/x/`` and ``/x``, ``~/x`` and the home folder's x, are the same folder."""
    if not _is_path(dotted):
        return raw
    try:
        return str(Path(raw).expanduser())
    except RuntimeError:  # ~someone unknown: the setting's own check says so
        return raw


def _unset_path(dotted: str, raw: str) -> bool:
    """Whether ``raw`` leaves a path setting at its default: empty, as for XDG's
    variables (``TETHER_HOME=`` would otherwise put the data in the current folder)."""
    return not raw.strip() and _is_path(dotted)


_warned: set[str] = set()  # each variable once per process, however often settings load
_NOT_BARE_KEYS = frozenset({"port", "host", "token", "server", "config", "debug"})
# What Kubernetes (and Docker's links) add to every pod beside a Service named tether:
# TETHER_SERVICE_HOST and TETHER_SERVICE_PORT read as typos of server settings. They come
# with TETHER_PORT, the service's address: without it they are what they look like, a
# mistyped TETHER_SERVER_HOST or TETHER_SERVER_PORT.
_SERVICE_LINK = re.compile(r"TETHER_(SERVICE_(HOST|PORT(_\w+)?)|PORT(_\w+)?)")
_SERVICE_ADDRESS = re.compile(r"(tcp|udp|sctp)://\S+")


def _warn_of_unknown_variables(environ: Mapping[str, str], known: set[str]) -> None:
    """Name a TETHER_ variable that looks like a setting but is none (``TETHER_ENGINE_NCTX``):
    it is ignored, which a typo should not be silently. A warning, not an error: other
    variables share the prefix (a Kubernetes service named tether adds TETHER_PORT)."""
    names = {env_name(dotted) for dotted in known}
    sections = tuple(f"TETHER_{section.upper()}_" for section in SECTIONS)
    linked = bool(_SERVICE_ADDRESS.fullmatch(environ.get("TETHER_PORT", "")))
    for name in sorted(environ):
        if not name.startswith("TETHER_") or name in names or name in ENV_ALIASES:
            continue
        if linked and _SERVICE_LINK.fullmatch(name):
            continue
        close = difflib.get_close_matches(name, names, n=1, cutoff=0.85)
        # A key without its section (TETHER_N_CTX for TETHER_ENGINE_N_CTX), if one has it;
        # not the names others give such variables (Kubernetes' TETHER_PORT, the command
        # line's TETHER_TOKEN).
        bare = name.removeprefix("TETHER_").lower()
        sectioned = [env_name(d) for d in known if d.split(".")[1] == bare]
        if bare not in _NOT_BARE_KEYS and len(sectioned) == 1:  # TETHER_ENABLED: which?
            close = close or sectioned
        if (close or name.startswith(sections)) and name not in _warned:
            _warned.add(name)
            meant = f"did you mean {close[0]}? " if close else ""
            log.warning(
                "%s is not a tether setting and is ignored; %ssee `tether config` for the "
                "settings and their variables",
                name,
                meant,
            )


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}; fix the file or remove it") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path} is not UTF-8 text ({exc.reason}); save it as UTF-8 or remove it"
        ) from exc
    except OSError as exc:
        fix = too_few_files(exc) or "check its permissions"
        raise ConfigError(f"cannot read {path} ({exc.strerror or exc}); {fix}") from exc


def load_settings(
    overrides: Mapping[str, Any] | None = None,
    *,
    cwd: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Layer defaults < tether.toml < TETHER_* < ``overrides`` (dotted keys, from flags)."""
    environ = os.environ if environ is None else environ
    known = set(declared_keys())
    values: dict[str, Any] = {}
    sources = dict.fromkeys(known, "default")

    explicit = environ.get("TETHER_CONFIG")
    config_file = Path(explicit) if explicit else find_config_file(cwd or Path.cwd())
    if explicit and not Path(explicit).is_file():
        raise ConfigError(f"TETHER_CONFIG names {explicit}, which is not a file")
    if config_file is not None:
        for section, table in _read_toml(config_file).items():
            if not isinstance(table, dict):
                homes = [d.partition(".")[0] for d in known if d.partition(".")[2] == section]
                where = f"; it belongs under [{homes[0]}]" if len(homes) == 1 else ""
                raise ConfigError(
                    f"{section} = … in {config_file} is outside any [section]{where}; "
                    "settings are written under their section, e.g. [server] then port = 8421"
                )
            if section not in SECTIONS:
                raise ConfigError(
                    f"unknown section [{section}] in {config_file}; "
                    f"known sections: {', '.join(SECTIONS)}"
                )
            for key, value in table.items():
                dotted = f"{section}.{key}"
                if dotted not in known:
                    close = difflib.get_close_matches(dotted, known, n=1, cutoff=0.8)
                    meant = f"did you mean {close[0]!r}? " if close else ""
                    raise ConfigError(
                        f"unknown key {dotted!r} in {config_file}; {meant}"
                        "see `tether config` for keys"
                    )
                values[dotted] = _beside(config_file, dotted, value)
                sources[dotted] = f"{config_file}"

    _warn_of_unknown_variables(environ, known)
    for dotted in sorted(known):
        given = [
            name
            for name in (env_name(dotted), *(a for a, k in ENV_ALIASES.items() if k == dotted))
            if name in environ and not _unset_path(dotted, environ[name])
        ]
        if len({_same_form(dotted, environ[name]) for name in given}) > 1:  # which is meant?
            raise ConfigError(
                f"{' and '.join(given)} are both set, to different values; set one of them"
            )
        for name in given:
            values[dotted] = _parse_env_value(name, dotted, environ[name])
            sources[dotted] = f"env {name}"

    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        if dotted not in known:
            raise ConfigError(f"unknown setting {dotted!r}")
        values[dotted] = value
        sources[dotted] = "command line"

    nested: dict[str, dict[str, Any]] = {section: {} for section in SECTIONS}
    for dotted, value in values.items():
        section, key = dotted.split(".")
        nested[section][key] = value
    try:
        settings = Settings.model_validate(nested)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            dotted = ".".join(str(p) for p in error["loc"][:2])
            message = str(error["msg"]).removeprefix("Value error, ")
            if len(error["loc"]) < 2:  # about the section as a whole
                problems.append(f"[{dotted}]: {message}")
                continue
            if len(error["loc"]) > 2:  # inside a table (a model's price): say which entry
                message = ".".join(str(p) for p in error["loc"][2:]) + ": " + message
            shown = shown_setting(dotted, values.get(dotted))
            problems.append(f"{dotted} = {shown!r} ({sources.get(dotted)}): {message}")
        raise ConfigError("invalid settings: " + "; ".join(problems)) from exc
    settings._sources = sources
    settings._config_file = config_file
    return settings


# Settings that are credentials, and settings whose URLs may carry some (user:password@,
# or a token in the query string).
SECRET_KEYS = frozenset({"server.token", "upstream.api_key", "audit.sentry_dsn"})
URL_KEYS = frozenset({"upstream.base_urls", "audit.webhook_url"})


def shown_setting(dotted: str, value: Any) -> Any:
    """``value`` of setting ``dotted`` as tether shows it, in ``tether config`` and in
    errors: never a credential."""
    if dotted in SECRET_KEYS and value:
        return "***"
    if dotted in URL_KEYS and isinstance(value, list):
        return [url_shown(url) if isinstance(url, str) else url for url in value]
    if dotted in URL_KEYS and isinstance(value, str):  # a webhook's path is its secret
        return url_shown(value, path=dotted != "audit.webhook_url")
    return value


def settings_reference() -> str:
    """Markdown table of every key, generated from the declarations (docs/settings.md)."""
    lines = [
        "# Settings",
        "",
        "Generated from `src/tether/settings.py` by `tether config --reference`; a test keeps",
        "it in step. Precedence: default < `tether.toml` < environment < command-line flag.",
        "A relative path in `tether.toml` is read from the file's folder, wherever tether runs;",
        "in a variable or a flag, from the current folder. `tether.toml` is the first found",
        "from the working directory upwards, or the file `TETHER_CONFIG` names.",
        "",
        "| key | environment | type | default | meaning |",
        "|---|---|---|---|---|",
    ]
    for section, model in SECTIONS.items():
        for key, field in model.model_fields.items():
            dotted = f"{section}.{key}"
            default = field.get_default(call_default_factory=True)
            if dotted == "data.home":
                default = "~/.local/share/tether"
            kind = str(field.annotation).replace("typing.", "").replace("pathlib.", "")
            kind = kind.replace("<class '", "").replace("'>", "").replace("|", "or")
            envs = ", ".join(
                [env_name(dotted), *(a for a, k in ENV_ALIASES.items() if k == dotted)]
            )
            lines.append(
                f"| `{dotted}` | `{envs}` | {kind} | `{default!r}` | {field.description} |"
            )
    return "\n".join(lines) + "\n"
