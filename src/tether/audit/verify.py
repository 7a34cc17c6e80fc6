"""Offline verification of a copy of an audit folder.

Checks, reading the records once and the checkpoints file twice, a line at a time: the seq
numbering and the hash chain, every checkpoint's signature and Merkle root against the
records, consistency with checkpoints saved earlier (``since``), and time gaps between
checkpoints. Stops at the first bad record.
"""

from __future__ import annotations

import base64
import hashlib
from array import array
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tether.audit import handoff, records, segments
from tether.audit.checkpoint import Checkpoint, Verifier, parse_note, verify_note
from tether.audit.merkle import EMPTY_ROOT, MerkleTree, node_hash, verify_consistency
from tether.errors import AuditError
from tether.textfile import read_text


@dataclass
class Report:
    records: int = 0
    checkpoints: int = 0
    error: str | None = None
    seq: int | None = None
    warnings: list[str] = field(default_factory=list)
    extends: list[int] = field(default_factory=list)  # saved sizes the latest provably extends
    uncovered: int = 0  # records after the last checkpoint (a log being written, a crash)
    unchecked: int = 0  # checkpoints not checked, as a record failed before them

    @property
    def ok(self) -> bool:
        return self.error is None

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, **self.__dict__}


def load_since(path: Path) -> list[str]:
    """Notes saved earlier: one note, or a copy of a checkpoints.jsonl file.

    Anything else is refused with an AuditError that names the file and line.
    """
    text = read_text(path)
    advice = "pass a copy of checkpoints.jsonl or one signed note saved earlier"
    if not text.lstrip().startswith("{"):
        notes = [(f"{path}", text)]
    else:
        notes = []
        lines = text.splitlines()
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                notes.append((f"{path}:{number}", segments.checkpoint_entry(line)["note"]))
            except ValueError as exc:
                if number == len(lines) and not text.endswith("\n") and notes:
                    break  # copied while the log wrote it: a partial last line, not a note
                raise AuditError(
                    f"{path}:{number} is not a checkpoint entry ({exc}); {advice}"
                ) from None
    for where, note in notes:
        try:
            parse_note(note)
        except AuditError as exc:
            raise AuditError(f"{where}: {exc.message}; {advice}") from None
    # An idle log signs the same note each heartbeat: each is checked once.
    return list(dict.fromkeys(note for _, note in notes))


