"""Untrusted code runs contained: every escape is stopped and reported, and the verdict
comes from how the process ended, never from what it printed."""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tether.sandbox import Limits, Sandbox, Status

SANDBOX = Sandbox()
QUICK = Limits(timeout_s=3)


@pytest.mark.parametrize(
    ("program", "status"),
    [
        ("assert sum([1, 2]) == 3", Status.PASSED),
        ("assert 1 == 2", Status.FAILED),
        ("raise ValueError('no')", Status.FAILED),
        ("def f(:\n    pass", Status.SYNTAX_ERROR),
        ("import sys\nsys.exit(0)", Status.FAILED),  # exiting early is not passing
        ("import os\nos._exit(0)", Status.FAILED),  # nor is leaving without the pass code
        ("print('passed')\nassert False", Status.FAILED),  # what it prints means nothing
        ("x = bytearray(8 * 1024**3)", Status.OUT_OF_MEMORY),
        ("open('data.txt', 'w').write('x')\nassert open('data.txt').read() == 'x'", Status.PASSED),
    ],
)
def test_verdicts(program: str, status: Status) -> None:
    assert SANDBOX.run(program, QUICK).status is status


ESCAPES = {
    "open a socket": "import socket\nsocket.create_connection(('93.184.216.34', 80), 1)",
    "look a name up": "import socket\nsocket.getaddrinfo('example.com', 80)",
    "fork bomb": "import os\nwhile True:\n    os.fork()",
    "run a program": "import subprocess\nsubprocess.run(['sh', '-c', 'echo hi'])",
    "fill the disk": "f = open('big', 'wb')\nwhile True:\n    f.write(b'x' * 1024 * 1024)",
    "write outside": "open({outside!r}, 'w').write('escaped')",
    "delete outside": "import os\nos.remove({outside!r})",
    "read the home": "open({secret!r}).read()",
    "signal the parent": "import os, signal\nos.kill(os.getppid(), signal.SIGTERM)",
    "load a C library": "import ctypes\nctypes.CDLL('libc.so.6')",
}


@pytest.mark.parametrize("name", sorted(ESCAPES))
def test_escapes_are_contained_and_reported(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("untouched")
    home = tmp_path / "home"
    home.mkdir()
    secret = home / ".ssh-key"
    secret.write_text("secret")
    program = ESCAPES[name].format(outside=str(outside), secret=str(secret))
    sandbox = Sandbox(readable=[r for r in SANDBOX.readable if not str(tmp_path).startswith(r)])
    outcome = sandbox.run(program, QUICK)
    assert outcome.status is Status.VIOLATION, (outcome, outcome.detail)
    assert outcome.detail  # what it tried, in a word or two
    assert outside.read_text() == "untouched"
    assert os.getppid() and os.getpid()  # we are still here


def test_sleeping_past_the_limit_is_a_timeout_and_is_killed() -> None:
    started = time.monotonic()
    outcome = SANDBOX.run("import time\ntime.sleep(60)", Limits(timeout_s=1))
    assert outcome.status is Status.TIMEOUT
    assert time.monotonic() - started < 10


def test_the_network_is_gone_even_without_the_hook() -> None:
    outcome = SANDBOX.run("pass", QUICK)
    assert outcome.network in ("namespace", "user namespace")


def test_one_escape_loses_no_other_result() -> None:
    programs = ["assert True", "import os\nos.fork()", "assert True", "while True:\n    pass"]
    with ThreadPoolExecutor(4) as pool:
        outcomes = list(pool.map(lambda p: SANDBOX.run(p, Limits(timeout_s=2)), programs))
    assert [o.status for o in outcomes] == [
        Status.PASSED,
        Status.VIOLATION,
        Status.PASSED,
        Status.TIMEOUT,
    ]


def test_the_folder_is_gone_afterwards() -> None:
    outcome = SANDBOX.run("import os\nprint(os.getcwd())", QUICK)
    assert outcome.status is Status.PASSED
    leftovers = list(Path(os.environ.get("TMPDIR", "/tmp")).glob("tether-sandbox-*"))
    assert not [p for p in leftovers if p.stat().st_mtime > time.time() - 5]


def test_without_unshare_the_audit_hook_alone_fences_the_network(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import ctypes

    from tether.sandbox import child

    class LibcWithoutUnshare:  # macOS's C library has no unshare
        def __init__(self, *args: object, **kwargs: object) -> None:
            pass

    monkeypatch.setattr(ctypes, "CDLL", LibcWithoutUnshare)
    assert child._leave_the_network() == "audit hook only"
