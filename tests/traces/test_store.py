from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.conftest import TOKEN, make_settings
from tests.helpers import ScriptedEngine
from tests.traces.conftest import make_trace
from tether.errors import ConfigError
from tether.server.app import build_app
from tether.settings import load_settings
from tether.traces import Trace, TraceStore

DAY = 86_400.0


def test_round_trip(store: TraceStore) -> None:
    trace = make_trace()
    store.record(trace)
    assert store.get("cmpl-abc") == trace
    assert store.get("cmpl-missing") is None


def test_trace_is_plain_json() -> None:
    trace = make_trace()
    data = json.loads(trace.to_json())
    assert data["policy"][0]["rule_id"] == "secrets.aws-access-key"
    assert data["context"] == [{"filename": "util.py", "text": "def helper(): ...", "score": 0.87}]
    assert Trace.from_dict({**data, "added_later": 1}) == trace
    assert trace.seed == 42


def test_recent_newest_first(store: TraceStore) -> None:
    for i in range(5):
        store.record(make_trace(f"cmpl-{i}", created=1000.0 + i))
    assert [t.id for t in store.recent(3)] == ["cmpl-4", "cmpl-3", "cmpl-2"]


@pytest.mark.parametrize("body", ["{", '{"id": "x"}', "[1, 2]", '"text"'])
def test_a_damaged_row_is_named_and_left_out_of_listings(
    tmp_path: Path, store: TraceStore, body: str
) -> None:
    for i in range(3):
        store.record(make_trace(f"cmpl-{i}", created=1000.0 + i))
    with sqlite3.connect(tmp_path / "traces.sqlite") as raw:
        raw.execute("UPDATE traces SET body = ? WHERE id = 'cmpl-1'", (body,))
    with pytest.raises(ConfigError, match=r"trace of cmpl-1 .* is damaged: not a trace"):
        store.get("cmpl-1")
    assert [t.id for t in store.recent(3)] == ["cmpl-2", "cmpl-0"]


def test_file_uses_wal_and_indexes(store: TraceStore) -> None:
    store.record(make_trace())
    db = sqlite3.connect(store.path)
    try:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        indexes = {row[1] for row in db.execute("PRAGMA index_list(traces)")}
        assert "traces_created" in indexes
        assert any(name.startswith("sqlite_autoindex") for name in indexes)  # id primary key
    finally:
        db.close()


def test_from_settings_uses_data_home(tmp_path: Path) -> None:
    settings = load_settings(
        cwd=tmp_path,
        environ={"TETHER_HOME": str(tmp_path / "home"), "TETHER_TRACES_MAX_AGE_DAYS": "3"},
    )
    with TraceStore.from_settings(settings) as store:
        assert store.path == tmp_path / "home" / "traces.sqlite"
        assert store.max_age_days == 3
        assert store.enabled


def test_disabled_store_records_nothing(tmp_path: Path) -> None:
    with TraceStore(tmp_path / "t.sqlite", enabled=False) as store:
        store.record(make_trace())
        assert store.count() == 0


def test_retention_by_age(tmp_path: Path) -> None:
    now = 1_700_000_000.0
    with TraceStore(tmp_path / "t.sqlite", max_age_days=2, clock=lambda: now) as store:
        store.record(make_trace("cmpl-old", created=now - 3 * DAY))
        store.record(make_trace("cmpl-new", created=now - 1 * DAY))
        assert store.prune() == 1
        assert store.get("cmpl-old") is None
        assert store.get("cmpl-new") is not None


def test_retention_runs_every_n_records_not_each(tmp_path: Path) -> None:
    now = 1_700_000_000.0
    with TraceStore(
        tmp_path / "t.sqlite", max_age_days=1, prune_every=3, clock=lambda: now
    ) as store:
        store.prune()  # past the first interval, in which no count makes one due
        store.record(make_trace("cmpl-a", created=now - 5 * DAY))
        store.record(make_trace("cmpl-b", created=now - 5 * DAY))
        assert store.count() == 2  # not pruned yet
        store.record(make_trace("cmpl-c", created=now))
        assert [t.id for t in store.recent(10)] == ["cmpl-c"]


def test_retention_runs_after_interval_on_the_monotonic_clock(tmp_path: Path) -> None:
    wall, steady = [1_700_000_000.0], [50.0]  # the host booted 50 s ago
    with TraceStore(
        tmp_path / "t.sqlite",
        max_age_days=1,
        prune_interval=60,
        clock=lambda: wall[0],
        since_boot=lambda: steady[0],
    ) as store:
        store.record(make_trace("cmpl-a", created=wall[0] - 5 * DAY))
        wall[0] += 3600  # a step forward is no interval passed
        store.record(make_trace("cmpl-b", created=wall[0]))
        assert store.count() == 2
        wall[0] -= 7200  # nor does a step back hold it off
        steady[0] += 61
        store.record(make_trace("cmpl-c", created=wall[0]))
        assert sorted(t.id for t in store.recent(10)) == ["cmpl-b", "cmpl-c"]


