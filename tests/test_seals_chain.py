"""The seal byte layout, pinned by an independent re-implementation, and the signing keys (pure, no servers)."""

from __future__ import annotations

import datetime as dt
import hashlib
import struct
from pathlib import Path

import msgspec
import pytest

from infra.seal_keys import (
    SealKeyError,
    generate_seed,
    load_or_create,
    load_seed_file,
    signer_from_seed,
    verify_signature,
)
from services.sealer.chain import (
    GENESIS,
    Seal,
    decode_seal,
    encode_seal,
    make_seal,
    range_digests,
    recompute_digest,
    signature_valid,
)

EVENTS = [
    (1, 1_700_000_000_123_456_789, "antq.events.04.01447.session", b'{"a":1}'),
    (2, 1_700_000_000_223_456_789, "antq.events.04.01447.tip", b""),
    (3, 1_700_000_001_000_000_000, "antq.events.24.09999.pledge", "Lũng Tung".encode()),
]
CREATED = dt.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=dt.UTC)
SEALED = dt.datetime(2026, 1, 2, 4, 0, 0, 1, tzinfo=dt.UTC)


def micros(moment: dt.datetime) -> int:
    return (moment - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(microseconds=1)


def by_hand_range(events: list[tuple[int, int, str, bytes]], *, with_time: bool) -> str:
    h = hashlib.sha256(b"ANTQ-SEAL-RANGE/v1\x00" if with_time else b"ANTQ-SEAL-CONTENT/v1\x00")
    for seq, stamp, subject, data in events:
        s = subject.encode()
        h.update(struct.pack(">Q", seq))
        if with_time:
            h.update(struct.pack(">Q", stamp))
        h.update(struct.pack(">I", len(s)) + s + struct.pack(">I", len(data)) + data)
    return h.hexdigest()


def test_range_digests_follow_the_documented_layout() -> None:
    rng, content, count = range_digests(EVENTS)
    assert count == 3
    assert rng == by_hand_range(EVENTS, with_time=True)
    assert content == by_hand_range(EVENTS, with_time=False)
    moved = [(EVENTS[0][0], EVENTS[0][1] + 1, EVENTS[0][2], EVENTS[0][3]), *EVENTS[1:]]
    other_rng, other_content, _ = range_digests(moved)
    assert other_rng != rng and other_content == content  # a timestamp is in the range digest only
    # Length prefixes: moving a byte from subject to data is a different range.
    shifted = [(1, EVENTS[0][1], "antq.events.04.01447.sessio", b'n{"a":1}'), *EVENTS[1:]]
    assert range_digests(shifted)[1] != content


def test_seal_digest_follows_the_documented_layout_and_signature_verifies() -> None:
    signer = signer_from_seed(generate_seed())
    rng, content, count = range_digests(EVENTS)
    seal = make_seal(
        number=1,
        stream="ANTQ_EVENTS",
        first_seq=1,
        last_seq=3,
        count=count,
        stream_created=CREATED,
        prev_digest=GENESIS,
        range_digest=rng,
        content_digest=content,
        sealed_at=SEALED,
        signer=signer,
    )
    stream, key = b"ANTQ_EVENTS", signer.public_key.encode()
    expected = hashlib.sha256(
        b"ANTQ-SEAL/v1\x00"
        + struct.pack(">Q", 1)
        + struct.pack(">I", len(stream))
        + stream
        + struct.pack(">QQQ", 1, 3, 3)
        + struct.pack(">q", micros(CREATED))
        + bytes(32)
        + bytes.fromhex(rng)
        + bytes.fromhex(content)
        + struct.pack(">q", micros(SEALED))
        + struct.pack(">I", len(key))
        + key
    ).hexdigest()
    assert seal.digest == expected == recompute_digest(seal)
    assert signature_valid(seal)
    again = decode_seal(encode_seal(seal))
    assert again == seal and recompute_digest(again) == seal.digest
    for change in ({"count": 2}, {"last_seq": 4}, {"sealed_at": SEALED + dt.timedelta(microseconds=1)}):
        assert recompute_digest(msgspec.structs.replace(seal, **change)) != seal.digest
    forged = msgspec.structs.replace(seal, signature=signer_from_seed(generate_seed()).sign(bytes(32)).hex())
    assert not signature_valid(forged)
    assert not signature_valid(
        msgspec.structs.replace(seal, signer=signer_from_seed(generate_seed()).public_key)
    )


def test_seed_file_is_private_and_reloads(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "sealer.nk"
    signer, created = load_or_create(path)
    assert created and path.stat().st_mode & 0o777 == 0o600
    assert signer.public_key.startswith("N")
    again, created_again = load_or_create(path)
    assert not created_again and again.public_key == signer.public_key
    sig = signer.sign(b"digest")
    assert verify_signature(signer.public_key, b"digest", sig)
    assert not verify_signature(signer.public_key, b"digesT", sig)
    path.chmod(0o644)
    with pytest.raises(SealKeyError, match="0600"):
        load_seed_file(path)


def test_malformed_public_key_never_verifies() -> None:
    signer = signer_from_seed(generate_seed())
    sig = signer.sign(b"x")
    broken = signer.public_key[:-2] + ("A" if signer.public_key[-2] != "A" else "B") + signer.public_key[-1]
    assert not verify_signature(broken, b"x", sig)
    assert not verify_signature("not a key", b"x", sig)


def test_seal_struct_is_frozen() -> None:
    assert Seal.__struct_config__.frozen
