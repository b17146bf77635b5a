"""Whole-batch pull requests (infra/pull.py) on a real server: a live consumer's fetches each get exactly the
messages that were waiting, in order, and a fetch that waits returns what arrives meanwhile."""

from __future__ import annotations

import asyncio

import pytest
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig

from infra.nats_client import FastHeadersClient, connect
from infra.pull import BatchPuller, RawMsg
from infra.stream_reader import MAX_RESETS, StreamReadError, parse_ack_reply, read_stream
from tests.conftest import Stack
from tests.servers import settle, wait_for

pytestmark = [pytest.mark.servers, pytest.mark.timeout(60)]


async def test_fetches_on_a_live_consumer_never_lose_or_repeat_a_message(stack: Stack) -> None:
    await stack.js.add_stream(name="PULL_A", subjects=["pulla.>"])
    await stack.js.add_consumer("PULL_A", ConsumerConfig(durable_name="d", ack_policy=AckPolicy.ALL))
    puller = BatchPuller(stack.nc, "PULL_A", "d")
    await puller.start()
    try:
        seen: list[bytes] = []
        sent = 0
        for round_size in (5, 0, 1, 0, 12, 3):  # bursts, idle fetches in between
            for _ in range(round_size):
                await stack.js.publish("pulla.x", b"%d" % sent)
                sent += 1
            got = await puller.fetch(4, timeout=0.2)
            while got:
                assert len(got) <= 4
                seen += [m.data for m in got]
                await puller.ack(got[-1])
                got = await puller.fetch(4, timeout=0.2)
            assert seen == [b"%d" % i for i in range(sent)]
        # a fetch that waits returns the message published while it waits, and the ones right behind it
        waiting = asyncio.create_task(puller.fetch(10, timeout=5.0))
        # one yield, so the fetch sends its request first (either order passes)
        await asyncio.sleep(0)  # wait-ok
        for i in range(3):
            await stack.js.publish("pulla.x", b"late%d" % i)
        late = [m.data for m in await waiting]
        assert late[:1] == [b"late0"]  # the waiting fetch itself returns what came, not an empty batch
        while len(late) < 3:
            late += [m.data for m in await puller.fetch(10, timeout=1.0)]
        assert late == [b"late0", b"late1", b"late2"]
    finally:
        await puller.stop()
        await stack.js.delete_stream("PULL_A")


@pytest.mark.parametrize("client", ["nats-py", "raw routes"])
async def test_a_read_that_misses_a_delivery_goes_on_with_a_new_consumer_and_skips_nothing(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, client: str
) -> None:
    """A message lost on the way (a connection that died and came back) must not vanish from a replay: like an
    ordered consumer, the read notices the missing delivery and reads on from there with a new consumer; a
    delivery lost every time makes it give up with ``StreamReadError``, never end short. Both ways of taking
    the messages in: nats-py's callbacks (any client), and the parser's raw route (``FastHeadersClient``)."""
    nc = stack.nc if client == "nats-py" else await connect(stack.servers.nats_url)
    js = nc.jetstream()
    try:
        await _a_read_that_misses_a_delivery(stack, js, monkeypatch, caplog)
    finally:
        if nc is not stack.nc:
            await nc.close()


