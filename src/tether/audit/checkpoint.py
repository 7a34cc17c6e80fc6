"""Signed checkpoints: a C2SP tlog-checkpoint body in a C2SP signed note (Ed25519).

The body is three lines — origin, decimal tree size, base64 root hash — each ending in
a newline. The note appends a blank line and one signature line per signer:
``— <key name> <base64(key hash[4] || signature[64])>``, key hash being the first four
bytes of SHA-256(name || 0x0A || 0x01 || public key).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from tether.databases import private_folder
from tether.errors import AuditError, ConfigError

_ED25519 = b"\x01"
_DASH = "\u2014"

# The key file is PEM-armoured PKCS #8 (RFC 8410), as `openssl genpkey -algorithm ed25519`
# writes it: a fixed prefix, then the 32-byte seed. The second form also carries the
# public key after the seed. Signing goes through libsodium (PyNaCl): the idle server is
# 9 MB smaller than with the `cryptography` package (bench/startup_memory.py), so the
# file is read here.
_PEM_BEGIN = "-----BEGIN PRIVATE KEY-----"
_PEM_END = "-----END PRIVATE KEY-----"
_PKCS8_SEED = bytes.fromhex("302e020100300506032b657004220420")
_PKCS8_SEED_AND_PUBLIC = bytes.fromhex("3051020101300506032b657004220420")
_PUBLIC_TAG = bytes.fromhex("812100")
_ED25519_OID = bytes.fromhex("06032b6570")


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes

    def body(self) -> str:
        return f"{self.origin}\n{self.size}\n{base64.b64encode(self.root).decode()}\n"


def key_hash(name: str, public: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + _ED25519 + public).digest()[:4]


class Signer:
    """Signs checkpoint bodies as a named note key."""

    def __init__(self, name: str, key: SigningKey) -> None:
        if not name or any(c.isspace() for c in name) or "+" in name:
            raise ConfigError(f"audit.origin {name!r} must be non-empty, without spaces or '+'")
        self.name = name
        self._key = key
        self.public = key.verify_key.encode()
        self.hash = key_hash(name, self.public)

    @property
    def verifier_key(self) -> str:
        encoded = base64.b64encode(_ED25519 + self.public).decode()
        return f"{self.name}+{self.hash.hex()}+{encoded}"

    def sign(self, checkpoint: Checkpoint) -> str:
        body = checkpoint.body()
        signature = self._key.sign(body.encode()).signature
        encoded = base64.b64encode(self.hash + signature).decode()
        return f"{body}\n{_DASH} {self.name} {encoded}\n"


@dataclass(frozen=True)
class Verifier:
    name: str
    hash: bytes
    public: VerifyKey


def parse_verifier_key(text: str) -> Verifier:
    try:
        name, hash_hex, encoded = text.strip().split("+", 2)
        raw = base64.b64decode(encoded, validate=True)
        hashed = bytes.fromhex(hash_hex)
    except ValueError as exc:
        # Never the text itself: it may be a signing key given by mistake, or another secret.
        what = "a private key" if "PRIVATE KEY" in text else f"{len(text)} characters"
        raise AuditError(
            f"the verifier key given ({what}) is not <name>+<hex8>+<base64>; give the line "
            "`tether audit key` prints, or the file verifier.key that holds it"
        ) from exc
    if raw[:1] != _ED25519 or len(raw) != 33:
        raise AuditError("verifier key is not an Ed25519 key (type byte 0x01, 32 bytes)")
    if key_hash(name, raw[1:]) != hashed:
        raise AuditError("verifier key hash does not match its name and public key")
    return Verifier(name, hashed, VerifyKey(raw[1:]))


def parse_note(text: str) -> tuple[Checkpoint, list[tuple[str, bytes, bytes]]]:
    """The checkpoint and its (name, key hash, signature) lines; signatures unchecked."""
    body, sep, sigs = text.partition("\n\n")
    lines = body.split("\n")
    if not sep or len(lines) < 3:
        raise AuditError("not a signed note: want origin, size, root, a blank line, signatures")
    origin, size_text, root_text = lines[:3]
    # isdigit() alone passes "²" and other scripts' digits, which int() reads or refuses.
    if not (size_text.isascii() and size_text.isdigit()) or (
        size_text.startswith("0") and size_text != "0"
    ):
        raise AuditError(f"checkpoint tree size {size_text!r} is not a decimal number")
    try:
        root = base64.b64decode(root_text, validate=True)
    except ValueError as exc:
        raise AuditError("checkpoint root hash is not base64") from exc
    if len(root) != 32:
        raise AuditError("checkpoint root hash is not 32 bytes")
    signatures = []
    for line in sigs.rstrip("\n").split("\n"):
        parts = line.split(" ")
        if len(parts) != 3 or parts[0] != _DASH:
            raise AuditError(f"malformed signature line {line!r}")
        try:
            raw = base64.b64decode(parts[2], validate=True)
        except ValueError as exc:
            raise AuditError(f"signature line {line!r} is not base64") from exc
        signatures.append((parts[1], raw[:4], raw[4:]))
    return Checkpoint(origin, int(size_text), root), signatures


def _signed_part(text: str) -> bytes:
    """What a note's signatures sign: its body, up to the blank line."""
    return (text.partition("\n\n")[0] + "\n").encode()


