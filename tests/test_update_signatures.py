"""Updates only the projection can make: a forged message id no longer suppresses a real update, and a
subscriber tells the projection's updates from forgeries by their signature (``infra/update_signing.py``)."""

from __future__ import annotations

import base64
import logging
from pathlib import Path

import asyncpg
import msgspec
import nkeys
import pytest

from events.localities import Localities
from infra.seal_keys import decode_public_key
from infra.streams import UPDATES
from infra.update_signing import (
    MSG_ID,
    SIGNATURE,
    SIGNING_KEY,
    ephemeral_update_key,
    load_or_create_update_key,
    resolve_update_key,
    update_key_from_seed,
    verify_update,
)
from projections import store
from projections.publisher import UpdatePublisher
from projections.runner import RunnerConfig
from tests import factories as f
from tests.conftest import Stack
from tests.servers import create_streams, keeping_update_history, wait_for
from tests.test_projection import as_event, publish_events, run_until

pytestmark = pytest.mark.servers

SUBJECT = "antq.updates.stats.04.01447.2018"

# The worked example of the README (NOTES-feed.md): a seed, its public key, a payload and its signature.
EXAMPLE_SEED = b"SNAAAAICAMCAKBQHBAEQUCYMBUHA6EARCIJRIFIWC4MBSGQ3DQOR4H2D5U"
EXAMPLE_PUBLIC_KEY = "NAB2CB576PHBBPQ5ODORRZ2LYCMWPZGWGCN2KDK7DXOIMZASKUY3RSWB"
EXAMPLE_RAW_PUBLIC_KEY = "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8"
EXAMPLE_PAYLOAD = (
    b'{"ward":"01447","year":2018,"period":"calendar","metrics":{"sessions_held":6},"as_of_seq":6,'
    b'"stale":false,"fold_version":1,"province":"04"}'
)
EXAMPLE_SIGNATURE = "5qAWDGYuhxaEclJj7A+I1/dd2m+gE5AcqpxT4k03oV4Tbxv5q8nBkYlwK3U7NtWG0sOsBEOBuw7cjuLxpfgADA=="
EXAMPLE_MSG_ID = "01447:2018:6:1:3ab7cb8644e32d32628965da16c95c0e"


def test_the_documented_example_verifies() -> None:
    key = update_key_from_seed(EXAMPLE_SEED)
    assert key.public_key == EXAMPLE_PUBLIC_KEY
    assert decode_public_key(EXAMPLE_PUBLIC_KEY).hex() == EXAMPLE_RAW_PUBLIC_KEY
    assert key.headers("01447:2018:6:1", EXAMPLE_PAYLOAD) == {
        MSG_ID: EXAMPLE_MSG_ID,
        SIGNATURE: EXAMPLE_SIGNATURE,
        SIGNING_KEY: EXAMPLE_PUBLIC_KEY,
    }
    assert verify_update(EXAMPLE_PAYLOAD, {SIGNATURE: EXAMPLE_SIGNATURE}, EXAMPLE_PUBLIC_KEY)
    # header names are case-insensitive, as in HTTP
    assert verify_update(EXAMPLE_PAYLOAD, {SIGNATURE.lower(): EXAMPLE_SIGNATURE}, EXAMPLE_PUBLIC_KEY)


def test_a_forgery_does_not_verify() -> None:
    key = update_key_from_seed(EXAMPLE_SEED)
    other = ephemeral_update_key()
    good = {SIGNATURE: EXAMPLE_SIGNATURE}
    raw = base64.b64decode(EXAMPLE_SIGNATURE)
    flipped = base64.b64encode(bytes([raw[0] ^ 1]) + raw[1:]).decode()
    forged_payload = EXAMPLE_PAYLOAD.replace(b'"sessions_held":6', b'"sessions_held":7')
    assert not verify_update(EXAMPLE_PAYLOAD, None, key.public_key)  # no headers
    assert not verify_update(EXAMPLE_PAYLOAD, {MSG_ID: EXAMPLE_MSG_ID}, key.public_key)  # no signature
    assert not verify_update(EXAMPLE_PAYLOAD, {SIGNATURE: flipped}, key.public_key)  # wrong signature
    assert not verify_update(forged_payload, good, key.public_key)  # another payload
    assert not verify_update(EXAMPLE_PAYLOAD + b" ", good, key.public_key)  # the exact bytes are signed
    assert not verify_update(EXAMPLE_PAYLOAD, good, other.public_key)  # not the pinned key
    # signed by another key, which even names itself in the headers: still not the pinned key
    assert not verify_update(
        EXAMPLE_PAYLOAD, other.headers("01447:2018:6:1", EXAMPLE_PAYLOAD), key.public_key
    )
    for junk in ("", "not base64!", base64.b64encode(b"short").decode(), EXAMPLE_SIGNATURE[:-4]):
        assert not verify_update(EXAMPLE_PAYLOAD, {SIGNATURE: junk}, key.public_key)
    assert not verify_update(EXAMPLE_PAYLOAD, good, "not-a-public-key")
    # on its own subject only: a real update copied onto another ward's (or year's) subject does not verify
    assert verify_update(EXAMPLE_PAYLOAD, good, key.public_key, subject=SUBJECT)
    for elsewhere in (
        "antq.updates.stats.04.01456.2018",
        "antq.updates.stats.04.01447.2019",
        "antq.updates.stats.24.01447.2018",
        "antq.updates.stats.04.01447",
        "antq.x",
    ):
        assert not verify_update(EXAMPLE_PAYLOAD, good, key.public_key, subject=elsewhere)


