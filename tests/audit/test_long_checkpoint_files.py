"""`verify` reads a checkpoints file a line at a time: an idle server adds one each
heartbeat, so its memory must not grow with the file, and the answer must not change."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from tests.audit.logs import filled, verifier
from tether.audit import segments
from tether.audit.checkpoint import Verifier
from tether.audit.verify import verify
from tether.errors import AuditError
from tether.settings import Settings


def _entries(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (folder / segments.CHECKPOINTS).read_text().splitlines()]


def _write(folder: Path, entries: list[dict[str, Any]]) -> None:
    text = "".join(json.dumps(entry) + "\n" for entry in entries)
    (folder / segments.CHECKPOINTS).write_text(text)


def _heartbeats(entry: dict[str, Any], count: int) -> list[dict[str, Any]]:
    start = float(entry["time"])
    return [{**entry, "time": start + 10 * (i + 1)} for i in range(count)]


def _peak_bytes(folder: Path, key: Verifier) -> int:
    tracemalloc.start()
    try:
        assert verify(folder, key, max_gap_s=60).ok
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_does_not_grow_with_heartbeats(settings: Settings) -> None:
    folder = filled(settings)
    key = verifier(folder)
    entries = _entries(folder)
    _write(folder, entries + _heartbeats(entries[-1], 2_000))
    few = _peak_bytes(folder, key)
    _write(folder, entries + _heartbeats(entries[-1], 20_000))
    many = _peak_bytes(folder, key)
    # Holding each entry took about 1.3 KB: 23 MB more for the 18,000 more lines.
    assert many - few < 1_000_000, (few, many)
    report = verify(folder, key)
    assert report.ok and report.checkpoints == len(entries) + 20_000


def test_a_forged_line_is_named_by_its_place_or_by_its_size(
    settings: Settings,
) -> None:
    folder = filled(settings)
    key = verifier(folder)
    entries = _entries(folder)
    by_size = {int(entry["size"]): entry for entry in entries}
    assert {5, 10, 15, 20} <= set(by_size)
    # Two lines whose notes are for other sizes than they claim: the one at the larger
    # size comes first in the file, in the middle of a run of heartbeats.
    late = {**by_size[15], "note": by_size[20]["note"]}
    early = {**by_size[10], "note": by_size[5]["note"]}
    beats = _heartbeats(by_size[20], 4)
    _write(folder, [*entries, *beats[:2], late, *beats[2:], early])
    # A log only grows: the first line at a smaller size than the one before it is named.
    report = verify(folder, key)
    assert not report.ok and report.error is not None
    assert report.error.startswith(
        f"checkpoints.jsonl:{len(entries) + 3} covers 15 records, after a checkpoint covering 20"
    )
    # In order, the first line whose note is not of its size is named, with both sizes.
    _write(folder, [*_below(entries, 10), early, *_above(entries, 10), *beats[:2]])
    report = verify(folder, key)
    assert not report.ok and report.error is not None
    assert "(size 10): its size field is not its signed note's (5)" in report.error


def test_a_line_written_while_verifying_is_left_for_the_next_run(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `verify` may run on a live folder: a checkpoint signed between its two reads of the
    # file covers records it has not read, and must not read as a cut tail.
    folder = filled(settings)
    entries = _entries(folder)
    ahead = {**entries[-1], "size": 25}
    read_raw = segments.read_raw

    def written_meanwhile(path: Path) -> tuple[list[bytes], segments.Torn | None]:
        with (folder / segments.CHECKPOINTS).open("a") as file:
            file.write(json.dumps(ahead) + "\n")
        return read_raw(path)

    monkeypatch.setattr(segments, "read_raw", written_meanwhile)
    report = verify(folder, verifier(folder))
    assert report.ok and report.checkpoints == len(entries), report.error
    monkeypatch.undo()
    report = verify(folder, verifier(folder))  # the next run reads it: its note says 20
    assert not report.ok and "its size field is not its signed note's (20)" in str(report.error)


def test_a_file_replaced_between_the_reads_fails_verification(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = filled(settings)
    read_raw = segments.read_raw

    def replaced_meanwhile(path: Path) -> tuple[list[bytes], segments.Torn | None]:
        (folder / segments.CHECKPOINTS).write_text("{bad\n")
        return read_raw(path)

    monkeypatch.setattr(segments, "read_raw", replaced_meanwhile)
    report = verify(folder, verifier(folder))
    assert not report.ok and "checkpoints.jsonl:1 is not a checkpoint entry" in str(report.error)
    path = tmp_path / segments.CHECKPOINTS
    path.write_text('{"time": 1, "size": 0, "note": "n"}\n' * 3)
    assert [e["_line"] for e in segments.checkpoints_on(path, [1, 3])] == [1, 3]
    with pytest.raises(AuditError, match="lost line 5 while being read"):
        list(segments.checkpoints_on(path, [2, 5]))


def _below(entries: list[dict[str, Any]], size: int) -> list[dict[str, Any]]:
    return [entry for entry in entries if int(entry["size"]) < size]


def _above(entries: list[dict[str, Any]], size: int) -> list[dict[str, Any]]:
    return [entry for entry in entries if int(entry["size"]) > size]


def test_max_gap_names_a_clock_stepped_either_way(settings: Settings) -> None:
    folder = filled(settings)
    key = verifier(folder)
    entries = _entries(folder)
    beats = _heartbeats(entries[-1], 3)
    beats[1]["time"] -= 3600  # NTP stepped the writer's clock back an hour, then forward
    _write(folder, entries + beats)
    report = verify(folder, key, max_gap_s=60)
    assert report.ok  # the times are not signed: a step is no fault, only said
    back, forward = report.warnings[-2:]
    line = len(entries) + 2
    assert back == (
        f"the time goes back 3590.0 s at checkpoints.jsonl:{line} (the clock was stepped "
        "back): a gap across it is not measured"
    )
    assert forward.startswith(f"3610.0 s without a checkpoint before checkpoints.jsonl:{line + 1}")
    assert forward.endswith("(more than 60 s, or the clock was stepped forward)")
