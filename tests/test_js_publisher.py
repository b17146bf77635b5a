"""Pipelined JetStream publishes (``infra.js_publisher``) on a real server, with both ways acks come in: nats-py's
callbacks (any client) and the parser's raw route (``FastHeadersClient``). Each outcome a gateway acts on must
read the same: stored (with its sequence), a duplicate, a stale expected sequence, no stream (503)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import nats
import pytest
from nats.aio.client import Client
from nats.js.api import StorageType

from events.subjects import EVENTS_PREFIX, REJECTED_PREFIX
from infra.js_publisher import (
    EXPECTED_LAST_SUBJECT_SEQ,
    EXPECTED_STREAM,
    MSG_ID,
    JetStreamPublisher,
    Outcome,
    Pending,
    _status_of,
    header_block,
)
from infra.nats_client import FastHeadersClient, connect
from infra.streams import EVENTS, REJECTED
from services.gateway.publisher import IntakePublisher
from tests.conftest import Stack
from tests.servers import settle, wait_for

pytestmark = [pytest.mark.servers, pytest.mark.timeout(60)]


def test_status_lines_are_read_from_raw_header_blocks() -> None:
    assert _status_of(None) is None
    assert _status_of(b"NATS/1.0\r\nNats-Msg-Id: a\r\n\r\n") is None
    assert _status_of(b"NATS/1.0 503\r\n\r\n") == "503"
    assert _status_of(b"NATS/1.0 408 Request Timeout\r\n\r\n") == "408"


@pytest.mark.parametrize("client", ["nats-py", "raw routes"])
async def test_every_outcome_reads_the_same_on_both_ways_in(stack: Stack, client: str) -> None:
    nc: Client = stack.nc if client == "nats-py" else await connect(stack.servers.nats_url)
    assert isinstance(nc, FastHeadersClient) == (client == "raw routes")
    stream = f"PUBS_{client.replace(' ', '_').replace('-', '_').upper()}"
    await stack.js.add_stream(name=stream, subjects=[f"{stream.lower()}.>"], duplicate_window=60)
    publisher = JetStreamPublisher(nc, ack_timeout=10)
    try:
        subject = f"{stream.lower()}.a"
        futures = [
            await publisher.publish(subject, b"1", {MSG_ID: "one"}),
            await publisher.publish(subject, b"1", {MSG_ID: "one"}),  # the same id again: a duplicate
            await publisher.publish(subject, b"2", {MSG_ID: "two", EXPECTED_LAST_SUBJECT_SEQ: "7"}),  # stale
            await publisher.publish(subject, b"3", {MSG_ID: "three", EXPECTED_LAST_SUBJECT_SEQ: "1"}),
            await publisher.publish("no.stream.here", b"4", {MSG_ID: "four"}),
        ]
        outcomes = await publisher.settle(futures)
    finally:
        await publisher.stop()
        await stack.js.delete_stream(stream)
        if nc is not stack.nc:
            await nc.close()
    assert outcomes[:4] == [
        Outcome(seq=1),
        Outcome(seq=1, duplicate=True),
        Outcome(wrong_last_seq=True),
        Outcome(seq=2),
    ]
    assert outcomes[4].failure is not None and "no stream answers" in outcomes[4].failure


# --- header blocks -------------------------------------------------------------------------------------------


def test_header_block_is_the_protocol_block() -> None:
    assert header_block({}) == b"NATS/1.0\r\n\r\n"
    assert header_block(
        {MSG_ID: "id-1", "X-Padded": "  a value  ", "X-Empty": "", "X-Office": "Trà Lĩnh"}
    ) == (
        b"NATS/1.0\r\nNats-Msg-Id: id-1\r\nX-Padded: a value\r\nX-Empty: \r\n"
        + "X-Office: Trà Lĩnh\r\n".encode()
        + b"\r\n"
    )


@pytest.mark.parametrize(
    "value", ["a\r\nNats-Msg-Id: forged", "a\nb", "a\rb", "\r\n", "a\r\n\r\nPUB x 1\r\n"]
)
def test_header_block_refuses_a_line_break_in_a_value(value: str) -> None:
    with pytest.raises(ValueError, match="cannot be sent"):
        header_block({MSG_ID: "id-1", "X-Value": value})


@pytest.mark.parametrize("name", ["X Name", "X:Name", "", " X", "X\r\nY", "Tên", "X/Y"])
def test_header_block_refuses_a_name_that_is_not_a_token(name: str) -> None:
    with pytest.raises(ValueError, match="cannot be sent"):
        header_block({name: "v"})


class _BlockCapture(IntakePublisher):
    """Keeps the blocks ``publish_event`` builds instead of sending them."""

    def __init__(self) -> None:
        super().__init__(Client())
        self.blocks: list[bytes] = []

    async def publish_block(self, subject: str, data: bytes, block: bytes) -> Pending:
        self.blocks.append(block)
        return Pending(b"0")


async def test_publish_event_builds_the_block_header_block_would() -> None:
    capture = _BlockCapture()
    event_id = str(uuid.uuid4())
    await capture.publish_event("antq.events.a", b"{}", event_id, None)
    await capture.publish_event("antq.events.a", b"{}", event_id, 0)
    await capture.publish_event("antq.events.a", b"{}", event_id, 1234567890123)
    assert capture.blocks == [
        header_block({EXPECTED_STREAM: EVENTS, MSG_ID: event_id}),
        header_block({EXPECTED_STREAM: EVENTS, MSG_ID: event_id, EXPECTED_LAST_SUBJECT_SEQ: "0"}),
        header_block({EXPECTED_STREAM: EVENTS, MSG_ID: event_id, EXPECTED_LAST_SUBJECT_SEQ: "1234567890123"}),
    ]


# --- on the server: both client kinds ------------------------------------------------------------------------

KINDS = ["nats-py", "frames"]
"""A plain nats-py client (its own ``publish``), and ``infra.nats_client.connect``'s client (HPUB frames)."""