def test_message_ids_are_deterministic_per_key_and_unguessable_without_it(tmp_path: Path) -> None:
    path = tmp_path / "updates.nk"
    first = load_or_create_update_key(path)
    assert path.stat().st_mode & 0o777 == 0o600
    again = load_or_create_update_key(path)  # a restart: the same key, the same ids
    assert again.public_key == first.public_key
    assert again.msg_id("01447:2018:6:1") == first.msg_id("01447:2018:6:1")
    natural = "01447:2018:6:1"
    assert first.msg_id(natural).startswith(natural + ":") and first.msg_id(natural) != natural
    assert ephemeral_update_key().msg_id(natural) != first.msg_id(natural)
    assert first.msg_id("01447:2018:7:1") != first.msg_id(natural)


def test_where_the_key_comes_from(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    named = tmp_path / "keys" / "projector-updates.nk"
    assert (
        resolve_update_key(named, tmp_path / "data").public_key == load_or_create_update_key(named).public_key
    )
    assert not (tmp_path / "data" / "updates.nk").exists()
    in_data_dir = resolve_update_key(None, tmp_path / "data")
    assert (tmp_path / "data" / "updates.nk").exists()
    assert resolve_update_key(None, tmp_path / "data").public_key == in_data_dir.public_key
    with caplog.at_level(logging.WARNING, logger="infra.update_signing"):
        resolve_update_key(None, None)
    assert "ephemeral" in caplog.text
    (tmp_path / "loose.nk").write_bytes(bytes(nkeys.encode_seed(bytes(32), nkeys.PREFIX_BYTE_SERVER)))
    (tmp_path / "loose.nk").chmod(0o644)
    with pytest.raises(Exception, match="0600"):
        load_or_create_update_key(tmp_path / "loose.nk")


async def outbox_rows(database_url: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM stats_outbox"))
    finally:
        await conn.close()


@pytest.mark.timeout(60)
async def test_a_forged_message_with_the_natural_id_does_not_suppress_the_real_update(
    stack: Stack, localities: Localities, tmp_path: Path
) -> None:
    """The defect: anyone on the open stack stores a message with the id the projection will use
    (``ward:year:seq:copy``) first, and ANTQ_UPDATES' dedup drops the real update."""
    await create_streams(stack.js, keeping_update_history(stack.limits))  # the forgery kept beside the update
    last = await publish_events(stack.nc, localities, [as_event(f.session(attendance=5)) for _ in range(3)])
    forged = msgspec.json.encode({"ward": "01447", "year": 2018, "metrics": {"sessions_held": 999}})
    ack = await stack.js.publish(SUBJECT, forged, headers={"Nats-Msg-Id": f"01447:2018:{last}:1"})
    assert not ack.duplicate
    key = load_or_create_update_key(tmp_path / "updates.nk")

    config = RunnerConfig(database_url=stack.database_url, localities=localities, update_key=key)
    await run_until(stack.nc, config, last)

    async def published() -> bool:
        return await outbox_rows(stack.database_url) == 0

    await wait_for(published, what="the outbox to drain")
    msg = await stack.js.get_last_msg(UPDATES, SUBJECT)
    body = msgspec.json.decode(msg.data or b"")
    assert body["metrics"]["sessions_held"] == 3 and body["as_of_seq"] == last  # the real one was stored
    assert verify_update(msg.data or b"", msg.headers, key.public_key)
    assert msg.headers is not None and msg.headers[MSG_ID] == key.msg_id(f"01447:2018:{last}:1")
    # and a subscriber reading the subject tells the forgery from the real update
    sub = await stack.js.pull_subscribe(SUBJECT, stream=UPDATES)
    stored = await sub.fetch(10, timeout=2)
    assert [verify_update(m.data, m.headers, key.public_key, subject=m.subject) for m in stored] == [
        False,
        True,
    ]


@pytest.mark.timeout(60)
async def test_a_re_publish_of_the_same_update_is_still_a_duplicate_after_a_restart(
    stack: Stack, tmp_path: Path
) -> None:
    """The same outbox row published again by a later run (a crash between publish and delete), with the key
    loaded again from its file: the same signed message, recognised as a duplicate."""
    wards = {("01447", 2018): "04", ("01456", 2018): "04"}
    conn = await asyncpg.connect(stack.database_url)
    try:
        await store.open_checkpoint(conn, 1)
        await store.write_updates(conn, 1, 5, wards)
    finally:
        await conn.close()
    first = UpdatePublisher(stack.nc, stack.database_url, 1, key=load_or_create_update_key(tmp_path / "u.nk"))
    await first.start()
    await first.idle()
    await first.stop()
    assert first.published == 2
    assert (await stack.js.stream_info(UPDATES)).state.messages == 2
    stored = await stack.js.get_last_msg(UPDATES, SUBJECT)

    conn = await asyncpg.connect(stack.database_url)
    try:  # the same rows again, as a crash before their delete would have left them
        await store.write_updates(conn, 1, 5, wards)
    finally:
        await conn.close()
    key = load_or_create_update_key(tmp_path / "u.nk")
    second = UpdatePublisher(stack.nc, stack.database_url, 1, key=key)
    await second.start()
    await second.idle()
    await second.stop()
    assert second.published == 2 and await outbox_rows(stack.database_url) == 0
    assert (await stack.js.stream_info(UPDATES)).state.messages == 2  # both recognised as duplicates
    again = await stack.js.get_last_msg(UPDATES, SUBJECT)
    assert again.seq == stored.seq and verify_update(again.data or b"", again.headers, key.public_key)
