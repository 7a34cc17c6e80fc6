"""The writer thread outlives any one record: odd text, unencodable fields, a full disk."""

from __future__ import annotations

import errno
import json
import subprocess
import sys
from typing import Any

import pytest

from tests.helpers import DiskThatFills
from tether.audit.checkpoint import parse_verifier_key
from tether.audit.log import AuditLog
from tether.audit.verify import verify
from tether.errors import AuditLogHeldError
from tether.settings import Settings, load_settings


def _records(settings: Settings) -> list[dict[str, Any]]:
    segment = settings.data.home / "audit" / "segment-000001.jsonl"
    return [json.loads(line) for line in segment.read_bytes().splitlines()]


def _verifies(settings: Settings) -> bool:
    folder = settings.data.home / "audit"
    return verify(folder, parse_verifier_key((folder / "verifier.key").read_text())).ok


def test_a_lone_surrogate_is_written_as_its_escape_and_reads_back(settings: Settings) -> None:
    full = load_settings(
        {"data.home": str(settings.data.home), "audit.content": "full"}, environ={}
    )
    log = AuditLog.open(full)
    log.append({"request_id": "r\udfff", "params": {"stop": ["\ud800"]}, "prompt": "a\ud800b"})
    log.append({"request_id": "next"})
    log.close()
    first, second = _records(full)
    assert first["request_id"] == "r\udfff" and first["params"] == {"stop": ["\ud800"]}
    assert first["prompt"]["text"] == "a\ud800b"
    assert second["request_id"] == "next"
    assert _verifies(full)


def test_an_unencodable_record_keeps_its_place_and_says_why(settings: Settings) -> None:
    log = AuditLog.open(settings)
    log.append({"request_id": "odd", "params": {"when": object()}})
    log.append({"request_id": "after"})
    log.close()
    odd, after = _records(settings)
    assert odd["request_id"] == "odd" and "could not be encoded" in odd["error"]
    assert after["request_id"] == "after" and after["seq"] == odd["seq"] + 1
    assert _verifies(settings)
    assert log.problem is None


def test_a_full_disk_is_reported_and_flush_still_returns(settings: Settings) -> None:
    log = AuditLog.open(settings)
    log._segment = DiskThatFills(log._segment)  # type: ignore[assignment]
    log.append({"request_id": "lost"})
    log.flush()  # returns: nobody waits forever on a writer that cannot write
    assert log.problem is not None and "No space left" in log.problem
    log.close()


class _FillingDisk:
    """A segment file on a disk with ``room`` bytes left: a write takes what fits, as
    write(2) does, and the next is refused."""

    def __init__(self, real: Any, room: int) -> None:
        self.real, self.room = real, room

    def write(self, data: bytes) -> int:
        if self.room <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        taken = self.real.write(bytes(data[: self.room]))
        self.room -= taken
        return int(taken)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def test_records_a_full_disk_refused_are_written_in_order_once_it_has_room(
    settings: Settings,
) -> None:
    log = AuditLog.open(settings)
    log.append({"request_id": "before"})
    log.flush()
    disk = _FillingDisk(log._segment, room=40)
    log._segment = disk  # type: ignore[assignment]
    for name in ("cut", "queued"):
        log.append({"request_id": name})
    log.flush()
    assert log.problem is not None and "No space left" in log.problem
    disk.room = 1 << 20  # space freed
    log.append({"request_id": "after"})
    log.flush()
    assert log.problem is None  # /readyz is ready again
    log.close()
    names = [(record["seq"], record["request_id"]) for record in _records(settings)]
    assert names == [(0, "before"), (1, "cut"), (2, "queued"), (3, "after")]
    assert _verifies(settings)
    AuditLog.open(settings).close()  # and the next start opens it


_HOLD = """
import sys
from tether.audit.log import AuditLog
from tether.settings import load_settings
log = AuditLog.open(load_settings({"data.home": sys.argv[1]}, environ={}))
print("held", flush=True)
sys.stdin.read()
log.close()
"""


def test_a_log_held_by_another_process_names_that_process(settings: Settings) -> None:
    """The refusal guessed "(a running server?)", though a command answering in process
    (an `eval run` of an hour) holds the log as long: it names the holder's pid."""
    AuditLog.open(settings).close()  # the log made, with its key
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(settings.data.home)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with pytest.raises(AuditLogHeldError) as refused:
            AuditLog.open(settings)
    finally:
        holder.communicate("")
    message = str(refused.value)
    assert f"(pid {holder.pid}: `ps -p {holder.pid} -o args` says which)" in message
    assert "a running server?" not in message and "tether eval run" in message
    AuditLog.open(settings).close()  # free again once the holder has ended