LATE = Outcome(failure="the event log did not acknowledge in time")


@contextlib.asynccontextmanager
async def connected(kind: str, url: str) -> AsyncIterator[Client]:
    nc: Client = await nats.connect(url) if kind == "nats-py" else await connect(url)
    assert isinstance(nc, FastHeadersClient) == (kind == "frames")
    try:
        yield nc
    finally:
        if not nc.is_closed:
            await nc.close()


async def stored_raw(nc: Client, stream: str, seq: int) -> tuple[str, bytes, bytes]:
    """A stored message as the server keeps it: subject, header block (bytes), payload."""
    reply = await nc.request(f"$JS.API.STREAM.MSG.GET.{stream}", json.dumps({"seq": seq}).encode(), timeout=5)
    message = json.loads(reply.data)["message"]
    return (
        message["subject"],
        base64.b64decode(message.get("hdrs", "")),
        base64.b64decode(message.get("data", "")),
    )


SAME_HEADERS = {
    MSG_ID: "same-1",
    EXPECTED_LAST_SUBJECT_SEQ: "0",
    "X-Office": "  Công an xã Trà Lĩnh  ",
    "X-Colon": "a: b",
    "X-Empty": "",
}
SAME_DATA = b"payload\r\nPUB x 1\r\n\x00\xff" + bytes(range(256)) * 100


