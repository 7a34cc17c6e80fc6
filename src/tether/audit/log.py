"""The append-only audit log: one writer thread, rotating JSONL segments, signed checkpoints.

``append`` only numbers the record and queues it, so the request path pays microseconds.
The writer thread builds, chains and writes records, and at every checkpoint fsyncs the
segment and the checkpoints file: records become durable in groups, a checkpoint at a
time. A checkpoint is signed at least every ``checkpoint_interval_s`` while records flow
and every ``heartbeat_s`` when idle, so a cut tail shows as a gap.
"""

from __future__ import annotations

import base64
import fcntl
import json
import logging
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from tether.audit import handoff, records, segments
from tether.audit.checkpoint import (
    Checkpoint,
    Signer,
    load_or_create_key,
    parse_note,
    parse_verifier_key,
    signed_by,
    verify_note,
)
from tether.audit.merkle import MerkleTree, leaf_hash
from tether.audit.sinks import Sink
from tether.background import GatheringQueue
from tether.databases import owner_only, private_folder
from tether.errors import AuditError, AuditLogHeldError, ConfigError, NotFoundError
from tether.settings import Settings
from tether.textfile import write_atomically

log = logging.getLogger(__name__)

_STOP = object()
_RECENT = 10_000  # records read back at opening to find those signed in before a crash
# A starting server's request for the log (tether.audit.handover), holding its pid. It
# waits 5 s for the log: a request far older asks nothing (its server was killed while it
# waited, and its pid may be another process's by now).
HANDOVER = "handover"
_ASKING_S = 30.0


@dataclass
class RecoveryReport:
    records: int = 0
    torn: list[str] = field(default_factory=list)  # "<file>: N bytes moved to <file>"
    # Records after the last checkpoint, which a crash leaves (first and last seq): the
    # log signs them as it opens, and says so in a record of its own, with how long after
    # that checkpoint's time the last was written (the writer signs within its interval,
    # or its heartbeat when idle; far more says the checkpoints after them were removed,
    # or the clock moved).
    uncovered: tuple[int, int] | None = None
    uncovered_after_s: float = 0.0


def uncovered_problem(folder: Path, last: dict[str, Any], covered: int, count: int) -> str | None:
    """Why the ``count`` records after the last checkpoint (``last``, covering
    ``covered``) are no crash's, or None: they follow the checkpoint written as the log
    closed, after which it writes nothing until it opens again, with a checkpoint. The
    writers refuse such a log rather than sign them; doctor says why. (The mark is not
    signed: against someone who rewrites checkpoints.jsonl too, keep copies of
    checkpoints, `verify --since`, or ship records to a webhook.)"""
    if count <= 0 or last.get("closed") is not True:
        return None
    return (
        f"the audit log was closed with a checkpoint covering {covered} records, yet "
        f"{count} more follow it: they were added while the log was closed; run `tether "
        f"audit verify --dir {folder}`, and cut them from the segment if they are not to "
        "be kept"
    )


def newest_uncovered_problem(folder: Path) -> str | None:
    """``uncovered_problem`` for the log in ``folder`` as it is on disk (read only)."""
    entries, _ = segments.checkpoints_tail(folder / segments.CHECKPOINTS, 1)
    paths = segments.segment_paths(folder)
    if not entries or not paths:
        return None
    lines, _ = segments.read_raw(paths[-1])
    if not lines:
        return None
    covered = int(entries[-1]["size"])
    count = int(json.loads(lines[-1])["seq"]) + 1 - covered
    return uncovered_problem(folder, entries[-1], covered, count)


def audit_folder(settings: Settings) -> Path:
    return settings.data.home / "audit"


def default_origin() -> str:
    return f"tether/{socket.gethostname()}"


