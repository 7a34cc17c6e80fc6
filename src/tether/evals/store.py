"""Evaluation runs and their samples, in SQLite under the data directory.

A run is its manifest (everything needed to say what was measured and to measure it
again) and one row per sample as it finishes, so an interrupted run keeps what it did and
can be resumed.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import IO, Any

from tether.closing import Closeable
from tether.databases import (
    newer_schema_message,
    open_database,
    owner_only,
    private_folder,
    read_only_holding,
)
from tether.errors import ConfigError, NotFoundError
from tether.settings import Settings

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    created REAL NOT NULL,
    suite TEXT NOT NULL,
    status TEXT NOT NULL,          -- running, finished, interrupted, failed
    manifest TEXT NOT NULL,        -- JSON
    summary TEXT                   -- JSON, when finished
);
CREATE TABLE IF NOT EXISTS samples (
    run_id TEXT NOT NULL REFERENCES runs(id),
    task_id TEXT NOT NULL,
    sample INTEGER NOT NULL,
    completion TEXT NOT NULL,
    status TEXT NOT NULL,
    passed INTEGER NOT NULL,
    exact INTEGER,                 -- FIM: the middle equals the reference
    duration_s REAL NOT NULL,      -- running the tests
    generate_s REAL,
    tokens INTEGER,
    trace_id TEXT,
    extra TEXT,                    -- JSON: coverage, style, ...
    PRIMARY KEY (run_id, task_id, sample)
);
CREATE INDEX IF NOT EXISTS runs_created ON runs (created);
"""


@dataclass(frozen=True)
class SampleResult:
    task_id: str
    sample: int
    completion: str
    status: str
    passed: bool
    duration_s: float
    exact: bool | None = None
    generate_s: float | None = None
    tokens: int | None = None
    trace_id: str | None = None
    extra: dict[str, Any] | None = None


@dataclass(frozen=True)
class Run:
    id: str
    created: float
    suite: str
    status: str
    manifest: dict[str, Any]
    summary: dict[str, Any] | None
    damage: str | None = None  # what of the stored row could not be read (then left empty)


def _create(db: sqlite3.Connection, path: Path) -> None:
    db.execute("PRAGMA journal_mode=WAL")
    _refuse_newer(db, path)
    db.executescript(_SCHEMA)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _refuse_newer(db: sqlite3.Connection, path: Path) -> None:
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise NotFoundError(
            newer_schema_message("the evaluation runs", path, version, SCHEMA_VERSION)
        )


def _reader(path: Path) -> sqlite3.Connection:
    """``path`` opened only to read. None there yet, or one made and not yet set up, has
    no runs: an empty store in memory stands for it, as reading makes no file."""
    db = read_only_holding(path, "the evaluation runs", "runs", lambda db: _refuse_newer(db, path))
    if db is not None:
        return db
    db = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
    db.executescript(_SCHEMA)
    return db


def _same_file(handle: IO[bytes], path: Path) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino
    except FileNotFoundError:
        return False