async def stored_through(
    stack: Stack, kind: str
) -> tuple[list[Outcome], list[tuple[str, bytes, bytes]], list[Any]]:
    """The same publishes through one client kind into a new stream SAME: outcomes, and the stored messages (raw
    and as ``js.get_msg`` reads them)."""
    await stack.js.add_stream(
        name="SAME", subjects=["same.>"], storage=StorageType.MEMORY, duplicate_window=60
    )
    try:
        async with connected(kind, stack.servers.nats_url) as nc:
            publisher = JetStreamPublisher(nc, ack_timeout=10)
            try:
                pendings = [
                    await publisher.publish("same.a", SAME_DATA, SAME_HEADERS),
                    await publisher.publish(
                        "same.a", b"stale", {MSG_ID: "same-2", EXPECTED_LAST_SUBJECT_SEQ: "0"}
                    ),
                    await publisher.publish(
                        "same.a", b"", {MSG_ID: "same-3", EXPECTED_LAST_SUBJECT_SEQ: "1"}
                    ),
                    await publisher.publish("same.c", b"c", {MSG_ID: "same-4"}),
                    await publisher.publish("same.c", b"c", {MSG_ID: "same-4"}),  # the same id: a duplicate
                    await publisher.publish(
                        "same.b", b"stale", {MSG_ID: "same-5", EXPECTED_LAST_SUBJECT_SEQ: "2"}
                    ),
                ]
                outcomes = await publisher.settle(pendings)
            finally:
                await publisher.stop()
        info = await stack.js.stream_info("SAME")
        assert info.state.messages == 3
        raw = [await stored_raw(stack.nc, "SAME", seq) for seq in (1, 2, 3)]
        read = [await stack.js.get_msg("SAME", seq) for seq in (1, 2, 3)]
    finally:
        await stack.js.delete_stream("SAME")
    return outcomes, raw, read


async def test_frames_and_nats_py_store_the_same_bytes(stack: Stack) -> None:
    outcomes_py, raw_py, read_py = await stored_through(stack, "nats-py")
    outcomes_frames, raw_frames, read_frames = await stored_through(stack, "frames")
    expected = [
        Outcome(seq=1),
        Outcome(wrong_last_seq=True),
        Outcome(seq=2),
        Outcome(seq=3),
        Outcome(seq=3, duplicate=True),
        Outcome(wrong_last_seq=True),
    ]
    assert outcomes_py == expected
    assert outcomes_frames == expected
    assert raw_frames == raw_py
    assert raw_frames[0] == ("same.a", header_block(SAME_HEADERS), SAME_DATA)
    assert raw_frames[1] == ("same.a", header_block({MSG_ID: "same-3", EXPECTED_LAST_SUBJECT_SEQ: "1"}), b"")
    assert raw_frames[2] == ("same.c", header_block({MSG_ID: "same-4"}), b"c")
    for by_frames, by_py in zip(read_frames, read_py, strict=True):
        assert (by_frames.subject, by_frames.data, by_frames.headers) == (
            by_py.subject,
            by_py.data,
            by_py.headers,
        )
    assert read_frames[0].data == SAME_DATA
    expected_headers = {
        MSG_ID: "same-1",
        EXPECTED_LAST_SUBJECT_SEQ: "0",
        "X-Office": "Công an xã Trà Lĩnh",
        "X-Colon": "a: b",
        "X-Empty": "",
    }
    assert FastHeadersClient._parse_header_lines(raw_frames[0][1][len(b"NATS/1.0\r\n") :]) == expected_headers
    # nats-py's get_msg reads a non-ASCII value through the email module (not as UTF-8): compared raw above
    assert {k: v for k, v in read_frames[0].headers.items() if k != "X-Office"} == {
        k: v for k, v in expected_headers.items() if k != "X-Office"
    }
    assert read_frames[1].headers == {MSG_ID: "same-3", EXPECTED_LAST_SUBJECT_SEQ: "1"}


