"""The one exception tree of tether.

    TetherError
    ├── ConfigError              bad or contradictory settings
    │   └── PluginFailedError    a third-party plugin's hook raised on a request (HTTP 500)
    │       └── PluginTimeoutError  its request hook ran past plugins.hook_timeout_s (HTTP 504)
    ├── ModelError               model file missing or unreadable
    ├── RequestError             the caller sent something we cannot serve (HTTP 400)
    │   ├── ContextLengthError   prompt plus max_tokens exceed the context window
    │   ├── PolicyBlockedError   a policy rule refused the prompt (names rule and place)
    │   ├── PatchError           a patch is malformed, leaves the project or no longer fits
    │   ├── UnknownModelError    the request names a model we do not serve (HTTP 404)
    │   └── NotFoundError        the request names a thing that is not (or no longer) here (404)
    ├── NotSupportedError        a setting this needs is off (HTTP 501)
    ├── AuthError                missing, wrong or expired credentials (HTTP 401)
    ├── ForbiddenError           the token lacks the scope an endpoint needs (HTTP 403)
    ├── OverloadedError          the request queue is full (HTTP 429, Retry-After)
    ├── RateLimitedError         the token is over one of its limits (HTTP 429, Retry-After)
    ├── EngineUnavailableError   the engine, every upstream or the server is down (HTTP 503)
    │   ├── UpstreamTimeoutError an upstream took longer than its read timeout (HTTP 504)
    │   ├── NoFreeSequenceError  every sequence is generating, asked to fail if so (HTTP 503)
    │   ├── ShuttingDownError    the server stopped before the answer was done (HTTP 503)
    │   └── AuditUnwritableError the audit log cannot be written, and requests wait (HTTP 503)
    ├── DatabaseLockedError      another process holds a database locked (HTTP 503)
    ├── AuditError               an audit key, note or log cannot be read or verified
    │   └── AuditLogHeldError    another process writes the audit log (one writer at a time)
    ├── ToolError                an external checker (ruff, bandit, semgrep) failed
    ├── FunctionCallError        a stored function raised, hung or broke the sandbox (422, 504)
    └── CancelledGeneration      the client went away; generation stopped early

Each error carries a message that tells the user what to do next. The server maps these,
and only these, to HTTP statuses in ``tether.server.errors``; the command line maps them
to exit codes in ``tether.cli.main``. Errors of other libraries are translated where
they are caught, with ``raise ... from exc``. A test keeps this drawing and the classes
in step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tether.findings import Finding


class TetherError(Exception):
    """Base of every error tether raises on purpose."""

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


class ConfigError(TetherError):
    """A setting is missing, malformed or contradicts another."""


class ModelError(TetherError):
    """The model file cannot be found or loaded."""


class RequestError(TetherError):
    """The request is well-formed JSON but asks for something we cannot serve."""


class ContextLengthError(RequestError):
    """The prompt plus the requested tokens do not fit the model's context window."""

    def __init__(
        self, message: str, *, param: str | None = None, prompt_tokens: int | None = None
    ) -> None:
        super().__init__(message, param=param)
        self.prompt_tokens = prompt_tokens  # as the engine counted them, when it says


class PolicyBlockedError(RequestError):
    """A policy rule blocks the request; the message names the rule and where it matched."""

    def __init__(self, message: str, *, findings: Sequence[Finding] = ()) -> None:
        super().__init__(message)
        self.findings = tuple(findings)  # for the audit record of the refusal


class PatchError(RequestError):
    """A patch is malformed, would write outside the project, or no longer matches."""


class UnknownModelError(RequestError):
    """The request names a model this server does not serve."""


class NotFoundError(RequestError):
    """The request names something (a trace, a record) that is not, or no longer, here."""


class NotSupportedError(TetherError):
    """The server could serve this, but is not set up to (a setting is off)."""


class AuthError(TetherError):
    """The bearer token is missing or wrong."""


class ForbiddenError(TetherError):
    """The token is valid but lacks the scope this endpoint needs."""


class OverloadedError(TetherError):
    """Every engine slot is busy and the waiting queue is full."""

    def __init__(self, message: str, *, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class RateLimitedError(TetherError):
    """The token has used up its requests or tokens per minute, or its daily budget."""

    def __init__(
        self, message: str, *, limit: str, retry_after_s: int, issuer: str | None = None
    ) -> None:
        super().__init__(message)
        self.limit = limit  # rpm, tpm or daily_tokens
        self.retry_after_s = retry_after_s
        self.issuer = issuer  # the id of a token that issued it and is at its limit too


class EngineUnavailableError(TetherError):
    """The engine cannot answer now: not loaded, every upstream down, or no server."""

    def __init__(
        self, message: str, *, retry_after_s: int | None = None, passes: bool = True
    ) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s  # when it is worth asking again, if known
        self.passes = passes  # False: only a change of settings mends it, not a retry


class UpstreamTimeoutError(EngineUnavailableError):
    """An upstream accepted the request but sent nothing for ``upstream.read_timeout_s``."""


class NoFreeSequenceError(EngineUnavailableError):
    """Every sequence of the engine is generating (``/slots?fail_on_no_slot=1``): the
    server is up, and a request sent now would wait."""


class ShuttingDownError(EngineUnavailableError):
    """The server was asked to stop, and its grace ran out before this answer was done, or
    the request was still waiting for a sequence."""


class AuditUnwritableError(EngineUnavailableError):
    """The audit log cannot be written (a full or read-only disk) and ``audit.unwritable``
    is ``refuse``: no request is served until it can record it."""


class DatabaseLockedError(TetherError):
    """Another process holds a database of the data directory locked past the wait (a
    sqlite3 shell, a backup): nothing is wrong with it; ask again once it lets go."""

    def __init__(self, message: str, *, retry_after_s: int = 5) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class AuditError(TetherError):
    """An audit signing key, verifier key, signed note or log cannot be read or verified."""


class AuditLogHeldError(AuditError):
    """Another process writes the audit log (it has one writer): nothing is wrong with it."""


class PluginFailedError(ConfigError):
    """A third-party plugin's hook raised while serving a request: named, its traceback
    logged, never sent to the client."""


class PluginTimeoutError(PluginFailedError):
    """A third-party plugin's request hook ran past ``plugins.hook_timeout_s`` (it runs on:
    Python cannot stop a thread), or the plugin has too many such calls still running."""


class ToolError(TetherError):
    """An external checker (ruff, bandit, semgrep) is missing or failed to run."""


class FunctionCallError(TetherError):
    """A call to a stored function failed inside the sandbox: it raised, ran past its time
    (``timed_out``), broke a sandbox rule, or returned what JSON cannot carry."""

    def __init__(self, message: str, *, timed_out: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out


class CancelledGeneration(TetherError):
    """Generation stopped because the client disconnected."""
