from __future__ import annotations

import base64
import os
import shutil
import stat
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tether.audit.checkpoint import (
    Checkpoint,
    Signer,
    _create_key,
    load_or_create_key,
    parse_note,
    parse_verifier_key,
    verify_note,
)
from tether.errors import AuditError

NOTE = Checkpoint("tether/test", 42, bytes(range(32)))


def test_note_round_trip_and_key_string() -> None:
    signer = Signer("tether/test", Ed25519PrivateKey.generate())
    note = signer.sign(NOTE)
    assert note.startswith("tether/test\n42\n")
    assert "\n\n\u2014 tether/test " in note
    assert verify_note(note, parse_verifier_key(signer.verifier_key)) == NOTE
    name, hex8, _ = signer.verifier_key.split("+", 2)
    assert (name, len(hex8)) == ("tether/test", 8)


def test_other_key_or_changed_body_fails() -> None:
    signer = Signer("tether/test", Ed25519PrivateKey.generate())
    other = Signer("tether/test", Ed25519PrivateKey.generate())
    note = signer.sign(NOTE)
    with pytest.raises(AuditError, match="no signature"):
        verify_note(note, parse_verifier_key(other.verifier_key))
    with pytest.raises(AuditError, match="does not verify"):
        verify_note(note.replace("\n42\n", "\n43\n"), parse_verifier_key(signer.verifier_key))


@pytest.mark.parametrize("size", ["\u0664\u0662", "4\u00b2"])
def test_a_tree_size_in_other_digits_is_no_decimal_number(size: str) -> None:
    # int() reads the first and refuses the second; a note's size is written in 0-9.
    note = Signer("tether/test", Ed25519PrivateKey.generate()).sign(NOTE)
    with pytest.raises(AuditError, match="is not a decimal number"):
        parse_note(note.replace("\n42\n", f"\n{size}\n"))


def test_key_made_once_with_private_modes(tmp_path: Path) -> None:
    path = tmp_path / "audit" / "signing.key"
    key = load_or_create_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert load_or_create_key(path).private_bytes_raw() == key.private_bytes_raw()


def test_processes_starting_at_once_share_one_key(tmp_path: Path) -> None:
    path = tmp_path / "audit" / "signing.key"
    first = load_or_create_key(path)
    _create_key(path)  # one that saw no key yet, and made its own after the first landed
    assert load_or_create_key(path).private_bytes_raw() == first.private_bytes_raw()
    with ThreadPoolExecutor(8) as pool:
        again = tmp_path / "again.key"
        keys = set(pool.map(lambda _: load_or_create_key(again).private_bytes_raw(), range(8)))
    assert len(keys) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again.key", "audit"]  # no leftovers


RECIPE = r"""
set -e
head -n 3 note.txt > msg.bin
tail -n 1 note.txt | cut -d' ' -f3 | base64 -d | tail -c 64 > sig.bin
cut -d+ -f3- verifier.key | base64 -d | tail -c 32 > pub.raw
{ printf '\060\052\060\005\006\003\053\145\160\003\041\000'; cat pub.raw; } > pub.der
"""
OPENSSL = """openssl pkey -pubin -inform DER -in pub.der -out pub.pem
openssl pkeyutl -verify -pubin -inkey pub.pem -rawin -in msg.bin -sigfile sig.bin
"""


def test_docs_openssl_recipe(tmp_path: Path) -> None:
    signer = Signer("tether/test", Ed25519PrivateKey.generate())
    (tmp_path / "note.txt").write_text(signer.sign(NOTE))
    (tmp_path / "verifier.key").write_text(signer.verifier_key + "\n")
    subprocess.run(["bash", "-c", RECIPE], cwd=tmp_path, check=True)
    message, signature = (tmp_path / "msg.bin").read_bytes(), (tmp_path / "sig.bin").read_bytes()
    assert message == NOTE.body().encode()
    signer_pub = base64.b64decode(signer.verifier_key.split("+", 2)[2])[1:]
    assert (tmp_path / "pub.raw").read_bytes() == signer_pub
    parse_verifier_key(signer.verifier_key).public.verify(signature, message)
    if shutil.which("openssl") is None:
        return  # the extracted bytes were checked with cryptography above
    ok = subprocess.run(["bash", "-c", OPENSSL], cwd=tmp_path, capture_output=True, text=True)
    assert ok.returncode == 0 and "Verified Successfully" in ok.stdout, ok.stderr
    (tmp_path / "msg.bin").write_bytes(message.replace(b"42", b"43"))
    bad = subprocess.run(["bash", "-c", OPENSSL], cwd=tmp_path, capture_output=True)
    assert bad.returncode != 0
    assert os.path.exists(tmp_path / "pub.pem")