@pytest.mark.parametrize("kind", KINDS)
async def test_publish_event_headers_and_expected_sequence(stack: Stack, kind: str) -> None:
    a, b = f"{EVENTS_PREFIX}.t.{kind}.a", f"{EVENTS_PREFIX}.t.{kind}.b"
    ids = [str(uuid.uuid4()) for _ in range(7)]
    async with connected(kind, stack.servers.nats_url) as nc:
        publisher = IntakePublisher(nc, ack_timeout=10)
        try:
            pendings = [
                await publisher.publish_event(a, b"1", ids[0], None),
                await publisher.publish_event(a, b"2", ids[1], 1),
                await publisher.publish_event(a, b"3", ids[2], 1),  # stale: a's last is 2
                await publisher.publish_event(b, b"4", ids[3], 0),  # b holds nothing yet
                await publisher.publish_event(b, b"5", ids[4], 0),  # stale: b holds seq 3
                await publisher.publish_event(a, b"1", ids[0], None),  # the same event id: a duplicate
                await publisher.publish_event(a, b"6", ids[5], 2),
                # a subject of another stream: Nats-Expected-Stream refuses it there
                await publisher.publish_event(f"{REJECTED_PREFIX}.x", b"7", ids[6], None),
            ]
            outcomes = await publisher.settle(pendings)
        finally:
            await publisher.stop()
    assert outcomes[:7] == [
        Outcome(seq=1),
        Outcome(seq=2),
        Outcome(wrong_last_seq=True),
        Outcome(seq=3),
        Outcome(wrong_last_seq=True),
        Outcome(seq=1, duplicate=True),
        Outcome(seq=4),
    ]
    assert outcomes[7].failure is not None and "refused the write" in outcomes[7].failure
    assert (await stack.js.stream_info(REJECTED)).state.messages == 0
    stored = [await stack.js.get_msg(EVENTS, seq) for seq in (1, 2, 3, 4)]
    assert [(m.subject, m.data) for m in stored] == [(a, b"1"), (a, b"2"), (b, b"4"), (a, b"6")]
    assert [m.headers for m in stored] == [
        {EXPECTED_STREAM: EVENTS, MSG_ID: ids[0]},
        {EXPECTED_STREAM: EVENTS, MSG_ID: ids[1], EXPECTED_LAST_SUBJECT_SEQ: "1"},
        {EXPECTED_STREAM: EVENTS, MSG_ID: ids[3], EXPECTED_LAST_SUBJECT_SEQ: "0"},
        {EXPECTED_STREAM: EVENTS, MSG_ID: ids[5], EXPECTED_LAST_SUBJECT_SEQ: "2"},
    ]


BAD_SUBJECTS = ["", "a b", "a\tb", "a.b\r\nPUB x 1\r\n", "a.b\nPUB x 1\n", "x 1\r\n1\r\nPUB x", "x\r\n"]


@pytest.mark.parametrize("kind", KINDS)
async def test_a_bad_subject_fails_at_once_and_sends_nothing(stack: Stack, kind: str) -> None:
    watcher = await stack.nc.subscribe("x")
    await settle(stack.nc)
    good_subject = f"{EVENTS_PREFIX}.good"
    async with connected(kind, stack.servers.nats_url) as nc:
        publisher = JetStreamPublisher(nc, max_pending=2, ack_timeout=10)
        try:
            bad = []
            for i, subject in enumerate(BAD_SUBJECTS):
                # failed at once, before any settle, without holding a slot (max_pending=2): never waits for room
                pending = await asyncio.wait_for(publisher.publish(subject, b"1", {MSG_ID: f"bad-{i}"}), 5)
                assert pending.outcome is not None, repr(subject)
                assert pending.outcome.failure is not None and "BadSubjectError" in pending.outcome.failure
                bad.append(pending)
            with pytest.raises(ValueError, match="cannot be sent"):
                await publisher.publish(good_subject, b"1", {MSG_ID: "bad-value", "X-A": "a\r\nPUB x 1\r\n"})
            good = await asyncio.wait_for(publisher.publish(good_subject, b"ok", {MSG_ID: "good"}), 5)
            outcomes = await publisher.settle([*bad, good])
            assert nc.is_connected
        finally:
            await publisher.stop()
    assert outcomes == [pending.outcome for pending in bad] + [Outcome(seq=1)]
    assert (await stack.js.stream_info(EVENTS)).state.messages == 1
    stored = await stack.js.get_msg(EVENTS, 1)
    assert (stored.subject, stored.data, stored.headers) == (good_subject, b"ok", {MSG_ID: "good"})
    # the good publish was acked, so the server has read everything sent before it; anything it routed to
    # x is on its way to the watcher before the answer to this flush
    await settle(stack.nc)
    assert watcher.pending_msgs == 0
    await watcher.unsubscribe()


