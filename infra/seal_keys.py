"""Ed25519 signing keys for seals, in the NATS ``nkeys`` encoding (seed ``SN…``, public key ``N…``).

The seed file holds one nkey seed and is created with mode 0600; the public key is what an auditor pins.
``nkeys`` can sign and derive the public key, but cannot verify with a public key alone, so
``verify_signature`` decodes the public key (prefix byte, 32 key bytes, CRC-16) and uses PyNaCl, which
``nkeys`` itself is built on.
"""

from __future__ import annotations

import base64
import binascii
import os
from dataclasses import dataclass
from pathlib import Path

import nacl.exceptions
import nacl.signing
import nkeys

from infra.errors import InfraError

SEED_FILE_MODE = 0o600
_PUBLIC_PREFIXES = frozenset(
    {
        nkeys.PREFIX_BYTE_SERVER,
        nkeys.PREFIX_BYTE_ACCOUNT,
        nkeys.PREFIX_BYTE_OPERATOR,
        nkeys.PREFIX_BYTE_USER,
        nkeys.PREFIX_BYTE_CLUSTER,
    }
)


class SealKeyError(InfraError):
    """A seed file or public key that cannot be used."""


@dataclass(frozen=True)
class Signer:
    """Signs with one Ed25519 key; ``public_key`` is the nkey-encoded public key (``N…``)."""

    _pair: nkeys.KeyPair
    public_key: str

    def sign(self, data: bytes) -> bytes:
        return bytes(self._pair.sign(data))


def generate_seed() -> bytes:
    """A fresh nkey seed (a server-role key: the sealer is a server-side service)."""
    return bytes(nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_SERVER))


def signer_from_seed(seed: bytes) -> Signer:
    try:
        pair = nkeys.from_seed(bytearray(seed.strip()))
        public = bytes(pair.public_key).decode("ascii")
    except (nkeys.NkeysError, ValueError, binascii.Error) as exc:
        raise SealKeyError(f"not an nkey seed: {exc!r}") from exc
    return Signer(pair, public)


def write_seed_file(path: Path) -> Signer:
    """Create ``path`` (mode 0600, never overwriting) holding a new seed; return its signer."""
    path.parent.mkdir(parents=True, exist_ok=True)
    seed = generate_seed()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, SEED_FILE_MODE)
    try:
        os.write(fd, seed + b"\n")
    finally:
        os.close(fd)
    return signer_from_seed(seed)


def load_seed_file(path: Path) -> Signer:
    """Load a seed file; refuse one that group or others can read."""
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise SealKeyError(f"{path} has mode {mode:o}: a seed file must be readable by its owner only (0600)")
    return signer_from_seed(path.read_bytes())


def load_or_create(path: Path) -> tuple[Signer, bool]:
    """The signer in ``path``, creating the file first if missing; the flag says whether it was created."""
    if path.exists():
        return load_seed_file(path), False
    return write_seed_file(path), True


def decode_public_key(public_key: str) -> bytes:
    """The 32 raw Ed25519 bytes of an nkey public key; raises SealKeyError if malformed."""
    text = public_key.strip()
    try:
        raw = base64.b32decode(text + "=" * (-len(text) % 8))
    except (binascii.Error, ValueError) as exc:
        raise SealKeyError(f"not base32: {public_key!r}") from exc
    if len(raw) != 35 or raw[0] not in _PUBLIC_PREFIXES:
        raise SealKeyError(f"not an nkey public key: {public_key!r}")
    body, crc = raw[:33], int.from_bytes(raw[33:], "little")
    if nkeys.crc16(bytearray(body)) != crc:
        raise SealKeyError(f"bad checksum in public key {public_key!r}")
    return raw[1:33]


def verify_signature(public_key: str, data: bytes, signature: bytes) -> bool:
    """True when ``signature`` is a valid Ed25519 signature of ``data`` by ``public_key``."""
    try:
        key = nacl.signing.VerifyKey(decode_public_key(public_key))
        key.verify(data, signature)
    except (SealKeyError, nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, ValueError):
        return False
    return True