def test_a_store_opened_long_after_boot_prunes_at_its_first_trace(tmp_path: Path) -> None:
    """A command that records one answer, or a server restarted more often than every
    five minutes, never pruned: the first prune waited five minutes after each opening,
    and traces (prompts and answers) were kept past traces.max_age_days."""
    now = 1_700_000_000.0
    path = tmp_path / "t.sqlite"
    with TraceStore(path, max_age_days=1, clock=lambda: now, since_boot=lambda: 0.0) as store:
        store.record(make_trace("cmpl-old", created=now - 5 * DAY))  # kept: just booted
    with TraceStore(path, max_age_days=1, clock=lambda: now, since_boot=lambda: 3600.0) as store:
        store.record(make_trace("cmpl-new", created=now))
        assert [t.id for t in store.recent(10)] == ["cmpl-new"]


def test_retention_by_size_drops_oldest(tmp_path: Path) -> None:
    path = tmp_path / "t.sqlite"
    now = 1_700_000_000.0
    big = "x" * 20_000
    with TraceStore(path, max_mb=0.5, prune_every=10_000, clock=lambda: now) as store:
        for i in range(60):  # ~1.2 MB of output
            store.record(make_trace(f"cmpl-{i:03}", created=now - 1000 + i, output=big))
        assert store.size_bytes() > 0.5 * 1024 * 1024
        deleted = store.prune()
        assert deleted > 0
        assert store.size_bytes() <= 0.5 * 1024 * 1024
        kept = [t.id for t in store.recent(100)]
        assert kept[0] == "cmpl-059"  # the newest stay
        assert "cmpl-000" not in kept
        assert path.stat().st_size <= 0.6 * 1024 * 1024  # the file itself shrank


def test_concurrent_records(store: TraceStore) -> None:
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(50):
                store.record(make_trace(f"cmpl-{n}-{i}", created=time.time()))
                store.get(f"cmpl-{n}-{i}")
        except BaseException as exc:  # surfaced below; a thread cannot fail the test itself
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert store.count() == 400


def test_a_store_that_is_not_one_or_cannot_be_opened_is_one_clear_error(tmp_path: Path) -> None:
    garbage = tmp_path / "traces.sqlite"
    garbage.write_bytes(b"garbage\n" * 200)
    with pytest.raises(ConfigError, match=r"not a tether trace store .* move it aside"):
        TraceStore(garbage)
    unopenable = tmp_path / "folder.sqlite"
    unopenable.mkdir()
    with pytest.raises(ConfigError, match=r"cannot open the trace store .* writable"):
        TraceStore(unopenable)


def test_a_damaged_trace_asked_of_a_server_does_not_name_its_file(tmp_path: Path) -> None:
    """The file's path is the operator's: the server's log has it, the client does not."""
    engine = ScriptedEngine("ok")
    with TestClient(build_app(make_settings(tmp_path), TOKEN, lambda: engine)) as client:
        client.headers["Authorization"] = f"Bearer {TOKEN}"
        answer = client.post("/v1/completions", json={"prompt": "x", "max_tokens": 2}).json()
        client.app.state.trace_recorder.flush()  # type: ignore[attr-defined]
        with sqlite3.connect(tmp_path / "data" / "traces.sqlite") as raw:
            raw.execute("UPDATE traces SET body = '{' WHERE id = ?", (answer["id"],))
        asked = client.get(f"/v1/traces/{answer['id']}")
    assert asked.status_code == 500, asked.text
    message = asked.json()["error"]["message"]
    assert f"the trace of {answer['id']} is damaged" in message
    assert "traces.sqlite" not in message and str(tmp_path) not in message


# Opens a trace store with ``left`` file descriptors free, and prints why it cannot.
_OPEN_WITH_FEW_FILES = """
import os, resource, sys
from pathlib import Path
from tether.errors import ConfigError
from tether.traces import TraceStore
hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) - 1 + {left}, hard))
try:
    TraceStore(Path(sys.argv[1]))
except ConfigError as exc:
    print(exc.message)
"""


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts descriptors in /proc")
@pytest.mark.parametrize("left", [0, 1, 2], ids=["making it", "its -wal", "its -shm"])
def test_a_store_that_cannot_open_for_want_of_files_names_the_limit(
    tmp_path: Path, left: int
) -> None:
    """Under a low `ulimit -n` it said to check permissions and the disk's room."""
    done = subprocess.run(
        [sys.executable, "-c", _OPEN_WITH_FEW_FILES.format(left=left), str(tmp_path / "t.db")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "too few files can be opened" in done.stdout, done.stdout
    assert "ulimit -n" in done.stdout and "room" not in done.stdout
