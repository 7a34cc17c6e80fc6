"""`tether eval project`: blank each tested function, regenerate it, run the project's tests."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.helpers import python_under_the_c_locale, tether_env, wait_until
from tests.stub_upstream import stub_upstream
from tether.audit import segments
from tether.cli.common import EXIT_INTERRUPTED, EXIT_UNAVAILABLE, EXIT_USAGE
from tether.cli.main import cli
from tether.evals.project import Project, discover
from tether.sandbox import Sandbox


def test_the_tested_functions_are_the_targets(project: Path) -> None:
    targets, seconds = discover(Project.read(project), Sandbox())
    assert [t.task_id for t in targets] == [
        "arith/__init__.py::double",
        "arith/__init__.py::triple",
    ]
    assert targets[0].body == "return x * 2\n" and targets[0].prefix.endswith(
        '"""Twice x."""\n    '
    )
    assert seconds > 0


def test_a_file_whose_name_is_not_utf8_is_left_out_not_a_crash(project: Path) -> None:
    """As a binary file is: a name that is not text cannot be hashed or stored."""
    for name in (b"notes-\xff.txt", b"arith/helper_\xe9.py"):
        (project / os.fsdecode(name)).write_text("def helper():\n    return 1\n")
    read = Project.read(project)
    assert all(name.isascii() for name in read.files) and "arith/__init__.py" in read.files
    targets, _ = discover(read, Sandbox())
    assert [t.task_id for t in targets] == [
        "arith/__init__.py::double",
        "arith/__init__.py::triple",
    ]


def test_a_file_beyond_ascii_is_read_as_utf8_whatever_the_locale(project: Path) -> None:
    """Read in the locale's encoding, a module with "café" in a comment was left out
    under the C locale (the project's tests then failed to import it, which was blamed
    on them), and read as mojibake under Latin-1."""
    (project / "arith" / "__init__.py").write_text(
        "# caf\u00e9\n" + (project / "arith" / "__init__.py").read_text(), encoding="utf-8"
    )
    code = "from pathlib import Path\nfrom tether.evals.project import Project\n"
    code += "print(ascii(Project.read(Path('.')).files['arith/__init__.py'][:6]))\n"
    status, out, err = python_under_the_c_locale(code, project)
    assert (status, out) == (0, "'# caf\\xe9'\n"), err


def test_tools_caches_are_left_out_and_too_much_text_is_explained(project: Path) -> None:
    """mypy's cache alone is JSON of tens of MiB: not a reason to refuse the project."""
    from tether.errors import ConfigError

    big = json.dumps("x" * 9 * 2**20)
    (project / ".mypy_cache" / "3.11").mkdir(parents=True)
    (project / ".mypy_cache" / "3.11" / "builtins.data.json").write_text(big)
    read = Project.read(project)
    assert not any(name.startswith(".mypy_cache") for name in read.files)
    (project / "data.json").write_text(big)
    with pytest.raises(ConfigError, match=r"more than 8 MiB of text \(at data\.json\); .* move"):
        Project.read(project)


