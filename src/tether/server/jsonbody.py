"""Request bodies must be Unicode text: what is not is refused at the door.

JSON's ``\\u`` escapes can spell a lone UTF-16 surrogate, which Python's ``json`` module
accepts but which nothing downstream can encode as UTF-8: the tokenizer, the audit log,
SQLite. Bytes that are not valid UTF-8 can spell one too, and Python's ``json`` decodes
bytes with ``surrogatepass``. The check runs on the raw body, once, in the body
middleware, so every route is covered and a plain ASCII body costs one scan.
"""

from __future__ import annotations

import json
import re

import pydantic_core

from tether.textfile import LONE_SURROGATE_FIX

# A candidate only: an escaped backslash before "ud800" is text, not an escape.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def not_json(detail: str | None) -> str:
    """The message for a body that is not JSON, with what the parser said."""
    return (
        "the request body is not valid JSON"
        + (f" ({detail})" if detail else "")
        + "; send a JSON object, UTF-8 encoded, with Content-Type: application/json"
    )


def text_problem(body: bytes) -> str | None:
    """Why ``body`` is not Unicode text, or None when it is (or is not JSON at all)."""
    if not body.isascii():
        # RFC 8259 asks for UTF-8 but lets readers take UTF-16/32 and a BOM, as Python's
        # json module does.
        encoding = json.detect_encoding(body)
        try:
            text = body.decode(encoding)
        except UnicodeDecodeError as exc:
            return not_json(f"{exc.reason} in {encoding} at byte {exc.start}")
        if encoding != "utf-8":
            body = text.encode("utf-8", "surrogatepass")
    if not _SURROGATE_ESCAPE.search(body):
        return None
    try:
        pydantic_core.from_json(body)
    except ValueError as exc:
        reason = str(exc)
        if "hex escape" not in reason:
            return None  # not JSON for another reason: validation says so as usual
        return not_json(f"{reason}: {LONE_SURROGATE_FIX}")
    return None
