"""The seal format and its byte layout: pure, shared by the sealer and the verifier.

Integers are big-endian; ``str`` is a u32 byte length then UTF-8; ``bytes`` is a u32 length then the bytes;
``d32`` is a raw 32-byte SHA-256 digest; ``ts`` is an i64 count of microseconds since the Unix epoch (UTC).

range digest   = SHA-256( "ANTQ-SEAL-RANGE/v1\\0"
                          || for each stored event, in sequence order:
                             u64 stream sequence || u64 stream timestamp (ns) || str subject || bytes data )
content digest = SHA-256( "ANTQ-SEAL-CONTENT/v1\\0"
                          || for each stored event: u64 sequence || str subject || bytes data )
seal digest    = SHA-256( "ANTQ-SEAL/v1\\0" || u64 number || str stream || u64 first_seq || u64 last_seq
                          || u64 count || ts stream_created || d32 prev digest || d32 range digest
                          || d32 content digest || ts sealed_at || str signer public key )
signature      = Ed25519(seal digest as 32 raw bytes), by the signer's nkey.

A restore seal (``restored_from`` set) records that the stream was restored from a backup and so created anew:
it covers 1..L, L the last sequence sealed before, with the digests of the restored stream's events 1..L (the
sealer signs it only when they equal what the chain sealed), ``stream_created`` the new creation time and
``restored_from`` the old one. Its digest has its own tag and the old time at the end:

restore digest = SHA-256( "ANTQ-SEAL-RESTORED/v1\\0" || the fields of the seal digest, in its order
                          || ts restored_from )

``data`` is the payload exactly as JetStream stores it, never a re-encoding. The content digest leaves the
timestamps out so that a verifier can tell a stream re-recorded with the same facts (new timestamps) from one
whose facts were altered. The chain: seal 1's prev digest is 32 zero bytes; seal k's is seal k-1's digest.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable

import msgspec

from infra.seal_keys import Signer, verify_signature

RANGE_TAG = b"ANTQ-SEAL-RANGE/v1\x00"
CONTENT_TAG = b"ANTQ-SEAL-CONTENT/v1\x00"
SEAL_TAG = b"ANTQ-SEAL/v1\x00"
RESTORED_TAG = b"ANTQ-SEAL-RESTORED/v1\x00"
GENESIS = "0" * 64
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICRO = dt.timedelta(microseconds=1)


class Seal(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A range seal, or a restore seal when ``restored_from`` is set (see the module docstring)."""

    number: int
    stream: str
    first_seq: int
    last_seq: int
    count: int
    stream_created: dt.datetime
    prev_digest: str
    range_digest: str
    content_digest: str
    digest: str
    sealed_at: dt.datetime
    signer: str
    signature: str
    restored_from: dt.datetime | None = None  # a restore seal: the creation time of the stream sealed before

    @property
    def is_restore(self) -> bool:
        return self.restored_from is not None


def u64(value: int) -> bytes:
    return value.to_bytes(8, "big")