async def _a_read_that_misses_a_delivery(
    stack: Stack, js: JetStreamContext, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    await stack.js.add_stream(name="PULL_B", subjects=["pullb.>"])
    for i in range(30):
        await stack.js.publish("pullb.x", b"%d" % i)
    assert [m.seq async for batch in read_stream(js, "PULL_B", batch=7) for m in batch] == list(range(1, 31))
    deliver = BatchPuller._keep
    lost: list[int] = []

    def lose_the_12th_once(self: BatchPuller, msg: RawMsg) -> None:
        if msg.reply and parse_ack_reply(msg.reply).stream_seq == 12 and not lost:
            lost.append(12)
            return
        deliver(self, msg)

    monkeypatch.setattr(BatchPuller, "_keep", lose_the_12th_once)
    read = [(m.seq, m.data) async for batch in read_stream(js, "PULL_B", batch=7) for m in batch]
    assert lost == [12] and read == [(i + 1, b"%d" % i) for i in range(30)]
    assert any(
        "lost in transit" in r.getMessage() and "reading on from seq" in r.getMessage()
        for r in caplog.records
    )

    def lose_the_12th_always(self: BatchPuller, msg: RawMsg) -> None:
        if msg.reply and parse_ack_reply(msg.reply).stream_seq == 12:
            return
        deliver(self, msg)

    monkeypatch.setattr(BatchPuller, "_keep", lose_the_12th_always)
    seen: list[int] = []

    async def read_all() -> None:
        async for batch in read_stream(js, "PULL_B", batch=7):
            seen.extend(m.seq for m in batch)

    with pytest.raises(StreamReadError, match=f"lost in transit.*gave up after {MAX_RESETS}"):
        await read_all()
    assert seen == list(range(1, 8))  # what came before the gap, once; nothing after it

    async def no_consumer_left() -> bool:  # each one it made is deleted (in the background)
        return await stack.js.consumers_info("PULL_B") == []

    await wait_for(no_consumer_left, what="the read's consumers to be deleted")
    await stack.js.delete_stream("PULL_B")


async def test_both_ways_of_taking_messages_in_read_the_same_stored_messages(stack: Stack) -> None:
    """The raw route (``FastHeadersClient``: the parser's cut, headers parsed only when asked for) and nats-py's
    own delivery read the same stored messages: sequence, subject, body, timestamp and headers (none, one, or
    several, a value with a colon, a status-like word)."""
    await stack.js.add_stream(name="PULL_C", subjects=["pullc.>"])
    headers: list[dict[str, str] | None] = [None, {"Nats-Msg-Id": ""}, {"X-A": "1:2", "x-b": " spaced "}, {}]
    for i in range(40):
        sent = headers[i % len(headers)]
        if sent is not None and "Nats-Msg-Id" in sent:
            sent = {"Nats-Msg-Id": f"m{i}"}  # one id each: the stream keeps all 40
        await stack.js.publish(f"pullc.{i % 3}", b"body %d" % i, headers=sent)
    fast = await connect(stack.servers.nats_url)
    try:
        ours = [m async for batch in read_stream(fast.jetstream(), "PULL_C", batch=9) for m in batch]
        theirs = [m async for batch in read_stream(stack.js, "PULL_C", batch=9) for m in batch]
    finally:
        await fast.close()
        await stack.js.delete_stream("PULL_C")
    assert [m.seq for m in ours] == list(range(1, 41))
    assert ours == theirs
    assert ours[2].headers == {"X-A": "1:2", "x-b": "spaced"} and ours[0].headers is None
    assert ours[1].headers == {"Nats-Msg-Id": "m1"}


async def test_an_error_in_a_raw_handler_is_reported_and_the_connection_reads_on(stack: Stack) -> None:
    """A raw route's handler runs inside nats-py's protocol parser: an exception it let through ended the
    connection's read loop (logged once), and the client, still 'connected', read nothing more (no reply, no
    pull answer, no publish ack) until its ping timer found it stale, minutes later. It goes to the error
    callback instead, as an error in a subscription's callback does, and the connection reads on."""
    errors: list[Exception] = []

    async def error_cb(exc: Exception) -> None:
        errors.append(exc)

    nc = await connect(stack.servers.nats_url, error_cb=error_cb)
    try:

        async def never(_: object) -> None:
            raise AssertionError("routed: nats-py's delivery is not used")

        sub = await nc.subscribe("rawfail.x", cb=never)

        def fails(subject: bytes, reply: bytes, data: bytes, headers: bytes | None) -> None:
            raise ValueError(f"cannot take {data!r}")

        assert isinstance(nc, FastHeadersClient)
        nc.route_raw(sub._id, fails)
        await settle(nc)  # the server has the subscription before another connection publishes to it
        await stack.nc.publish("rawfail.x", b"one")
        await stack.nc.flush()

        async def echo(msg: Msg) -> None:
            await msg.respond(msg.data)

        answers = await nc.subscribe("rawfail.echo", cb=echo)
        reply = await nc.request("rawfail.echo", b"still reading", timeout=3.0)
        assert reply.data == b"still reading"
        assert [str(e) for e in errors] == ["cannot take b'one'"]
        await answers.unsubscribe()
    finally:
        await nc.close()


@pytest.mark.parametrize("client", ["nats-py", "raw routes"])
async def test_a_stored_message_with_a_status_header_and_no_body_is_read_as_a_message(
    stack: Stack, client: str
) -> None:
    """A stored message may carry a header named ``Status`` (and no body): nats-py puts a status line's code
    under the same name, and the fallback (any client without raw routes) wrote it back as a status line, so
    the message was taken for the end of a pull request: never delivered, the read lost it every time and gave
    up (``StreamReadError``), a rebuild on such a client halted. Only an answer without a reply subject can be
    a status: a consumer delivers every stored message with its ack subject."""
    nc = stack.nc if client == "nats-py" else await connect(stack.servers.nats_url)
    await stack.js.add_stream(name="PULL_S", subjects=["pulls.>"])
    try:
        await stack.js.publish("pulls.x", b"1")
        await stack.js.publish("pulls.x", b"", headers={"Status": "404", "Description": "No Messages"})
        await stack.js.publish("pulls.x", b"3")
        read = [
            (m.seq, m.data, m.headers)
            async for batch in read_stream(nc.jetstream(), "PULL_S", batch=2, timeout=3.0)
            for m in batch
        ]
        assert [(seq, data) for seq, data, _ in read] == [(1, b"1"), (2, b""), (3, b"3")]
        assert read[1][2] == {"Status": "404", "Description": "No Messages"}
    finally:
        await stack.js.delete_stream("PULL_S")
        if nc is not stack.nc:
            await nc.close()