def verify(
    folder: Path,
    verifier: Verifier,
    *,
    since: Sequence[str] = (),
    max_gap_s: float | None = None,
) -> Report:
    report = Report()
    # The checkpoints file is read twice, a line at a time: first for the sizes whose roots
    # the records must give, then, once they are known, for the notes. An idle server adds
    # a line each heartbeat, and holding them all took 1.3 GB per million.
    try:
        survey = _survey(folder / segments.CHECKPOINTS, max_gap_s)
    except AuditError as exc:  # a line of the checkpoints file was changed
        return _fail(report, None, exc.message)
    if survey.torn is not None:
        report.warnings.append(f"{survey.torn.path.name}: partial last line (a crash); ignored")
    saved = [(parse_note(note)[0].size, note) for note in since]
    wanted = set(survey.sizes) | {size for size, _ in saved}
    roots: dict[int, bytes] = {}
    if 0 in wanted:
        roots[0] = EMPTY_ROOT
    sha256 = hashlib.sha256
    prev = records.GENESIS_PREV.encode()
    stack: list[bytes] = []  # a compact range: the root of each perfect subtree, in order
    tree = MerkleTree() if since else None  # for the consistency proofs
    seq = 0
    covered = max(survey.sizes, default=0)  # what the last checkpoint signed for
    paths = segments.segment_paths(folder)
    for path in paths:
        lines, torn = segments.read_raw(path)
        if torn is not None and path != paths[-1]:
            # A crash tears only the line being written, in the newest segment.
            report.records, report.unchecked = seq + len(lines), survey.count
            return _fail(
                report,
                seq + len(lines),
                f"{path.name} ends in a partial line but is not the newest segment: it was "
                "cut or changed, not torn by a crash",
            )
        for number, data in enumerate(lines, 1):
            if not records.continues(data, seq, prev):  # any other shape: the slow path
                error = records.chain_break(data, seq, prev.decode(), f"{path.name}:{number}")
                if error is not None:
                    report.records = seq  # read and chained before the break
                    report.unchecked = survey.count
                    return _fail(report, *error)
            if seq >= covered and (problem := records.record_problem(data)) is not None:
                report.records, report.unchecked = seq, survey.count
                return _fail(report, seq, _unsigned_line(f"{path.name}:{number}", seq, problem))
            prev = sha256(data).hexdigest().encode()
            node = sha256(b"\x00" + data).digest()
            if tree is not None:
                tree.append(node)
            n = seq
            while n & 1:  # merge the equal-size subtrees this leaf completes
                node = sha256(b"\x01" + stack.pop() + node).digest()
                n >>= 1
            stack.append(node)
            seq += 1
            if seq in wanted:
                roots[seq] = _root(stack)
        if torn is not None:
            report.warnings.append(
                f"{path.name}: partial last line after seq {seq - 1} "
                "(a crash mid-write); not a record"
            )
            break
    report.records = seq
    if not seq and not survey.count:
        return _fail(
            report,
            None,
            f"{folder} holds no audit records and no checkpoint; an audit log signs a "
            "checkpoint when it is first opened, so this is not one (or it was emptied): "
            "give --dir the folder that holds segment-*.jsonl and checkpoints.jsonl",
        )
    if seq and not survey.count:
        return _fail(
            report,
            0,
            f"the log has {seq} records but no signed checkpoint: {segments.CHECKPOINTS} is "
            "missing or empty, yet the log signs one every time it opens, so checkpoints were "
            f"removed and no record can be proven; restore {segments.CHECKPOINTS} from a copy, "
            "or check against a checkpoint saved earlier (--since)",
        )
    try:
        path = folder / segments.CHECKPOINTS
        _check_checkpoints(report, path, saved, wanted, survey, roots, verifier)
    except AuditError as exc:  # the file changed under the second read
        return _fail(report, None, exc.message)
    if report.ok:
        report.warnings += survey.gaps
    waiting, others = handoff.count_waiting(folder)
    if waiting:
        report.warnings.append(
            f"{waiting} record(s) a command left in {handoff.INCOMING}/ while another kept the "
            "log are not signed in yet: the process that keeps the log signs them in at its "
            "next checkpoint, else the next to open it (`tether serve` does)"
        )
    if others:
        report.warnings.append(
            f"{others} file(s) in {handoff.INCOMING}/ hold no record a command left (written "
            "there by hand?): they are set aside as .bad when the log next opens, not signed in"
        )
    if report.ok and tree is not None and survey.latest is not None:
        _check_extensions(report, since, survey.latest, tree, verifier)
    return report


def _unsigned_line(where: str, seq: int, problem: str) -> str:
    return (
        f"{where}: seq {seq}, after the last checkpoint, is {problem}: the log writes no "
        "such line and no checkpoint vouches for it, so it was added or changed by hand"
    )


@dataclass
class _Survey:
    """The first read of a checkpoints file, keeping what does not grow with heartbeats."""

    sizes: Counter[int] = field(default_factory=Counter)  # size -> entries at that size
    count: int = 0  # complete entries
    latest: str | None = None  # the last entry's note
    gaps: list[str] = field(default_factory=list)  # longer than max_gap_s, in file order
    torn: segments.Torn | None = None
    # The line of the last entry when it was written as the log closed, after which its
    # writer adds nothing until it opens again with a checkpoint of its own.
    closed_line: int | None = None
    last: tuple[int, str, float] | None = None  # the last entry's size, note and time
    # Runs of lines with the same size and note (heartbeats differ only in their time):
    # the line each starts on, and how many lines it holds.
    run_starts: array[int] = field(default_factory=lambda: array("q"))
    run_lengths: array[int] = field(default_factory=lambda: array("q"))


