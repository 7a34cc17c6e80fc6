"""`tether chat` fed on standard input: one turn a line, whatever ends the lines, and
--json one object a line."""

from __future__ import annotations

import io
import json
import os
import pty
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.e2e.test_cli import tether
from tests.helpers import tether_env
from tests.stub_upstream import stub_upstream
from tether.cli.generate import _StdinLines
from tether.cli.main import cli


@pytest.mark.parametrize(
    "stdin",
    [
        "Hello\r\nAnd again\r\n\r\n",  # a Windows file
        "\ufeffHello\r\nAnd again\r\n",  # one with a byte-order mark, as Notepad saves
        "Hello\rAnd again\r\r",  # an old Mac file, its lines ended by "\r" alone
    ],
)
def test_a_conversation_from_another_systems_file_sends_its_turns_as_typed(
    tmp_path: Path, stdin: str
) -> None:
    # A process of its own: its standard input splits lines at "\n" only, as a pipe's does.
    with stub_upstream("Sure.") as stub:
        result = tether(
            tmp_path,
            "chat",
            stdin=stdin,
            TETHER_ENGINE_KIND="openai",
            TETHER_UPSTREAM_BASE_URLS=stub.base_url,
        )
    assert result.returncode == 0, result.stderr
    asked = [m["content"] for m in stub.requests[-1]["messages"] if m["role"] == "user"]
    assert asked == ["Hello", "And again"]


def test_a_line_end_is_known_as_it_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """A CR last of a read ends a line at once, and an LF first of the next is its
    other half, not an empty line that would end the conversation."""
    reads = [b"Hello\r", b"\nAnd again\r", b"And more\n", b""]
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(), encoding="utf-8"))
    monkeypatch.setattr(sys.stdin, "fileno", lambda: 0)
    monkeypatch.setattr(os, "read", lambda fd, size: reads.pop(0))
    lines = _StdinLines()
    got = [lines.readline() for _ in range(4)]
    assert got == ["Hello\r", "And again\r", "And more\n", ""]


def test_a_long_line_is_read_once_not_again_with_each_piece(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each read searched the whole line so far for its end, and joined it anew: a 20 MB
    line took half a minute to read before it was refused as too long."""
    from tether.cli import generate

    pieces = [b"a" * 65536] * 100
    reads = [*pieces, b"end\nnext\n", b""]
    searched = []

    class Counted:
        def search(self, data: bytes, *args: int) -> re.Match[bytes] | None:
            searched.append(len(data))
            return line_end.search(data, *args)

    line_end = generate._LINE_END
    monkeypatch.setattr(generate, "_LINE_END", Counted())
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(), encoding="utf-8"))
    monkeypatch.setattr(sys.stdin, "fileno", lambda: 0)
    monkeypatch.setattr(os, "read", lambda fd, size: reads.pop(0))
    lines = _StdinLines()
    assert [lines.readline() for _ in range(3)] == ["a" * 6553600 + "end\n", "next\n", ""]
    assert sum(searched) < 2 * sum(map(len, pieces))


def test_an_endless_line_is_refused_once_it_passes_the_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A line with no end (`< /dev/zero`) was read until memory ran out."""
    from tether.errors import RequestError

    reads = []

    def endless(fd: int, size: int) -> bytes:
        reads.append(size)
        assert len(reads) < 1000, "read on past the limit"
        return b"\0" * size

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(), encoding="utf-8"))
    monkeypatch.setattr(sys.stdin, "fileno", lambda: 0)
    monkeypatch.setattr(os, "read", endless)
    with pytest.raises(RequestError, match=r"longer than 1 MB.*server\.max_body_mb"):
        _StdinLines().readline(1 << 20)
    assert sum(reads) <= (1 << 20) + (1 << 16)
    monkeypatch.setattr(sys, "stdin", io.StringIO("é" * 6 + "\n" + "é" * 5 + "\r\n"))
    with pytest.raises(RequestError, match="longer than"):  # a stream put in its place
        _StdinLines().readline(10)  # 12 bytes
    assert _StdinLines().readline(10) == "é" * 5 + "\r\n"


