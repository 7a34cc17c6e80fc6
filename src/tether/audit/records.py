"""One audit record: its fields, content commitments and canonical JSON line."""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

FORMAT_VERSION = 1
GENESIS_PREV = "0" * 64
_FIELDS = ("request_id", "principal", "token_id", "endpoint", "model_sha256", "params")


def canonical(record: dict[str, Any]) -> bytes:
    """The exact bytes of a record line (without its newline): the Merkle leaf data."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def line_hash(line: bytes) -> str:
    return hashlib.sha256(line).hexdigest()


def commit(text: str, salt: bytes) -> str:
    """sha256(salt || text); whoever holds the text and the salt can show it matches."""
    return hashlib.sha256(salt + text.encode()).hexdigest()


def content(text: str | None, mode: str, redacted: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    salt = os.urandom(16)  # per record, so equal prompts do not give equal commitments
    shown: dict[str, Any] = {"salt": salt.hex(), "sha256": commit(text, salt)}
    if mode == "full":
        shown["text"] = text
    elif mode == "redacted":
        shown["text"] = redacted
    return shown


def build(fields: dict[str, Any], *, seq: int, time: float, prev: str, mode: str) -> dict[str, Any]:
    """A record from what the pipeline passed to ``append``; unknown fields are dropped."""
    record: dict[str, Any] = {"v": FORMAT_VERSION, "seq": seq, "time": round(time, 6)}
    for name in _FIELDS:
        record[name] = fields.get(name)
    record["policy"] = list(fields.get("policy") or [])
    record["findings"] = list(fields.get("findings") or [])
    for name in ("prompt", "completion"):
        record[name] = content(fields.get(name), mode, fields.get(f"{name}_redacted"))
    record["prev"] = prev
    return record
