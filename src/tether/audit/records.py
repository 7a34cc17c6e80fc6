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
    """The exact bytes of a record line (without its newline): the Merkle leaf data.

    A lone surrogate (text that is not Unicode) is written as its JSON escape, so every
    line stays UTF-8 and reads back as the same string.
    """
    text = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.encode("utf-8", "backslashreplace")


def line_hash(line: bytes) -> str:
    return hashlib.sha256(line).hexdigest()


def commit(text: str, salt: bytes) -> str:
    """sha256(salt || text); whoever holds the text and the salt can show it matches."""
    return hashlib.sha256(salt + text.encode("utf-8", "surrogatepass")).hexdigest()


def content(text: str | None, mode: str, redacted: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    salt = os.urandom(16)  # per record, so equal prompts do not give equal commitments
    shown: dict[str, Any] = {"salt": salt.hex(), "sha256": commit(text, salt)}
    if mode == "full":
        shown["text"] = text
    elif mode == "redacted":
        shown["text"] = redacted
    if "text" in shown:  # whose text it is: what the engine wrote, or what the client got
        shown["content"] = mode
    return shown


def build(fields: dict[str, Any], *, seq: int, time: float, prev: str, mode: str) -> dict[str, Any]:
    """A record from what the pipeline passed to ``append``; unknown fields are dropped."""
    record: dict[str, Any] = {"v": FORMAT_VERSION, "seq": seq, "time": round(time, 6)}
    for name in _FIELDS:
        record[name] = fields.get(name)
    record["policy"] = list(fields.get("policy") or [])
    record["findings"] = list(fields.get("findings") or [])
    for name in ("prompt", "completion"):
        given = fields.get(name)
        # A command that left the record for the log's keeper kept it so already.
        kept = isinstance(given, dict)
        record[name] = given if kept else content(given, mode, fields.get(f"{name}_redacted"))
    record["prev"] = prev
    return record


def continues(data: bytes, seq: int, prev: bytes) -> bool:
    """True when record line ``data`` surely continues the chain at ``seq`` after ``prev``
    (hex, as bytes), read without a JSON parse; False means "ask :func:`chain_break`".

    Canonical lines sort their keys, so the top-level seq and prev are the last ones in the
    line (a JSON string cannot hold `"seq":` unescaped). The exact bytes are still bound
    by the hash chain and the Merkle roots.
    """
    i = data.rfind(b',"seq":')
    j = data.rfind(b',"prev":"')
    return (
        i > 0
        and j > 0
        and data.startswith(b"%d," % seq, i + 7)
        and data.startswith(prev + b'"', j + 9)
    )


def chain_break(data: bytes, seq: int, prev: str, where: str) -> tuple[int, str] | None:
    """None if record line ``data`` continues the chain at ``seq`` after ``prev``; else
    (the first bad seq, why), with ``where`` naming the line."""
    try:
        record = json.loads(data)
        found, linked = record["seq"], record["prev"]
    except (ValueError, KeyError, TypeError):
        return seq, f"{where}: seq {seq} is not a valid record line"
    if found != seq:
        what = "missing" if isinstance(found, int) and found > seq else "out of order"
        return (
            seq,
            f"{where}: expected seq {seq}, found seq {found} (a record {what}"
            ", inserted, deleted or reordered)",
        )
    if linked != prev:
        bad = seq - 1 if seq > 0 else seq
        return (
            bad,
            f"{where}: its prev does not match the hash of seq {bad}: "
            f"seq {bad} was changed, or a record inserted or removed before seq {seq}",
        )
    return None


_KEYS = frozenset(
    {"v", "seq", "time", "prev", "policy", "findings", "prompt", "completion", *_FIELDS}
)


_TEXT = (str, type(None))
_TYPES: dict[str, type | tuple[type, ...]] = {
    "seq": int,
    "time": (int, float),
    "prev": str,
    **dict.fromkeys(("request_id", "principal", "token_id", "endpoint", "model_sha256"), _TEXT),
    "params": (dict, type(None)),
    "policy": list,
    "findings": list,
    "prompt": (dict, type(None)),
    "completion": (dict, type(None)),
}


def _names(names: list[str], shown: int = 5, longest: int = 40) -> str:
    """Field names a forged line chose, to print: a few, each cut short, and quoted where
    one is not a plain name (a terminal's escape codes would act on the screen)."""
    parts = [
        name if name.isidentifier() and len(name) <= longest else repr(name[:longest])
        for name in names[:shown]
    ]
    if len(names) > shown:
        return f"{', '.join(parts)} and {len(names) - shown} more"
    return ", ".join(parts)


def record_problem(data: bytes) -> str | None:
    """Why ``data`` is not a record line this log writes (None when it is one): for lines
    no checkpoint covers yet, which no signature vouches for and the next checkpoint would
    (the fast chain check reads only their seq and prev)."""
    try:
        record = json.loads(data)
    except ValueError:
        return "not JSON"
    if not isinstance(record, dict):
        return "not a JSON object"
    if missing := sorted(_KEYS - record.keys()):
        return f"without the field(s) {', '.join(missing)} that every record has"
    if extra := sorted(record.keys() - _KEYS - {"error"}):
        return f"a line with field(s) no record has ({_names(extra)})"
    if record["v"] != FORMAT_VERSION:
        return f"a record of format {record['v']!r}, not {FORMAT_VERSION}"
    wrong = [name for name, kinds in _TYPES.items() if not isinstance(record[name], kinds)]
    if wrong or isinstance(record["seq"], bool) or isinstance(record["time"], bool):
        return f"not a record: {', '.join(wrong) or 'seq or time'} of the wrong type"
    if canonical(record) != data:
        return "not written as records are (sorted keys, no spaces)"
    return None