@pytest.mark.parametrize("stdin", ["a" * 20000 + "\nnext\n", "a" * 20000])
def test_a_line_longer_than_a_request_may_be_is_refused_before_it_is_sent(
    tmp_path: Path, stdin: str
) -> None:
    with stub_upstream("Sure.") as stub:
        result = tether(
            tmp_path,
            "chat",
            stdin="Hello\n" + stdin,
            TETHER_ENGINE_KIND="openai",
            TETHER_UPSTREAM_BASE_URLS=stub.base_url,
            TETHER_SERVER_MAX_BODY_MB="0.01",
        )
    assert result.returncode == 2, result.stderr
    assert "a line of the input is longer than 10,485 bytes" in result.stderr
    assert [m["content"] for m in stub.requests[-1]["messages"]] == ["Hello"]


def test_a_chat_fed_dev_zero_ends_with_the_error(tmp_path: Path) -> None:
    with open("/dev/zero", "rb") as zeros:
        result = subprocess.run(
            [sys.executable, "-m", "tether", "chat"],
            stdin=zeros,
            capture_output=True,
            env=tether_env(tmp_path, TETHER_SERVER_MAX_BODY_MB="1"),
            # Memory held to a bound: before, the line grew until it ran out.
            preexec_fn=_limit_memory,
            timeout=120,
        )
    assert result.returncode == 2, result.stderr
    assert b"a line of the input is longer than 1 MB" in result.stderr


def _limit_memory() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))


def test_a_conversation_with_json_prints_one_object_a_line(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with stub_upstream("Sure.") as stub:
        monkeypatch.setenv("TETHER_UPSTREAM_BASE_URLS", stub.base_url)
        result = CliRunner().invoke(cli, ["chat", "--json"], input="Hello\nAnd again\n")
    assert result.exit_code == 0, result.output
    answers = [json.loads(line) for line in result.output.splitlines()]
    assert [a["text"] for a in answers] == ["Sure.", "Sure."]
    assert all(a["id"].startswith("chatcmpl-") for a in answers)


class _Terminal:
    """`tether chat` at a terminal: standard input a pseudo-terminal, as a person's."""

    def __init__(self, home: Path, *args: str, **env: str) -> None:

        self.master, slave = pty.openpty()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tether", "chat", *args],
            stdin=slave,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=tether_env(home, **env),
        )
        os.close(slave)

    def type(self, line: str) -> None:

        os.write(self.master, line.encode() + b"\n")

    def finish(self, timeout: float = 60) -> tuple[int, str, str]:

        try:
            out, err = self.process.communicate(timeout=timeout)
        finally:
            if self.process.poll() is None:  # it did not end: none is left behind
                self.process.kill()
                self.process.communicate()
            os.close(self.master)
        return self.process.returncode, out.decode(), err.decode()


def _wait_for(done: Callable[[], bool], timeout: float = 60) -> None:

    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_question_too_long_for_the_window_is_refused_and_the_chat_goes_on(
    tmp_path: Path,
) -> None:
    """It used to drop the earlier turns, announce it, then end the conversation."""
    terminal = _Terminal(tmp_path, "--max-tokens", "3", "--temperature", "0",
                         TETHER_ENGINE_N_CTX="256")  # fmt: skip
    terminal.type("Say hi")
    terminal.type("word " * 400)
    terminal.type("Say bye")
    terminal.type("")
    status, out, err = terminal.finish()
    assert status == 0, err
    assert "the question was not sent" in err and "left out" not in err
    assert len([line for line in out.splitlines() if line.strip()]) == 2  # two answers


def test_a_line_longer_than_a_request_may_be_is_refused_at_a_terminal_and_the_chat_goes_on(
    tmp_path: Path,
) -> None:
    """It ended the conversation with exit 2, where at a terminal a question too long
    for the context window, or a line that is not UTF-8, is refused and it goes on."""
    with stub_upstream("Sure.") as stub:
        terminal = _Terminal(
            tmp_path,
            TETHER_ENGINE_KIND="openai",
            TETHER_UPSTREAM_BASE_URLS=stub.base_url,
            TETHER_SERVER_MAX_BODY_MB="0.001",  # 1048 bytes; a terminal takes 4095 a line
        )
        terminal.type("word " * 600)
        terminal.type("Hello")
        terminal.type("")
        status, out, err = terminal.finish()
    assert status == 0, err
    assert "a line of the input is longer than" in err and out.strip() == "Sure."
    assert [m["content"] for m in stub.requests[-1]["messages"]] == ["Hello"]


