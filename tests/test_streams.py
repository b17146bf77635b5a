"""The event log's stream definitions, as the real nats-server holds and enforces them."""

from __future__ import annotations

import dataclasses

import msgspec
import pytest
from nats.js.api import (
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import APIError, NotFoundError

from events.subjects import UPDATES_PREFIX, updates_subject
from infra.streams import (
    EVENTS,
    REJECTED,
    REJECTED_RAW_LIMIT,
    UPDATES,
    StreamLimits,
    ensure_streams,
    events_config,
)
from tests.conftest import Stack

pytestmark = pytest.mark.servers

SUBJECT = "antq.events.04.01447.session"


async def publish_some(stack: Stack, n: int = 3) -> None:
    for i in range(n):
        await stack.js.publish(SUBJECT, b"{}", headers={"Nats-Msg-Id": f"m{i}"})


async def config_of(stack: Stack, name: str) -> StreamConfig:
    return (await stack.js.stream_info(name)).config


async def messages(stack: Stack, name: str = EVENTS) -> int:
    return int((await stack.js.stream_info(name)).state.messages)


def test_default_dedup_window_is_at_least_a_day() -> None:
    assert StreamLimits().dedup_window_s >= 24 * 3600


async def test_events_stream_config_as_the_server_holds_it(stack: Stack) -> None:
    cfg = await config_of(stack, EVENTS)
    assert cfg.subjects == ["antq.events.>"]
    assert cfg.storage == StorageType.FILE
    assert cfg.retention == RetentionPolicy.LIMITS
    assert cfg.max_age == 0  # no expiry
    assert cfg.max_msgs == -1 and cfg.max_bytes == -1
    assert cfg.max_msgs_per_subject in (None, -1, 0)
    assert cfg.discard == DiscardPolicy.NEW
    assert cfg.deny_delete is True and cfg.deny_purge is True
    assert not cfg.allow_rollup_hdrs
    assert cfg.duplicate_window == pytest.approx(stack.limits.dedup_window_s)


async def test_rejected_stream_config(stack: Stack) -> None:
    cfg = await config_of(stack, REJECTED)
    assert cfg.storage == StorageType.FILE
    assert cfg.max_age == 0 and cfg.discard == DiscardPolicy.NEW
    assert cfg.deny_delete is True and cfg.deny_purge is True
    assert cfg.max_bytes == stack.limits.rejected_max_bytes > 0  # explicit limits
    assert cfg.max_msg_size is not None and cfg.max_msg_size > 4 * REJECTED_RAW_LIMIT // 3  # base64 raw fits


@pytest.mark.parametrize("stream", [EVENTS, REJECTED])
async def test_delete_and_purge_are_refused_by_the_server(stack: Stack, stream: str) -> None:
    subject = SUBJECT if stream == EVENTS else "antq.rejected.someone"
    for _ in range(3):
        await stack.js.publish(subject, b"{}")
    with pytest.raises(APIError) as deleted:
        await stack.js.delete_msg(stream, 2)
    assert deleted.value.err_code == 10057  # message delete not permitted
    with pytest.raises(APIError) as purged:
        await stack.js.purge_stream(stream)
    assert purged.value.err_code == 10110  # stream purge not permitted
    with pytest.raises(APIError):
        await stack.js.purge_stream(stream, subject=subject)
    with pytest.raises(APIError):
        await stack.js.purge_stream(stream, keep=1)
    assert await messages(stack, stream) == 3
    assert (await stack.js.get_msg(stream, 2)).seq == 2


async def test_rollup_headers_are_refused(stack: Stack) -> None:
    await publish_some(stack)
    for rollup in ("sub", "all"):
        reply = await stack.nc.request(SUBJECT, b"{}", headers={"Nats-Rollup": rollup}, timeout=5)
        ack = msgspec.json.decode(reply.data)
        assert ack["error"]["err_code"] == 10111, ack  # rollup not permitted
    assert await messages(stack) == 3


@pytest.mark.parametrize(("deny_delete", "deny_purge"), [(False, True), (True, False), (False, False)])
async def test_the_protections_cannot_be_switched_off(
    stack: Stack, deny_delete: bool, deny_purge: bool
) -> None:
    weakened = dataclasses.replace(
        events_config(stack.limits), deny_delete=deny_delete, deny_purge=deny_purge
    )
    with pytest.raises(APIError):
        await stack.js.update_stream(weakened)
    cfg = await config_of(stack, EVENTS)
    assert cfg.deny_delete is True and cfg.deny_purge is True


async def test_rollups_cannot_be_switched_on(stack: Stack) -> None:
    """A rollup is a purge: with deny_purge the server refuses to allow rollup headers."""
    await publish_some(stack)
    with pytest.raises(APIError):
        await stack.js.update_stream(dataclasses.replace(events_config(stack.limits), allow_rollup_hdrs=True))
    assert not (await config_of(stack, EVENTS)).allow_rollup_hdrs
    reply = await stack.nc.request(SUBJECT, b"{}", headers={"Nats-Rollup": "all"}, timeout=5)
    assert msgspec.json.decode(reply.data)["error"]["err_code"] == 10111
    assert await messages(stack) == 3


async def test_ensure_streams_is_idempotent_and_the_window_configurable(stack: Stack) -> None:
    await publish_some(stack)
    before = await config_of(stack, EVENTS)
    await ensure_streams(stack.js, stack.limits)
    assert await config_of(stack, EVENTS) == before
    await ensure_streams(stack.js, StreamLimits(dedup_window_s=0.5))
    after = await config_of(stack, EVENTS)
    assert after.duplicate_window == pytest.approx(0.5)
    assert after.deny_delete and after.deny_purge and after.storage == StorageType.FILE
    assert await messages(stack) == 3  # updating the settings keeps every event


UPDATES_SUBJECT = updates_subject("04", "01447", 2018)


@pytest.mark.timeout(60)
async def test_updates_stream_keeps_per_subject_history_with_no_stream_wide_cap(stack: Stack) -> None:
    cfg = await config_of(stack, UPDATES)
    assert cfg.subjects == [f"{UPDATES_PREFIX}.>"]
    assert cfg.max_msgs_per_subject == stack.limits.updates_per_subject == 1
    # nothing stream-wide that could discard a subject's latest message
    assert cfg.max_bytes == -1 and cfg.max_msgs == -1 and cfg.max_age == 0
    assert cfg.discard == DiscardPolicy.OLD  # a ward-year's next update replaces its last
    # a re-published update is recognised as long as a resent event, at most an hour
    assert cfg.duplicate_window == pytest.approx(min(3600.0, stack.limits.dedup_window_s))


@pytest.mark.timeout(60)
async def test_ensure_streams_lifts_the_byte_cap_of_an_existing_updates_stream(stack: Stack) -> None:
    deployed = dataclasses.replace(
        await config_of(stack, UPDATES),
        max_bytes=4 * 1024**3,
        max_msgs_per_subject=100,
        duplicate_window=3600.0,
    )
    await stack.js.update_stream(deployed)  # the stream as earlier versions created it
    assert (await config_of(stack, UPDATES)).max_bytes == 4 * 1024**3
    for i in range(12):  # 12 updates of one ward-year, all kept at the former 100 per subject
        await stack.js.publish(UPDATES_SUBJECT, b'{"n": %d}' % i, headers={"Nats-Msg-Id": f"01447:2018:{i}"})
    await ensure_streams(stack.js, stack.limits)
    cfg = await config_of(stack, UPDATES)
    assert cfg.max_bytes == -1 and cfg.max_msgs_per_subject == 1
    assert cfg.duplicate_window == pytest.approx(min(3600.0, stack.limits.dedup_window_s))
    # the server takes the subject down to its latest update at once
    info = await stack.js.stream_info(UPDATES, subjects_filter=UPDATES_SUBJECT)
    assert info.state.subjects == {UPDATES_SUBJECT: 1}


@pytest.mark.timeout(60)
async def test_updates_stream_keeps_exactly_the_latest_message_of_a_subject(stack: Stack) -> None:
    kept_n = stack.limits.updates_per_subject
    other = updates_subject("04", "01273", 2018)
    first = await stack.js.publish(other, b'{"n": -1}', headers={"Nats-Msg-Id": "01273:2018:0"})
    acks = [
        await stack.js.publish(
            UPDATES_SUBJECT, f'{{"n": {i}}}'.encode(), headers={"Nats-Msg-Id": f"01447:2018:{i}"}
        )
        for i in range(kept_n + 2)
    ]
    assert not any(ack.duplicate for ack in acks)  # distinct msg ids: every one stored
    seqs = [ack.seq for ack in acks]
    assert seqs == list(range(first.seq + 1, first.seq + kept_n + 3))

    for gone in seqs[:2]:
        with pytest.raises(NotFoundError):
            await stack.js.get_msg(UPDATES, gone)  # the subject's older updates are gone
    kept = [await stack.js.get_msg(UPDATES, seq) for seq in seqs[2:]]
    assert [msg.subject for msg in kept] == [UPDATES_SUBJECT] * kept_n
    assert [msgspec.json.decode(msg.data or b"")["n"] for msg in kept] == list(range(2, kept_n + 2))
    info = await stack.js.stream_info(UPDATES, subjects_filter=f"{UPDATES_PREFIX}.>")
    assert info.state.subjects == {UPDATES_SUBJECT: kept_n, other: 1}  # the limit is per subject
    assert info.state.messages == kept_n + 1
    assert (await stack.js.get_msg(UPDATES, first.seq)).subject == other


@pytest.mark.timeout(60)
async def test_a_consumer_delivering_the_last_per_subject_reads_every_ward_year_s_current_update(
    stack: Stack,
) -> None:
    """What the contract tells a subscriber: deliver-last-per-subject gives the current figures of each ward-year."""
    other = updates_subject("04", "01273", 2018)
    for subject, count in ((UPDATES_SUBJECT, 3), (other, 2)):
        for i in range(count):
            await stack.js.publish(subject, b'{"n": %d}' % i, headers={"Nats-Msg-Id": f"{subject}:{i}"})
    sub = await stack.js.pull_subscribe(
        f"{UPDATES_PREFIX}.04.>", config=ConsumerConfig(deliver_policy=DeliverPolicy.LAST_PER_SUBJECT)
    )
    msgs = await sub.fetch(10, timeout=2)
    assert {m.subject: msgspec.json.decode(m.data)["n"] for m in msgs} == {UPDATES_SUBJECT: 2, other: 1}
    assert len(msgs) == 2
    await sub.unsubscribe()
