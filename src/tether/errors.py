"""The one exception tree of tether.

    TetherError
    ├── ConfigError            bad or contradictory settings
    ├── ModelError             model file missing or unreadable
    ├── RequestError           the caller sent something we cannot serve (HTTP 400)
    │   ├── ContextLengthError prompt plus max_tokens exceed the context window
    │   ├── UnknownModelError  the request names a model we do not serve (HTTP 404)
    │   └── NotFoundError      the request names a thing that is not (or no longer) here (404)
    ├── AuthError              missing, wrong or expired credentials (HTTP 401)
    ├── ForbiddenError         the token lacks the scope an endpoint needs (HTTP 403)
    ├── PolicyBlockedError     a policy rule refused the prompt (HTTP 400, names rule and place)
    ├── OverloadedError        the request queue is full (HTTP 429, Retry-After)
    ├── EngineUnavailableError the engine or every upstream is down (HTTP 503)
    ├── compliance.tools.ToolError  an external checker (ruff, bandit, semgrep) failed
    └── CancelledGeneration    the client went away; generation stopped early

Each error carries a message that tells the user what to do next. The server maps
these, and only these, to HTTP statuses in ``tether.server.errors``.
"""

from __future__ import annotations

from typing import Any


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


class UnknownModelError(RequestError):
    """The request names a model this server does not serve."""


class NotFoundError(RequestError):
    """The request names something (a trace, a record) that is not, or no longer, here."""


class AuthError(TetherError):
    """The bearer token is missing or wrong."""


class ForbiddenError(TetherError):
    """The token is valid but lacks the scope this endpoint needs."""


class PolicyBlockedError(RequestError):
    """A policy rule blocks the request; the message names the rule and where it matched."""

    def __init__(self, message: str, *, findings: list[Any] | None = None) -> None:
        super().__init__(message)
        self.findings = findings or []  # tether.findings.Finding, for the audit record


class OverloadedError(TetherError):
    """Every engine slot is busy and the waiting queue is full."""

    def __init__(self, message: str, *, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class EngineUnavailableError(TetherError):
    """The engine cannot answer now: not loaded, or every upstream is down."""


class CancelledGeneration(TetherError):
    """Generation stopped because the client disconnected."""