class EvalStore(Closeable):
    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        """``read_only``: for the commands that only read runs, which then work on a
        read-only copy of the data directory, and write nothing to it."""
        self.path = path
        self._locks = path.with_name(path.name + ".locks")  # a file per run held
        self._lock = threading.Lock()
        if read_only:
            self._db = _reader(path)
        else:
            private_folder(path.parent)
            self._db = open_database(path, "the evaluation runs", lambda db: _create(db, path))
        self._held_runs: dict[str, IO[bytes]] = {}

    @classmethod
    def from_settings(cls, settings: Settings, *, read_only: bool = False) -> EvalStore:
        return cls(settings.data.home / "evals.sqlite", read_only=read_only)

    def close(self) -> None:
        with self._lock:
            for handle in self._held_runs.values():
                # Removed while still held, so that whoever opens the name next makes a new
                # file; one that opened this one meanwhile sees it gone once it locks it.
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(handle.name)
                handle.close()  # lets go of the run's lock
            self._held_runs.clear()
            self._db.close()

    def hold(self, run_id: str) -> None:
        """Make ``run_id`` this process's own until the store closes: another process that
        would add samples to it (resume it too) is refused, not let generate the same ones.

        The kernel's lock on a file beside the database: it goes with the process, however
        that ends (killed, the machine restarted), so no run is left held by nobody."""
        with self._lock:
            if run_id in self._held_runs:
                return
        private_folder(self._locks)  # a lock names its holder's pid
        path = self._locks / f"{run_id}.lock"
        while True:
            handle = open(path, "a+b", opener=owner_only)  # noqa: SIM115 - held until close
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                handle.seek(0)
                holder = handle.read(32).decode(errors="replace").strip() or "another process"
                handle.close()
                raise ConfigError(
                    f"run {run_id} is under way in another process ({holder}); wait for it "
                    "to end, or stop it, then resume the run"
                ) from exc
            if _same_file(handle, path):
                break
            handle.close()  # its holder removed it as it let go: take the name's new file
        handle.truncate(0)
        handle.write(f"pid {os.getpid()}".encode())  # who holds it, for the refusal above
        handle.flush()
        with self._lock:
            self._held_runs[run_id] = handle

    def start(self, suite: str, manifest: dict[str, Any]) -> str:
        """A new run, "running" and held by this process until the store closes."""
        run_id = f"run-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
        self.hold(run_id)  # before it is seen: a run no process holds is not running
        with self._lock:
            self._db.execute(
                "INSERT INTO runs (id, created, suite, status, manifest) VALUES (?, ?, ?, ?, ?)",
                (run_id, time.time(), suite, "running", json.dumps(manifest)),
            )
        return run_id

    def _held(self, run_id: str) -> bool:
        """Whether a process (this one included) holds ``run_id``."""
        with self._lock:
            if run_id in self._held_runs:
                return True
        path = self._locks / f"{run_id}.lock"
        try:
            handle = os.open(path, os.O_RDONLY)
        except OSError:  # no lock file: never held, or let go
            return False
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return True
        finally:
            os.close(handle)  # lets go of the lock just taken, if it was
        return False

    def _as_it_stands(self, run: Run) -> Run:
        # A run left "running" by a process that is gone (killed, or stopped a second time
        # while it saved) is interrupted: it resumes from its samples like any other.
        if run.status == "running" and not self._held(run.id):
            return replace(run, status="interrupted")
        return run

    def add(self, run_id: str, result: SampleResult) -> None:
        row = asdict(result)
        row["extra"] = json.dumps(row["extra"]) if row["extra"] is not None else None
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO samples (run_id, task_id, sample, completion, status, "
                "passed, exact, duration_s, generate_s, tokens, trace_id, extra) VALUES "
                "(:run_id, :task_id, :sample, :completion, :status, :passed, :exact, "
                ":duration_s, :generate_s, :tokens, :trace_id, :extra)",
                {"run_id": run_id, **row},
            )

    def finish(self, run_id: str, status: str, summary: dict[str, Any]) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE runs SET status = ?, summary = ? WHERE id = ?",
                (status, json.dumps(summary), run_id),
            )

    def reopen(self, run_id: str) -> None:
        """A run resumed is running again: its summary of when it stopped no longer holds
        (until it ends, its samples say where it stands)."""
        with self._lock:
            self._db.execute(
                "UPDATE runs SET status = 'running', summary = NULL WHERE id = ?", (run_id,)
            )

    def run(self, run_id: str) -> Run:
        if not run_id:  # as a suffix it would name every run
            raise NotFoundError("no run ''; give a run's id (`tether eval history` lists them)")
        with self._lock:
            row = self._db.execute(
                "SELECT id, created, suite, status, manifest, summary FROM runs "
                "WHERE id = ? OR id LIKE ? ESCAPE '\\' ORDER BY created DESC",
                (run_id, "%" + _literal(run_id)),
            ).fetchall()
        if len(row) != 1:
            raise NotFoundError(
                f"no run {run_id!r}" if not row else f"{run_id!r} names {len(row)} runs; say more"
            )
        return self._as_it_stands(_run(row[0]))

    def runs(self, limit: int = 50) -> list[Run]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, created, suite, status, manifest, summary FROM runs "
                "ORDER BY created DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return [self._as_it_stands(_run(row)) for row in rows]

    def samples(self, run_id: str) -> list[SampleResult]:
        with self._lock:
            rows = self._db.execute(
                "SELECT task_id, sample, completion, status, passed, duration_s, exact, "
                "generate_s, tokens, trace_id, extra FROM samples WHERE run_id = ? "
                "ORDER BY task_id, sample",
                (run_id,),
            ).fetchall()
        return [_sample(r) for r in rows]

    def done(self, run_id: str) -> set[tuple[str, int]]:
        """(task, sample) pairs already stored: a resumed run skips them."""
        with self._lock:
            rows = self._db.execute(
                "SELECT task_id, sample FROM samples WHERE run_id = ?", (run_id,)
            ).fetchall()
        return {(task, sample) for task, sample in rows}


def _sample(r: tuple[Any, ...]) -> SampleResult:
    extra = _extra(r[10])
    duration = _figure(r[5])
    if duration is None:  # damaged: the sample still counts, its time is not made up
        extra = {**(extra or {}), "damaged": "its test time is not a number"}
    generated, tokens = _figure(r[7]), _figure(r[8])
    return SampleResult(
        task_id=str(r[0]),
        sample=r[1],
        completion=str(r[2]),
        status=str(r[3]),
        passed=bool(r[4]),
        duration_s=duration or 0.0,
        exact=None if r[6] is None else bool(r[6]),
        generate_s=generated,
        tokens=None if tokens is None else int(tokens),
        trace_id=r[9],
        extra=extra,
    )


