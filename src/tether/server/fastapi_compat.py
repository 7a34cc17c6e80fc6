"""Keeps FastAPI from importing ``pydantic.v1``, which holds 1.4 MB of a server's memory.

FastAPI looks for pydantic v1 models in every route it builds and in objects it encodes,
only to refuse them, and imports ``pydantic.v1`` to look. No v1 model can exist before
something imports ``pydantic.v1``, so until then the answer is no without the import;
after it, FastAPI's own check runs. Routes are built as their modules are imported, so
this runs when ``tether.server`` is.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

_V1 = "pydantic.v1"


def _only_once_v1_is_loaded(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    @functools.wraps(check)
    def guarded(value: Any) -> bool:
        return _V1 in sys.modules and check(value)

    return guarded


def skip_v1_probe_until_v1_loads() -> None:
    """Wrap FastAPI's two v1 checks where it keeps them; a FastAPI without them is left
    as it is."""
    try:
        from fastapi import encoders
        from fastapi._compat import shared
    except ImportError:  # pragma: no cover - a FastAPI without the private module
        return
    for module, name in (
        (shared, "is_pydantic_v1_model_class"),  # annotation checks call it through here
        (encoders, "is_pydantic_v1_model_instance"),  # imported by name into encoders
    ):
        check = getattr(module, name, None)
        if callable(check) and not hasattr(check, "__wrapped__"):
            setattr(module, name, _only_once_v1_is_loaded(check))