def lp(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


def micros(moment: dt.datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError("a seal time must be timezone-aware")
    return (moment - EPOCH) // _MICRO


def ts(moment: dt.datetime) -> bytes:
    return micros(moment).to_bytes(8, "big", signed=True)


def utc(moment: dt.datetime) -> dt.datetime:
    """In UTC (datetimes carry microseconds, as msgspec, PostgreSQL and the digest all do)."""
    return moment.astimezone(dt.UTC)


class RangeHasher:
    """Feed stored events of ``first_seq..`` in sequence order; read the digests, count and missing seqs."""

    MAX_MISSING_LISTED = 1000

    def __init__(self, first_seq: int = 1) -> None:
        self._range = hashlib.sha256(RANGE_TAG)
        self._content = hashlib.sha256(CONTENT_TAG)
        self.count = 0
        self.next_seq = first_seq
        self.missing_count = 0
        self.missing: list[int] = []

    def add(self, seq: int, timestamp_ns: int, subject: str, data: bytes) -> None:
        self._skip_to(seq)
        seq_b, subject_b, data_b = u64(seq), lp(subject.encode("utf-8")), lp(data)
        self._range.update(seq_b)
        self._range.update(u64(timestamp_ns))
        self._range.update(subject_b)
        self._range.update(data_b)
        self._content.update(seq_b)
        self._content.update(subject_b)
        self._content.update(data_b)
        self.count += 1
        self.next_seq = seq + 1

    def finish(self, last_seq: int) -> None:
        """Record the sequences after the last event fed, up to ``last_seq``, as missing."""
        self._skip_to(last_seq + 1)

    def _skip_to(self, seq: int) -> None:
        if seq > self.next_seq:
            gap = seq - self.next_seq
            room = self.MAX_MISSING_LISTED - len(self.missing)
            self.missing.extend(range(self.next_seq, self.next_seq + min(gap, max(room, 0))))
            self.missing_count += gap
            self.next_seq = seq

    @property
    def range_digest(self) -> str:
        return self._range.hexdigest()

    @property
    def content_digest(self) -> str:
        return self._content.hexdigest()


def range_digests(events: Iterable[tuple[int, int, str, bytes]]) -> tuple[str, str, int]:
    """(range digest, content digest, count) of (seq, timestamp ns, subject, data) tuples."""
    hasher = RangeHasher(first_seq=0)
    for seq, stamp, subject, data in events:
        hasher.add(seq, stamp, subject, data)
    return hasher.range_digest, hasher.content_digest, hasher.count


def seal_digest_bytes(seal: Seal) -> bytes:
    """The 32-byte seal digest of the seal's fields (see the module docstring for the layout); its own
    ``digest`` and ``signature`` do not enter it."""
    h = hashlib.sha256(SEAL_TAG if seal.restored_from is None else RESTORED_TAG)
    for part in (
        u64(seal.number),
        lp(seal.stream.encode("utf-8")),
        u64(seal.first_seq),
        u64(seal.last_seq),
        u64(seal.count),
        ts(seal.stream_created),
        bytes.fromhex(seal.prev_digest),
        bytes.fromhex(seal.range_digest),
        bytes.fromhex(seal.content_digest),
        ts(seal.sealed_at),
        lp(seal.signer.encode("ascii")),
    ):
        h.update(part)
    if seal.restored_from is not None:
        h.update(ts(seal.restored_from))
    return h.digest()


def recompute_digest(seal: Seal) -> str:
    """The seal digest recomputed from the seal's own fields ("" if a digest field is not 32 bytes of hex)."""
    try:
        if any(
            len(bytes.fromhex(d)) != 32 for d in (seal.prev_digest, seal.range_digest, seal.content_digest)
        ):
            return ""
        return seal_digest_bytes(seal).hex()
    except (ValueError, UnicodeEncodeError):
        return ""


def make_seal(
    *,
    number: int,
    stream: str,
    first_seq: int,
    last_seq: int,
    count: int,
    stream_created: dt.datetime,
    prev_digest: str,
    range_digest: str,
    content_digest: str,
    sealed_at: dt.datetime,
    signer: Signer,
    restored_from: dt.datetime | None = None,
) -> Seal:
    unsigned = Seal(
        number=number,
        stream=stream,
        first_seq=first_seq,
        last_seq=last_seq,
        count=count,
        stream_created=utc(stream_created),
        prev_digest=prev_digest,
        range_digest=range_digest,
        content_digest=content_digest,
        digest="",
        sealed_at=utc(sealed_at),
        signer=signer.public_key,
        signature="",
        restored_from=utc(restored_from) if restored_from is not None else None,
    )
    digest = seal_digest_bytes(unsigned)
    return msgspec.structs.replace(unsigned, digest=digest.hex(), signature=signer.sign(digest).hex())


def signature_valid(seal: Seal) -> bool:
    """The signature is the signer's over the seal's recorded digest (check the digest separately)."""
    try:
        digest, signature = bytes.fromhex(seal.digest), bytes.fromhex(seal.signature)
    except ValueError:
        return False
    return len(digest) == 32 and verify_signature(seal.signer, digest, signature)


def sound(seal: Seal) -> bool:
    """The seal's digest is that of its fields, and its signature its signer's over that digest."""
    return recompute_digest(seal) == seal.digest and signature_valid(seal)


def encode_seal(seal: Seal) -> bytes:
    return msgspec.json.encode(seal)


def decode_seal(data: bytes) -> Seal:
    """Raises msgspec.ValidationError / DecodeError on a malformed seal."""
    return msgspec.json.decode(data, type=Seal)
