"""Read a JetStream stream in order, in batches, from a start sequence: for index catch-up, rebuilds and replay.

An ephemeral pull consumer with no acks; the end is the stream's last sequence when reading began (or a given
stop sequence), so a reader of a live stream always terminates.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, ReplayPolicy


@dataclass(frozen=True, slots=True)
class StoredMsg:
    seq: int
    subject: str
    data: bytes
    timestamp_ns: int
    headers: dict[str, str] | None

    @property
    def time(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.timestamp_ns / 1e9, tz=dt.UTC)


def parse_ack_reply(reply: str) -> tuple[int, int, int]:
    """(stream sequence, timestamp ns, pending) from a JetStream ack subject (v1 and v2 forms)."""
    tokens = reply.split(".")
    base = 2 if len(tokens) == 9 else 4
    return int(tokens[base + 3]), int(tokens[base + 5]), int(tokens[base + 6])


def to_stored(msg: Msg) -> StoredMsg:
    seq, ts, _ = parse_ack_reply(msg.reply)
    return StoredMsg(seq, msg.subject, msg.data, ts, msg.headers)


async def last_sequence(js: JetStreamContext, stream: str) -> int:
    info = await js.stream_info(stream)
    return int(info.state.last_seq)


class StreamReadError(Exception):
    """The server stopped answering before the requested range was read: the read is incomplete."""


class _Puller:
    """Pull requests for whole batches on one inbox; messages are collected by a plain callback.

    Cheaper per message than nats-py's ``fetch`` (which awaits each message with its own timer), and the next
    batch is requested before the current one is handed out, so the server sends while we fold.
    """

    def __init__(self, nc: Client, stream: str, consumer: str) -> None:
        self._nc = nc
        self._next = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}"
        self._inbox = nc.new_inbox()
        self._sub: Subscription | None = None
        self._queue: asyncio.Queue[list[Msg]] = asyncio.Queue()
        self._buf: list[Msg] = []
        self._want = 0

    async def start(self) -> None:
        self._sub = await self._nc.subscribe(
            self._inbox, cb=self._on_msg, pending_msgs_limit=-1, pending_bytes_limit=-1
        )

    async def stop(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()

    async def request(self, batch: int) -> None:
        self._want = batch
        body = b'{"batch":%d,"no_wait":true}' % batch
        await self._nc.publish(self._next, body, reply=self._inbox)

    async def _on_msg(self, msg: Msg) -> None:
        if msg.headers and msg.headers.get("Status"):  # 404 no more messages now, 408 expired, 409 gone
            self._hand_out()
            return
        self._buf.append(msg)
        if len(self._buf) >= self._want:
            self._hand_out()

    def _hand_out(self) -> None:
        batch, self._buf, self._want = self._buf, [], 0
        self._queue.put_nowait(batch)

    async def batch(self, timeout: float) -> list[Msg]:
        try:
            return await asyncio.wait_for(self._queue.get(), timeout)
        except TimeoutError:
            raise StreamReadError(f"no answer from the server within {timeout}s") from None


async def read_stream(
    js: JetStreamContext,
    stream: str,
    *,
    start_seq: int = 1,
    stop_seq: int | None = None,
    subject: str | None = None,
    batch: int = 2000,
    timeout: float = 10.0,
) -> AsyncIterator[list[StoredMsg]]:
    """Yield batches of stored messages with start_seq <= seq <= stop (default: last seq at start).

    Raises ``StreamReadError`` rather than ending early when the server stops answering.
    """
    stop = stop_seq if stop_seq is not None else await last_sequence(js, stream)
    if stop < start_seq:
        return
    info = await js.add_consumer(
        stream,
        ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=max(start_seq, 1),
            ack_policy=AckPolicy.NONE,
            replay_policy=ReplayPolicy.INSTANT,
            inactive_threshold=30.0,
            filter_subject=subject,
            max_waiting=4,
        ),
    )
    if info.num_pending == 0:
        with contextlib.suppress(Exception):
            await js.delete_consumer(stream, info.name)
        return
    puller = _Puller(js._nc, stream, str(info.name))
    await puller.start()
    try:
        await puller.request(batch)
        while True:
            msgs = await puller.batch(timeout)
            if not msgs:
                # the server answered with a status and no message before the range was read: the consumer
                # is gone (inactivity, restart) or the stream changed; never end a read early in silence
                raise StreamReadError(f"{stream}: the read stopped before seq {stop} (consumer {info.name})")
            out: list[StoredMsg] = []
            done = False
            for msg in msgs:
                seq, ts, pending = parse_ack_reply(msg.reply)
                if seq > stop:
                    done = True
                    break
                out.append(StoredMsg(seq, msg.subject, msg.data, ts, msg.headers))
                if seq == stop or pending == 0:
                    done = True
            if not done:
                await puller.request(batch)  # the server sends the next batch while this one is used
            if out:
                yield out
            if done:
                return
    finally:
        await puller.stop()
        with contextlib.suppress(Exception):  # ephemeral: it would expire by itself anyway
            await js.delete_consumer(stream, info.name)
