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


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object whose keys are each given once: of a key given twice, Python keeps the
    last value and another reader (a proxy's filter, a log's parser) the first, so the
    two would act on different requests."""
    obj = dict(pairs)
    if len(obj) == len(pairs):
        return obj
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise json.JSONDecodeError(
                f"the key {key[:40]!r} is given twice in one object; give each key once", "", 0
            )
        seen.add(key)
    return obj  # not reached: a key is given twice


def parse_json(text: str | bytes) -> Any:
    """``text`` as JSON: NaN and Infinity are not numbers there, nor is a numeral too large
    for a float, a key given twice in one object is refused, and a nesting or an integer
    Python cannot follow is an error of the input, not of the reader."""
    try:
        return json.loads(
            text, parse_constant=_refuse_constant, parse_float=_finite, object_pairs_hook=_unique
        )
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
