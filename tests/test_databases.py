"""A damaged SQLite file is the user's to mend: every entry point says so in words, and
`tether doctor` names the file."""

from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from tests.conftest import TOKEN, make_settings
from tests.helpers import ScriptedEngine, isolate_tether, read_only, run_bound
from tether import __version__, databases
from tether.background import BackgroundWriter
from tether.cli.common import EXIT_NO, EXIT_USAGE
from tether.cli.main import cli
from tether.databases import cannot_open, damage_in, is_damage, open_read_only
from tether.errors import ConfigError
from tether.evals.store import SCHEMA_VERSION as EVALS_SCHEMA
from tether.evals.store import EvalStore
from tether.server.app import build_app
from tether.store.db import SCHEMA_VERSION as STORE_SCHEMA
from tether.store.db import SnippetStore
from tether.traces import TraceStore
from tether.traces.store import SCHEMA_VERSION as TRACES_SCHEMA
from tether.usage.ledger import UsageLedger

FUNCTIONS = "".join(f"def f{i}(a):\n    return a + {i}\n\n" for i in range(200))


def _damage(path: Path, table: str) -> None:
    """Overwrite the first page of ``table``'s tree with bytes no page holds."""
    with sqlite3.connect(path) as db:
        page_size = db.execute("PRAGMA page_size").fetchone()[0]
        (root,) = db.execute(
            "SELECT rootpage FROM sqlite_master WHERE name = ?", (table,)
        ).fetchone()
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    with path.open("r+b") as file:
        file.seek((root - 1) * page_size)
        file.write(b"\xde\xad\xbe\xef" * (page_size // 4))


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    isolate_tether(monkeypatch, tmp_path)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "many.py").write_text(FUNCTIONS)
    assert CliRunner().invoke(cli, ["store", "add", "many.py"]).exit_code == 0
    return tmp_path / "home"


def test_the_quick_check_tells_damage_from_health(home: Path) -> None:
    store = home / "store.sqlite"
    assert damage_in(store) is None
    _damage(store, "snippets")
    assert damage_in(store)
    not_a_database = home / "other.sqlite"
    not_a_database.write_bytes(b"hello " * 200)
    assert damage_in(not_a_database) == "file is not a database"


def test_a_read_a_writer_changed_under_is_not_reported_as_damage(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`doctor` reads a database no process has open as immutable; a server that opens it
    and writes meanwhile can make that one read see damage the file does not hold."""
    store = home / "store.sqlite"
    torn = home / "torn.sqlite"
    shutil.copy(store, torn)
    _damage(torn, "snippets")
    reads = [torn]  # the first read sees pages as they were mid-write
    real = databases.connect_to_check
    monkeypatch.setattr(
        databases, "connect_to_check", lambda path: real(reads.pop() if reads else path)
    )
    assert damage_in(store) is None
    assert damage_in(torn)  # damage that is there is found both times


def test_a_database_that_cannot_be_opened_on_a_full_disk_says_to_free_space(
    tmp_path: Path,
) -> None:
    """Opening an older database upgrades it, which writes: on a full disk that failed with
    advice to check the file and its folder's permissions first."""
    full = sqlite3.OperationalError("database or disk is full")
    said = cannot_open("the trace store", tmp_path / "traces.sqlite", full).message
    assert "its disk is full" in said and "free space on it" in said
    assert "writable by this user" not in said


def test_a_locked_or_missing_file_is_not_damage() -> None:
    assert not is_damage(sqlite3.OperationalError("database is locked"))
    assert not is_damage(ValueError("malformed"))


def test_the_command_line_says_what_to_do_and_doctor_names_the_file(home: Path) -> None:
    _damage(home / "store.sqlite", "snippets")
    result = CliRunner().invoke(cli, ["store", "list"])
    assert result.exit_code == EXIT_USAGE, result.output
    assert "is damaged (database disk image is malformed)" in result.output
    assert "tether doctor" in result.output and "internal error" not in result.output
    result = CliRunner().invoke(cli, ["doctor", "--json"])
    assert result.exit_code == EXIT_NO
    assert '"check": "store.sqlite"' in result.output
    assert "store.sqlite is damaged" in result.output and "move it aside" in result.output


def test_doctor_names_a_database_a_newer_tether_wrote(home: Path) -> None:
    """A store, evaluation or trace database from a newer tether (a downgrade) stops the
    server and the commands that use it: doctor says so rather than passing the file."""
    EvalStore(home / "evals.sqlite").close()
    TraceStore(home / "traces.sqlite").close()
    for name in ("store.sqlite", "evals.sqlite", "traces.sqlite"):
        with closing(sqlite3.connect(home / name)) as db:
            newer = db.execute("PRAGMA user_version").fetchone()[0] + 1
            db.execute(f"PRAGMA user_version = {newer}")
    for command in (["store", "list"], ["eval", "history"], ["explain", "--recent"]):
        refused = CliRunner().invoke(cli, command)
        assert refused.exit_code == EXIT_USAGE, refused.output
        assert f"this tether, {__version__}, reads schema" in refused.output
        assert "from the copy of the data directory taken before the upgrade" in refused.output
        assert "keep audit/ as it is" in refused.output
    result = CliRunner().invoke(cli, ["doctor", "--json"])
    assert result.exit_code == EXIT_NO, result.output
    for name, newer in (
        ("store.sqlite", STORE_SCHEMA + 1),
        ("evals.sqlite", EVALS_SCHEMA + 1),
        ("traces.sqlite", TRACES_SCHEMA + 1),
    ):
        (check,) = [c for c in json.loads(result.output) if c["check"] == name]
        assert not check["ok"] and "written by a newer tether" in check["detail"]
        assert f"(schema {newer}; this tether, {__version__}, " in check["detail"]
        assert f"upgrade tether again, to one that reads schema {newer}" in check["fix"]
        assert f"put back {name} from the copy" in check["fix"]
        assert "keep audit/ as it is" in check["fix"]
        assert ("move traces.sqlite aside" in check["fix"]) == (name == "traces.sqlite")


def test_doctor_says_which_databases_the_next_start_upgrades(home: Path) -> None:
    """Said before it is done: after it, a tether that reads only the older schema cannot
    open the file, so a copy taken first is the way back."""
    with closing(sqlite3.connect(home / "store.sqlite")) as db:
        db.execute("ALTER TABLE snippets DROP COLUMN served")  # as schema 1 had it
        db.execute("PRAGMA user_version = 1")
    result = CliRunner().invoke(cli, ["doctor", "--json"])
    (check,) = [c for c in json.loads(result.output) if c["check"] == "store.sqlite"]
    assert check["ok"], check
    assert f"upgrades it to schema {STORE_SCHEMA}" in check["detail"]
    assert "copy the data directory first" in check["detail"]
    with closing(sqlite3.connect(home / "store.sqlite")) as db:  # doctor only looked
        assert db.execute("PRAGMA user_version").fetchone()[0] == 1


def test_doctor_leaves_the_data_directory_as_it_was(home: Path) -> None:
    """Each database it checked was left with an empty -wal and a -shm beside it, which
    a reader cannot remove again."""
    EvalStore(home / "evals.sqlite").close()
    UsageLedger(home / "usage.sqlite").close()
    before = {p.name: p.stat().st_mtime_ns for p in home.iterdir()}
    assert {"store.sqlite", "evals.sqlite", "usage.sqlite"} <= set(before)
    result = CliRunner().invoke(cli, ["doctor", "--json"])
    checked = {c["check"]: c["ok"] for c in json.loads(result.output)}
    assert checked["store.sqlite"] and checked["evals.sqlite"] and checked["usage.sqlite"]
    assert {p.name: p.stat().st_mtime_ns for p in home.iterdir()} == before


def test_a_database_a_server_writes_is_checked_through_its_wal_and_left_to_it(
    home: Path,
) -> None:
    """The changes a -wal holds are read, and the -wal and -shm a writer keeps stay its."""
    path = home / "store.sqlite"
    with closing(sqlite3.connect(path, isolation_level=None)) as writer:
        writer.execute("PRAGMA wal_autocheckpoint = 0")  # the change stays in the -wal
        newer = writer.execute("PRAGMA user_version").fetchone()[0] + 1
        writer.execute(f"PRAGMA user_version = {newer}")
        wal = path.with_name("store.sqlite-wal")
        held = wal.stat().st_size
        assert held > 0
        result = CliRunner().invoke(cli, ["doctor", "--json"])
        (check,) = [c for c in json.loads(result.output) if c["check"] == "store.sqlite"]
        assert f"(schema {newer};" in check["detail"]
        assert wal.stat().st_size == held
        writer.execute("PRAGMA user_version = 1")  # it writes on
    assert not wal.exists()  # and, the last to close it, removed what it made


def test_a_database_linked_from_the_data_directory_is_read_through_its_wal(
    home: Path, tmp_path: Path
) -> None:
    """SQLite keeps a linked file's -wal and -shm beside the file it links to: looked for
    beside the link, none was found while a server wrote it, and doctor read it as
    immutable, passing over the changes its -wal holds and taking no lock against a
    checkpoint rewriting the pages it checks."""
    moved = tmp_path / "elsewhere" / "store.sqlite"
    moved.parent.mkdir()
    (home / "store.sqlite").rename(moved)
    (home / "store.sqlite").symlink_to(moved)
    with closing(sqlite3.connect(moved, isolation_level=None)) as writer:
        writer.execute("PRAGMA wal_autocheckpoint = 0")  # the change stays in the -wal
        newer = writer.execute("PRAGMA user_version").fetchone()[0] + 1
        writer.execute(f"PRAGMA user_version = {newer}")
        assert moved.with_name("store.sqlite-wal").stat().st_size > 0
        result = CliRunner().invoke(cli, ["doctor", "--json"])
        (check,) = [c for c in json.loads(result.output) if c["check"] == "store.sqlite"]
        assert f"(schema {newer};" in check["detail"], check


def test_the_server_answers_in_words_and_logs_one_line(
    home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _damage(home / "store.sqlite", "snippets")
    settings = make_settings(home.parent, TETHER_HOME=str(home))
    app = build_app(settings, TOKEN, lambda: ScriptedEngine("x"))
    client: TestClient
    with (
        TestClient(app, raise_server_exceptions=False) as client,
        caplog.at_level(logging.ERROR, logger="tether.server"),
    ):
        response = client.get("/v1/snippets", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "database_damaged"
    assert "tether doctor" in caplog.text and "Traceback" not in caplog.text


def test_a_damaged_file_under_a_writer_is_one_line_in_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    garbage = tmp_path / "traces.sqlite"
    garbage.write_bytes(b"hello " * 200)

    def write(_: str) -> None:
        with closing(sqlite3.connect(garbage)) as db:
            db.execute("INSERT INTO traces VALUES (1)")

    writer = BackgroundWriter("test-writer", "a trace")
    with caplog.at_level(logging.ERROR, logger="tether.server"):
        writer.submit(write, "x")
        writer.close()
    assert "could not write a trace: a database" in caplog.text
    assert "Traceback" not in caplog.text


def test_a_data_directory_that_is_a_file_or_a_database_that_is_a_folder_is_named(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (home / "evals.sqlite").mkdir()
    history = CliRunner().invoke(cli, ["eval", "history"])
    assert history.exit_code == EXIT_USAGE, history.output
    assert "cannot open the evaluation runs" in history.output
    assert "check that it is a file" in history.output
    doctor = CliRunner().invoke(cli, ["doctor"])
    assert doctor.exit_code == EXIT_NO
    assert "[FIX] evals.sqlite:" in doctor.output and "is not a file" in doctor.output
    monkeypatch.setenv("TETHER_HOME", str(home / "store.sqlite"))
    doctor = CliRunner().invoke(cli, ["doctor"])
    assert doctor.exit_code == EXIT_NO
    assert "store.sqlite is a file, not a directory" in doctor.output


def test_a_damaged_ledger_named_on_the_command_line_is_told_what_to_do(home: Path) -> None:
    ledger = home / "copy.sqlite"
    UsageLedger(ledger).close()
    _damage(ledger, "usage_daily")
    result = CliRunner().invoke(cli, ["usage", "report", "--ledger", str(ledger)])
    assert result.exit_code == EXIT_USAGE, result.output
    assert str(ledger) in result.output and "tether doctor" not in result.output


def _open_handles(path: Path) -> int:
    fds = Path("/proc/self/fd")
    return sum(1 for fd in fds.iterdir() if _target(fd).startswith(str(path)))


def _target(fd: Path) -> str:
    try:
        return str(fd.readlink())
    except OSError:  # closed between listing and reading
        return ""


@pytest.mark.parametrize(
    ("opener", "what"),
    [
        (EvalStore, "the evaluation runs"),
        (UsageLedger, "the usage ledger"),
        (SnippetStore, "the function store"),
    ],
    ids=["evals", "ledger", "store"],
)
def test_a_database_that_fails_its_setup_is_named_and_left_closed(
    tmp_path: Path, opener: Callable[[Path], object], what: str
) -> None:
    damaged = tmp_path / "damaged.sqlite"
    damaged.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4000)  # a header, then garbage
    for _ in range(3):
        with pytest.raises(ConfigError, match=f"{what}, is damaged"):
            opener(damaged)
    assert _open_handles(damaged) == 0


def test_what_a_server_writes_is_its_owners_only(tmp_path: Path) -> None:
    """Traces, the usage ledger and the store hold prompts, answers and code: under the
    usual umask (022) SQLite made them readable by every local user."""
    import os
    import stat

    before = os.umask(0o022)
    try:
        # A webhook's spool is made first, two folders down: the data directory with it.
        settings = make_settings(
            tmp_path / "fresh", TETHER_AUDIT_WEBHOOK_URL="http://127.0.0.1:9/audit"
        )
        app = build_app(settings, TOKEN, lambda: ScriptedEngine("x = 1\n"))
        with TestClient(app) as client:
            body = {"prompt": "def f():\n", "max_tokens": 4}
            headers = {"Authorization": f"Bearer {TOKEN}"}
            assert client.post("/v1/completions", json=body, headers=headers).status_code == 200
            app.state.trace_recorder.flush()
    finally:
        os.umask(before)
    home = settings.data.home
    folders = [home, *(p for p in home.rglob("*") if p.is_dir())]
    assert home / "audit" / "spool" in folders
    for folder in folders:
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    # The audit log's records and checkpoints, and the batches spooled for the webhook.
    audit = home / "audit"
    records = [*audit.glob("*.jsonl"), *(audit / "spool").glob("*.batch")]
    assert {p.suffix for p in records} == {".jsonl", ".batch"}, records
    for path in records:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    written = [p for p in home.glob("*.sqlite*") if p.is_file()]
    assert {p.name for p in written} >= {"traces.sqlite", "usage.sqlite"}, written
    for path in written:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


# Opens sys.argv[1] to read as tether's commands do: prints its rows, or why not.
_READ = """
import sys
from pathlib import Path
from tether.databases import open_read_only
from tether.errors import ConfigError
try:
    with open_read_only(Path(sys.argv[1]), "the runs") as db:
        print(db.execute("SELECT COUNT(*) FROM t").fetchone()[0])
except ConfigError as exc:
    print(exc.message)
"""


def _copy_in_use(tmp_path: Path, beside: tuple[str, ...]) -> Path:
    """A copy of a WAL-mode database taken while it is open, with the files ``beside`` it
    ("-wal", "-shm") copied too: of its 3 rows, the last is in its -wal alone."""
    source, copy = tmp_path / "live", tmp_path / "copy"
    source.mkdir()
    copy.mkdir()
    with closing(sqlite3.connect(source / "runs.sqlite", isolation_level=None)) as db:
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA wal_autocheckpoint = 0")
        db.execute("CREATE TABLE t (x)")
        db.execute("INSERT INTO t VALUES (1), (2)")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        db.execute("INSERT INTO t VALUES (3)")
        for suffix in ("", *beside):
            name = "runs.sqlite" + suffix
            (copy / name).write_bytes((source / name).read_bytes())
    return copy / "runs.sqlite"


@pytest.mark.parametrize(
    ("beside", "read"),
    [
        ((), "2"),  # no -wal: all there is is in the file, read as immutable
        (("-wal", "-shm"), "3"),  # the -wal's row too, through the -shm there
        (("-wal",), "runs.sqlite-wal beside it holds changes"),  # not left out unsaid
    ],
    ids=["file", "with-wal-and-shm", "with-wal-alone"],
)
def test_a_database_in_a_read_only_folder_is_read_whole_or_refused(
    tmp_path: Path, beside: tuple[str, ...], read: str
) -> None:
    path = _copy_in_use(tmp_path, beside)
    files = sorted(path.parent.iterdir())
    with read_only(path.parent):
        said = run_bound(_READ, str(path))
    if read.isdigit():
        assert said == read + "\n"
    else:
        assert read in said and "copy that folder (with runs.sqlite-wal) to one you" in said
    assert sorted(path.parent.iterdir()) == files


def test_another_users_database_is_read_without_files_made_beside_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a folder this user can write (one a team shares), SQLite made the -wal and -shm
    it reads a WAL-mode file through, this user's and left there: the owner's tether could
    then no longer write the file ("attempt to write a readonly database")."""
    path = tmp_path / "runs.sqlite"
    with closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("CREATE TABLE t (x)")
        db.execute("INSERT INTO t VALUES (1)")
    files = sorted(tmp_path.iterdir())
    monkeypatch.setattr(os, "geteuid", lambda: path.stat().st_uid + 1)
    with closing(open_read_only(path, "the runs")) as db:
        assert db.execute("SELECT COUNT(*) FROM t").fetchone()[0] == 1
    assert sorted(tmp_path.iterdir()) == files


@pytest.mark.parametrize("folder_read_only", [False, True])
def test_a_damaged_database_read_to_be_inspected_is_not_to_be_moved_aside(
    tmp_path: Path, folder_read_only: bool
) -> None:
    """Moving aside a copy being inspected would only hide what it held: the advice is
    to copy it again, or restore it."""
    path = tmp_path / "runs.sqlite"
    path.write_bytes(b"SQLite format 3\x00" + b"\x07" * 4096)
    if folder_read_only:  # read as immutable, there being no -shm to make
        with read_only(tmp_path):
            said = run_bound(_READ, str(path))
    else:
        with pytest.raises(ConfigError) as refused:
            open_read_only(path, "the runs")
        said = refused.value.message
    assert f"{path}, the runs, is damaged" in said and "copy it again" in said, said
    assert "move it aside" not in said


# Fails to open a database in a folder that is not there, with ``left`` descriptors free,
# and prints what each error says.
_MISSING_FOLDER_WITH_FEW_FILES = """
import os, resource, sqlite3, sys
from pathlib import Path
from tether.databases import cannot_open, cannot_read
path = Path(sys.argv[1]) / "gone" / "t.db"
hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) - 1 + {left}, hard))
try:
    sqlite3.connect(path.as_uri() + "?mode=ro", uri=True)
except sqlite3.Error as exc:
    print(cannot_open("the trace store", path, exc).message)
    print(cannot_read("the trace store", path, exc).message)
"""


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts descriptors in /proc")
@pytest.mark.parametrize("left", [1, 2])
def test_a_missing_folder_near_the_open_file_limit_is_not_blamed_on_it(
    tmp_path: Path, left: int
) -> None:
    """With a descriptor or two left, any file SQLite could not open was blamed on the
    open-file limit: a folder that is not there too."""
    done = subprocess.run(
        [sys.executable, "-c", _MISSING_FOLDER_WITH_FEW_FILES.format(left=left), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 2, done.stdout
    assert all("unable to open database file" in line for line in lines), done.stdout
    assert "too few files" not in done.stdout and "ulimit" not in done.stdout
