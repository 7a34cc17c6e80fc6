"""Every error a user can cause ends as one line on stderr and a documented exit status."""

from __future__ import annotations

import contextlib
import errno
import io
import os
import platform
import pty
import re
import signal
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any, cast

import pytest
from click.testing import CliRunner

from tests.helpers import isolate_tether, tether_env
from tests.stub_upstream import stub_upstream
from tether.audit import events
from tether.audit.log import AuditLog
from tether.cli import common
from tether.cli.common import (
    EXIT_AUTH,
    EXIT_INTERRUPTED,
    EXIT_NO,
    EXIT_PIPE,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    terminated_as_interrupted,
    write_output,
)
from tether.cli.main import cli
from tether.settings import load_settings

DOWN = ["--server", "http://127.0.0.1:9", "--token", "t"]  # nothing listens on port 9

CASES: list[tuple[list[str], int, str]] = [
    (["audit", "verify", "--key", "garbage", "--dir", "."], EXIT_USAGE, "verifier key"),
    (["audit", "verify", "--dir", "missing"], EXIT_USAGE, "no audit log at"),
    (["audit", "verify", "--since", "note.txt", "--server", "http://x"], EXIT_USAGE, "--key"),
    (["audit", "verify", "--server", "http://x", "--dir", "."], EXIT_USAGE, "one of them"),
    (["audit", "tail", "--dir", "missing"], EXIT_USAGE, "no audit log at"),
    (["audit", "prove", "5", "--dir", "."], EXIT_USAGE, "no checkpoints"),
    (["audit", "prove", "--", "-1", "--dir", "."], EXIT_USAGE, "x>=0"),
    (["complete", "missing.py", "--line", "1"], EXIT_USAGE, "does not exist"),
    (["complete", "a.py", "--line", "9"], EXIT_USAGE, "past the end of the file"),
    (["complete", "binary.py", "--line", "1"], EXIT_USAGE, "binary.py is not UTF-8"),
    # A byte-order mark is no column: "x = " is 4 characters, as an editor shows it.
    (["complete", "bom.py", "--line", "1", "--col", "6"], EXIT_USAGE, "(4 characters)"),
    (["complete", "a.py", "--line", "1", "--context", "binary.py"], EXIT_USAGE, "binary.py is not"),
    (["suggest", "--apply", "binary.py"], EXIT_USAGE, "binary.py is not UTF-8 text"),
    (["audit", "verify", "--key", "binary.py", "--dir", "."], EXIT_USAGE, "binary.py is not"),
    (["audit", "verify", "--since", "binary.py", "--dir", "."], EXIT_USAGE, "binary.py is not"),
    (["store", "add", "a.py", "--test", "binary.py"], EXIT_USAGE, "binary.py is not UTF-8"),
    (["chat", "-m", "hi", *DOWN], EXIT_UNAVAILABLE, "is `tether serve` running there?"),
    (["suggest", "--apply", "garbage.patch"], EXIT_USAGE, "not a unified diff"),
    (["suggest", "a.py"], EXIT_USAGE, "--instruction"),
    (["suggest", "missing.py", "-i", "x"], EXIT_USAGE, "is not a file"),
    (["suggest", "a.py", "-i", "x", *DOWN], EXIT_UNAVAILABLE, "running there?"),
    (["explain", "cmpl-nope"], EXIT_USAGE, "no traces yet"),
    (["explain", "cmpl-nope", *DOWN], EXIT_UNAVAILABLE, "running there?"),
    (["token", "list"], EXIT_UNAVAILABLE, "start `tether serve`"),
    (["token", "create", "--scopes", "chat", "--ttl", "5x", *DOWN], EXIT_USAGE, "duration"),
    (["token", "create", "--scopes", "chat", "--ttl", "99999d", *DOWN], EXIT_USAGE, "1s to 30d"),
    # Digits of other scripts: int() and float() read them, a person does not mean them.
    (["token", "create", "--scopes", "chat", "--ttl", "\u0663h", *DOWN], EXIT_USAGE, "duration"),
    (["token", "create", "--scopes", "chat", "--rpm", "\u0663", *DOWN], EXIT_USAGE, "digits 0-9"),
    (["store", "show", "\u0663"], EXIT_USAGE, "digits 0-9"),
    (["complete", "a.py", "--line", "\u0661", *DOWN], EXIT_USAGE, "digits 0-9"),
    (["chat", "-m", "hi", "--temperature", "\u0660", *DOWN], EXIT_USAGE, "digits 0-9"),
    # float() reads "nan", and NaN passes every bound: it would run and be kept as NaN.
    (["eval", "run", "humaneval", "--limit", "1", "--temperature", "nan"], EXIT_USAGE, "not a num"),
    (["eval", "run", "humaneval", "--limit", "1", "--top-p", "NaN"], EXIT_USAGE, "not a number"),
    (["chat", "-m", "hi", "--temperature", "nan", *DOWN], EXIT_USAGE, "is not a number"),
    (["audit", "verify", "--dir", ".", "--max-gap", "nan"], EXIT_USAGE, "is not a number"),
    (["token", "revoke", "tid_x", *DOWN], EXIT_UNAVAILABLE, "running there?"),
    # Sent in a URL, a token would be kept in logs: refused before it is sent anywhere.
    (["token", "revoke", "tth_" + "Zx9" * 14 + "q", *DOWN], EXIT_USAGE, "not a token id"),
    (
        ["token", "create", "--scopes", "chat", "--principal", "admin", *DOWN],
        EXIT_USAGE,
        "reserved",
    ),
    # A name from a Latin-1 file, as the shell hands it over: bytes that are not UTF-8.
    (["token", "create", "--scopes", "chat", "--principal", "\udce9", *DOWN], EXIT_USAGE, "UTF-8"),
    (["token", "revoke", "tid_\udce9", *DOWN], EXIT_USAGE, "not UTF-8"),
    (["models", *DOWN], EXIT_UNAVAILABLE, "running there?"),
    (["models", "--server", "http://127.0.0.1:99999"], EXIT_USAGE, "is not a server URL"),
    (["models", "--server", "http://127.0.0.1:0"], EXIT_USAGE, "is not a server URL"),
    (["templates", "show", "nope"], EXIT_USAGE, "is not one of"),
    (["check", "missing.py"], EXIT_USAGE, "does not exist"),
    (["corpus", "index", "missing"], EXIT_USAGE, "does not exist"),
    (["serve", "--port", "99999"], EXIT_USAGE, "not in the range"),
    (["serve", "--host", "999.1.1.1", "--port", "0"], EXIT_USAGE, "an address of this machine"),
    (["check", "a.py", "--secrets-only", "--tools", "ruff"], EXIT_USAGE, "runs no tools"),
    (["check", "a.py", "--tools", " , "], EXIT_USAGE, "--tools is empty"),
    (["explain", "--recent", "cmpl-x"], EXIT_USAGE, "not both"),
    (["audit", "verify", "--dir", ".", "--max-gap", "-1"], EXIT_USAGE, "not in the range"),
    (["store", "add", "a.py::"], EXIT_USAGE, "name a function after '::'"),
    (["store", "add", "::okfn"], EXIT_USAGE, "name the file before '::'"),
    (["complete", "a.py", "--line", "1", "--seed", str(2**32)], EXIT_USAGE, "not in the range"),
    (["eval", "run", "humaneval", "--seed", str(2**32)], EXIT_USAGE, "not in the range"),
    (["chat", "-m", " "], EXIT_USAGE, "-m is empty"),
    (
        ["complete", "a.py", "--line", "1", "--col", "1", "--max-tokens", "5000"],
        EXIT_USAGE,
        "max_tokens is 5000, no less than the context window, which holds the prompt too",
    ),
    (["config", "--reference", "--json"], EXIT_USAGE, "drop --json"),
    (["nonsense"], EXIT_USAGE, "No such command"),
]


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    isolate_tether(monkeypatch, tmp_path)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.py").write_text("x = 1\n")
    (tmp_path / "binary.py").write_bytes(b"\xff\xfe\x00x")
    (tmp_path / "bom.py").write_bytes(b"\xef\xbb\xbfx = \n")
    (tmp_path / "garbage.patch").write_text("not a patch\n")
    (tmp_path / "note.txt").write_text("tether/x\n1\nAAAA\n\n\u2014 tether/x AAAA\n")
    return tmp_path


