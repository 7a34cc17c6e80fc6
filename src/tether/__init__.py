"""tether: a self-hosted AI coding assistant over a local model.

What a plugin author needs is exported here, and only here is it promised to stay:

    from tether import hookimpl, Finding, PromptReview, CompletionReview

and ``require(scope)``, the dependency that makes a plugin's HTTP route take a token.
"""

__version__ = "0.1.0"

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tether.errors import ConfigError, RequestError, TetherError
    from tether.findings import Action, Finding, Severity, fingerprint
    from tether.hookspecs import hookimpl
    from tether.pipeline.fim import ContextSnippet
    from tether.pipeline.reviews import CompletionReview, PromptReview
    from tether.server.auth import require
    from tether.settings import Settings

# Each export's module, imported when the export is first asked for: `import tether`, which
# every command runs first, would otherwise load the pipeline before the command line can
# answer Ctrl-C in one line, and ``require`` needs the server's imports too.
_EXPORTED_FROM = {
    "ConfigError": "tether.errors",
    "RequestError": "tether.errors",
    "TetherError": "tether.errors",
    "Action": "tether.findings",
    "Finding": "tether.findings",
    "Severity": "tether.findings",
    "fingerprint": "tether.findings",
    "hookimpl": "tether.hookspecs",
    "ContextSnippet": "tether.pipeline.fim",
    "CompletionReview": "tether.pipeline.reviews",
    "PromptReview": "tether.pipeline.reviews",
    "require": "tether.server.auth",
    "Settings": "tether.settings",
}


def __getattr__(name: str) -> object:
    if name in _EXPORTED_FROM:
        return getattr(importlib.import_module(_EXPORTED_FROM[name]), name)
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