def _survey(path: Path, max_gap_s: float | None) -> _Survey:
    survey = _Survey()
    before: float | None = None
    previous: tuple[int, str] | None = None
    for entry in segments.iter_checkpoints(path):
        if isinstance(entry, segments.Torn):
            survey.torn = entry
            break
        size, note, time = entry["size"], entry["note"], entry["time"]
        if previous is not None and size < previous[0]:
            # The log only grows, and each checkpoint covers it as it stands: a smaller one
            # after a larger is an old line copied in, or lines put out of order.
            raise AuditError(
                f"{segments.CHECKPOINTS}:{entry['_line']} covers {size} records, after a "
                f"checkpoint covering {previous[0]}: checkpoints were reordered or an old one "
                "copied in; restore the file from a copy"
            )
        if (size, note) == previous:
            survey.run_lengths[-1] += 1
        else:
            survey.run_starts.append(entry["_line"])
            survey.run_lengths.append(1)
        previous = (size, note)
        survey.sizes[size] += 1
        survey.count += 1
        survey.latest = note
        survey.closed_line = entry["_line"] if entry.get("closed") is True else None
        survey.last = (size, note, time)
        if max_gap_s is not None and before is not None and time - before > max_gap_s:
            survey.gaps.append(
                f"{time - before:.1f} s without a checkpoint before "
                f"{segments.CHECKPOINTS}:{entry['_line']} (more than {max_gap_s} s, or the "
                "clock was stepped forward)"
            )
        elif max_gap_s is not None and before is not None and time < before:
            # The writer's clock was stepped back: a gap across the step cannot be measured.
            survey.gaps.append(
                f"the time goes back {before - time:.1f} s at {segments.CHECKPOINTS}:"
                f"{entry['_line']} (the clock was stepped back): a gap across it is not measured"
            )
        before = time
    return survey


def _still_last(path: Path, survey: _Survey) -> bool:
    """Whether the last checkpoint read is still the file's last: a log opened since verify
    read the file (a server's start, a command) wrote a checkpoint of its own, then the
    records verify found after the closed one."""
    entries, _ = segments.checkpoints_tail(path, 1)
    last = entries[-1] if entries else None
    return last is not None and (last["size"], last["note"], last["time"]) == survey.last


def _check_extensions(
    report: Report, since: Sequence[str], latest: str, tree: MerkleTree, verifier: Verifier
) -> None:
    """Prove, as an auditor without the log would, that the latest checkpoint extends each
    saved one: an RFC 9162 consistency proof built from the records, then checked."""
    newest = verify_note(latest, verifier)
    ahead: set[int] = set()
    for note in since:
        saved = verify_note(note, verifier)
        if saved.size > newest.size:  # newer than the last checkpoint written here: the
            if saved.size not in ahead:  # records matched its root, but say it is missing
                ahead.add(saved.size)
                report.warnings.append(
                    f"the saved checkpoint of size {saved.size} is newer than the log's "
                    f"latest ({newest.size}): the records match it, but "
                    f"{segments.CHECKPOINTS} does not hold it; this copy was made before it "
                    "was written, or checkpoints were removed"
                )
            continue
        proof = tree.consistency_proof(saved.size, newest.size) if saved.size else []
        if not verify_consistency(saved.size, newest.size, proof, saved.root, newest.root):
            _fail(
                report, None, f"the latest checkpoint does not extend the saved one ({saved.size})"
            )
            return
        report.extends.append(saved.size)


def _root(stack: list[bytes]) -> bytes:
    """The tree root from a compact range."""
    if not stack:
        return EMPTY_ROOT
    root = stack[-1]
    for left in reversed(stack[:-1]):
        root = node_hash(left, root)
    return root


@dataclass(frozen=True)
class _Mismatch:
    """The first checkpoint, in order of size, that the records do not bear out."""

    key: tuple[int, int, int]  # (size, 0, line) for the file's entries, (size, 1, i) saved
    label: str
    problem: str  # "signature", "tail" or "root"
    detail: str  # why the signature was refused
    matched_at_size: int  # the file's entries of the same size checked before it