@pytest.mark.parametrize("kind", KINDS)
async def test_a_publish_on_a_closed_connection_fails_without_raising(stack: Stack, kind: str) -> None:
    async with connected(kind, stack.servers.nats_url) as nc:
        publisher = JetStreamPublisher(nc, max_pending=1, ack_timeout=10)
        await publisher.start()
        await nc.close()
        first = await asyncio.wait_for(
            publisher.publish(f"{EVENTS_PREFIX}.closed", b"1", {MSG_ID: "closed-1"}), 5
        )
        # the refusal gave its slot back: a second publish (max_pending=1) does not wait for room
        second = await asyncio.wait_for(
            publisher.publish(f"{EVENTS_PREFIX}.closed", b"2", {MSG_ID: "closed-2"}), 5
        )
        outcomes = await asyncio.wait_for(publisher.settle([first, second]), 1)
    for outcome in outcomes:
        assert outcome.failure is not None and "ConnectionClosedError" in outcome.failure
        assert outcome.seq is None


@pytest.mark.parametrize("kind", KINDS)
async def test_a_payload_over_the_servers_maximum_fails_and_the_connection_stays(
    stack: Stack, kind: str
) -> None:
    subject = f"{EVENTS_PREFIX}.big"
    async with connected(kind, stack.servers.nats_url) as nc:
        assert nc.max_payload > 0
        publisher = JetStreamPublisher(nc, max_pending=1, ack_timeout=10)
        try:
            big = await asyncio.wait_for(
                publisher.publish(subject, b"x" * (nc.max_payload + 1), {MSG_ID: "big"}), 5
            )
            assert big.outcome is not None
            assert big.outcome.failure is not None and "MaxPayloadError" in big.outcome.failure
            good = await asyncio.wait_for(publisher.publish(subject, b"ok", {MSG_ID: "ok"}), 5)
            assert await publisher.settle([big, good]) == [big.outcome, Outcome(seq=1)]
            assert nc.is_connected
        finally:
            await publisher.stop()
    assert (await stack.js.stream_info(EVENTS)).state.messages == 1


async def test_a_frame_whose_headers_pass_the_servers_maximum_fails_and_the_connection_stays(
    stack: Stack,
) -> None:
    """The payload alone fits the server's maximum, headers and payload do not: nats-py's own check passes
    it and the server closes the connection; a frame is refused before it is sent."""
    subject = f"{EVENTS_PREFIX}.edge"
    async with connected("frames", stack.servers.nats_url) as nc:
        publisher = JetStreamPublisher(nc, max_pending=1, ack_timeout=10)
        try:
            edge = await asyncio.wait_for(
                publisher.publish(subject, b"x" * nc.max_payload, {MSG_ID: "edge"}), 5
            )
            assert edge.outcome is not None
            assert edge.outcome.failure is not None and "MaxPayloadError" in edge.outcome.failure
            good = await asyncio.wait_for(publisher.publish(subject, b"ok", {MSG_ID: "ok"}), 5)
            assert (await publisher.settle([good]))[0].seq == 1
            assert nc.is_connected
        finally:
            await publisher.stop()


@pytest.mark.parametrize("kind", KINDS)
async def test_stop_on_a_closed_connection_fails_the_publishes_still_waiting(stack: Stack, kind: str) -> None:
    """A subscriber that never answers holds the acks; the connection closes; ``stop`` answers every waiting
    publish (no exception from the inbox's unsubscribe, no publish left without an outcome)."""
    async with connected(kind, stack.servers.nats_url) as nc:
        deaf = await stack.nc.subscribe("deaf.stop")
        await settle(stack.nc)
        publisher = JetStreamPublisher(nc, ack_timeout=30)
        pending = [await publisher.publish("deaf.stop", b"%d" % i, {MSG_ID: f"s{i}"}) for i in range(3)]

        async def held() -> bool:
            return deaf.pending_msgs == 3

        await wait_for(held, timeout=10, what="the deaf subscriber to hold the three publishes")
        await nc.close()
        await asyncio.wait_for(publisher.stop(), 5)
        await deaf.unsubscribe()
    assert all(p.outcome is not None and p.outcome.failure == "the gateway is stopping" for p in pending)


