"""JSON as RFC 8259 defines it, for every body and argument tether reads."""

from __future__ import annotations

import json
import math
from typing import Any


def _refuse_constant(name: str) -> Any:
    raise json.JSONDecodeError(f"{name} is not a JSON number; send a finite number, or null", "", 0)


def _finite(numeral: str) -> float:
    """A numeral with a fraction or exponent, as a float: one past a float's range (1e400)
    read as infinity, which is no more a JSON number than Infinity is."""
    value = float(numeral)
    if math.isinf(value):
        raise json.JSONDecodeError(
            f"{numeral[:40]} is past the largest number (about 1.8e308); send a finite number",
            "",
            0,
        )
    return value


def parse_json(text: str | bytes) -> Any:
    """``text`` as JSON: NaN and Infinity are not numbers there, nor is a numeral too large
    for a float, and a nesting or an integer Python cannot follow is an error of the input,
    not of the reader."""
    try:
        return json.loads(text, parse_constant=_refuse_constant, parse_float=_finite)
    except RecursionError:
        raise json.JSONDecodeError(
            "arrays or objects are nested too deeply to read; flatten them", "", 0
        ) from None
    except ValueError as exc:
        if isinstance(exc, json.JSONDecodeError):
            raise
        # int() refuses a numeral of more than 4,300 digits.
        raise json.JSONDecodeError(
            "a number has too many digits to read (more than 4,300); send a shorter one", "", 0
        ) from None