class AuditLog:
    def __init__(
        self,
        folder: Path,
        signer: Signer,
        *,
        content: str = "commitment",
        segment_bytes: int = 64 * 1024 * 1024,
        checkpoint_interval_s: float = 1.0,
        heartbeat_s: float = 10.0,
        sinks: Sequence[Sink] = (),
        lock: IO[bytes] | None = None,
    ) -> None:
        """``lock``: the log's lock, taken already (``take_lock``): a server takes it
        before its model loads, and nothing may take the log meanwhile."""
        self.folder = folder
        self.signer = signer
        self._mode = content
        self._segment_bytes = segment_bytes
        self._interval = checkpoint_interval_s
        self._heartbeat = heartbeat_s
        self._sinks = list(sinks)
        private_folder(folder)  # and the data directory, where it is made here
        _refuse_another_key(folder / "verifier.key", signer)
        if lock is None and (server := asked_for(folder)) is not None:
            # From the hand-over to the server's next look the log is free: taken now
            # (a command ending or starting), it would keep that server from it.
            raise AuditLogHeldError(
                f"the audit log in {folder} is being handed to a server that starts (pid "
                f"{server}); records are left for it in {folder / handoff.INCOMING}"
            )
        self._lock_file = lock if lock is not None else take_lock(folder)
        # Replaced in one step: a write cut short (a full disk) leaves the one before whole.
        write_atomically(folder / "verifier.key", signer.verifier_key + "\n")
        self._tree = MerkleTree()  # every record's leaf, for roots and proofs
        self._prev = records.GENESIS_PREV
        self._last_line = b""  # the newest record on disk, as read at opening
        self._segment_index = 1
        try:
            self.recovery_report = self._recover()
        except BaseException:
            self._lock_file.close()  # refused: another process may open it once repaired
            raise
        self._next_seq = self._tree.size
        self._lock = threading.Lock()
        self.problem: str | None = None  # why records cannot be written, for /readyz
        self._queue: GatheringQueue[Any] = GatheringQueue()
        # Records the disk refused, in seq order: written first once it takes them again,
        # for a record skipped would leave a gap in the chain that reads as tampering.
        self._unwritten: deque[tuple[int, float, dict[str, Any]]] = deque()
        self._latest = ""
        self._latest_size = 0
        self._unshipped: list[bytes] = self._not_yet_shipped()
        # Lines a sink failed to take (its spool's disk full), offered to it again first
        # at the next checkpoint: dropped, they would never reach its receiver, as its
        # next shipment would move its mark past them.
        self._refused: dict[int, list[bytes]] = {}
        self._segment = self._open_segment()
        self._checkpoints: IO[bytes] = open(  # noqa: SIM115 - open while the log is
            folder / segments.CHECKPOINTS, "ab", buffering=0, opener=owner_only
        )
        if (uncovered := self.recovery_report.uncovered) is not None:
            after = self.recovery_report.uncovered_after_s
            self._write(*self._recovered_event(*uncovered, after))
        left = self._sign_in_left()
        self._checkpoint()  # the restart itself is attested, and latest_checkpoint() is ready
        handoff.remove(left)
        # Records commands leave while this process keeps the log: queued as they are
        # found, removed from ``incoming`` once a checkpoint covers them.
        self._signing: list[tuple[int, handoff.Handed]] = []
        self._thread = threading.Thread(target=self._run, name="tether-audit", daemon=True)
        self._thread.start()

    def _sign_in_left(self) -> list[handoff.Handed]:
        """Write the records commands left while another process kept the log, but for
        those signed in already: a crash between their checkpoint and their removal
        leaves them behind."""
        handoff.sweep_unfinished(self.folder)
        left = handoff.waiting(self.folder)
        if left:
            signed = self._recent_request_ids()
            self._write_now([one for one in left if one.fields.get("request_id") not in signed])
        return left

    def _write_now(self, handed: list[handoff.Handed]) -> None:
        """Write records left in ``incoming`` at once: only while nothing else is to be
        written (opening; closing, when a record appended after the last batch is not),
        each next to the last on disk, so that no seq is skipped."""
        for one in handed:
            with self._lock:
                seq = self._tree.size
                self._next_seq = max(self._next_seq, seq + 1)
            self._write(seq, one.made, one.fields)

    def _recent_request_ids(self) -> set[object]:
        """The request ids of the log's last records, where those a crash left in
        ``incoming`` after signing them in would be (a segment may have begun since)."""
        lines: list[bytes] = []
        for path in reversed(segments.segment_paths(self.folder)):
            if len(lines) >= _RECENT:
                break
            lines = segments.read_raw(path)[0][-_RECENT:] + lines
        ids = {json.loads(line).get("request_id") for line in lines[-_RECENT:]}
        ids.discard(None)  # a record without one is no record's twin
        return ids

    def _recovered_event(
        self, first: int, last: int, after_s: float
    ) -> tuple[int, float, dict[str, Any]]:
        """The record that says, under the log's signature, that records no checkpoint
        covered were found at opening and are signed now."""
        seq = self._next_seq
        self._next_seq += 1
        details = {
            "first_seq": first,
            "last_seq": last,
            "written_after_checkpoint_s": round(after_s, 1),
            "why": "records after the last checkpoint, which a crash leaves; signed now",
        }
        fields = {
            "request_id": f"evt-recovered-{seq}",
            "endpoint": "event audit.recovered",
            "params": details,
        }
        return seq, time.time(), fields

    @classmethod
    def open(
        cls, settings: Settings, sinks: Sequence[Sink] = (), *, lock: IO[bytes] | None = None
    ) -> AuditLog:
        audit = settings.audit
        folder = audit_folder(settings)
        key = load_or_create_key(signing_key_path(settings))
        return cls(
            folder,
            Signer(audit.origin or default_origin(), key),
            content=audit.content,
            segment_bytes=audit.segment_bytes,
            checkpoint_interval_s=audit.checkpoint_interval_s,
            heartbeat_s=audit.heartbeat_s,
            sinks=sinks,
            lock=lock,
        )

    # -- the request path ---------------------------------------------------------------

    def append(self, record_fields: dict[str, Any], made: float | None = None) -> int:
        """Queue one record (``made`` then, if not now); returns its seq. Thread-safe;
        never waits on the disk."""
        with self._lock:  # seq order and queue order must agree
            seq = self._next_seq
            self._next_seq += 1
            self._queue.put((seq, time.time() if made is None else made, record_fields))
        return seq

    def flush(self) -> None:
        """Write a checkpoint now, making every record appended so far durable."""
        done = threading.Event()
        self._queue.put(done, urgent=True)
        done.wait()

    def close(self) -> None:
        """Write a final checkpoint and stop the writer; idempotent."""
        if self._thread.is_alive():
            self._queue.put(_STOP, urgent=True)
            self._thread.join()
        if not self._lock_file.closed:
            self._lock_file.close()  # releases the lock

    def latest_checkpoint(self) -> str:
        with self._lock:
            return self._latest

    def covers(self, seq: int) -> bool:
        """Whether record ``seq`` is on disk under a signed checkpoint (not held in memory
        for a disk that refused it)."""
        with self._lock:
            return seq < self._latest_size

    def inclusion_proof(self, seq: int) -> dict[str, Any]:
        """The audit path of record ``seq`` against the latest checkpoint."""
        with self._lock:
            note, size, written = self._latest, self._latest_size, self._next_seq
        if not 0 <= seq < written:
            raise NotFoundError(
                f"no audit record {seq}: the log holds records 0 to {written - 1}"
                if written
                else f"no audit record {seq}: the log holds no records yet"
            )
        if seq >= size:
            raise NotFoundError(
                f"record {seq} is not covered by the latest checkpoint (size {size}) yet; "
                "the next checkpoint comes within audit.checkpoint_interval_s: ask again then"
            )
        with self._lock:  # the writer thread appends to the tree
            return proof_document(seq, self._tree, size, note)

    def consistency_proof(self, first_size: int) -> dict[str, Any]:
        """Proof that the latest checkpoint extends an earlier one of ``first_size`` records."""
        with self._lock:
            note, size = self._latest, self._latest_size
            if not 0 <= first_size <= size:
                raise NotFoundError(
                    f"size {first_size} is beyond the latest checkpoint (size {size}); a "
                    "checkpoint of that size was never published by this log"
                )
            return consistency_document(first_size, self._tree, size, note)

    # -- the writer thread --------------------------------------------------------------

    def _run(self) -> None:
        last = time.monotonic()
        pending = False
        while True:
            wait = (self._interval if pending else self._heartbeat) - (time.monotonic() - last)
            batch = self._queue.get_batch(timeout=max(wait, 0.0))
            flushes: list[threading.Event] = []
            stop = False
            for entry in batch:
                if entry is _STOP:
                    stop = True
                elif isinstance(entry, threading.Event):
                    flushes.append(entry)
                else:
                    self._unwritten.append(entry)
            try:
                while self._unwritten:
                    self._add(*self._unwritten[0])
                    self._unwritten.popleft()
                    pending = True
                    self._rotate_if_full()
                due = time.monotonic() - last >= (self._interval if pending else self._heartbeat)
                if flushes or stop or due:
                    closing = self._take_handed(now=True) if stop else []
                    self._checkpoint(closed=stop)
                    last, pending = time.monotonic(), False
                    self._remove_signed()
                    handoff.remove(closing)
                    if not stop and self._take_handed(now=False):
                        pending = True
                    if self.problem is not None:
                        log.warning("the audit log is written again (%s, before)", self.problem)
                        self.problem = None
            except OSError as exc:
                # The disk refused (full, gone read-only): say so where operators look
                # (/readyz too), and keep the writer alive so that flushes return.
                self.problem = f"the audit log cannot be written: {exc}"
                log.critical(
                    "%s; %d records are held in memory and written once it can be (lost "
                    "if this process stops first)",
                    self.problem,
                    len(self._unwritten),
                )
                last, pending = time.monotonic(), False
            for event in flushes:
                event.set()
            if stop:
                if self._unwritten:
                    log.critical(
                        "%d audit records (seq %d on) were never written: %s",
                        len(self._unwritten),
                        self._unwritten[0][0],
                        self.problem,
                    )
                self._segment.close()
                self._checkpoints.close()
                return

    def _take_handed(self, *, now: bool) -> list[handoff.Handed]:
        """The records commands left since the last look: queued, or as the log closes
        (every record appended before it is written by then) written ``now``."""
        fresh = handoff.waiting(self.folder, skip={one.path for _, one in self._signing})
        if now:
            self._write_now(fresh)
        else:
            self._signing += [(self.append(one.fields, one.made), one) for one in fresh]
        return fresh

    def _remove_signed(self) -> None:
        """Remove the records left in ``incoming`` that the last checkpoint covers."""
        size = self._latest_size
        handoff.remove([one for seq, one in self._signing if seq < size])
        self._signing = [(seq, one) for seq, one in self._signing if seq >= size]

    def _line(self, seq: int, when: float, fields: dict[str, Any]) -> bytes:
        """The record's line; a record whose fields cannot be written still takes its place
        in the chain, saying so, for a missing seq would read as tampering."""
        try:
            record = records.build(fields, seq=seq, time=when, prev=self._prev, mode=self._mode)
            return records.canonical(record)
        except (TypeError, ValueError) as exc:
            log.exception("audit record %d could not be encoded; writing its stand-in", seq)
            stand_in = {"request_id": str(fields.get("request_id"))}
            record = records.build(stand_in, seq=seq, time=when, prev=self._prev, mode=self._mode)
            record["error"] = f"the record could not be encoded: {exc!r}"
            return records.canonical(record)

    def _write(self, seq: int, when: float, fields: dict[str, Any]) -> None:
        self._add(seq, when, fields)
        self._rotate_if_full()

    def _add(self, seq: int, when: float, fields: dict[str, Any]) -> None:
        """Write one record whole and take it into the tree, or raise having changed
        nothing: on disk or in the chain."""
        line = self._line(seq, when, fields)
        _append_whole(self._segment, line + b"\n")
        self._prev = records.line_hash(line)
        leaf = leaf_hash(line)
        with self._lock:
            self._tree.append(leaf)
        if self._sinks:
            self._unshipped.append(line)

    def _rotate_if_full(self) -> None:
        if self._segment.tell() >= self._segment_bytes:
            self._checkpoint()  # fsyncs this segment before the next one starts
            self._segment.close()
            self._segment_index += 1
            self._segment = self._open_segment()

    def _checkpoint(self, *, closed: bool = False) -> None:
        """Sign what is written; ``closed``: the last as the log closes, after which no
        record is written until it opens again, itself with a checkpoint."""
        os.fsync(self._segment.fileno())
        with self._lock:
            size, root = self._tree.size, self._tree.root()
        note = self.signer.sign(Checkpoint(self.signer.name, size, root))
        entry: dict[str, Any] = {"time": round(time.time(), 6), "size": size, "note": note}
        if closed:
            entry["closed"] = True
        _append_whole(self._checkpoints, json.dumps(entry).encode() + b"\n")
        os.fsync(self._checkpoints.fileno())
        with self._lock:
            self._latest, self._latest_size = note, size
        lines, self._unshipped = self._unshipped, []
        for index, sink in enumerate(self._sinks):
            offered = self._refused.pop(index, []) + lines
            if not offered:
                continue
            try:
                sink.ship(offered, note)
            except Exception:  # a sink must never stop the log
                log.exception("audit sink %r failed; its records are offered again", sink)
                self._refused[index] = offered

    def _not_yet_shipped(self) -> list[bytes]:
        """Durable records that a sink never took (the process died before it could)."""
        marks = [s.shipped_through() for s in self._sinks if hasattr(s, "shipped_through")]
        if not marks or min(marks) >= self._tree.size - 1:
            return []
        after = min(marks)
        lines: list[bytes] = []
        for path in segments.segment_paths(self.folder):
            raw, _ = segments.read_raw(path)
            lines += [line for line in raw if int(json.loads(line)["seq"]) > after]
        return lines

    def _open_segment(self) -> IO[bytes]:
        # Records hold prompts and answers (audit.content = full): the owner's only.
        name = segments.segment_name(self._segment_index)
        return open(self.folder / name, "ab", buffering=0, opener=owner_only)

    # -- start-up -----------------------------------------------------------------------

    def _recover(self) -> RecoveryReport:
        """Read what is on disk, check the chain and that the last checkpoint still covers
        it, and set a torn last line aside. A log that fails is refused, not signed over:
        a new checkpoint would vouch for whatever was changed."""
        report = RecoveryReport()
        # Only the last checkpoint says what the records must be, and an idle server adds
        # one each heartbeat: reading them all took 8 s and 1.3 GB per million at start-up.
        # `tether audit verify` reads and checks every one.
        entries, torn_checkpoint = segments.checkpoints_tail(self.folder / segments.CHECKPOINTS, 1)
        covered = self._last_checkpoint(entries)
        paths = segments.segment_paths(self.folder)
        torn_records: segments.Torn | None = None
        for path in paths:
            lines, torn = segments.read_raw(path)
            if torn is not None:
                if path != paths[-1]:
                    raise ConfigError(
                        f"{path} ends in a partial line but is not the newest segment; "
                        "run `tether audit verify` and move the damaged segment aside"
                    )
                torn_records = torn
            self._take_segment(path, lines, covered.size if covered else 0)
            self._segment_index = int(path.stem.split("-")[1])
        self._check_covered(covered)
        if covered is not None and self._tree.size > covered.size:
            count = self._tree.size - covered.size
            problem = uncovered_problem(self.folder, entries[-1], covered.size, count)
            if problem is not None:
                raise AuditError(problem)
            report.uncovered = (covered.size, self._tree.size - 1)
            written = float(json.loads(self._last_line)["time"])
            report.uncovered_after_s = max(0.0, written - float(entries[-1]["time"]))
            log.warning(
                "audit log recovery: records %d to %d follow the last checkpoint (a crash "
                "leaves them), the last written %.0f s after it; they are signed now, and a "
                "record says so",
                *report.uncovered,
                report.uncovered_after_s,
            )
        for torn in (torn_records, torn_checkpoint):  # a crash mid-write, now known to be one
            if torn is not None:
                report.torn.append(_set_aside(torn))
        report.records = self._tree.size
        for message in report.torn:
            log.warning("audit log recovery: %s", message)
        return report

    def _last_checkpoint(self, entries: list[dict[str, Any]]) -> Checkpoint | None:
        """The last checkpoint written, its signature checked when this log's key made it
        (after a change of key only `tether audit verify --key` can check the old ones)."""
        if not entries:
            return None
        note = str(entries[-1]["note"])
        checkpoint, signatures = parse_note(note)
        if any(hashed == self.signer.hash for _, hashed, _ in signatures):
            verify_note(note, parse_verifier_key(self.signer.verifier_key))
        return checkpoint

    def _check_covered(self, covered: Checkpoint | None) -> None:
        """Refuse a log whose records its last checkpoint no longer covers: records are on
        disk before each checkpoint, so no crash explains fewer or other records."""
        count = self._tree.size
        verify = f"run `tether audit verify --dir {self.folder}`"
        if covered is None:
            if count:
                raise AuditError(
                    f"the audit log has {count} records but no signed checkpoint "
                    f"({segments.CHECKPOINTS} is missing or empty), yet it signs one each time "
                    f"it opens: checkpoints were removed; restore {segments.CHECKPOINTS} from a "
                    f"copy, or move the log aside to start a new one; {verify}"
                )
            return
        if covered.size > count:
            raise AuditError(
                f"the audit log's last checkpoint covers {covered.size} records but only "
                f"{count} are left: records were cut from its end; restore "
                f"them from a copy; {verify}"
            )
        if self._tree.root(covered.size) != covered.root:
            raise AuditError(
                f"the audit log's records no longer match its last checkpoint (size "
                f"{covered.size}): a record was changed; {verify} to find it"
            )

    def _take_segment(self, path: Path, lines: list[bytes], covered: int) -> None:
        """Check that a segment's lines continue the chain, and that those the last
        checkpoint does not cover (``covered`` records) are records, which the next
        checkpoint will vouch for; then add them to the tree at once: a long log opens
        about 15% faster than with a tree append per record (bench/audit_log.py)."""
        seq, prev = self._tree.size, self._prev.encode()
        for number, data in enumerate(lines, 1):
            if not records.continues(data, seq, prev):
                self._check(segments.Line(path, number, data), seq, prev.decode())
            if seq >= covered and (problem := records.record_problem(data)) is not None:
                raise AuditError(
                    f"the audit log's {path.name}:{number} (seq {seq}, after its last "
                    f"checkpoint) is {problem}: the log writes no such line, so it was added "
                    f"or changed by hand; run `tether audit verify --dir {self.folder}`, and "
                    "cut it from the segment if it is not to be kept"
                )
            prev = records.line_hash(data).encode()
            seq += 1
        self._tree.extend([leaf_hash(data) for data in lines])
        self._prev = prev.decode()
        if lines:
            self._last_line = lines[-1]

    def _check(self, line: segments.Line, seq: int, prev: str) -> None:
        """Raise, naming the break, unless ``line`` continues the chain at ``seq``."""
        broken = records.chain_break(line.data, seq, prev, f"{line.path}:{line.number}")
        if broken is not None:
            raise AuditError(
                f"the audit log does not continue its chain ({broken[1]}); run "
                f"`tether audit verify --dir {self.folder}` and move the damaged segment aside"
            )


