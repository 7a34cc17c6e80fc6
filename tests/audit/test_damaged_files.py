"""A damaged checkpoints file fails verification and is named; a bad --since file or -n is
bad input; a log that does not match its checkpoint fails `prove`. Never an internal error."""

from __future__ import annotations

import errno
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from tether.audit import segments
from tether.audit.checkpoint import load_or_create_key, parse_verifier_key
from tether.audit.log import AuditLog
from tether.audit.verify import load_since, verify
from tether.cli.main import cli
from tether.errors import AuditError, ConfigError
from tether.settings import Settings


@pytest.fixture
def folder(settings: Settings) -> Path:
    log = AuditLog.open(settings)
    for i in range(12):
        log.append({"request_id": f"r{i}", "prompt": "p", "completion": "c"})
        if i % 4 == 3:
            log.flush()
    log.close()
    return settings.data.home / "audit"


def _run(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


def _key(folder: Path) -> str:
    return (folder / "verifier.key").read_text().strip()


def _replace_line(path: Path, number: int, text: str) -> None:
    lines = path.read_text().splitlines(keepends=True)
    lines[number - 1] = text + "\n"
    path.write_text("".join(lines))


CHANGED_LINES = [
    ("{bad", "not JSON"),
    ("[1, 2]", "a JSON list, not an object"),
    ('"a note"', "a JSON str, not an object"),
    ('{"time": 1, "size": 4}', "no 'note'"),
    ('{"time": 1, "size": "4", "note": "x"}', "'size' is '4'"),
    ('{"time": 1, "size": -1, "note": "x"}', "'size' is -1"),
    ('{"time": true, "size": 4, "note": "x"}', "'time' is True"),
    ('{"time": NaN, "size": 4, "note": "x"}', "'time' is nan"),
    ('{"time": 1, "size": 4, "note": 7}', "'note' is not a string"),
]


def test_a_changed_checkpoints_line_fails_verification_and_is_named(
    folder: Path, tmp_path: Path
) -> None:
    for i, (line, says) in enumerate(CHANGED_LINES):
        copy = shutil.copytree(folder, tmp_path / f"copy{i}")
        checkpoints = copy / segments.CHECKPOINTS
        _replace_line(checkpoints, 2, line)
        with pytest.raises(AuditError, match=r"checkpoints\.jsonl:2 is not a checkpoint entry"):
            list(segments.iter_checkpoints(checkpoints))
        done = _run("audit", "verify", "--dir", copy, "--key", _key(folder), "--json")
        assert done.exit_code == 1, done.output
        report = json.loads(done.stdout)
        assert report["ok"] is False
        assert "checkpoints.jsonl:2 is not a checkpoint entry" in report["error"]
        assert says in report["error"]
        plain = _run("audit", "verify", "--dir", copy, "--key", _key(folder))
        assert plain.exit_code == 1 and "FAILED" in plain.stdout
        assert "checkpoints.jsonl:2" in plain.stdout
        # Nothing was checked: no "0 records, 0 checkpoints", which reads as an empty log.
        assert plain.stdout.startswith("FAILED before any record was checked: "), plain.stdout
    # A torn last line is what a crash leaves, not a change: still only a warning.
    checkpoints = folder / segments.CHECKPOINTS
    checkpoints.write_bytes(checkpoints.read_bytes() + b'{"time": 1, "si')
    done = _run("audit", "verify", "--dir", folder, "--key", _key(folder))
    assert done.exit_code == 0 and "partial last line" in done.stdout


def test_a_record_that_fails_before_the_checkpoints_does_not_read_as_none(
    folder: Path,
) -> None:
    # A record deleted mid-log stops verification before the checkpoints are read: the
    # summary said "5 records, 0 checkpoints", which reads as a log that has none.
    segment = folder / "segment-000001.jsonl"
    lines = segment.read_bytes().splitlines(keepends=True)
    segment.write_bytes(b"".join(lines[:5] + lines[6:]))
    entries = len((folder / segments.CHECKPOINTS).read_text().splitlines())
    plain = _run("audit", "verify", "--dir", folder, "--key", _key(folder))
    assert plain.exit_code == 1, plain.output
    assert plain.stdout.startswith(
        f"FAILED after 5 records, before the {entries} checkpoints were checked: "
        "segment-000001.jsonl:6: expected seq 5, found seq 6"
    ), plain.stdout
    assert "0 checkpoints" not in plain.stdout
    report = json.loads(_run("audit", "verify", "--dir", folder, "--json").stdout)
    assert (report["records"], report["checkpoints"], report["unchecked"]) == (5, 0, entries)


def test_a_bad_since_file_is_bad_input(folder: Path, tmp_path: Path) -> None:
    since = tmp_path / "since.jsonl"
    for text, says in [
        ("{bad\n", "since.jsonl:1 is not a checkpoint entry (not JSON)"),
        ('{"size": 1}\n', "since.jsonl:1 is not a checkpoint entry (no 'note')"),
        ('{"time": 1, "size": 1, "note": "nonsense"}\n', "since.jsonl:1: not a signed note"),
        ("hello\n", "since.jsonl: not a signed note"),
    ]:
        since.write_text(text)
        with pytest.raises(AuditError, match=r"pass a copy of checkpoints\.jsonl or one signed"):
            load_since(since)
        done = _run("audit", "verify", "--dir", folder, "--key", _key(folder), "--since", since)
        assert done.exit_code == 2, done.output
        assert says in done.stderr and done.stderr.count("\n") == 1
    # A copy of the checkpoints file, a blank line in it or not, is what --since is for.
    since.write_text((folder / segments.CHECKPOINTS).read_text() + "\n")
    notes = load_since(since)
    assert len(notes) == 4  # four checkpoints; the one written on closing repeats the last
    report = verify(folder, parse_verifier_key(_key(folder)), since=notes)
    assert report.ok and report.extends == [0, 4, 8, 12]
    done = _run("audit", "verify", "--dir", folder, "--key", _key(folder), "--since", since)
    assert done.exit_code == 0, done.output
    # One line for the copy, not one for each of its checkpoints.
    extends = [line for line in done.stdout.splitlines() if "extends" in line]
    assert extends == [
        "the latest checkpoint extends the 4 saved ones of sizes 0 to 12 (each proof checked)"
    ]
    # Copied while the log wrote it: the partial last line is no note, not bad input.
    since.write_text((folder / segments.CHECKPOINTS).read_text() + '{"time": 1, "si')
    assert load_since(since) == notes
    # A whole last line without its newline is read; alone and partial, it is refused.
    since.write_text((folder / segments.CHECKPOINTS).read_text().splitlines()[-1])
    assert load_since(since) == notes[-1:]
    for partial in ('{"note": "garbage"}', '{"time": 1, "si'):
        since.write_text(partial)
        with pytest.raises(AuditError):
            load_since(since)


def test_prove_fails_with_no_when_the_log_does_not_match(folder: Path) -> None:
    assert _run("audit", "prove", "2", "--dir", folder).exit_code == 0
    segment = folder / "segment-000001.jsonl"
    segment.write_text(segment.read_text().replace('"r2"', '"rX"'))
    done = _run("audit", "prove", "2", "--dir", folder)
    assert done.exit_code == 1 and done.stdout == ""
    assert "record 2 is not included under the latest checkpoint" in done.stderr


def test_prove_fails_with_no_on_a_changed_checkpoints_file_or_a_cut_log(folder: Path) -> None:
    checkpoints = folder / segments.CHECKPOINTS
    kept = checkpoints.read_text()
    _replace_line(checkpoints, 4, "[]")  # not the latest: still a changed file
    done = _run("audit", "prove", "2", "--dir", folder)
    assert done.exit_code == 1 and "checkpoints.jsonl:4 is not a checkpoint entry" in done.stderr
    checkpoints.write_text(kept)
    _replace_line(checkpoints, 5, json.dumps({"time": 1, "size": 12, "note": "forged"}))
    done = _run("audit", "prove", "2", "--dir", folder)
    assert done.exit_code == 1 and "the latest checkpoint: not a signed note" in done.stderr
    checkpoints.write_text(kept)
    segment = folder / "segment-000001.jsonl"
    segment.write_text("".join(segment.read_text().splitlines(keepends=True)[:10]))
    done = _run("audit", "prove", "2", "--dir", folder)
    assert done.exit_code == 1 and "holds only 10: records were removed" in done.stderr


def test_tail_prints_exactly_n_and_refuses_a_negative_count(folder: Path) -> None:
    def tail(count: str) -> Result:
        return _run("audit", "tail", "-n", count, "--dir", folder)

    assert tail("0").exit_code == 0 and tail("0").stdout == ""
    last = tail("1").stdout.splitlines()
    assert len(last) == 1 and json.loads(last[0])["seq"] == 11
    assert len(tail("50").stdout.splitlines()) == 12
    refused = tail("-1")
    assert refused.exit_code == 2 and "-1 is not in the range x>=0" in refused.stderr


@pytest.mark.parametrize("block", [7, 64, 1 << 16])
def test_the_last_checkpoints_are_read_from_the_end(tmp_path: Path, block: int) -> None:
    path = tmp_path / segments.CHECKPOINTS
    lines = [json.dumps({"time": 1.7e9 + i, "size": i, "note": f"o\n{i}\nr\n"}) for i in range(40)]
    path.write_text("\n".join(lines) + '\n{"time": 17')  # a crash cut the last entry
    whole = [json.loads(line) for line in lines]
    for count in (0, 1, 5, 39, 40, 100):
        last = segments.last_checkpoints(path, count, block=block)
        assert last == (whole[-count:] if count else [])
    path.write_text("\n".join([*lines[:-1], "changed", lines[-1]]) + "\n")
    with pytest.raises(AuditError, match="not a checkpoint entry"):
        segments.last_checkpoints(path, 3, block=block)
    assert segments.last_checkpoints(tmp_path / "none", 3) == []


def test_doctor_finds_a_log_the_writers_would_refuse(settings: Settings, folder: Path) -> None:
    from tether.cli.info import _audit_check

    assert _audit_check(settings)["ok"], _audit_check(settings)
    segment = segments.segment_paths(folder)[-1]
    lines = segment.read_bytes().splitlines(keepends=True)
    segment.write_bytes(b"".join(lines[:-1]))  # the last record cut away
    with pytest.raises(AuditError, match="records were cut from its end"):
        AuditLog.open(settings)  # what every request would meet
    check = _audit_check(settings)
    assert not check["ok"] and "tether audit verify" in check["fix"]


def test_a_signing_key_other_than_the_logs_is_refused_and_found_by_doctor(
    settings: Settings, folder: Path
) -> None:
    from tether.cli.info import _audit_check

    signing, verifier = folder / "signing.key", folder / "verifier.key"
    kept, named = signing.read_bytes(), verifier.read_text()
    for change in ("replaced", "lost", "garbage"):
        signing.unlink()
        if change == "replaced":
            load_or_create_key(signing)  # a new key made where the old one was
        elif change == "garbage":
            signing.write_text("notakey\n")
        check = _audit_check(settings)
        assert not check["ok"], change
        assert "move the log's folder aside" in check["fix"] or change == "garbage"
        with pytest.raises((AuditError, ConfigError)):
            AuditLog.open(settings)  # not signed on with another key,
        assert verifier.read_text() == named  # nor the key that checks it overwritten
        signing.write_bytes(kept)
    assert _audit_check(settings)["ok"]
    # A new key on purpose starts a new log; the old one, moved aside, still verifies.
    kept_log = folder.with_name("audit-before")
    folder.rename(kept_log)
    AuditLog.open(settings).close()
    assert verifier.read_text() != named
    verified = _run("audit", "verify", "--dir", kept_log, "--key", named.strip())
    assert verified.exit_code == 0, verified.output


def test_a_damaged_verifier_key_is_written_again(settings: Settings, folder: Path) -> None:
    verifier = folder / "verifier.key"
    named = verifier.read_text()
    verifier.write_text("not a key\n")
    AuditLog.open(settings).close()
    assert verifier.read_text() == named


# Opens the log in the folder given, on a disk that takes no file past 8 bytes.
_OPEN_ON_A_FULL_DISK = """
import resource, signal, sys
from pathlib import Path
from tether.audit.log import AuditLog
from tether.settings import load_settings

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails, EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (8, 8))
try:
    AuditLog.open(load_settings(environ={"TETHER_HOME": sys.argv[1]}))
except OSError as exc:
    print(exc.errno)
"""


def test_a_verifier_key_written_again_on_a_full_disk_is_left_whole(
    settings: Settings, folder: Path
) -> None:
    """It was written in place: a write the disk refused halfway left a truncated
    verifier.key, which no longer verified the log."""
    verifier = folder / "verifier.key"
    named, names = verifier.read_text(), sorted(p.name for p in folder.iterdir())
    done = subprocess.run(
        [sys.executable, "-c", _OPEN_ON_A_FULL_DISK, str(settings.data.home)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.stdout.strip() == str(errno.EFBIG), done.stderr
    assert verifier.read_text() == named
    assert sorted(p.name for p in folder.iterdir()) == names  # no copy left beside it


def test_doctor_finds_a_file_where_the_log_goes(settings: Settings) -> None:
    from tether.cli.info import _audit_check

    settings.data.home.mkdir(parents=True, exist_ok=True)
    (settings.data.home / "audit").write_text("x\n")
    check = _audit_check(settings)
    assert not check["ok"] and "is not a folder" in check["detail"]


def test_prove_and_verify_agree_that_removed_checkpoints_are_tampering(folder: Path) -> None:
    (folder / segments.CHECKPOINTS).unlink()
    verified = _run("audit", "verify", "--dir", folder, "--key", _key(folder))
    proved = _run("audit", "prove", "1", "--dir", folder)
    assert verified.exit_code == proved.exit_code == 1, (verified.output, proved.output)
    assert "no checkpoints: they were removed" in proved.output


def test_opening_reads_only_the_end_of_the_checkpoints_file(
    settings: Settings, folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An idle server adds a checkpoint each heartbeat: opening must not read them all.
    def whole_file(path: Path) -> None:
        raise AssertionError(f"{path} read whole on opening")

    monkeypatch.setattr(segments, "iter_checkpoints", whole_file)
    checkpoints = folder / segments.CHECKPOINTS
    _replace_line(checkpoints, 2, "{bad")  # an old line: `audit verify` names it
    AuditLog.open(settings).close()
    assert checkpoints.read_text().count("\n") == 7  # one signed on opening, one on closing
    monkeypatch.undo()
    report = verify(folder, parse_verifier_key(_key(folder)))
    assert not report.ok and "checkpoints.jsonl:2 is not a checkpoint entry" in str(report.error)
    _replace_line(checkpoints, 7, "{bad")  # the last one is what opening checks against
    with pytest.raises(AuditError, match="a recent line is not a checkpoint entry"):
        AuditLog.open(settings)


@pytest.mark.parametrize("block", [7, 64, 1 << 16])
def test_a_torn_last_checkpoint_is_set_aside_on_opening(
    settings: Settings, folder: Path, block: int
) -> None:
    checkpoints = folder / segments.CHECKPOINTS
    whole = checkpoints.read_bytes()
    checkpoints.write_bytes(whole + b'{"time": 1.7e9, "si')  # a crash mid-write
    entries, torn = segments.checkpoints_tail(checkpoints, 1, block=block)
    assert entries == [json.loads(whole.splitlines()[-1])]
    assert torn is not None and (torn.offset, torn.data) == (len(whole), b'{"time": 1.7e9, "si')
    log = AuditLog.open(settings)
    log.close()
    assert log.recovery_report.torn == [
        "checkpoints.jsonl: 19 bytes of a partial line moved to checkpoints.jsonl.torn"
    ]
    assert (folder / "checkpoints.jsonl.torn").read_bytes() == b'{"time": 1.7e9, "si\n'
    assert verify(folder, parse_verifier_key(_key(folder))).ok
    # A file that is one torn line, and one that ends whole, read from the end as well.
    alone = folder / "alone.jsonl"
    alone.write_bytes(b'{"ti')
    assert segments.checkpoints_tail(alone, 1, block=block) == (
        [],
        segments.Torn(alone, 0, b'{"ti'),
    )
    assert segments.checkpoints_tail(checkpoints, 1, block=block)[1] is None


def test_tail_reads_back_only_as_many_segments_as_it_needs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings.model_validate(
        {"data": {"home": str(tmp_path / "home")}, "audit": {"segment_bytes": 4096}}
    )
    log = AuditLog.open(settings)
    for i in range(200):
        log.append({"request_id": f"r{i}", "prompt": "p" * 40, "completion": "c"})
    log.close()
    folder = settings.data.home / "audit"
    paths = segments.segment_paths(folder)
    assert len(paths) > 4
    newest, before = segments.read_raw(paths[-1])[0], segments.read_raw(paths[-2])[0]
    paths[-1].write_bytes(paths[-1].read_bytes() + b'{"v": 1, "se')  # a crash mid-write
    read: list[str] = []
    real = segments.read_raw

    def counted(path: Path) -> tuple[list[bytes], segments.Torn | None]:
        read.append(path.name)
        return real(path)

    monkeypatch.setattr(segments, "read_raw", counted)
    count = len(newest) + len(before) + 3  # two whole segments and three of the third
    shown = _run("audit", "tail", "-n", str(count), "--dir", folder).stdout.splitlines()
    assert [json.loads(line)["seq"] for line in shown] == list(range(200 - count, 200))
    assert read == [paths[-1].name, paths[-2].name, paths[-3].name]
    assert len(_run("audit", "tail", "-n", "1000", "--dir", folder).stdout.splitlines()) == 200


def test_a_lost_verifier_key_does_not_let_another_signing_key_sign_on(
    settings: Settings, folder: Path
) -> None:
    """The log's own checkpoints say which key signed it: another key is refused, by the
    writers and by doctor, and the key that signed it writes verifier.key again."""
    from tether.cli.info import _audit_check

    signing, verifier = folder / "signing.key", folder / "verifier.key"
    kept, named = signing.read_bytes(), verifier.read_text()
    verifier.unlink()
    signing.unlink()
    load_or_create_key(signing)  # replaced along with it
    check = _audit_check(settings)
    assert not check["ok"] and "not by this signing key" in check["detail"], check
    with pytest.raises(AuditError, match=r"verifier\.key is missing or damaged, and the log"):
        AuditLog.open(settings)
    assert not verifier.exists()
    signing.write_bytes(kept)
    assert _audit_check(settings)["ok"]
    AuditLog.open(settings).close()
    assert verifier.read_text() == named


def test_a_key_pair_replaced_together_does_not_sign_on(settings: Settings, folder: Path) -> None:
    """A new signing key with its own verifier.key beside it: the checkpoints still say
    which key signed the log, so it is refused, not left signed by two keys."""
    from tether.audit.checkpoint import Signer
    from tether.audit.log import default_origin

    signing, verifier = folder / "signing.key", folder / "verifier.key"
    signing.unlink()
    signer = Signer(default_origin(), load_or_create_key(signing))
    verifier.write_text(signer.verifier_key + "\n")
    with pytest.raises(AuditError, match=r"verifier\.key was replaced, and the log's last"):
        AuditLog.open(settings)
    assert len(segments.last_checkpoints(folder / segments.CHECKPOINTS, 100)) > 0
    verified = _run("audit", "verify", "--dir", folder, "--key", signer.verifier_key)
    assert verified.exit_code == 1  # nothing was signed with the new key


def test_a_file_named_like_a_segment_is_not_read_as_one(settings: Settings, folder: Path) -> None:
    (folder / "segment-old.jsonl").write_text("a copy someone left here\n")
    (folder / "segment-000001.jsonl.bak").write_text("{}\n")
    shutil.copy(folder / "segment-000001.jsonl", folder / "segment-1.jsonl")
    log = AuditLog.open(settings)  # a ValueError before
    log.append({"request_id": "after"})
    log.close()
    verified = _run("audit", "verify", "--dir", folder, "--key", _key(folder))
    assert verified.exit_code == 0 and verified.output.startswith("13 records"), verified.output


def test_audit_key_makes_no_key_for_a_log_signed_with_another(folder: Path) -> None:
    signing = folder / "signing.key"
    kept = signing.read_bytes()
    signing.unlink()
    env = {"TETHER_HOME": str(folder.parent), "TETHER_AUDIT_ORIGIN": "tether/test"}

    def _run(*args: str) -> Result:
        return CliRunner().invoke(cli, list(args), env=env)

    missing = _run("audit", "key")
    assert missing.exit_code == 2 and "is missing, but the log" in missing.output
    assert not signing.exists()  # not made: the next start would refuse it
    load_or_create_key(signing)
    other = _run("audit", "key")
    assert other.exit_code == 2 and "is not the one that signed the log" in other.output
    signing.write_bytes(kept)
    shown = _run("audit", "key")
    assert shown.exit_code == 0 and shown.output.strip() == _key(folder)
    # Replaced together with its verifier.key: the checkpoints still name the key.
    named = (folder / "verifier.key").read_text()
    signing.unlink()
    replaced = _run("audit", "key")  # makes none: the log is signed
    assert replaced.exit_code == 2 and not signing.exists()
    from tether.audit.checkpoint import Signer

    new = Signer("tether/test", load_or_create_key(signing))
    (folder / "verifier.key").write_text(new.verifier_key + "\n")
    swapped = _run("audit", "key")
    assert swapped.exit_code == 2 and "verifier.key was replaced" in swapped.output
    signing.write_bytes(kept)
    (folder / "verifier.key").write_text(named)


def test_a_key_file_that_is_a_folder_or_mistyped_is_named_and_nothing_made(
    settings: Settings, folder: Path, tmp_path: Path
) -> None:
    for key_file, says in (
        (tmp_path, "cannot be read or made (Is a directory)"),
        (tmp_path / "typo" / "signing.kye", "is missing, but the log"),
        (tmp_path / ("a" * 300) / "signing.key", "cannot be looked up (File name too long)"),
    ):
        audit = settings.audit.model_copy(update={"key_file": key_file})
        with pytest.raises(ConfigError, match=re.escape(says)):
            AuditLog.open(settings.model_copy(update={"audit": audit}))
    assert not (tmp_path / "typo").exists()  # no key, nor its folder, made at the typo


def test_a_key_file_that_is_not_there_is_named_as_a_missing_file(folder: Path) -> None:
    for missing in (folder / "nope" / "my.key", "my.key"):
        said = _run("audit", "verify", "--dir", folder, "--key", missing)
        assert said.exit_code == 2 and "names no file; pass the verifier key itself" in said.output
    kept = folder.parent / "kept.key"
    kept.write_text(_key(folder) + "\n")
    assert _run("audit", "verify", "--dir", folder, "--key", kept).exit_code == 0


def test_tether_server_in_the_environment_leaves_an_offline_check_offline(folder: Path) -> None:
    """Set for the commands that talk to a server, TETHER_SERVER made `audit verify`
    refuse ("--server checks ...: give --since FILE"), with or without --dir."""
    env = {
        "TETHER_HOME": str(folder.parent),
        "TETHER_AUDIT_ORIGIN": "tether/test",
        "TETHER_SERVER": "http://127.0.0.1:9",
    }
    for args in (["audit", "verify"], ["audit", "verify", "--dir", str(folder)]):
        checked = CliRunner().invoke(cli, args, env=env)
        assert checked.exit_code == 0 and ": ok" in checked.output, (args, checked.output)
    typed = CliRunner().invoke(cli, ["audit", "verify", "--server", "http://127.0.0.1:9"], env=env)
    assert typed.exit_code == 2 and "give --since FILE" in typed.output