def signed_by(text: str, public: bytes) -> bool:
    """Whether a signature on note ``text`` is by the Ed25519 key ``public``, under
    whatever name it signed (AuditError for a note that cannot be read)."""
    _, signatures = parse_note(text)
    key = VerifyKey(public)
    for _, _, signature in signatures:
        try:
            key.verify(_signed_part(text), signature)
            return True
        except (BadSignatureError, ValueError):
            continue
    return False


def verify_note(text: str, verifier: Verifier) -> Checkpoint:
    checkpoint, signatures = parse_note(text)
    for name, hashed, signature in signatures:
        if name == verifier.name and hashed == verifier.hash:
            try:
                verifier.public.verify(_signed_part(text), signature)
            except (BadSignatureError, ValueError) as exc:
                raise AuditError(f"signature by {name} does not verify") from exc
            return checkpoint
    raise AuditError(f"no signature by key {verifier.name}+{verifier.hash.hex()} on this note")


def load_or_create_key(path: Path) -> SigningKey:
    """The Ed25519 key at ``path``, made there (mode 0600, folder 0700) the first time.
    Processes starting at once all end up with the one key that reached the path."""
    try:
        if not path.exists():
            _create_key(path)
        data = path.read_bytes()
    except OSError as exc:  # a folder, a file not ours to read, a folder we cannot write
        raise ConfigError(
            f"the audit signing key {path} cannot be read or made ({exc.strerror}); give a "
            "key file this user can read (audit.key_file), or a folder it can write"
        ) from exc
    try:
        der = _pem_body(data)
    except ValueError as exc:
        raise ConfigError(f"{path} is not an unencrypted PEM private key; move it aside") from exc
    seed = _ed25519_seed(der)
    if seed is None:
        kind = "a malformed Ed25519 key" if _ED25519_OID in der else "a key that is not Ed25519"
        raise ConfigError(f"{path} holds {kind}; move it aside")
    return SigningKey(seed)


def _pem_body(data: bytes) -> bytes:
    """The DER inside one PEM ``PRIVATE KEY`` block; ValueError for anything else."""
    text = data.decode("ascii").strip()
    if not (text.startswith(_PEM_BEGIN) and text.endswith(_PEM_END)):
        raise ValueError("no PEM PRIVATE KEY block")
    inside = text[len(_PEM_BEGIN) : -len(_PEM_END)]
    return base64.b64decode("".join(inside.split()), validate=True)


def _ed25519_seed(der: bytes) -> bytes | None:
    """The seed of a PKCS #8 Ed25519 key, or None if ``der`` is not one."""
    if len(der) == 48 and der.startswith(_PKCS8_SEED):
        return der[16:]
    if len(der) == 83 and der.startswith(_PKCS8_SEED_AND_PUBLIC) and der[48:51] == _PUBLIC_TAG:
        seed = der[16:48]
        return seed if SigningKey(seed).verify_key.encode() == der[51:] else None
    return None


def _pem(seed: bytes) -> bytes:
    encoded = base64.b64encode(_PKCS8_SEED + seed).decode("ascii")  # 64 characters: one line
    return f"{_PEM_BEGIN}\n{encoded}\n{_PEM_END}\n".encode("ascii")


def _create_key(path: Path) -> None:
    """Put a new key at ``path`` whole, unless another process has put one there."""
    private_folder(path.parent)
    pem = _pem(bytes(SigningKey.generate()))
    fd, written = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mode 0600
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
            handle.flush()
            os.fsync(handle.fileno())
        # A link appears with the whole key in it, and fails if the path exists: a reader
        # never sees half a key, and two processes never sign with different ones.
        with contextlib.suppress(FileExistsError):
            os.link(written, path)
    finally:
        os.unlink(written)
