from __future__ import annotations

import base64
import os
import shutil
import stat
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from nacl.signing import SigningKey

from tether.audit.checkpoint import (
    Checkpoint,
    Signer,
    _create_key,
    load_or_create_key,
    parse_note,
    parse_verifier_key,
    signed_by,
    verify_note,
)
from tether.errors import AuditError, ConfigError

NOTE = Checkpoint("tether/test", 42, bytes(range(32)))


def test_note_round_trip_and_key_string() -> None:
    signer = Signer("tether/test", SigningKey.generate())
    note = signer.sign(NOTE)
    assert note.startswith("tether/test\n42\n")
    assert "\n\n\u2014 tether/test " in note
    assert verify_note(note, parse_verifier_key(signer.verifier_key)) == NOTE
    name, hex8, _ = signer.verifier_key.split("+", 2)
    assert (name, len(hex8)) == ("tether/test", 8)


def test_other_key_or_changed_body_fails() -> None:
    signer = Signer("tether/test", SigningKey.generate())
    other = Signer("tether/test", SigningKey.generate())
    note = signer.sign(NOTE)
    with pytest.raises(AuditError, match="no signature"):
        verify_note(note, parse_verifier_key(other.verifier_key))
    with pytest.raises(AuditError, match="does not verify"):
        verify_note(note.replace("\n42\n", "\n43\n"), parse_verifier_key(signer.verifier_key))


@pytest.mark.parametrize("size", ["\u0664\u0662", "4\u00b2"])
def test_a_tree_size_in_other_digits_is_no_decimal_number(size: str) -> None:
    # int() reads the first and refuses the second; a note's size is written in 0-9.
    note = Signer("tether/test", SigningKey.generate()).sign(NOTE)
    with pytest.raises(AuditError, match="is not a decimal number"):
        parse_note(note.replace("\n42\n", f"\n{size}\n"))


def test_key_made_once_with_private_modes(tmp_path: Path) -> None:
    path = tmp_path / "audit" / "signing.key"
    key = load_or_create_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert load_or_create_key(path).encode() == key.encode()


def test_processes_starting_at_once_share_one_key(tmp_path: Path) -> None:
    path = tmp_path / "audit" / "signing.key"
    first = load_or_create_key(path)
    _create_key(path)  # one that saw no key yet, and made its own after the first landed
    assert load_or_create_key(path).encode() == first.encode()
    with ThreadPoolExecutor(8) as pool:
        again = tmp_path / "again.key"
        keys = set(pool.map(lambda _: load_or_create_key(again).encode(), range(8)))
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
    signer = Signer("tether/test", SigningKey.generate())
    (tmp_path / "note.txt").write_text(signer.sign(NOTE))
    (tmp_path / "verifier.key").write_text(signer.verifier_key + "\n")
    subprocess.run(["bash", "-c", RECIPE], cwd=tmp_path, check=True)
    message, signature = (tmp_path / "msg.bin").read_bytes(), (tmp_path / "sig.bin").read_bytes()
    assert message == NOTE.body().encode()
    signer_pub = base64.b64decode(signer.verifier_key.split("+", 2)[2])[1:]
    assert (tmp_path / "pub.raw").read_bytes() == signer_pub
    parse_verifier_key(signer.verifier_key).public.verify(message, signature)
    if shutil.which("openssl") is None:
        return  # the extracted bytes were checked with libsodium above
    ok = subprocess.run(["bash", "-c", OPENSSL], cwd=tmp_path, capture_output=True, text=True)
    assert ok.returncode == 0 and "Verified Successfully" in ok.stdout, ok.stderr
    (tmp_path / "msg.bin").write_bytes(message.replace(b"42", b"43"))
    bad = subprocess.run(["bash", "-c", OPENSSL], cwd=tmp_path, capture_output=True)
    assert bad.returncode != 0
    assert os.path.exists(tmp_path / "pub.pem")


def _cryptography_pem(key: Ed25519PrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def test_a_key_file_from_openssls_bindings_signs_as_they_do(tmp_path: Path) -> None:
    """Key files written by earlier versions (through `cryptography`) are read as they were."""
    theirs = Ed25519PrivateKey.generate()
    path = tmp_path / "signing.key"
    path.write_bytes(_cryptography_pem(theirs))
    signer = Signer("tether/test", load_or_create_key(path))
    note = signer.sign(NOTE)
    signature = base64.b64decode(note.rstrip("\n").rsplit(" ", 1)[1])[4:]
    theirs.public_key().verify(signature, NOTE.body().encode())  # raises if it differs
    ours = load_or_create_key(tmp_path / "new.key")
    loaded = serialization.load_pem_private_key((tmp_path / "new.key").read_bytes(), None)
    assert isinstance(loaded, Ed25519PrivateKey)
    assert loaded.private_bytes_raw() == ours.encode()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_a_key_made_by_openssl_is_read(tmp_path: Path) -> None:
    path = tmp_path / "signing.key"
    subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", str(path)], check=True)
    public = subprocess.run(
        ["openssl", "pkey", "-in", str(path), "-pubout", "-outform", "DER"],
        check=True,
        capture_output=True,
    ).stdout
    assert Signer("tether/test", load_or_create_key(path)).public == public[-32:]


def test_the_key_form_with_its_public_key_is_read_and_checked(tmp_path: Path) -> None:
    key = SigningKey.generate()
    der = bytes.fromhex("3051020101300506032b657004220420") + key.encode()
    path = tmp_path / "signing.key"

    def write(public: bytes) -> None:
        body = base64.encodebytes(der + bytes.fromhex("812100") + public).decode()
        path.write_text(f"-----BEGIN PRIVATE KEY-----\n{body}-----END PRIVATE KEY-----\n")

    write(key.verify_key.encode())
    assert load_or_create_key(path).encode() == key.encode()
    write(SigningKey.generate().verify_key.encode())  # a seed with another key's public half
    with pytest.raises(ConfigError, match="holds a malformed Ed25519 key; move it aside"):
        load_or_create_key(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is not an unencrypted PEM private key"),
        (b"\xff\xfe not text", "is not an unencrypted PEM private key"),
        (b"-----BEGIN PRIVATE KEY-----\n%%%\n-----END PRIVATE KEY-----\n", "unencrypted PEM"),
        (
            b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
            "unencrypted PEM",
        ),
        (_cryptography_pem(ec.generate_private_key(ec.SECP256R1())), "a key that is not Ed25519"),
        (
            _cryptography_pem(Ed25519PrivateKey.generate())[:-40]
            + b"\n-----END PRIVATE KEY-----\n",
            "PEM",
        ),
    ],
    ids=["empty", "binary", "not-base64", "encrypted", "p256", "cut-short"],
)
def test_a_key_file_that_is_no_ed25519_key_is_named(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "signing.key"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=message) as raised:
        load_or_create_key(path)
    assert "move it aside" in str(raised.value)
    assert path.read_bytes() == content  # never replaced: the log's signatures depend on it


def test_a_note_is_signed_by_a_key_whatever_name_it_signed_under() -> None:
    key = SigningKey.generate()
    note = Signer("tether/old-name", key).sign(NOTE)
    assert signed_by(note, Signer("tether/new-name", key).public)
    assert not signed_by(note, Signer("tether/old-name", SigningKey.generate()).public)
    changed = note.replace("\n42\n", "\n43\n", 1)
    assert not signed_by(changed, key.verify_key.encode())