def test_a_right_body_passes_with_its_coverage_and_a_wrong_one_fails(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with stub_upstream("return x * 2\n") as stub:  # right for double, wrong for triple
        monkeypatch.setenv("TETHER_ENGINE_KIND", "openai")
        monkeypatch.setenv("TETHER_UPSTREAM_BASE_URLS", stub.base_url)
        result = CliRunner().invoke(cli, ["eval", "project", str(project), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output[result.output.index("{") :])
    assert summary["tasks"] == 2 and summary["pass_at_k"]["pass@1"]["value"] == 0.5
    assert summary["line_coverage"] == 1.0  # the generated line runs under the tests
    assert summary["style_conformance"] == 1.0
    shown = CliRunner().invoke(cli, ["eval", "show", summary["run"], "--tasks", "--json"])
    tasks = json.loads(shown.output)["tasks"]
    assert tasks["arith/__init__.py::double"]["passed"] == 1
    assert tasks["arith/__init__.py::triple"]["passed"] == 0
    (failure,) = tasks["arith/__init__.py::triple"]["failures"]
    assert failure["status"] == "failed" and "FAILED" in failure["reason"], failure
    # The run is in the audit log, as eval run's are, and its answers beside it.
    assert "not in the audit log" not in result.output
    records = [
        json.loads(line.data)
        for line in segments.iter_records(project.parent / "home" / "audit")
        if isinstance(line, segments.Line)
    ]
    (event,) = [r for r in records if r["endpoint"] == "event eval.run"]
    assert event["params"]["run"] == summary["run"]
    assert sum(r["endpoint"] == "cli" for r in records) == 2


def test_a_body_left_empty_is_not_judged_for_style(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A model that wrote nothing (its functions' docstrings kept them whole) scored a
    style conformance of 1.0."""
    with stub_upstream("") as stub:
        monkeypatch.setenv("TETHER_ENGINE_KIND", "openai")
        monkeypatch.setenv("TETHER_UPSTREAM_BASE_URLS", stub.base_url)
        result = CliRunner().invoke(cli, ["eval", "project", str(project), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output[result.output.index("{") :])
    assert summary["style_judged"] == 0 and summary["style_conformance"] is None, summary


def test_a_run_records_its_limit_and_where_the_project_is(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--limit was left out of the run's record, so `eval compare` saw no difference
    between runs of one and of all functions; the folder was kept as typed (".")."""
    with stub_upstream("return x * 2\n") as stub:
        monkeypatch.setenv("TETHER_ENGINE_KIND", "openai")
        monkeypatch.setenv("TETHER_UPSTREAM_BASE_URLS", stub.base_url)
        monkeypatch.chdir(project)
        result = CliRunner().invoke(cli, ["eval", "project", ".", "--limit", "1", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output[result.output.index("{") :])
    assert summary["tasks"] == 1
    shown = json.loads(CliRunner().invoke(cli, ["eval", "show", summary["run"], "--json"]).output)
    manifest = shown["manifest"]
    assert manifest["config"]["limit"] == 1, manifest["config"]
    assert manifest["dataset"]["file"] == str(project.resolve())


def test_a_body_that_does_not_parse_is_a_syntax_error_with_its_line(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As the suites call it, not a failed test run that never began."""
    with stub_upstream("return (x *\n") as stub:
        monkeypatch.setenv("TETHER_ENGINE_KIND", "openai")
        monkeypatch.setenv("TETHER_UPSTREAM_BASE_URLS", stub.base_url)
        result = CliRunner().invoke(cli, ["eval", "project", str(project), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output[result.output.index("{") :])
    shown = CliRunner().invoke(cli, ["eval", "show", summary["run"], "--tasks", "--json"])
    (failure,) = json.loads(shown.output)["tasks"]["arith/__init__.py::double"]["failures"]
    assert failure["status"] == "syntax error", failure
    assert failure["reason"].startswith("arith/__init__.py:"), failure


SOURCE = """LOG = []


def log(message):
    LOG.append(message)


def shout(message):
    \"\"\"Aloud.\"\"\"
    print(message.upper())
    LOG.append(message)


def later():
    ...


def noted():
    \"\"\"Only a docstring.\"\"\"


def triple(x):
    return x * 3"""


def test_a_body_of_calls_is_a_target_and_a_last_line_without_newline_counts() -> None:
    """Setters and loggers are functions to write; placeholders are not. The last
    function of a file without a final newline was never found exercised."""
    from tether.evals.project import _body_lines, _functions

    targets = {t.name: t for t in _functions("m.py", SOURCE)}
    assert list(targets) == ["log", "shout", "triple"]
    assert list(_body_lines(targets["triple"])) == [SOURCE.count("\n") + 1]
    assert list(_body_lines(targets["shout"])) == [10, 11]


@pytest.mark.parametrize("separator", ["\x0c", "\u2028", "\x85", "\x1c"])
def test_a_function_after_a_form_feed_or_a_unicode_separator_is_cut_where_it_stands(
    separator: str,
) -> None:
    """Python's line numbers count "\\n" alone, where str.splitlines() also ends a line
    at a form feed (Emacs' page breaks) or U+2028: the file was cut a line off, and the
    body to write was the line before it."""
    from tether.evals.project import _functions

    source = f"NOTE = 'a{separator}b'  # c{separator}d\n\n\ndef half(x):\n    return x / 2\n"
    (target,) = _functions("m.py", source)
    assert (target.body, target.first_line) == ("return x / 2\n", 5)
    assert target.prefix.endswith("def half(x):\n    ") and target.original == source


def test_style_is_judged_by_the_projects_own_rules(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with stub_upstream("badName = x * 2\n    return badName\n") as stub:
        monkeypatch.setenv("TETHER_ENGINE_KIND", "openai")
        monkeypatch.setenv("TETHER_UPSTREAM_BASE_URLS", stub.base_url)
        result = CliRunner().invoke(cli, ["eval", "project", str(project), "--json"])
    summary = json.loads(result.output[result.output.index("{") :])
    assert summary["style_conformance"] == 0.0  # N806: a variable in a function is lowercase


def test_a_project_without_tests_or_with_failing_ones_is_explained(project: Path) -> None:
    (project / "tests" / "test_arith.py").unlink()
    result = CliRunner().invoke(cli, ["eval", "project", str(project)])
    assert result.exit_code == EXIT_USAGE and "has no tests" in result.output
    (project / "tests" / "test_broken.py").write_text("def test_no():\n    assert False\n")
    with pytest.MonkeyPatch.context() as inside:
        inside.chdir(project)  # `.` is named as the folder it is
        result = CliRunner().invoke(cli, ["eval", "project", "."])
    assert result.exit_code == EXIT_USAGE
    assert "the tests of arith do not pass as the project stands (failed)" in result.output
    # pytest's verdict, not the sandbox's traceback
    assert "  FAILED tests/test_broken.py::test_no - assert False" in result.output
    assert "  1 failed in" in result.output and "Traceback" not in result.output


def test_with_the_store_the_function_being_written_is_never_retrieved(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tether.settings import load_settings
    from tether.store import SnippetStore
    from tether.store.ingest import import_folder
    from tether.traces import TraceStore

    settings = load_settings(cwd=project, environ=dict(os.environ))
    with SnippetStore.from_settings(settings) as db:
        import_folder(db, project / "arith", "tester", licence="MIT")
        db.decide_many([s.id for s in db.snippets()], "vetted", "tester", "the helpers")
    with stub_upstream("return x * 2\n") as stub:
        monkeypatch.setenv("TETHER_ENGINE_KIND", "openai")
        monkeypatch.setenv("TETHER_UPSTREAM_BASE_URLS", stub.base_url)
        result = CliRunner().invoke(cli, ["eval", "project", str(project), "--snippets", "--json"])
    assert result.exit_code == 0, result.output
    with TraceStore.from_settings(settings) as traces:
        recent = traces.recent(10)
    assert len(recent) == 2
    for trace in recent:
        writing = "double" if trace.prompt.rstrip().endswith('"""Twice x."""') else "triple"
        retrieved = {s["name"] for s in trace.snippets}
        assert retrieved and writing not in retrieved, (writing, retrieved)


def test_ctrl_c_marks_the_run_interrupted(project: Path, tmp_path: Path) -> None:
    """Not "running" for ever: the run says it was interrupted, with what was done."""
    with stub_upstream("return x * 2\n") as stub:
        stub.answer_delay_s = 60  # the first answer never comes before the interruption
        env = tether_env(
            tmp_path, TETHER_ENGINE_KIND="openai", TETHER_UPSTREAM_BASE_URLS=stub.base_url
        )
        with subprocess.Popen(
            [sys.executable, "-m", "tether", "eval", "project", str(project)],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        ) as started:
            assert started.stderr is not None
            wait_until(lambda: stub.requests)
            started.send_signal(signal.SIGINT)
            said = started.stderr.read()
            assert started.wait(30) == EXIT_INTERRUPTED
    assert "interrupted; the functions done are kept in run" in said
    history = subprocess.run(
        [sys.executable, "-m", "tether", "eval", "history", "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    (run,) = json.loads(history.stdout)
    assert run["status"] == "interrupted"


def test_tests_that_select_nothing_are_explained(project: Path) -> None:
    args = ["eval", "project", str(project), "--pytest-arg=-k", "--pytest-arg=nomatch"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == EXIT_USAGE, result.output
    assert "pytest selected no test of arith" in result.output
    assert "do not pass" not in result.output


def test_sigterm_while_the_tests_are_first_run_stops_as_ctrl_c_does(
    project: Path, tmp_path: Path
) -> None:
    """Stopped before any run is made: the sandbox under way is cleaned up, nothing is kept."""
    (project / "tests" / "test_slow.py").write_text(
        "import time\n\n\ndef test_slow():\n    time.sleep(60)\n"
    )
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = tether_env(tmp_path, TMPDIR=str(scratch))
    with subprocess.Popen(
        [sys.executable, "-m", "tether", "eval", "project", str(project)],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    ) as started:
        assert started.stderr is not None
        assert "running the tests of arith" in started.stderr.readline()
        wait_until(lambda: any(scratch.glob("tether-sandbox-*")))
        started.send_signal(signal.SIGTERM)
        said = started.stderr.read()
        assert started.wait(30) == EXIT_INTERRUPTED, said
    assert "interrupted" in said and "Traceback" not in said
    assert not any(scratch.glob("tether-sandbox-*"))  # its folder, and the tests in it, gone
    history = subprocess.run(
        [sys.executable, "-m", "tether", "eval", "history", "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(history.stdout) == []


def test_a_ruff_configuration_ruff_refuses_is_explained_before_a_run(project: Path) -> None:
    # Not every sample judged conforming because ruff said nothing.
    (project / "pyproject.toml").write_text('[tool.ruff]\nline-length = "long"\n')
    result = CliRunner().invoke(cli, ["eval", "project", str(project)])
    assert result.exit_code == EXIT_USAGE, result.output
    assert "ruff cannot judge the style of arith/__init__.py (status 2" in result.output
    assert "fix the project's ruff configuration" in result.output
    assert not (project.parent / "home" / "evals.sqlite").exists()  # no run made


def test_ctrl_c_while_a_generated_body_hangs_ends_the_run_at_once(
    project: Path, tmp_path: Path
) -> None:
    """Not once the tests under way reach their time limit (half a minute or more)."""
    import time

    hanging = "import time\n    time.sleep(120)\n    return x * 2\n"
    with stub_upstream(hanging) as stub:
        env = tether_env(
            tmp_path, TETHER_ENGINE_KIND="openai", TETHER_UPSTREAM_BASE_URLS=stub.base_url
        )
        args = ["eval", "project", str(project), "--concurrency", "2", "--workers", "2"]
        with subprocess.Popen(
            [sys.executable, "-m", "tether", *args], env=env, stderr=subprocess.PIPE, text=True
        ) as started:
            assert started.stderr is not None
            wait_until(lambda: len(stub.requests) == 2)
            time.sleep(1)  # both bodies are under test, sleeping
            stopped = time.monotonic()
            started.send_signal(signal.SIGINT)
            said = started.stderr.read()
            assert started.wait(30) == EXIT_INTERRUPTED, said
    assert time.monotonic() - stopped < 10, said
    assert "interrupted; the functions done are kept in run" in said


def test_a_server_that_is_not_there_is_said_before_the_tests_run(project: Path) -> None:
    with socket.socket() as taken:  # a port nothing listens on once it is let go
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
    server = f"http://127.0.0.1:{port}"
    result = CliRunner().invoke(cli, ["eval", "project", str(project), "--server", server])
    assert result.exit_code == EXIT_UNAVAILABLE, result.output
    assert f"cannot reach the server at {server}" in result.output
    assert "running the tests" not in result.output


def test_a_blocked_prompt_or_answer_fails_its_function_not_the_run(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # double's body, which is blanked while double is written: in triple's prompt alone.
    rules = '[{"id": "no-twice", "regex": "x \\\\* 2", "action": "block"}]'
    monkeypatch.setenv("TETHER_POLICY_RULES", rules)
    monkeypatch.setenv("TETHER_COMPLIANCE_ACTIONS", '{"security/eval": "block"}')
    with stub_upstream("return eval('x + x')\n") as stub:  # double's answer is withheld
        monkeypatch.setenv("TETHER_ENGINE_KIND", "openai")
        monkeypatch.setenv("TETHER_UPSTREAM_BASE_URLS", stub.base_url)
        result = CliRunner().invoke(cli, ["eval", "project", str(project), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["statuses"] == {"blocked by policy": 2}, summary
    assert "warning: 2 of the samples were blocked by the policy" in result.stderr
    shown = CliRunner().invoke(cli, ["eval", "show", summary["run"], "--tasks", "--json"])
    tasks = json.loads(shown.stdout)["tasks"]
    (double,) = tasks["arith/__init__.py::double"]["failures"]
    assert double["reason"] == "the answer was blocked by the checks: security/eval"
    (triple,) = tasks["arith/__init__.py::triple"]["failures"]
    assert "the prompt was blocked by policy: no-twice" in triple["reason"]
