"""Whole-batch pull requests (infra/pull.py) on a real server: a live consumer's fetches each get exactly the
messages that were waiting, in order, and a fetch that waits returns what arrives meanwhile."""

from __future__ import annotations

import asyncio

import pytest
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig

from infra.pull import BatchPuller
from infra.stream_reader import StreamReadError, parse_ack_reply, read_stream
from tests.conftest import Stack

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


async def test_a_read_that_misses_a_delivery_raises_instead_of_skipping_it(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A message lost on the way (a connection that died and came back) must not vanish from a replay."""
    await stack.js.add_stream(name="PULL_B", subjects=["pullb.>"])
    for i in range(30):
        await stack.js.publish("pullb.x", b"%d" % i)
    assert [m.seq async for batch in read_stream(stack.js, "PULL_B", batch=7) for m in batch] == list(
        range(1, 31)
    )
    deliver = BatchPuller._on_msg

    async def lose_the_12th(self: BatchPuller, msg: Msg) -> None:
        if msg.reply and parse_ack_reply(msg.reply).stream_seq == 12:
            return
        await deliver(self, msg)

    monkeypatch.setattr(BatchPuller, "_on_msg", lose_the_12th)
    with pytest.raises(StreamReadError, match="lost in transit"):
        async for _ in read_stream(stack.js, "PULL_B", batch=7):
            pass
    await stack.js.delete_stream("PULL_B")