def _tether(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """``tether ARGS`` as a separate process: what starts before any command runs."""
    return subprocess.run(
        [sys.executable, "-m", "tether", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
    )


@pytest.mark.parametrize(("args", "status", "says"), CASES, ids=[" ".join(c[0]) for c in CASES])
def test_user_errors_are_one_line_with_their_status(
    workdir: Path, args: list[str], status: int, says: str
) -> None:
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == status, result.output
    assert isinstance(result.exception, SystemExit)  # never an exception escaping
    assert says in result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.lower().startswith("error")]
    assert len(errors) == 1


def test_a_bad_model_file_is_a_usage_error_everywhere(workdir: Path) -> None:
    fake = workdir / "fake.gguf"
    fake.write_text("not a model")
    for args in (["models"], ["chat", "-m", "hi"]):
        result = CliRunner().invoke(cli, args, env={"TETHER_ENGINE_MODEL_PATH": str(fake)})
        assert result.exit_code == EXIT_USAGE, result.output
        assert "is it a GGUF file?" in result.output


# Loads the model where only {left} more files can be opened, fewer than the four loading
# holds at once (the listing counts its own descriptor, closed again).
_LOAD_WITH_FEW_FILES = """
import os, resource
{imported}
from tether.engines.llamacpp import load_model
from tether.errors import ModelError
from tether.models import default_model_path
path = default_model_path()
hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + {left} - 1, hard))
try:
    load_model(path)
except ModelError as exc:
    print(exc.message)
"""


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts descriptors in /proc")
@pytest.mark.parametrize(
    ("left", "imported"),
    [(1, "import llama_cpp"), (2, "import llama_cpp"), (3, "import llama_cpp"), (3, "")],
    ids=["copying stderr", "copying stdout", "loading", "importing llama_cpp"],
)
def test_a_model_that_cannot_load_for_want_of_files_says_so(
    tmp_path: Path, left: int, imported: str
) -> None:
    """Under `ulimit -n 16` the embedded model failed to load and was called not a GGUF
    file: llama.cpp says only that loading failed. With fewer files still, copying stderr
    to silence the loader failed, an internal error."""
    done = subprocess.run(
        [sys.executable, "-c", _LOAD_WITH_FEW_FILES.format(left=left, imported=imported)],
        env=tether_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "too few files can be opened" in done.stdout, done.stdout
    assert "ulimit -n" in done.stdout
    assert "GGUF" not in done.stdout


def test_a_failed_check_is_no_not_an_error(workdir: Path) -> None:
    (workdir / "bad.py").write_text("import os\nos.system(cmd)\n")
    result = CliRunner().invoke(cli, ["check", "bad.py", "--tools", "none"])
    assert result.exit_code == EXIT_NO, result.output


def test_the_statuses_are_documented() -> None:
    help_text = CliRunner().invoke(cli, ["--help"]).output
    for status in (EXIT_NO, EXIT_USAGE, EXIT_UNAVAILABLE, EXIT_AUTH):
        assert f"{status} " in help_text
    docs = (Path(__file__).resolve().parents[2] / "docs" / "cli.md").read_text()
    assert "Exit status: 0 success" in docs


def test_a_broken_plugin_is_named_at_startup(tmp_path: Path) -> None:
    """A plugin that fails to import stops every command with one line naming it."""
    site = tmp_path / "site"
    dist = site / "tether_broken-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: tether-broken\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[tether]\nbroken = tether_broken\n")
    (site / "tether_broken.py").write_text("raise RuntimeError('this plugin is broken')\n")
    env = tether_env(tmp_path, TETHER_PLUGINS_ENABLED="broken", PYTHONPATH=str(site))
    for args in (["--help"], ["config"]):
        done = _tether(args, env, tmp_path)
        assert done.returncode == EXIT_USAGE
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
        assert "plugin 'broken'" in done.stderr and "this plugin is broken" in done.stderr


@pytest.mark.parametrize("args", [["config"], ["--version"], ["store", "list"]])
def test_a_reader_that_stops_reading_ends_the_command_quietly(
    tmp_path: Path, args: list[str]
) -> None:
    """`tether … | head`: no error and no traceback, the status of a command ended by
    SIGPIPE."""
    env = tether_env(tmp_path)
    if args == ["store", "list"]:
        code = "".join(f"def f{i}():\n    return {i}\n\n\n" for i in range(50))
        (tmp_path / "many.py").write_text(code)
        added = subprocess.run(
            [sys.executable, "-m", "tether", "store", "add", "many.py", "--licence", "MIT"],
            env=env,
            capture_output=True,
            timeout=60,
            cwd=tmp_path,
        )
        assert added.returncode == 0, added.stderr
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first line is written
    try:
        done = subprocess.run(
            [sys.executable, "-m", "tether", *args],
            env=env,
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            cwd=tmp_path,
        )
    finally:
        os.close(write)
    assert done.returncode == EXIT_PIPE
    assert "error" not in done.stderr.lower() and "Traceback" not in done.stderr


@pytest.mark.parametrize("args", [["--version"], ["config"], ["templates"]])
def test_a_command_started_without_an_output_says_so_in_one_line(
    tmp_path: Path, args: list[str]
) -> None:
    """Started with its standard output closed (`>&-`, as some daemons and jobs are),
    every command ended in a traceback, and a full disk did too for --version."""
    env = tether_env(tmp_path)
    closed = subprocess.run(
        [sys.executable, "-m", "tether", *args],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
        timeout=60,
        cwd=tmp_path,
        preexec_fn=lambda: os.close(1),
    )
    assert closed.returncode == EXIT_PIPE, closed.stderr
    assert closed.stderr == (
        "error: standard output is closed; give the command somewhere to write "
        "(a file, or /dev/null)\n"
    )
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            [sys.executable, "-m", "tether", *args],
            env=env,
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            cwd=tmp_path,
        )
    assert done.returncode == EXIT_USAGE, done.stderr
    assert done.stderr.startswith("error: cannot write the output (No space left on device)")
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("locale", "shown"),
    [
        ({"LC_ALL": "C", "PYTHONUTF8": "0"}, "`你`".encode()),  # ASCII: written as UTF-8
        ({"PYTHONIOENCODING": "latin-1"}, b"`\\u4f60`"),  # what Latin-1 cannot hold: escaped
    ],
    ids=["ascii", "latin-1"],
)
def test_an_output_whose_encoding_is_not_utf8_takes_any_text(
    workdir: Path, locale: dict[str, str], shown: bytes
) -> None:
    """Under the C locale with UTF-8 mode off, or a Latin-1 one, a finding, an answer or a
    snippet beyond the output's characters ended the command as an internal error."""
    (workdir / "a.py").write_text("def f():\n    你 = 1\n")
    env = {k: v for k, v in tether_env(workdir).items() if k != "PYTHONIOENCODING"}
    done = subprocess.run(
        [sys.executable, "-m", "tether", "check", "--tools", "ruff", "a.py"],
        env={**env, **locale},
        capture_output=True,
        timeout=60,
        cwd=workdir,
    )
    assert done.returncode == EXIT_NO, done.stderr
    assert b"a.py:2:5: warning [ruff/F841] Local variable " + shown in done.stdout