def signing_key_path(settings: Settings) -> Path:
    """Where the log's signing key is; ConfigError when it is missing from a log signed
    with one (lost, or ``audit.key_file`` mistyped), rather than a new key made there
    that the log would then refuse."""
    folder = audit_folder(settings)
    path = settings.audit.key_file or folder / "signing.key"
    try:
        missing = not path.exists() and (folder / segments.CHECKPOINTS).exists()
    except OSError as exc:  # a name too long, a folder not ours to look into
        raise ConfigError(
            f"the audit signing key {path} cannot be looked up ({exc.strerror}); give a key "
            "file this user can read (audit.key_file)"
        ) from exc
    if missing:
        raise ConfigError(
            f"the audit signing key {path} is missing, but the log in {folder} was signed "
            "with one: restore it (or fix audit.key_file); its verifier key is in "
            f"{folder / 'verifier.key'}"
        )
    return path


def asked_for(folder: Path) -> int | None:
    """The pid of the server that asks for the log in ``folder`` now (``HANDOVER``), or
    None: a request older than a server waits, from a process that is gone, or from this
    one asks nothing."""
    request = folder / HANDOVER
    try:
        made = request.stat().st_mtime
        pid = int(request.read_text().strip() or "0")
    except (OSError, ValueError):
        return None
    if pid <= 0 or pid == os.getpid() or abs(time.time() - made) > _ASKING_S:
        return None
    return pid if alive(pid) else None


