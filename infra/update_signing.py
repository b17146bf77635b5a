"""Updates on ANTQ_UPDATES that only the projection can make: unguessable message ids and Ed25519 signatures.

Anyone who may publish on ``antq.updates.>`` (everyone, on the open stack) could otherwise store a message with
the ``Nats-Msg-Id`` the projection is about to use, and the stream's deduplication would then drop the real
update. So the projection holds one key (an nkey seed, as the sealer's: ``infra.seal_keys``) and derives from it

- the message id: ``<natural id>:<tag>``, the natural id being ``ward:year:seq:copy`` and the tag the first 16
  bytes, in lowercase hex, of HMAC-SHA256(id secret, natural id); the id secret is
  HMAC-SHA256(key = the 32 raw bytes of the seed, message = ``antq update msg id v1``). The same update always
  gets the same id (a re-publish after a crash is still a duplicate), nobody without the seed can compute it;
- a signature: header ``Antq-Update-Signature`` holds the standard base64 (RFC 4648 section 4, padded) of the
  64-byte Ed25519 signature of the message's payload, byte for byte as stored, and ``Antq-Update-Key`` the
  signing key's public nkey (``N…``), for information only: a subscriber checks against the key it pinned.

A downstream service calls ``verify_update(msg.data, msg.headers, pinned_public_key, subject=msg.subject)``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import nkeys

from events.subjects import UPDATES_PREFIX
from infra.seal_keys import (
    SealKeyError,
    Signer,
    generate_seed,
    load_or_create,
    signer_from_seed,
    verify_signature,
)

log = logging.getLogger(__name__)

MSG_ID = "Nats-Msg-Id"
SIGNATURE = "Antq-Update-Signature"
"""Standard base64 (padded) of the Ed25519 signature of the payload bytes."""
SIGNING_KEY = "Antq-Update-Key"
"""The public nkey that signed (information: trust only a key you pinned)."""
KEY_FILE_ENV = "ANTQ_UPDATE_KEY_FILE"
KEY_FILE_NAME = "updates.nk"
"""The seed file's name in a data directory, when ANTQ_UPDATE_KEY_FILE is not set."""
_ID_SECRET_CONTEXT = b"antq update msg id v1"
TAG_BYTES = 16


class UpdateKeyError(SealKeyError):
    """A seed file that cannot be used to sign updates."""


@dataclass(frozen=True)
class UpdateKey:
    """The projection's key: signs update payloads and tags their message ids."""

    signer: Signer
    _id_secret: bytes = field(repr=False)

    @property
    def public_key(self) -> str:
        return self.signer.public_key

    def msg_id(self, natural_id: str) -> str:
        """``natural_id:tag``: deterministic for this key, unguessable without it."""
        tag = hmac.new(self._id_secret, natural_id.encode(), hashlib.sha256).digest()[:TAG_BYTES]
        return f"{natural_id}:{tag.hex()}"

    def sign(self, payload: bytes) -> str:
        """The ``Antq-Update-Signature`` value of ``payload``."""
        return base64.b64encode(self.signer.sign(payload)).decode("ascii")

    def headers(self, natural_id: str, payload: bytes) -> dict[str, str]:
        """Message id, signature and key of one update (Ed25519 is deterministic: a re-publish is identical)."""
        return {MSG_ID: self.msg_id(natural_id), SIGNATURE: self.sign(payload), SIGNING_KEY: self.public_key}


def update_key_from_seed(seed: bytes) -> UpdateKey:
    signer = signer_from_seed(seed)
    try:
        _, raw = nkeys.decode_seed(bytearray(seed.strip()))
    except (
        nkeys.NkeysError,
        ValueError,
        binascii.Error,
    ) as exc:  # signer_from_seed accepted it: not expected
        raise UpdateKeyError(f"not an nkey seed: {exc!r}") from exc
    secret = hmac.new(bytes(raw), _ID_SECRET_CONTEXT, hashlib.sha256).digest()
    return UpdateKey(signer, secret)


def load_or_create_update_key(path: Path) -> UpdateKey:
    """The key in seed file ``path`` (mode 0600 required), creating the file (0600, never overwriting) if missing.

    Keep the file: a new key means new message ids (an update left in the outbox by a crash is then published a
    second time rather than recognised) and a new public key for every subscriber to pin."""
    signer, created = load_or_create(path)  # checks the file's mode
    key = update_key_from_seed(path.read_bytes())
    if created:
        log.warning("generated a new update signing key in %s; public key %s", path, signer.public_key)
    else:
        log.info("signing updates with the key in %s; public key %s", path, signer.public_key)
    return key


def ephemeral_update_key() -> UpdateKey:
    """A key for this process only (nothing configured): subscribers cannot pin it, and a restart changes the
    message ids, so an update a crash left unpublished is stored twice instead of deduplicated."""
    key = update_key_from_seed(generate_seed())
    log.warning(
        "no update signing key configured (%s, or a data directory): signing updates with an ephemeral key, "
        "public key %s; subscribers cannot pin it and it changes on every start",
        KEY_FILE_ENV,
        key.public_key,
    )
    return key


def resolve_update_key(key_file: Path | None, data_dir: Path | None) -> UpdateKey:
    """``key_file`` (ANTQ_UPDATE_KEY_FILE), else ``data_dir/updates.nk``, each created on first use; else an
    ephemeral key, with a warning."""
    if key_file is not None:
        return load_or_create_update_key(key_file)
    if data_dir is not None:
        return load_or_create_update_key(data_dir / KEY_FILE_NAME)
    return ephemeral_update_key()


class _Place(msgspec.Struct, frozen=True):
    province: str
    ward: str
    year: int


_place = msgspec.json.Decoder(_Place)


def _on_its_subject(payload: bytes, subject: str) -> bool:
    tokens = subject.split(".")
    try:
        body = _place.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return False
    return tokens == [*UPDATES_PREFIX.split("."), body.province, body.ward, str(body.year)]


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    return next((v for k, v in headers.items() if str(k).lower() == lowered), None)


def verify_update(
    payload: bytes, headers: Mapping[str, str] | None, public_key: str, *, subject: str | None = None
) -> bool:
    """True when ``headers`` carry a valid Ed25519 signature of exactly ``payload`` by ``public_key`` (an nkey
    public key, ``N…``, pinned by the subscriber). A missing, malformed or wrong signature is False.

    With ``subject`` (the message's, ``antq.updates.stats.<province>.<ward>.<year>``) the payload's province,
    ward and year must also be the subject's: a real update copied onto another subject does not verify."""
    if subject is not None and not _on_its_subject(payload, subject):
        return False
    if not headers:
        return False
    encoded = _header(headers, SIGNATURE)
    if encoded is None:
        return False
    try:
        signature = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return False
    if len(signature) != 64:
        return False
    return verify_signature(public_key, payload, signature)