def _figure(value: Any) -> float | None:
    """A number stored in a REAL or INTEGER column; None for one that is not (NULL, or text
    put there by hand or a disk fault), which report and summaries would trip over."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _extra(text: str | None) -> dict[str, Any] | None:
    """A sample's extra figures; damaged (not a JSON object), they are left out and the
    sample, whose verdict has columns of its own, still counts."""
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return {"damaged": "its extra figures are not JSON"}
    return value if isinstance(value, dict) else {"damaged": "its extra figures are not an object"}


def _literal(text: str) -> str:
    """``text`` matched as it is by LIKE ... ESCAPE '\\': % and _ are not wildcards there."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def decided(run: Run, results: Iterable[SampleResult]) -> dict[str, tuple[int, int]]:
    """``per_task`` of the tasks of ``run`` whose planned samples were all scored: a stop
    cuts the samples that take longest, mostly failing ones, so what was scored of a task
    it cut would count it too well. Planned: the manifest's n a task, or a samples file's
    own count for each of its tasks (``planned`` where they differ)."""
    return decided_tasks(results, *planned_samples(run))


def planned_samples(run: Run) -> tuple[int, dict[str, int] | None]:
    """The samples ``run`` was to score a task, and per task where they differ."""
    config = run.manifest.get("config", {})
    n, planned = config.get("n", 1), config.get("planned")
    return (n if type(n) is int and n >= 1 else 1), (planned if isinstance(planned, dict) else None)


def decided_tasks(
    results: Iterable[SampleResult], n: int, planned: Mapping[str, int] | None = None
) -> dict[str, tuple[int, int]]:
    """``per_task`` of the tasks with their planned samples (``planned``, else ``n``) all
    scored."""
    plan = planned or {}
    return {t: v for t, v in per_task(results).items() if v[0] >= plan.get(t, n)}


def per_task(results: Iterable[SampleResult]) -> dict[str, tuple[int, int]]:
    """(samples, passed) per task, what pass@k is computed from."""
    counts: dict[str, list[int]] = {}
    for result in results:
        count = counts.setdefault(result.task_id, [0, 0])
        count[0] += 1
        count[1] += result.passed
    return {task: (n, c) for task, (n, c) in counts.items()}


def _run(row: tuple[Any, ...]) -> Run:
    # A damaged manifest or summary (a disk fault, an edit by hand) spoils that run alone:
    # it is read as empty and says so, and every other run still reads.
    damage: list[str] = []
    manifest = _object(row[4], "manifest", damage) or {}
    for part in _MANIFEST_PARTS:  # what the commands read from it
        if part in manifest and not isinstance(manifest[part], dict):
            damage.append(f"its manifest's {part} is not a JSON object")
            del manifest[part]
    summary = _object(row[5], "summary", damage) if row[5] else None
    if summary is not None and not _summary_reads(summary):
        damage.append("its summary is not one tether wrote")
        summary = None  # the commands sum the run up again from its samples
    created = _figure(row[1])
    if created is None:
        damage.append("its start time is not a number")
    status = row[3]
    if status not in RUN_STATUSES:
        damage.append(f"its status {str(status)[:40]!r} is not one tether writes")
        status = "damaged"
    return Run(
        id=row[0],
        created=created or 0.0,
        suite=row[2],
        status=status,
        manifest=manifest,
        summary=summary,
        damage=" and ".join(damage) or None,
    )


_MANIFEST_PARTS = ("config", "engine", "dataset")
RUN_STATUSES = ("running", "finished", "interrupted", "failed")


def _summary_reads(summary: dict[str, Any]) -> bool:
    """The parts of a summary the commands read have the shape they expect."""
    estimates = summary.get("pass_at_k", {})
    counts = [summary.get("tasks", 0), summary.get("samples", 0)]
    statuses = summary.get("statuses", {})
    shares = [summary.get(k) for k in ("exact_match", "line_coverage", "branch_coverage")]
    shares.append(summary.get("style_conformance"))
    return (
        isinstance(estimates, dict)
        and all(isinstance(e, dict) and _estimate_reads(e) for e in estimates.values())
        and isinstance(statuses, dict)
        and all(_whole(c) for c in [*counts, *statuses.values()])
        and all(share is None or _figure(share) is not None for share in shares)
    )


def _estimate_reads(estimate: dict[str, Any]) -> bool:
    figures = [estimate.get(k) for k in ("value", "low", "high")]
    return _whole(estimate.get("tasks", 0)) and all(
        f is None or _figure(f) is not None for f in figures
    )


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _object(text: Any, column: str, damage: list[str]) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        value = None
    if not isinstance(value, dict):
        damage.append(f"its {column} is not a JSON object")
        return None
    return value