def alive(pid: int) -> bool:
    """Whether process ``pid`` is running (another user's too)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, another user's
    return True


def _refuse_another_key(verifier: Path, signer: Signer) -> None:
    """Refuse to sign with a key other than the one this log was signed with: a signing
    key replaced, lost or named wrongly (``audit.key_file``) would sign on unnoticed,
    overwrite the verifier key, and leave a log that no one key verifies."""
    try:
        before = parse_verifier_key(verifier.read_text())
    except (AuditError, OSError, UnicodeDecodeError) as exc:
        # Lost or damaged: the log's own checkpoints say which key signed it, if any.
        refuse_a_key_that_did_not_sign(verifier.parent, signer)
        if not isinstance(exc, FileNotFoundError):
            log.warning("%s is damaged; writing it again from the signing key", verifier)
        return
    if before.public.encode() != signer.public:
        raise AuditError(
            f"the audit signing key is not the one this log was signed with ({verifier} "
            f"holds {before.name}+{before.hash.hex()}): restore that key (audit.key_file, "
            f"else signing.key beside it); to start a new log with this one, move "
            f"{verifier.parent} aside and keep it, as it still verifies with its verifier.key"
        )
    # The verifier.key may have been replaced along with the signing key: the checkpoints
    # still say which key signed the log.
    refuse_a_key_that_did_not_sign(verifier.parent, signer, replaced=True)


def refuse_a_key_that_did_not_sign(folder: Path, signer: Signer, *, replaced: bool = False) -> None:
    """Refuse a signing key that did not sign the log's last checkpoint (one lost, or
    replaced with verifier.key or without it): signing on would leave a log that no one
    key verifies."""
    last = segments.last_checkpoints(folder / segments.CHECKPOINTS, 1)
    if not last:
        return  # a new log, or none signed yet
    note = last[0]["note"]
    try:
        if signed_by(note, signer.public):
            return  # this key signed the log: its verifier.key is written again
        signatures = parse_note(note)[1]
    except AuditError:
        return  # a damaged checkpoint: opening the log says so
    named = ", ".join(f"{name}+{hashed.hex()}" for name, hashed, _ in signatures)
    verifier = folder / "verifier.key"
    why = f"{verifier} was replaced" if replaced else f"{verifier} is missing or damaged"
    raise AuditError(
        f"{why}, and the log's last checkpoint is "
        f"signed by {named}, not by this signing key ({signer.name}+{signer.hash.hex()}): "
        "restore that key (audit.key_file, else signing.key beside it); to start a new log "
        f"with this key, move {folder} aside and keep it"
    )


def _append_whole(file: IO[bytes], data: bytes) -> None:
    """Append ``data`` to an unbuffered ``file`` whole, or leave the file as it was: the
    part of a line a full disk took would be followed by the next record, a line that
    breaks the chain once the disk has room again."""
    start = file.seek(0, os.SEEK_END)  # not tell(): a cut write leaves it past the end
    view = memoryview(data)
    try:
        while view:
            view = view[file.write(view) or 0 :]
    except OSError:
        file.truncate(start)
        raise


def take_lock(folder: Path) -> IO[bytes]:
    """The log has one writer: a second process (or object) opening it is refused.
    AuditLogHeldError while another holds it; held until the file returned is closed."""
    handle = open(folder / ".lock", "a+b")  # noqa: SIM115 - held open while the log is
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        handle.seek(0)
        pid = handle.read(32).decode(errors="replace").strip()
        handle.close()
        # Not only a server holds it: a command answering in process (an `eval run` of an
        # hour, a chat) does while it runs, so the refusal names the process.
        holder = f"pid {pid}: `ps -p {pid} -o args` says which" if pid.isdigit() else "unknown"
        raise AuditLogHeldError(
            f"the audit log in {folder} is open in another process ({holder}), a "
            "`tether serve` or a command answering in process such as `tether eval run`; "
            "it has one writer at a time: wait for that process to end, or stop it"
        ) from exc
    handle.truncate(0)
    handle.write(str(os.getpid()).encode())  # who holds it, for the refusal above
    handle.flush()
    return handle


def _set_aside(torn: segments.Torn) -> str:
    """Move an unfinished line into ``<file>.torn`` and cut it from the file."""
    aside = torn.path.with_name(torn.path.name + ".torn")
    with open(aside, "ab", opener=owner_only) as handle:
        handle.write(torn.data + b"\n")
    with open(torn.path, "r+b") as handle:
        handle.truncate(torn.offset)
    return f"{torn.path.name}: {len(torn.data)} bytes of a partial line moved to {aside.name}"


def proof_document(seq: int, tree: MerkleTree, size: int, note: str) -> dict[str, Any]:
    """Record ``seq``'s inclusion in the tree of ``size`` records that ``note`` signs."""
    return {
        "seq": seq,
        "tree_size": size,
        "leaf_hash": base64.b64encode(tree.leaf(seq)).decode(),
        "proof": [base64.b64encode(p).decode() for p in tree.inclusion_proof(seq, size)],
        "checkpoint": note,
    }


def consistency_document(first_size: int, tree: MerkleTree, size: int, note: str) -> dict[str, Any]:
    """That the tree of ``size`` records ``note`` signs extends the one of ``first_size``."""
    proof = tree.consistency_proof(first_size, size) if 0 < first_size < size else []
    return {
        "first_size": first_size,
        "tree_size": size,
        "proof": [base64.b64encode(p).decode() for p in proof],
        "checkpoint": note,
    }