@pytest.mark.parametrize(
    "args", [["chat"], ["chat", "--json"], ["mcp"]], ids=["chat", "chat --json", "mcp"]
)
def test_a_command_started_without_an_input_reads_an_empty_one(
    tmp_path: Path, args: list[str]
) -> None:
    """Started with standard input closed (`<&-`), a conversation and the MCP server ended
    as internal errors (sys.stdin is None); they end as with `</dev/null`."""
    done = subprocess.run(
        [sys.executable, "-m", "tether", *args, *(DOWN if args[0] == "chat" else [])],
        env=tether_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        preexec_fn=lambda: os.close(0),
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


_MCP_INITIALIZE = (
    b'{"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": '
    b'"2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}\n'
)


@pytest.mark.parametrize(
    ("output", "status", "said"),
    [
        ("gone", EXIT_PIPE, ""),
        ("full", EXIT_USAGE, "error: cannot write the output (No space left on device)"),
        ("closed", EXIT_PIPE, "error: standard output is closed"),
    ],
)
def test_mcp_whose_output_cannot_be_written_says_so_in_one_line(
    tmp_path: Path, output: str, status: int, said: str
) -> None:
    """`tether mcp | head`, `>/dev/full` and `>&-` ended as internal errors: an exception
    group of the transport's tasks, and an output without a buffer to write bytes to."""
    (tmp_path / "init.jsonl").write_bytes(_MCP_INITIALIZE)
    with contextlib.ExitStack() as stack:
        stdout: int | None = None
        if output == "gone":
            read, stdout = os.pipe()
            os.close(read)  # the reader is gone before the first answer is written
            stack.callback(os.close, stdout)
        elif output == "full":
            stdout = stack.enter_context(open("/dev/full", "wb")).fileno()
        done = subprocess.run(
            [sys.executable, "-m", "tether", "mcp"],
            env=tether_env(tmp_path),
            stdin=stack.enter_context(open(tmp_path / "init.jsonl", "rb")),
            stdout=stdout,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            cwd=tmp_path,
            preexec_fn=(lambda: os.close(1)) if output == "closed" else None,
        )
    assert done.returncode == status, done.stderr
    assert done.stderr.startswith(said) and done.stderr.count("\n") == (1 if said else 0)
    assert "internal error" not in done.stderr


@pytest.mark.parametrize("output", ["gone", "full"])
def test_mcp_whose_output_cannot_be_written_ends_while_its_input_stays_open(
    tmp_path: Path, output: str
) -> None:
    """A client that stops reading but keeps the server's input open: the command said
    so, then waited for the transport's thread reading that input, that is for ever."""
    with contextlib.ExitStack() as stack:
        if output == "gone":
            read, stdout = os.pipe()
            os.close(read)
            stack.callback(os.close, stdout)
        else:
            stdout = stack.enter_context(open("/dev/full", "wb")).fileno()
        server = stack.enter_context(
            subprocess.Popen(
                [sys.executable, "-m", "tether", "mcp"],
                env=tether_env(tmp_path),
                stdin=subprocess.PIPE,
                stdout=stdout,
                stderr=subprocess.PIPE,
                cwd=tmp_path,
            )
        )
        assert server.stdin is not None and server.stderr is not None
        server.stdin.write(_MCP_INITIALIZE)
        server.stdin.flush()  # and left open
        try:
            status = server.wait(timeout=60)
        finally:
            server.kill()
        said = server.stderr.read().decode()
    assert status == (EXIT_PIPE if output == "gone" else EXIT_USAGE), said
    assert "internal error" not in said


@pytest.mark.parametrize("args", [["config"], ["--version"], ["check", "--tools", "none"]])
def test_a_command_run_in_a_removed_folder_says_so_in_one_line(
    tmp_path: Path, args: list[str]
) -> None:
    """A shell left in a folder that was removed (a checkout cleaned up, a worktree
    removed) ran every command into a traceback: the settings look for tether.toml from
    the current folder up."""
    gone = tmp_path / "gone"
    gone.mkdir()

    def enter_and_remove() -> None:
        os.chdir(gone)
        os.rmdir(gone)

    done = subprocess.run(
        [sys.executable, "-m", "tether", *args],
        env=tether_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=enter_and_remove,
    )
    assert (done.returncode, done.stdout) == (EXIT_USAGE, ""), done.stderr
    assert done.stderr == (
        "error: the current folder no longer exists (it was removed); change to one that does\n"
    )


def test_a_command_started_without_an_error_output_keeps_errors_out_of_its_output(
    tmp_path: Path,
) -> None:
    """Started with standard error closed (`2>&-`), click's errors were written to standard
    output, into the report a script was saving, and the embedded engine failed to start
    (as a plugin's fault); now errors go nowhere, and the status says what happened."""

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tether", *args],
            env=tether_env(tmp_path),
            stdout=subprocess.PIPE,
            text=True,
            timeout=120,
            cwd=tmp_path,
            preexec_fn=lambda: os.close(2),
        )

    missing = run("check", "missing.py")
    assert (missing.returncode, missing.stdout) == (EXIT_USAGE, "")
    answered = run("chat", "-m", "hi", "--max-tokens", "2")
    assert answered.returncode == 0 and answered.stdout.strip()


