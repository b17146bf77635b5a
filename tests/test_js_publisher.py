"""Pipelined JetStream publishes (``infra.js_publisher``) on a real server, with both ways acks come in: nats-py's
callbacks (any client) and the parser's raw route (``FastHeadersClient``). Each outcome a gateway acts on must
read the same: stored (with its sequence), a duplicate, a stale expected sequence, no stream (503)."""

from __future__ import annotations

import pytest
from nats.aio.client import Client

from infra.js_publisher import EXPECTED_LAST_SUBJECT_SEQ, MSG_ID, JetStreamPublisher, Outcome, _status_of
from infra.nats_client import FastHeadersClient, connect
from tests.conftest import Stack

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
