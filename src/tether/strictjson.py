"""JSON as RFC 8259 defines it, for every body and argument tether reads."""

from __future__ import annotations

import json
from typing import Any


def _refuse_constant(name: str) -> Any:
    raise json.JSONDecodeError(f"{name} is not a JSON number; send a finite number, or null", "", 0)


def parse_json(text: str | bytes) -> Any:
    """``text`` as JSON: NaN and Infinity are not numbers there, and a nesting Python
    cannot follow is an error of the input, not of the reader."""
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        raise json.JSONDecodeError(
            "arrays or objects are nested too deeply to read; flatten them", "", 0
        ) from None