def test_an_event_a_full_disk_refuses_ends_with_the_status_the_audit_doc_gives(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/audit.md said 3, which the command line gives a server or engine that does
    not answer; a file that cannot be written, on a full disk too, is 2 everywhere."""
    (workdir / "m.py").write_text('def add(a, b):\n    """Add."""\n    return a + b\n')
    assert CliRunner().invoke(cli, ["store", "add", "m.py"]).exit_code == 0

    def full_disk(*args: object) -> Path:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(events, "hand_off", full_disk)
    kept = AuditLog.open(load_settings())  # another keeps the log: the event is left for it
    try:
        vetted = CliRunner().invoke(cli, ["store", "vet", "1", "--reject", "--reason", "no"])
    finally:
        kept.close()
    doc = (Path(__file__).parents[2] / "docs" / "audit.md").read_text()
    said = re.search(r"cannot be left \(the disk refuses\) is an error \(exit\s+status (\d+)", doc)
    assert said is not None and vetted.exit_code == int(said[1]) == EXIT_USAGE, vetted.output
    assert "could not be left for the audit log" in vetted.output
    assert "No space left on device" in vetted.output


def test_a_settings_file_that_is_not_utf8_is_a_usage_error(workdir: Path) -> None:
    (workdir / "tether.toml").write_bytes(b"\xff\xfe")
    result = CliRunner().invoke(cli, ["config"])
    assert result.exit_code == EXIT_USAGE, result.output
    assert "tether.toml is not UTF-8 text" in result.output
    version = subprocess.run(
        [sys.executable, "-m", "tether", "--version"],
        env=tether_env(workdir),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=workdir,
    )
    assert version.returncode == 0 and "Traceback" not in version.stderr


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("TETHER_USAGE_PRICES", "{bad", "TETHER_USAGE_PRICES is not valid JSON"),
        ("TETHER_UPSTREAM_BASE_URLS", "[", "a JSON array, or values separated by commas"),
    ],
)
def test_a_variable_that_is_not_json_is_named(
    workdir: Path, name: str, value: str, says: str
) -> None:
    env = {**tether_env(workdir), name: value}
    for args, status in ((["--help"], 0), (["config"], EXIT_USAGE)):
        done = _tether(args, env, workdir)
        assert done.returncode == status, done.stderr
        assert "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1 and says in done.stderr


class _Pipe(io.RawIOBase):
    """An unbuffered pipe whose reader takes ``room`` bytes, a few at a time, and leaves."""

    def __init__(self, room: int) -> None:
        self.room = room
        self.taken = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        if len(self.taken) >= self.room:
            raise BrokenPipeError(32, "Broken pipe")
        part = bytes(data[: min(len(data), 1000, self.room - len(self.taken))])
        self.taken += part
        return len(part)  # a short write, as a pipe gives, and no error


@pytest.mark.parametrize(("room", "closes"), [(10**6, False), (150_000, True), (199_999, True)])
def test_output_is_written_whole_or_the_closed_pipe_is_told(
    monkeypatch: pytest.MonkeyPatch, room: int, closes: bool
) -> None:
    """Unbuffered output writes straight to the pipe: a write cut short must be carried on,
    so that a reader leaving during the last bytes is noticed, not taken for success."""
    pipe = _Pipe(room)
    text = "é" * 100_000  # 200,000 bytes
    stdout = io.TextIOWrapper(cast(Any, pipe), encoding="utf-8", write_through=True)
    monkeypatch.setattr(sys, "stdout", stdout)
    if closes:
        with pytest.raises(BrokenPipeError):
            write_output(None, text)
        assert len(pipe.taken) == room
    else:
        write_output(None, text)
        assert pipe.taken.decode() == text


def test_an_upstream_on_the_command_line_serves_it(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--upstream alone used to be ignored: the embedded model answered instead."""
    import tether.server.runner

    served: list[Any] = []
    monkeypatch.setattr(tether.server.runner, "serve", lambda s, log_level: served.append(s))
    url = "http://127.0.0.1:9/v1"
    done = CliRunner().invoke(cli, ["serve", "--upstream", url])
    assert done.exit_code == 0, done.output
    assert served[0].engine.kind == "openai" and served[0].upstream.base_urls == [url]
    both = CliRunner().invoke(cli, ["serve", "--engine", "llamacpp", "--upstream", url])
    assert both.exit_code == EXIT_USAGE and "drop --upstream" in both.output


# The read system call's number, which /proc/<pid>/task/<tid>/syscall begins with.
_READ_CALL = {"x86_64": "0", "aarch64": "63"}[platform.machine()]


def _wait_reading_input(pid: int) -> None:
    """Until a thread of process ``pid`` waits in a read of its standard input: the
    command runs then, its own SIGTERM handler set. The caught-signals mask cannot say
    so, as coverage (``sigterm = true``) sets a handler as Python starts."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for call in Path(f"/proc/{pid}/task").glob("*/syscall"):
            with contextlib.suppress(OSError):
                if call.read_text().split()[:2] == [_READ_CALL, "0x0"]:
                    return
        time.sleep(0.05)
    raise AssertionError(f"process {pid} never read its standard input")


@pytest.mark.parametrize(
    ("args", "waits_for"),
    [
        (["chat", "-m", "hi"], "server"),
        (["complete", "a.py", "--line", "1"], "server"),
        (["suggest", "a.py", "-i", "swap"], "server"),
        (["chat"], "input"),  # the next line of the conversation
    ],
)
def test_sigterm_ends_a_command_as_ctrl_c_does(
    tmp_path: Path, args: list[str], waits_for: str
) -> None:
    """A service manager or `kill` stopping the command lets it clean up and say so."""
    (tmp_path / "a.py").write_text("x = 1\n")
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    with socket.socket() as silent:  # accepts, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        server = f"http://127.0.0.1:{silent.getsockname()[1]}"
        command = [sys.executable, "-m", "tether", *args, "--server", server, "--token", "t"]
        process = subprocess.Popen(
            command,
            cwd=tmp_path,
            env=tether_env(tmp_path),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        if waits_for == "input":
            _wait_reading_input(process.pid)
            process.send_signal(signal.SIGTERM)
            out, err = process.communicate(timeout=30)
        else:
            silent.settimeout(60)
            with silent.accept()[0]:  # the request is sent; the answer never comes
                process.send_signal(signal.SIGTERM)
                out, err = process.communicate(timeout=30)
    assert process.returncode == EXIT_INTERRUPTED, (out, err)
    assert err.decode().strip().endswith("interrupted"), err


def test_sigterm_ends_doctor_as_ctrl_c_does(tmp_path: Path) -> None:
    """It was killed outright (143 in a shell), where every other command says
    "interrupted" and ends with 130."""
    with socket.socket() as silent:  # an upstream that accepts, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        upstream = f"http://127.0.0.1:{silent.getsockname()[1]}/v1"
        env = tether_env(tmp_path, TETHER_ENGINE_KIND="openai")
        env["TETHER_UPSTREAM_BASE_URLS"] = upstream
        process = subprocess.Popen(
            [sys.executable, "-m", "tether", "doctor"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        silent.settimeout(60)
        with silent.accept()[0]:  # the upstream's check waits for its answer
            process.send_signal(signal.SIGTERM)
            out, err = process.communicate(timeout=30)
    assert process.returncode == EXIT_INTERRUPTED, (out, err)
    assert err.decode().strip().endswith("interrupted"), err


def test_sigterm_ends_repro_verify_as_ctrl_c_does(tmp_path: Path) -> None:
    """Killed outright, as doctor was, its regeneration's engine never closed."""
    (tmp_path / "a.py").write_text("x = 1\n")
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    with stub_upstream("```python\nx = 2\n```\n") as stub:
        env = tether_env(tmp_path, TETHER_ENGINE_KIND="openai")
        env["TETHER_UPSTREAM_BASE_URLS"] = stub.base_url
        suggest = [sys.executable, "-m", "tether", "suggest", "a.py", "-i", "two", "-o", "a.patch"]
        made = subprocess.run(suggest, cwd=tmp_path, env=env, capture_output=True, timeout=120)
        assert made.returncode == 0, made.stderr
        stub.answer_delay_s = 60  # the regeneration waits for its answer
        asked = len(stub.requests)
        process = subprocess.Popen(
            [sys.executable, "-m", "tether", "repro", "verify", "a.patch.repro.json"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 60
        while len(stub.requests) == asked:
            assert time.monotonic() < deadline, "the regeneration was never asked for"
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    assert process.returncode == EXIT_INTERRUPTED, (out, err)
    assert err.decode().strip().endswith("interrupted"), err


# A Ctrl-C as the command line's modules load: a real SIGINT when one begins to import.
_CTRL_C_WHILE_LOADING = """
import importlib, importlib.abc, os, runpy, signal, sys

class Interrupt(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == stop_at:
            os.kill(os.getpid(), signal.SIGINT)
        return None

signal.signal(signal.SIGINT, signal.default_int_handler)  # as at a terminal
sys.meta_path.insert(0, Interrupt())
entry, stop_at, sys.argv = sys.argv[1], sys.argv[2], ["tether", "--version"]
if entry == "-m":
    runpy.run_module("tether", run_name="__main__", alter_sys=True)
else:
    module, _, function = entry.partition(":")
    getattr(importlib.import_module(module), function)()
"""


def _entry_point() -> str:
    project = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    entry: str = project["project"]["scripts"]["tether"]
    return entry


@pytest.mark.parametrize("entry", ["-m", _entry_point()], ids=["python -m tether", "tether"])
@pytest.mark.parametrize("stop_at", ["tether.cli.common", "tether.plugins"])  # then plugins'
def test_ctrl_c_while_the_command_line_loads_is_one_line(entry: str, stop_at: str) -> None:
    """It was a traceback from whichever import it stopped, for a `tether serve` stopped in
    its first half second."""
    done = subprocess.run(
        [sys.executable, "-c", _CTRL_C_WHILE_LOADING, entry, stop_at],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stderr) == (EXIT_INTERRUPTED, "interrupted\n")


@pytest.mark.parametrize(
    "args",
    [
        [b"complete", b"a.py", b"--line", b"1", b"--context", b"bad\xff.py"],
        [b"chat", b"-m", b"caf\xe9?"],  # Latin-1 text from a terminal set to it
    ],
    ids=["file name", "text"],
)
def test_an_argument_that_is_not_utf8_is_refused_in_words(workdir: Path, args: list[bytes]) -> None:
    (workdir / os.fsdecode(b"bad\xff.py")).write_text("y = 2\n")
    done = subprocess.run(
        [sys.executable, "-m", "tether", *args, *(a.encode() for a in DOWN)],
        env=tether_env(workdir),
        capture_output=True,
        timeout=60,
        cwd=workdir,
    )
    stderr = done.stderr.decode()
    assert done.returncode == EXIT_USAGE, stderr
    assert "is not UTF-8 text" in stderr and "rename the file" in stderr
    assert "internal error" not in stderr and "Traceback" not in stderr


def test_utf8_arguments_under_a_locale_that_reads_them_otherwise_are_told_so(
    workdir: Path,
) -> None:
    """The C locale with UTF-8 mode off reads arguments as ASCII: UTF-8 text was refused
    as not being UTF-8, with the advice to rename a file that was named well."""
    env = {**tether_env(workdir), "LC_ALL": "C", "PYTHONUTF8": "0"}
    done = subprocess.run(
        [sys.executable, "-m", "tether", "chat", "-m", "Grüße?", *DOWN],
        env=env,
        capture_output=True,
        timeout=60,
        cwd=workdir,
    )
    stderr = done.stderr.decode()
    assert done.returncode == EXIT_USAGE, stderr
    assert "is UTF-8 text, which this locale reads as ascii" in stderr, stderr
    assert "LC_ALL=C.UTF-8" in stderr and "rename" not in stderr


@pytest.mark.parametrize(
    "args", [["complete", "a.py", "--line", "2"], ["suggest", "a.py", "-i", "rename x"]]
)
def test_an_interrupted_generation_clears_its_counter_from_the_terminal(
    tmp_path: Path, args: list[str]
) -> None:
    (tmp_path / "a.py").write_text("x = 1\n")
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)  # suggest's project
    with stub_upstream("a b c d e f g h i j k l m n o p", piece_delay_s=0.3) as stub:
        env = tether_env(tmp_path, TETHER_ENGINE_KIND="openai")
        env["TETHER_UPSTREAM_BASE_URLS"] = stub.base_url
        controller, terminal = pty.openpty()  # stderr on a terminal shows the counter
        process = subprocess.Popen(
            [sys.executable, "-m", "tether", *args],
            cwd=tmp_path,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=terminal,
        )
        os.close(terminal)
        shown = b""
        while b"chunks" not in shown:
            shown += os.read(controller, 1024)
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)
        while True:
            try:
                piece = os.read(controller, 1024)
            except OSError:  # the terminal closed with the command
                break
            if not piece:
                break
            shown += piece
        os.close(controller)
    assert process.returncode == EXIT_INTERRUPTED, shown
    # What a terminal shows of each line: the text after its last carriage return.
    lines = [line.split("\r")[-1] for line in shown.decode().replace("\r\n", "\n").split("\n")]
    assert "interrupted" in lines, shown  # alone on its line, not after the counter


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_sigterm_whose_interrupt_python_dropped_still_ends_the_block() -> None:
    class Dropping:
        def __del__(self) -> None:  # a KeyboardInterrupt raised here is only printed
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.01)  # the handler runs here, inside __del__

    carried_on = False
    with pytest.raises(KeyboardInterrupt), terminated_as_interrupted():
        Dropping()
        carried_on = True  # the dropped interrupt did not stop the block
    assert carried_on