def _check_checkpoints(
    report: Report,
    path: Path,
    saved: list[tuple[int, str]],
    wanted: set[int],
    survey: _Survey,
    roots: dict[int, bytes],
    verifier: Verifier,
) -> None:
    """Check every checkpoint, the file's then the saved ones, against the records' roots,
    and report the first that fails in order of size, as the records are read."""
    first: _Mismatch | None = None
    seen: Counter[int] = Counter()

    def consider(key: tuple[int, int, int], label: str, note: str) -> None:
        nonlocal first
        if first is not None and key >= first.key:
            return  # cannot come before the one found
        size = key[0]
        try:
            checkpoint = verify_note(note, verifier)
        except AuditError as exc:
            first = _Mismatch(key, label, "signature", str(exc), seen[size])
            return
        if checkpoint.size != size:  # the line's own size field is not signed: the note is
            changed = f"its size field is not its signed note's ({checkpoint.size}): changed"
            first = _Mismatch(key, label, "signature", changed, seen[size])
        elif size not in roots:
            first = _Mismatch(key, label, "tail", "", seen[size])
        elif checkpoint.root != roots[size]:
            first = _Mismatch(key, label, "root", "", seen[size])

    # An idle log signs the same note each heartbeat (a note holds no time), one line after
    # another: a run of them is read and checked once, where a signature check per line
    # took 80 s for a million lines, and parsing each line again another 4 s.
    runs = segments.checkpoints_on(path, survey.run_starts)
    for entry, length in zip(runs, survey.run_lengths, strict=True):
        line, size = entry["_line"], entry["size"]
        consider((size, 0, line), f"checkpoint {segments.CHECKPOINTS}:{line}", entry["note"])
        seen[size] += length
    for index, (size, note) in enumerate(saved):
        consider((size, 1, index), "saved checkpoint", note)
    sizes = sorted(wanted)
    if first is None:
        report.checkpoints = survey.count
        good = sizes[-1] if sizes else 0
        if good < report.records and survey.closed_line is not None and _still_last(path, survey):
            _fail(
                report,
                good,
                f"records from seq {good} on ({report.records - good}) were added while the "
                "log was closed: they follow the checkpoint written as it closed "
                f"({segments.CHECKPOINTS}:{survey.closed_line}), after which tether adds none "
                "until it opens the log again; cut them from the segment if they are not to "
                "be kept",
            )
            return
        if good < report.records:
            report.uncovered = report.records - good
            report.warnings.append(
                f"records from seq {good} on ({report.records - good}) are not yet covered "
                "by a checkpoint: normal for a log being written or one stopped by a crash, "
                "otherwise checkpoints were removed"
            )
        return
    size = first.key[0]
    report.checkpoints = first.matched_at_size + sum(
        count for at, count in survey.sizes.items() if at < size
    )
    good = max((at for at in sizes if at < size), default=0)  # every one up to it matched
    if first.problem == "signature":
        _fail(report, None, f"{first.label} (size {size}): {first.detail}")
    elif first.problem == "tail":
        _fail(
            report,
            report.records,
            f"{first.label} covers {size} records but the log has only {report.records}: "
            f"records from seq {report.records} on were removed (tail cut)",
        )
    else:
        where = f"at seq {good}" if good == size - 1 else f"between seq {good} and seq {size - 1}"
        _fail(
            report,
            good,
            f"{first.label} (size {size}): root does not match the records; the log "
            f"diverges from it {where}",
        )


def _fail(report: Report, seq: int | None, message: str) -> Report:
    report.error, report.seq = message, seq
    return report


def verify_extension(
    saved: str, document: Mapping[str, Any], verifier: Verifier
) -> tuple[Checkpoint, Checkpoint]:
    """The saved checkpoint and the server's latest, once ``document`` (a consistency
    proof from ``GET /v1/audit/consistency/{size}``) shows the latter extends the former.

    This needs no copy of the log: a tampered or rewritten history cannot produce it.
    """
    old = verify_note(saved, verifier)
    try:
        new = verify_note(str(document["checkpoint"]), verifier)
        proof = [base64.b64decode(p, validate=True) for p in document["proof"]]
        sizes = (int(document["first_size"]), int(document["tree_size"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise AuditError(f"the consistency proof is malformed ({exc!r})") from exc
    if sizes != (old.size, new.size):
        raise AuditError(
            f"the proof is for sizes {sizes}, not from the saved {old.size} to the latest "
            f"{new.size}"
        )
    if not verify_consistency(old.size, new.size, proof, old.root, new.root):
        raise AuditError(
            f"the latest checkpoint (size {new.size}) does not extend the saved one (size "
            f"{old.size}): records covered by the saved checkpoint were changed or removed"
        )
    return old, new
