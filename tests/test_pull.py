"""Whole-batch pull requests (infra/pull.py) on a real server: a live consumer's fetches each get exactly the
messages that were waiting, in order, and a fetch that waits returns what arrives meanwhile."""

from __future__ import annotations

import asyncio

import pytest
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig

from infra.pull import BatchPuller
from infra.stream_reader import MAX_RESETS, StreamReadError, parse_ack_reply, read_stream
from tests.conftest import Stack
from tests.servers import wait_for

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
                await got[-1].ack()
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


async def test_a_read_that_misses_a_delivery_goes_on_with_a_new_consumer_and_skips_nothing(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A message lost on the way (a connection that died and came back) must not vanish from a replay: like an
    ordered consumer, the read notices the missing delivery and reads on from there with a new consumer; a
    delivery lost every time makes it give up with ``StreamReadError``, never end short."""
    await stack.js.add_stream(name="PULL_B", subjects=["pullb.>"])
    for i in range(30):
        await stack.js.publish("pullb.x", b"%d" % i)
    assert [m.seq async for batch in read_stream(stack.js, "PULL_B", batch=7) for m in batch] == list(
        range(1, 31)
    )
    deliver = BatchPuller._on_msg
    lost: list[int] = []

    async def lose_the_12th_once(self: BatchPuller, msg: Msg) -> None:
        if msg.reply and parse_ack_reply(msg.reply).stream_seq == 12 and not lost:
            lost.append(12)
            return
        await deliver(self, msg)

    monkeypatch.setattr(BatchPuller, "_on_msg", lose_the_12th_once)
    read = [(m.seq, m.data) async for batch in read_stream(stack.js, "PULL_B", batch=7) for m in batch]
    assert lost == [12] and read == [(i + 1, b"%d" % i) for i in range(30)]
    assert any(
        "lost in transit" in r.getMessage() and "reading on from seq" in r.getMessage()
        for r in caplog.records
    )

    async def lose_the_12th_always(self: BatchPuller, msg: Msg) -> None:
        if msg.reply and parse_ack_reply(msg.reply).stream_seq == 12:
            return
        await deliver(self, msg)

    monkeypatch.setattr(BatchPuller, "_on_msg", lose_the_12th_always)
    seen: list[int] = []

    async def read_all() -> None:
        async for batch in read_stream(stack.js, "PULL_B", batch=7):
            seen.extend(m.seq for m in batch)

    with pytest.raises(StreamReadError, match=f"lost in transit.*gave up after {MAX_RESETS}"):
        await read_all()
    assert seen == list(range(1, 8))  # what came before the gap, once; nothing after it

    async def no_consumer_left() -> bool:  # each one it made is deleted (in the background)
        return await stack.js.consumers_info("PULL_B") == []

    await wait_for(no_consumer_left, what="the read's consumers to be deleted")
    await stack.js.delete_stream("PULL_B")
