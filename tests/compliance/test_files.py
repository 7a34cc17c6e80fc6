"""Which files ``tether check`` reads and how: folders, sizes, FIFOs, encodings."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from tether.compliance.files import (
    MAX_FILE_BYTES,
    DisplayPaths,
    SourceText,
    decode_source,
    display_path,
    expand,
    is_binary,
    read_source,
)
from tether.errors import RequestError

needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")


def test_folder_leaves_out_large_files_and_says_so(tmp_path: Path) -> None:
    (tmp_path / "small.py").write_text("x = 1\n")
    (tmp_path / "large.py").write_bytes(b"#" * (MAX_FILE_BYTES + 1))
    files, skipped = expand([tmp_path], {".py"})
    assert files == [tmp_path / "small.py"]
    assert [(s.path, s.reason.split(";")[0]) for s in skipped] == [
        (tmp_path / "large.py", "over 1 MiB")
    ]
    # Named, it is checked; with no limit (--diff), the folder keeps it.
    assert expand([tmp_path / "large.py"], {".py"}) == ([tmp_path / "large.py"], [])
    assert len(expand([tmp_path], {".py"}, max_bytes=None)[0]) == 2
    # Named as well as found in a folder: checked, not reported as skipped.
    both, skipped = expand([tmp_path, tmp_path / "large.py"], {".py"})
    assert (len(both), skipped) == (2, [])


@needs_fifo
def test_fifos_are_never_opened(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.py")
    (tmp_path / "a.py").write_text("x = 1\n")
    found: list[tuple[list[Path], list[str]]] = []

    def run() -> None:
        files, skipped = expand([tmp_path], {".py"})
        found.append((files, [s.reason for s in skipped]))
        with pytest.raises(RequestError, match="not a regular file"):
            read_source(tmp_path / "pipe.py")  # even when a walk raced with mkfifo

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(timeout=10)
    assert not worker.is_alive(), "reading a FIFO blocked"
    assert found == [([tmp_path / "a.py"], ["not a regular file"])]
    with pytest.raises(RequestError, match=r"pipe\.py is not a regular file"):
        expand([tmp_path / "pipe.py"], {".py"})


def test_secret_scans_of_folders_leave_out_binary_files(tmp_path: Path) -> None:
    (tmp_path / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR")
    (tmp_path / "notes.txt").write_text("token\n")
    assert expand([tmp_path], None) == ([tmp_path / "notes.txt"], [])
    assert expand([tmp_path / "image.png"], None) == ([tmp_path / "image.png"], [])


@pytest.mark.parametrize(
    ("data", "python", "text", "bad_at"),
    [
        (b"\xef\xbb\xbfx = 1\n", False, "x = 1\n", None),
        (b"\xff\xfeeval(x)\n", False, "\ufffd\ufffdeval(x)\n", 0),
        (b"s = '\xc3\xa9\xe9'\n", False, "s = '\xe9\ufffd'\n", 6),
        (b"# coding: latin-1\ns = '\xe9'\n", True, "# coding: latin-1\ns = '\xe9'\n", None),
        (b"# coding: latin-1\ns = '\xe9'\n", False, "# coding: latin-1\ns = '\ufffd'\n", 23),
        (b"# coding: ascii\ns = '\xc3\xa9'\n", True, "# coding: ascii\ns = '\xe9'\n", 0),
        (b"# coding: no-such-codec\ns = 1\n", True, "# coding: no-such-codec\ns = 1\n", None),
    ],
)
def test_text_that_does_not_decode_is_kept_with_replacements(
    data: bytes, python: bool, text: str, bad_at: int | None
) -> None:
    assert decode_source(data, python=python) == SourceText(text, bad_at)


WIDE = "k = 'caf\u00e9 \U0001f600'\r\nx = 1\n"


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-32", "utf-32-be"])
def test_utf16_and_utf32_text_with_a_byte_order_mark_is_read_as_such(
    tmp_path: Path, encoding: str
) -> None:
    # "utf-16" and "utf-32" write this machine's byte order, with the mark; -be, none.
    data = WIDE.encode(encoding)
    if encoding.endswith("-be"):
        data = "\ufeff".encode(encoding) + data
    assert decode_source(data) == SourceText(WIDE)
    assert decode_source(data, python=True) == SourceText(WIDE)
    (tmp_path / "wide.txt").write_bytes(data)
    assert not is_binary(tmp_path / "wide.txt")  # its NUL bytes are text
    assert expand([tmp_path], None) == ([tmp_path / "wide.txt"], [])


def test_a_wide_text_that_does_not_decode_is_kept_with_replacements() -> None:
    bom = b"\xff\xfe"
    cut = bom + "ab\n".encode("utf-16-le") + b"c"  # an odd byte at the end
    assert decode_source(cut) == SourceText("ab\n\ufffd", bad_at=3)
    lone = bom + "a".encode("utf-16-le") + b"\x00\xd8" + "b".encode("utf-16-le")
    assert decode_source(lone) == SourceText("a\ufffdb", bad_at=1)
    assert decode_source(bom) == SourceText("")  # an empty file, as a UTF-16 editor saves it
    # A mark before NUL-free UTF-8 is two stray bytes, not UTF-16 (see the cases above).
    assert decode_source(bom + "café\n".encode()) == SourceText("\ufffd\ufffdcafé\n", 0)


def test_binary_files_with_a_wide_mark_stay_binary(tmp_path: Path) -> None:
    nul_char = tmp_path / "nul"
    nul_char.write_bytes(b"\xff\xfe" + "a\0b".encode("utf-16-le"))  # decodes, to a NUL
    assert is_binary(nul_char)
    broken = tmp_path / "broken"
    broken.write_bytes(b"\xff\xfe\x00\xdc\x00\x00" * 4)  # a lone low surrogate
    assert is_binary(broken)
    long = tmp_path / "long"  # the sniffed head cuts a surrogate pair in two
    long.write_bytes(b"\xff\xfe" + ("\U0001f600" * 5000).encode("utf-16-le"))
    assert not is_binary(long)


def test_many_paths_are_shown_resolving_each_folder_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Shown from one folder, 30,000 files (or their findings) each resolved the folder
    and their own folder: seconds of a check of a whole repository."""
    from tether.compliance import files

    (tmp_path / "real").mkdir()
    (tmp_path / "linked").symlink_to(tmp_path / "real")
    (tmp_path / "real" / "a.py").write_text("")
    (tmp_path / "link.py").symlink_to(tmp_path / "real" / "a.py")
    paths = [
        tmp_path / "linked" / "a.py",  # by its folder's own path
        tmp_path / "linked" / "b.py",
        tmp_path / "link.py",  # a link by its own name
        tmp_path / "real" / ".." / "link.py",
        tmp_path.parent / "elsewhere.py",  # outside: in full
        tmp_path / "real" / "..",
    ]
    expected = [
        "real/a.py",
        "real/b.py",
        "link.py",
        "link.py",
        str(tmp_path.parent.resolve() / "elsewhere.py"),
        ".",
    ]
    assert [display_path(path, tmp_path) for path in paths] == expected
    resolving = []
    original = files._resolved

    def counted(path: Path) -> Path:
        resolving.append(path)
        return original(path)

    monkeypatch.setattr(files, "_resolved", counted)
    shown = DisplayPaths(tmp_path)
    assert [shown(path) for path in paths * 3] == expected * 3
    folders = [tmp_path / "linked", tmp_path, tmp_path / "real" / "..", tmp_path.parent]
    # Once each folder; a path that names no file of its own (..) each time it is shown.
    assert sorted(resolving) == sorted(folders + [tmp_path / "real" / ".."] * 3)