def test_the_rest_of_a_line_refused_as_too_long_is_passed_over(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tether.errors import RequestError

    reads = [b"a" * 8, b"a" * 8, b"a\r", b"\nnext\n", b"b" * 20 + b"\r\nlast"]
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(), encoding="utf-8"))
    monkeypatch.setattr(sys.stdin, "fileno", lambda: 0)
    monkeypatch.setattr(os, "read", lambda fd, size: reads.pop(0) if reads else b"")
    lines = _StdinLines()
    with pytest.raises(RequestError, match="longer than"):
        lines.readline(10)
    assert lines.readline(10) == "next\n"  # not the "\n" of the "\r\n" split above
    with pytest.raises(RequestError, match="longer than"):
        lines.readline(10)
    assert lines.readline(10) == "last"
    assert lines.readline(10) == ""


def test_ctrl_c_at_the_prompt_ends_the_chat_at_once(tmp_path: Path) -> None:

    with stub_upstream("Sure.") as stub:
        terminal = _Terminal(
            tmp_path, TETHER_ENGINE_KIND="openai", TETHER_UPSTREAM_BASE_URLS=stub.base_url
        )
        terminal.type("Hello")
        _wait_for(lambda: len(stub.requests) == 1)
        time.sleep(0.5)  # the answer is shown; the chat waits for the next line
        terminal.process.send_signal(signal.SIGINT)
        status, _, err = terminal.finish(timeout=10)  # not held until Enter
    assert status == 130 and "interrupted" in err


@pytest.mark.parametrize("io_encoding", ["", "utf-8:strict"])  # C.UTF-8's, en_US.UTF-8's
def test_a_line_that_is_not_utf8_is_refused_in_one_line(tmp_path: Path, io_encoding: str) -> None:
    with stub_upstream("Sure.") as stub:
        env = tether_env(
            tmp_path,
            TETHER_ENGINE_KIND="openai",
            TETHER_UPSTREAM_BASE_URLS=stub.base_url,
            PYTHONIOENCODING=io_encoding,
        )
        piped = subprocess.run(
            [sys.executable, "-m", "tether", "chat"],
            input=b"caf\xe9 ok?\n",
            capture_output=True,
            env=env,
            timeout=60,
        )
        assert piped.returncode == 2, piped.stderr
        assert b"that line is not UTF-8 text" in piped.stderr
        assert b"internal error" not in piped.stderr and not stub.requests
        terminal = _Terminal(
            tmp_path,
            TETHER_ENGINE_KIND="openai",
            TETHER_UPSTREAM_BASE_URLS=stub.base_url,
            PYTHONIOENCODING=io_encoding,
        )

        os.write(terminal.master, b"caf\xe9 ok?\n")
        terminal.type("Hello")
        terminal.type("")
        status, out, err = terminal.finish()
    assert status == 0, err
    assert "that line is not UTF-8 text" in err and out.strip() == "Sure."
    assert [m["content"] for m in stub.requests[-1]["messages"]] == ["Hello"]


def test_ctrl_d_after_a_partial_line_sends_it_and_ends_the_chat(tmp_path: Path) -> None:
    """At a terminal, "hi" then Ctrl-D twice sends "hi": the chat answered it, then went
    on waiting for more, as if the end of the input were not one."""
    with stub_upstream("Sure.") as stub:
        terminal = _Terminal(
            tmp_path, TETHER_ENGINE_KIND="openai", TETHER_UPSTREAM_BASE_URLS=stub.base_url
        )
        os.write(terminal.master, b"hi\x04")  # the line so far goes to the reader
        time.sleep(0.3)
        os.write(terminal.master, b"\x04")  # nothing more: the end of the input
        status, out, err = terminal.finish(timeout=20)
    assert status == 0, err
    assert out.strip() == "Sure."
    assert [m["content"] for m in stub.requests[-1]["messages"]] == ["hi"]
    assert err.endswith("> \n"), err  # the answer, and the shell after it, on a line of its own
