"""A file to change is read as stored, and every write replaces its target in one step."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tests.helpers import run_bound
from tether.errors import RequestError
from tether.textfile import file_lines, read_text, write_atomically


def test_a_write_keeps_the_mode_and_the_bytes(tmp_path: Path) -> None:
    file = tmp_path / "s.py"
    file.write_text("old\n")
    file.chmod(0o750)
    write_atomically(file, "new\r\n")
    assert file.read_bytes() == b"new\r\n"
    assert stat.S_IMODE(file.stat().st_mode) == 0o750
    assert [p.name for p in tmp_path.iterdir()] == ["s.py"]


def test_a_write_through_a_symlink_changes_the_file_it_names(tmp_path: Path) -> None:
    (tmp_path / "real.py").write_text("old\n")
    (tmp_path / "link.py").symlink_to("real.py")
    write_atomically(tmp_path / "link.py", "new\n")
    assert (tmp_path / "link.py").is_symlink()
    assert (tmp_path / "real.py").read_text() == "new\n"


def test_an_interrupted_write_leaves_the_old_file_and_no_leftovers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    file = tmp_path / "out.patch"
    file.write_text("the reviewed patch\n")

    def interrupted(fd: int) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_atomically(file, "a new patch\n" * 1000)
    assert file.read_text() == "the reviewed patch\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.patch"]


def test_a_fifo_is_written_into_not_replaced(tmp_path: Path) -> None:
    """As `-o /dev/null`, `-o /dev/stdout` or a named pipe: the write goes through it."""
    import threading

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    write_atomically(fifo, "report\n")
    reader.join(timeout=10)
    assert received == [b"report\n"] and stat.S_ISFIFO(fifo.stat().st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe"]  # no temporary left


_WRITE = """
import sys
from pathlib import Path
from tether.textfile import write_atomically
try:
    write_atomically(Path(sys.argv[1]), "new\\n")
except PermissionError as exc:
    print(exc.filename)
    print(exc.strerror)
"""


def test_a_folder_that_takes_no_new_file_is_named_with_the_file(tmp_path: Path) -> None:
    """A file this user may write, in a folder it may not (`suggest --apply` as another
    user): the error named the temporary file the write went through, a name never given."""
    folder = tmp_path / "project"
    folder.mkdir()
    file = folder / "s.py"
    file.write_text("old\n")
    file.chmod(0o666)
    folder.chmod(0o555)
    try:
        said = run_bound(_WRITE, str(file)).splitlines()
    finally:
        folder.chmod(0o755)
    assert said == [
        str(file),
        f"Permission denied in its folder {folder}, where it is written anew whole",
    ]
    assert file.read_text() == "old\n"


def test_a_folder_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(IsADirectoryError, match="it is a folder"):
        write_atomically(tmp_path, "x")


@pytest.mark.parametrize(
    ("encoding", "named"), [("utf-16", "UTF-16"), ("utf-16-be", "UTF-16"), ("utf-32", "UTF-32")]
)
def test_a_file_in_utf_16_or_32_is_named_so(tmp_path: Path, encoding: str, named: str) -> None:
    """Windows PowerShell 5.1 writes UTF-16 with ``>``: "invalid start byte at byte 0"
    did not say the file is text in another encoding."""
    file = tmp_path / "fix.patch"
    text = "\ufeffx = 1\n" if encoding == "utf-16-be" else "x = 1\n"
    file.write_bytes(text.encode(encoding))
    with pytest.raises(
        RequestError, match=f"is not UTF-8 text: it begins with a {named} byte-order mark"
    ):
        read_text(file)
    file.write_bytes(b"caf\xe9\n")
    with pytest.raises(RequestError, match=r"not UTF-8 text \(invalid continuation byte at"):
        read_text(file)


def test_file_lines_end_where_files_end_them() -> None:
    text = "a\u2028b\fc\x85d\x1ce\r\nf\rg\nh"
    assert file_lines(text) == ["a\u2028b\fc\x85d\x1ce", "f", "g", "h"]
    assert file_lines(text, keepends=True) == ["a\u2028b\fc\x85d\x1ce\r\n", "f\r", "g\n", "h"]
    assert file_lines("") == [] and file_lines("x\n") == ["x"] and file_lines("\n\n") == ["", ""]


@pytest.mark.skipif(os.geteuid() != 0, reason="only root may give a file to another user")
def test_root_rewriting_another_users_file_leaves_it_theirs(tmp_path: Path) -> None:
    """`sudo tether suggest --apply`, or root's command on a server's data directory: the
    file became root's, and its user could no longer save it in place."""
    file = tmp_path / "s.py"
    file.write_text("old\n")
    file.chmod(0o2640)  # setgid, which a change of owner clears, is put back
    os.chown(file, 65534, 65534)
    write_atomically(file, "new\n")
    after = file.stat()
    assert (after.st_uid, after.st_gid, file.read_text()) == (65534, 65534, "new\n")
    assert stat.S_IMODE(after.st_mode) == 0o2640