_TWO_CTRL_C = """
import asyncio, os, signal, sys, threading, time
from tether.cli.common import run_until_terminated

cleaning = threading.Event()

def press_again() -> None:
    cleaning.wait()
    os.kill(os.getpid(), signal.SIGINT)

async def step() -> None:
    try:
        await asyncio.sleep(60)
    finally:  # the second Ctrl-C comes while the tasks clean up
        cleaning.set()
        until = time.monotonic() + 0.5
        while time.monotonic() < until:
            pass

async def work() -> None:
    threading.Thread(target=press_again, daemon=True).start()
    # The first Ctrl-C: the work is cancelled.
    asyncio.get_running_loop().call_later(0.1, os.kill, os.getpid(), signal.SIGINT)
    await asyncio.gather(*(asyncio.create_task(step()) for _ in range(3)))

try:
    run_until_terminated(work)
except KeyboardInterrupt:
    sys.exit(130)
"""


def test_a_second_ctrl_c_while_the_work_is_cancelled_stops_it_quietly() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _TWO_CTRL_C], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == EXIT_INTERRUPTED, done.stderr
    assert done.stderr == ""  # not "Task exception was never retrieved" and its traceback


_BLOCKED = """
import asyncio, sys, time
from tether.cli.common import run_until_terminated

async def work() -> None:
    print("blocking", flush=True)
    time.sleep(30)  # loading a model: the event loop does not run meanwhile
    print("finished", flush=True)

try:
    run_until_terminated(work)
except KeyboardInterrupt:
    sys.exit(130)
"""