@pytest.mark.parametrize("kind", KINDS)
async def test_settle_gives_up_at_its_deadline_and_frees_the_slots(stack: Stack, kind: str) -> None:
    deaf = await stack.nc.subscribe("deaf.>")  # hears the publishes, never answers: no 503 either
    await settle(stack.nc)
    async with connected(kind, stack.servers.nats_url) as nc:
        publisher = JetStreamPublisher(nc, max_pending=2, ack_timeout=0.3)
        try:
            lost = [
                await publisher.publish("deaf.a", b"1", {MSG_ID: "lost-1"}),
                await publisher.publish("deaf.b", b"2", {MSG_ID: "lost-2"}),
            ]

            async def heard() -> bool:
                return bool(deaf.pending_msgs == 2)

            await wait_for(heard, what="the deaf subscriber to receive both publishes")
            after = asyncio.create_task(publisher.publish(f"{EVENTS_PREFIX}.after", b"ok", {MSG_ID: "after"}))
            await nc.flush()  # a round trip: time enough for the third publish, had it room
            assert not after.done()  # two acks outstanding, max_pending=2: it waits for room
            started = time.monotonic()
            outcomes = await publisher.settle(lost)
            waited = time.monotonic() - started
            assert outcomes == [LATE, LATE]
            assert all(p.outcome == LATE for p in lost)
            assert 0.25 <= waited < 5
            third = await asyncio.wait_for(after, 5)  # the time-outs gave the slots back
            assert await publisher.settle([third]) == [Outcome(seq=1)]
            # and both slots: two more publishes go out without waiting
            more = [
                await asyncio.wait_for(
                    publisher.publish(f"{EVENTS_PREFIX}.after", b"m", {MSG_ID: f"m{i}"}), 5
                )
                for i in range(2)
            ]
            assert await publisher.settle(more) == [Outcome(seq=2), Outcome(seq=3)]
        finally:
            await publisher.stop()
    await deaf.unsubscribe()


@pytest.mark.parametrize("kind", KINDS)
async def test_many_publishes_in_interleaved_sets_get_their_own_sequences(stack: Stack, kind: str) -> None:
    writers, sets, per_set = 4, 5, 100  # 2,000 publishes

    async with connected(kind, stack.servers.nats_url) as nc:
        # fewer slots than a set holds: writers wait for room in the middle of their sets, and take turns
        publisher = JetStreamPublisher(nc, max_pending=64, ack_timeout=30)

        async def writer(w: int) -> list[tuple[list[bytes], list[Outcome]]]:
            done = []
            for s in range(sets):
                datas = [f"{w}-{s}-{i}".encode() for i in range(per_set)]
                pendings = [
                    await publisher.publish(f"{EVENTS_PREFIX}.many.{w}", data, {MSG_ID: data.decode()})
                    for data in datas
                ]
                done.append((datas, await publisher.settle(pendings)))
            return done

        try:
            results = await asyncio.gather(*(writer(w) for w in range(writers)))
        finally:
            await publisher.stop()

    expected: dict[int, tuple[str, bytes]] = {}
    for w, done in enumerate(results):
        for datas, outcomes in done:
            assert all(o.failure is None and not o.wrong_last_seq and not o.duplicate for o in outcomes)
            seqs = [o.seq for o in outcomes if o.seq is not None]
            assert len(seqs) == per_set
            assert seqs == sorted(set(seqs)), "a set's sequences strictly increasing, in publish order"
            for outcome, data in zip(outcomes, datas, strict=True):
                assert outcome.seq is not None and outcome.seq not in expected
                expected[outcome.seq] = (f"{EVENTS_PREFIX}.many.{w}", data)
    total = writers * sets * per_set
    assert sorted(expected) == list(range(1, total + 1))
    assert (await stack.js.stream_info(EVENTS)).state.messages == total
    for seq, (subject, data) in expected.items():
        stored = await stack.js.get_msg(EVENTS, seq)
        assert stored.headers is not None
        assert (stored.subject, stored.data, stored.headers[MSG_ID]) == (subject, data, data.decode())