def test_who_may_not_give_a_file_away_still_replaces_it(tmp_path: Path) -> None:
    file = tmp_path / "s.py"
    file.write_text("old\n")
    if os.geteuid() == 0:
        os.chown(file, 65534, 65534)
    said = run_bound(_WRITE, str(file))
    assert said == "" and file.read_text() == "new\n"


@pytest.mark.skipif(os.geteuid() != 0, reason="only root may give a file to another user")
def test_a_link_swapped_mid_write_gives_no_file_away(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Root writing through a link that another user repoints between the look and the
    write: the file written keeps its own owner, not that of the file first named."""
    theirs, roots, link = tmp_path / "theirs.py", tmp_path / "roots.py", tmp_path / "link.py"
    theirs.write_text("theirs\n")
    os.chown(theirs, 65534, 65534)
    roots.write_text("root's\n")
    link.symlink_to(theirs)
    resolve = Path.resolve

    def repointed(self: Path, strict: bool = False) -> Path:
        if self == link:
            link.unlink()
            link.symlink_to(roots)
        return resolve(self, strict)

    monkeypatch.setattr(Path, "resolve", repointed)
    write_atomically(link, "new\n")
    after = roots.stat()
    assert (after.st_uid, after.st_gid, roots.read_text()) == (0, 0, "new\n")
    assert theirs.read_text() == "theirs\n"


def test_a_file_turned_into_a_link_mid_write_is_left_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    file, elsewhere = tmp_path / "s.py", tmp_path / "elsewhere.py"
    file.write_text("old\n")
    elsewhere.write_text("kept\n")
    resolve = Path.resolve

    def swapped(self: Path, strict: bool = False) -> Path:
        resolved = resolve(self, strict)
        if self == file:
            file.unlink()
            file.symlink_to(elsewhere)
        return resolved

    monkeypatch.setattr(Path, "resolve", swapped)
    with pytest.raises(OSError, match="changed into a link"):
        write_atomically(file, "new\n")
    assert file.is_symlink() and elsewhere.read_text() == "kept\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["elsewhere.py", "s.py"]


@pytest.mark.skipif(os.geteuid() != 0, reason="only root may give a file to another user")
def test_a_file_that_could_not_stay_its_owners_loses_set_user_and_group_id(
    tmp_path: Path,
) -> None:
    """A root without the capability to give files away made another user's set-user-ID
    file a set-user-ID file of root's: the bits name whom the file runs as, and that is
    no longer who set them."""
    file = tmp_path / "s.py"
    file.write_text("old\n")
    os.chown(file, 65534, 65534)
    file.chmod(0o6755)  # after chown, which clears them
    assert run_bound(_WRITE, str(file)) == ""
    after = file.stat()
    assert (after.st_uid, file.read_text()) == (0, "new\n")
    assert stat.S_IMODE(after.st_mode) == 0o755


def test_a_folder_that_may_be_written_but_not_listed_takes_the_file(tmp_path: Path) -> None:
    """A drop folder (write and search, no read): the file was written there before the
    write went through an open folder, which reading the folder's listing refused."""
    folder = tmp_path / "drop"
    folder.mkdir()
    folder.chmod(0o333)
    try:
        said = run_bound(_WRITE, str(folder / "report.txt"))
    finally:
        folder.chmod(0o755)
    assert said == ""
    assert (folder / "report.txt").read_text() == "new\n"


def test_a_folder_that_is_not_there_is_named_with_the_file(tmp_path: Path) -> None:
    file = tmp_path / "missing" / "report.txt"
    with pytest.raises(FileNotFoundError) as caught:
        write_atomically(file, "x")
    assert caught.value.filename == str(file)
    assert caught.value.strerror == (
        f"No such file or directory in its folder {file.parent}, where it is written anew whole"
    )