def test_a_second_ctrl_c_stops_work_that_blocks_the_event_loop() -> None:
    with subprocess.Popen(
        [sys.executable, "-c", _BLOCKED], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as running:
        assert running.stdout is not None and running.stdout.readline() == "blocking\n"
        running.send_signal(signal.SIGINT)  # noted; the work is cancelled at its next await
        time.sleep(0.2)
        running.send_signal(signal.SIGINT)  # now
        out, err = running.communicate(timeout=20)
    assert running.returncode == EXIT_INTERRUPTED, err
    assert "finished" not in out and "never retrieved" not in err


_WAITING = """
import asyncio, sys, time
from tether.cli.common import run_until_terminated

async def work() -> None:
    print("waiting", flush=True)
    await asyncio.to_thread(time.sleep, 30)  # work a cancellation cannot stop
    print("finished", flush=True)

try:
    run_until_terminated(work)
except KeyboardInterrupt:
    sys.exit(130)
"""


def test_sigterms_again_stop_work_the_first_could_not_cancel() -> None:
    """The second cuts the cleanup short; a third, as a service manager sends, ends the
    process even while it waits for the thread (as Python's own handler would)."""
    with subprocess.Popen(
        [sys.executable, "-c", _WAITING], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as running:
        assert running.stdout is not None and running.stdout.readline() == "waiting\n"
        for _ in range(3):
            running.send_signal(signal.SIGTERM)
            time.sleep(0.3)
        out, err = running.communicate(timeout=20)
    assert running.returncode in (EXIT_INTERRUPTED, -signal.SIGTERM), err
    assert "finished" not in out


def test_an_output_file_the_disk_refuses_is_named_not_the_file_beside_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It is written through a new file beside it, whose name the user never gave."""
    output = tmp_path / "sbom.json"

    def full(path: Path, text: str) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / ".sbom.json.1.tmp"))

    monkeypatch.setattr(common, "write_atomically", full)
    with pytest.raises(OSError) as refused:
        common.write_output(output, "{}")
    assert refused.value.errno == errno.ENOSPC and refused.value.filename == str(output)
