"""tether: a self-hosted AI coding assistant over a local model.

What a plugin author needs is exported here, and only here is it promised to stay:

    from tether import hookimpl, Finding, PromptReview, CompletionReview

and ``require(scope)``, the dependency that makes a plugin's HTTP route take a token.
"""

__version__ = "0.1.0"

from typing import TYPE_CHECKING

from tether.errors import ConfigError, RequestError, TetherError
from tether.findings import Action, Finding, Severity, fingerprint
from tether.hookspecs import hookimpl
from tether.pipeline.fim import ContextSnippet
from tether.pipeline.reviews import CompletionReview, PromptReview
from tether.settings import Settings

if TYPE_CHECKING:
    from tether.server.auth import require


def __getattr__(name: str) -> object:
    # ``require`` needs the server's imports, which `import tether` should not pay for.
    if name == "require":
        from tether.server.auth import require

        return require
    raise AttributeError(f"module 'tether' has no attribute {name!r}")


__all__ = [
    "Action",
    "CompletionReview",
    "ConfigError",
    "ContextSnippet",
    "Finding",
    "PromptReview",
    "RequestError",
    "Settings",
    "Severity",
    "TetherError",
    "__version__",
    "fingerprint",
    "hookimpl",
    "require",
]
